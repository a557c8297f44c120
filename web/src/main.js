// The omnimap web map: a prompt, a season and an hour become score tiles, a legend
// and the top places, all from this server (an online basemap only if configured).
// "Where was this?" sends a description to /locate and draws its posterior.
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import "./style.css";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WORLD = [
  [-85.0511, -180],
  [85.0511, 180],
];
const TOP_K = 10;

// Counters the browser test (and a curious person in the console) can read.
const stats = (window.omnimap = {
  tileload: 0,
  tileerror: 0,
  layerLoaded: false,
  coastlines: false,
  legend: null,
  places: null,
  located: false, // the last /locate answer is drawn
  locate: null, // that answer: hypotheses and the posterior's shape
});

const $ = (id) => document.getElementById(id);
const ui = {
  prompt: $("prompt"),
  useTime: $("use-time"),
  month: $("month"),
  hour: $("hour"),
  opacity: $("opacity"),
  status: $("status"),
  description: $("description"),
  locateTime: $("locate-time"),
  locateStatus: $("locate-status"),
};

const map = L.map("map", {
  center: [20, 10],
  zoom: 2,
  minZoom: 1,
  maxZoom: 10, // cells are 0.05 deg from zoom 6 on: deeper zooms only magnify
  maxBounds: [
    [-90, -210],
    [90, 210],
  ],
  maxBoundsViscosity: 0.7,
  zoomControl: false,
});
L.control.zoom({ position: "topright" }).addTo(map);
map.attributionControl.setPrefix("omnimap · Leaflet");
// Coastlines above the scores so the map reads; places above both.
map.createPane("coast").style.zIndex = 450;
map.createPane("places").style.zIndex = 620;
// The posterior sits over the scores and under the coastlines; its hypotheses on top.
map.createPane("posterior").style.zIndex = 440;
map.createPane("hypotheses").style.zIndex = 630;
const coastRenderer = L.canvas({ pane: "coast" });
const placesLayer = L.layerGroup().addTo(map);

let scoreLayer = null; // on show
let pendingLayer = null; // loading, replaces scoreLayer once its tiles are in
let generation = 0; // responses for an older query are dropped
const hypothesesLayer = L.layerGroup().addTo(map);
let posteriorLayer = null;
let locateGeneration = 0; // the same for "where was this?"

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.detail ?? `${response.status} ${response.statusText}`);
  return body;
}

function when() {
  if (!ui.useTime.checked) return "";
  const month = String(ui.month.value).padStart(2, "0");
  const hour = String(ui.hour.value).padStart(2, "0");
  return `2024-${month}-15T${hour}:00`; // naive = local solar time at every cell
}

function query(extra = {}) {
  const params = new URLSearchParams({ q: ui.prompt.value.trim(), ...extra });
  if (when()) params.set("when", when());
  return params.toString();
}

function describeTime() {
  if (!ui.useTime.checked) return "any time";
  return `${MONTHS[ui.month.value - 1]} 15, ${ui.hour.value.padStart(2, "0")}:00 local solar time`;
}

function updateLabels() {
  $("month-out").textContent = MONTHS[ui.month.value - 1];
  $("hour-out").textContent = `${ui.hour.value.padStart(2, "0")}:00`;
  $("opacity-out").textContent = `${ui.opacity.value}%`;
  for (const input of [ui.month, ui.hour]) {
    input.disabled = !ui.useTime.checked;
    input.closest(".row").classList.toggle("disabled", !ui.useTime.checked);
  }
}

function saveHash() {
  const params = new URLSearchParams({
    q: ui.prompt.value.trim(),
    month: ui.month.value,
    hour: ui.hour.value,
    time: ui.useTime.checked ? "1" : "0",
    opacity: ui.opacity.value,
  });
  history.replaceState(null, "", `#${params}`);
}

function loadHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("q")) ui.prompt.value = params.get("q");
  if (params.has("month")) ui.month.value = params.get("month");
  if (params.has("hour")) ui.hour.value = params.get("hour");
  if (params.has("time")) ui.useTime.checked = params.get("time") !== "0";
  if (params.has("opacity")) ui.opacity.value = params.get("opacity");
}

function showLegend(legend) {
  const stops = legend.stops.map(([t, colour]) => `${colour} ${(t * 100).toFixed(0)}%`);
  $("legend-bar").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  $("vmin").textContent = legend.vmin.toFixed(3);
  $("vmid").textContent = ((legend.vmin + legend.vmax) / 2).toFixed(3);
  $("vmax").textContent = legend.vmax.toFixed(3);
  $("legend-label").textContent = `${legend.label}; colours span the 2nd–98th percentile worldwide`;
  $("legend").hidden = false;
}

function formatPlace([lon, lat]) {
  const ns = lat >= 0 ? "N" : "S";
  const ew = lon >= 0 ? "E" : "W";
  return `${Math.abs(lat).toFixed(1)}°${ns} ${Math.abs(lon).toFixed(1)}°${ew}`;
}

function showPlaces(collection) {
  placesLayer.clearLayers();
  const list = $("place-list");
  list.replaceChildren();
  for (const feature of collection.features) {
    const [lon, lat] = feature.geometry.coordinates;
    const { rank, score } = feature.properties;
    const text = `${formatPlace([lon, lat])} · ${score.toFixed(3)}`;
    L.circleMarker([lat, lon], {
      pane: "places",
      radius: 6,
      color: "#ffffff",
      weight: 1.5,
      fillColor: "#22d3ee",
      fillOpacity: 1,
    })
      .bindTooltip(String(rank), { permanent: true, direction: "right", className: "rank-label", offset: [5, -3] })
      .bindPopup(`<b>#${rank}</b> ${text}`)
      .addTo(placesLayer);
    const item = document.createElement("li");
    item.textContent = text;
    item.addEventListener("click", () => map.flyTo([lat, lon], Math.max(map.getZoom(), 5)));
    list.append(item);
  }
  $("places").hidden = false;
}

function updateDownload() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v)).toFixed(4);
  const bbox = [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90), clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)];
  $("download").href = `/map.tif?${query({ bbox: bbox.join(",") })}`;
}

function dropPending() {
  if (pendingLayer) map.removeLayer(pendingLayer);
  pendingLayer = null;
}

function showScores(current) {
  dropPending();
  const layer = L.tileLayer(`/tiles/{z}/{x}/{y}.png?${query()}`, {
    noWrap: true,
    bounds: WORLD,
    opacity: ui.opacity.value / 100,
    zIndex: 10,
    keepBuffer: 1,
    updateWhenZooming: false,
    attribution: "scores: omnimap",
  });
  let loaded = 0;
  layer.on("tileload", () => {
    stats.tileload += 1;
    loaded += 1;
    if (current === generation) setStatus(`Scoring tiles… ${loaded} done`);
  });
  layer.on("tileerror", () => {
    stats.tileerror += 1;
  });
  layer.on("load", () => {
    if (current !== generation) return;
    // Swap only once the new tiles are in, so the map never flashes empty.
    if (scoreLayer && scoreLayer !== layer) map.removeLayer(scoreLayer);
    scoreLayer = layer;
    pendingLayer = null;
    stats.layerLoaded = true;
    setStatus(`“${ui.prompt.value.trim()}” · ${describeTime()}`);
  });
  pendingLayer = layer;
  layer.addTo(map);
}

async function refresh() {
  updateLabels();
  saveHash();
  const current = ++generation;
  const prompt = ui.prompt.value.trim();
  stats.layerLoaded = false;
  if (!prompt) {
    dropPending();
    if (scoreLayer) map.removeLayer(scoreLayer);
    scoreLayer = null;
    placesLayer.clearLayers();
    $("legend").hidden = $("places").hidden = true;
    setStatus("Type what to map and press Enter.");
    return;
  }
  setStatus("Scoring the world…");
  try {
    // The legend first: it fixes the colour limits every tile then uses, and a bad
    // prompt or date shows one message instead of a screen of failed tiles.
    const legend = await getJSON(`/legend?${query()}`);
    if (current !== generation) return;
    stats.legend = legend;
    showLegend(legend);
    showScores(current);
    updateDownload();
    const places = await getJSON(`/search?${query({ k: TOP_K })}`);
    if (current !== generation) return;
    stats.places = places;
    showPlaces(places);
  } catch (error) {
    if (current !== generation) return;
    dropPending();
    setStatus(error.message, true);
  }
}

// Magma, dark to light: the posterior's colours (alpha rises with them).
const RAMP = [
  [0.0, [0, 0, 4]],
  [0.25, [81, 18, 124]],
  [0.5, [183, 55, 121]],
  [0.75, [252, 137, 97]],
  [1.0, [252, 253, 191]],
];
const MAX_LAT = 85.0511; // Web Mercator's edge
const mercator = (lat) => Math.log(Math.tan(Math.PI / 4 + (Math.max(-MAX_LAT, Math.min(MAX_LAT, lat)) * Math.PI) / 360));

function ramp(t) {
  let i = 1;
  while (i < RAMP.length - 1 && t > RAMP[i][0]) i += 1;
  const [t0, c0] = RAMP[i - 1];
  const [t1, c1] = RAMP[i];
  const f = Math.min(1, Math.max(0, (t - t0) / (t1 - t0)));
  return c0.map((c, k) => Math.round(c + f * (c1[k] - c)));
}

// The posterior comes on the grid's latitude rows; the map is Web Mercator, so each
// image row takes the grid row under its latitude (an equirectangular image stretched
// over the bounds would put every place at the wrong latitude).
function posteriorImage({ bounds, shape, prob }) {
  const [west, south, east, north] = bounds;
  const [nrows, ncols] = shape;
  const res = (north - south) / nrows;
  const top = Math.min(north, MAX_LAT);
  const bottom = Math.max(south, -MAX_LAT);
  const spanX = ((east - west) * Math.PI) / 180;
  const height = Math.max(1, Math.min(2048, Math.round((ncols * (mercator(top) - mercator(bottom))) / spanX)));
  const canvas = document.createElement("canvas");
  canvas.width = ncols;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(ncols, height);
  let peak = 0;
  for (const p of prob) if (p > peak) peak = p;
  const m0 = mercator(top);
  const m1 = mercator(bottom);
  for (let y = 0; y < height; y += 1) {
    const m = m0 + ((y + 0.5) / height) * (m1 - m0);
    const lat = (Math.atan(Math.sinh(m)) * 180) / Math.PI;
    const row = Math.min(nrows - 1, Math.max(0, Math.floor((north - lat) / res)));
    for (let x = 0; x < ncols; x += 1) {
      const p = prob[row * ncols + x];
      if (!(p > 0) || !(peak > 0)) continue;
      // Square root: a posterior's tail is long, and the linear scale hides all but the peak.
      const v = Math.sqrt(p / peak);
      if (v < 0.05) continue;
      const [r, g, b] = ramp(v);
      const o = 4 * (y * ncols + x);
      image.data.set([r, g, b, Math.round(255 * Math.min(1, 0.25 + v))], o);
    }
  }
  context.putImageData(image, 0, 0);
  return { url: canvas.toDataURL("image/png"), bounds: [[bottom, west], [top, east]] };
}

function clearLocate() {
  ++locateGeneration;
  if (posteriorLayer) map.removeLayer(posteriorLayer);
  posteriorLayer = null;
  hypothesesLayer.clearLayers();
  $("hypothesis-list").replaceChildren();
  $("posterior-legend").hidden = true;
  $("locate-clear").hidden = true;
  stats.located = false;
  stats.locate = null;
}

function showPosterior(body) {
  const { url, bounds } = posteriorImage(body.posterior);
  if (posteriorLayer) map.removeLayer(posteriorLayer);
  posteriorLayer = L.imageOverlay(url, bounds, {
    pane: "posterior",
    opacity: 0.85,
    className: "posterior",
    alt: "where-posterior",
  }).addTo(map);
  const stops = RAMP.map(([t, [r, g, b]]) => `rgb(${r},${g},${b}) ${(t * 100).toFixed(0)}%`);
  $("posterior-bar").style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  $("posterior-legend").hidden = false;

  hypothesesLayer.clearLayers();
  const list = $("hypothesis-list");
  list.replaceChildren();
  for (const feature of body.features) {
    const [lon, lat] = feature.geometry.coordinates;
    const { rank, mass, radius_km: radius } = feature.properties;
    const text = `${formatPlace([lon, lat])} · ${(100 * mass).toFixed(1)}% · ±${Math.round(radius).toLocaleString("en")} km`;
    L.circle([lat, lon], {
      pane: "hypotheses",
      radius: Math.max(radius, 1) * 1000,
      color: "#22d3ee",
      weight: 2,
      fillOpacity: 0.08,
    })
      .bindPopup(`<b>#${rank}</b> ${text}`)
      .addTo(hypothesesLayer);
    L.circleMarker([lat, lon], { pane: "hypotheses", radius: 4, color: "#ffffff", weight: 1.5, fillColor: "#22d3ee", fillOpacity: 1 })
      .bindTooltip(String(rank), { permanent: true, direction: "right", className: "rank-label", offset: [5, -3] })
      .addTo(hypothesesLayer);
    const item = document.createElement("li");
    item.textContent = text;
    item.addEventListener("click", () => map.flyTo([lat, lon], Math.max(map.getZoom(), 4)));
    list.append(item);
  }
  $("locate-clear").hidden = false;
}

function setLocateStatus(text, isError = false) {
  ui.locateStatus.textContent = text;
  ui.locateStatus.classList.toggle("error", isError);
}

async function locateDescription() {
  const current = ++locateGeneration;
  stats.located = false;
  // The text goes as typed: an empty one gets the server's own one-line answer.
  const params = new URLSearchParams({ q: ui.description.value });
  const moment = ui.locateTime.checked ? when() : "";
  if (moment) params.set("when", moment);
  setLocateStatus("Locating…");
  try {
    const body = await getJSON(`/locate?${params}`);
    if (current !== locateGeneration) return;
    showPosterior(body);
    stats.locate = { hypotheses: body.features.length, shape: body.posterior.shape, query: body.query };
    stats.located = true;
    const top = body.features[0];
    const share = top ? `; the top hypothesis holds ${(100 * top.properties.mass).toFixed(1)}%` : "";
    setLocateStatus(`Posterior over ${body.posterior.prob.length.toLocaleString("en")} cells · ${moment ? describeTime() : "any time"}${share}`);
  } catch (error) {
    if (current !== locateGeneration) return;
    setLocateStatus(error.message, true);
  }
}

async function drawCoastlines() {
  const land = await getJSON("/coastlines.geojson");
  const style = (color, weight, opacity) => ({ color, weight, opacity, interactive: false });
  // A dark halo under a thin white line reads on every colour of the map.
  L.geoJSON(land, { pane: "coast", renderer: coastRenderer, style: style("#000000", 2.4, 0.45) }).addTo(map);
  L.geoJSON(land, { pane: "coast", renderer: coastRenderer, style: style("#ffffff", 0.9, 0.9) }).addTo(map);
  stats.coastlines = true;
}

async function start() {
  loadHash();
  updateLabels();
  const config = await getJSON("/config.json");
  $("model").textContent = config.model;
  ui.prompt.maxLength = config.max_prompt_chars;
  ui.description.maxLength = config.max_prompt_chars;
  map.setMaxZoom(Math.min(map.getMaxZoom(), config.max_zoom));
  if (config.basemap_url) {
    L.tileLayer(config.basemap_url, { attribution: "basemap: configured server", zIndex: 1 }).addTo(map);
  }
  drawCoastlines().catch((error) => setStatus(`coastlines: ${error.message}`, true));

  let timer = null;
  const later = () => {
    updateLabels();
    clearTimeout(timer);
    timer = setTimeout(refresh, 250); // a slider drag asks once it rests
  };
  $("query").addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  ui.useTime.addEventListener("change", refresh);
  ui.month.addEventListener("input", later);
  ui.hour.addEventListener("input", later);
  ui.opacity.addEventListener("input", () => {
    updateLabels();
    saveHash();
    for (const layer of [scoreLayer, pendingLayer]) layer?.setOpacity(ui.opacity.value / 100);
  });
  map.on("moveend", updateDownload);
  $("locate").addEventListener("submit", (event) => {
    event.preventDefault();
    locateDescription();
  });
  // Enter submits, Shift+Enter starts a new line: a pasted paragraph stays one query.
  ui.description.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      locateDescription();
    }
  });
  $("locate-clear").addEventListener("click", () => {
    clearLocate();
    setLocateStatus("");
  });
  if (ui.prompt.value.trim()) refresh();
}

start().catch((error) => setStatus(error.message, true));
