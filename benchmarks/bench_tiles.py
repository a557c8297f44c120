"""Tile server latency and throughput: 8 concurrent clients on loopback, served directly
from the model and from an embedding field of the world at 0.25 deg, in one run.

Starts ``omnimap serve`` on a free loopback port (stopped at the end), once with
``--model`` and once with ``--field`` (built first if missing, into the benchmark's
results folder), then requests one browser view (24 tiles at zoom 4, Europe and
Africa) in phases:

- cold: a new prompt at a new time on tiles never seen (every cell embedded);
- warm: the same requests again, 4 times (the rendered-tile cache);
- new prompt: another prompt at the same time (one matrix-vector product a tile);
- new time: the first prompt at another hour (only the location/time encoder runs).

Before the phases one legend request loads the text encoder, which is a one-time
start-up cost, not a tile cost. Every phase is bounded in requests and time.

    python benchmarks/bench_tiles.py [--model atlas]

Ratios (field / direct) are printed for each phase's p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from common import RESULTS, save

CLIENTS = 8
VIEW = [(4, x, y) for y in range(4, 8) for x in range(6, 12)]  # 6 x 4 tiles
PHASE_TIMEOUT_S = 300.0
START_TIMEOUT_S = 120.0
FIELD_RESOLUTION = 0.25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(source: list[str], cache: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "OMNIMAP_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "omnimap.cli", "serve", *source, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in time")


async def _phase(base: str, urls: list[str]) -> dict:
    """Latencies of ``urls`` fetched by CLIENTS concurrent clients."""
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            url = queue.get_nowait()
            t = time.perf_counter()
            r = await http.get(url)
            latencies.append(time.perf_counter() - t)
            errors += r.status_code != 200 or r.content[:4] != b"\x89PNG"

    # The clients exist before the clock starts: making one (its SSL context) blocks the
    # event loop ~20 ms, which would land on the other clients' first requests.
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=120))
                   for _ in range(CLIENTS)]  # fmt: skip
        t = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(c) for c in clients)), PHASE_TIMEOUT_S)
        wall = time.perf_counter() - t
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "throughput_per_s": len(latencies) / wall,
        "wall_s": wall,
    }


def _urls(prompt: str, when: str, repeat: int = 1) -> list[str]:
    query = httpx.QueryParams({"q": prompt, "when": when})
    return [f"/tiles/{z}/{x}/{y}.png?{query}" for z, x, y in VIEW] * repeat


def world_field(model: str) -> str:
    """The world at FIELD_RESOLUTION for ``model`` (built once, reused by later runs)."""
    from omnimap.api import build_field

    path = RESULTS / f"world-{FIELD_RESOLUTION:g}-{os.path.basename(model.rstrip('/'))}.field"
    build_field(path, resolution=FIELD_RESOLUTION, model=model, progress=False)
    return str(path)


def serve_phases(source: list[str]) -> dict:
    """Every phase against one server (a fresh, empty cache)."""
    with tempfile.TemporaryDirectory() as cache:
        proc, base = _start(source, cache)
        try:
            t = time.perf_counter()
            httpx.get(f"{base}/legend", params={"q": "warm up"}, timeout=300).raise_for_status()
            result = {"first_legend_s": time.perf_counter() - t}
            phases = {
                "cold": _urls("sand dunes", "2024-01-15T12:00"),
                "warm": _urls("sand dunes", "2024-01-15T12:00", repeat=4),
                "new_prompt": _urls("snow-covered mountains", "2024-01-15T12:00"),
                "new_time": _urls("sand dunes", "2024-01-15T21:00"),
            }
            for name, urls in phases.items():
                for key, value in asyncio.run(_phase(base, urls)).items():
                    result[f"{name}_{key}"] = value
        finally:
            proc.terminate()
            proc.wait(30)
    return result


def main(model: str = "atlas") -> dict:
    field = world_field(model)
    direct = serve_phases(["--model", model])
    on_field = serve_phases(["--field", field])
    result = {"model": model, "clients": CLIENTS, "view_tiles": len(VIEW), "field": field}
    result.update({f"direct_{k}": v for k, v in direct.items()})
    result.update({f"field_{k}": v for k, v in on_field.items()})
    for phase in ("cold", "warm", "new_prompt", "new_time"):
        for stat in ("p50_ms", "p99_ms"):
            result[f"ratio_field_over_direct_{phase}_{stat}"] = (
                on_field[f"{phase}_{stat}"] / direct[f"{phase}_{stat}"]
            )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="atlas", help="built-in model name or model directory")
    r = main(parser.parse_args().model)
    for k, v in r.items():
        print(f"{k:32s} {v:.4f}" if isinstance(v, float) else f"{k:32s} {v}")
    print("saved", save("tiles", r))
