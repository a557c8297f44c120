// Bundles the page (Leaflet included, from node_modules) into the Python package's
// static/ folder, which the server reads at start-up. Nothing comes from a CDN.
import { copyFile, mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const outdir = fileURLToPath(new URL("../src/omnimap/serve/static/", import.meta.url));

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir,
  // Leaflet's CSS names a few small images: inline them, so the page is 3 files.
  loader: { ".png": "dataurl", ".svg": "dataurl" },
  logLevel: "info",
});
await copyFile("src/index.html", `${outdir}/index.html`);
