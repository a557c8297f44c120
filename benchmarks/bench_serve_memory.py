"""Peak resident memory of `omnimap serve` under a load of new prompts, by --cache-mb.

Load: for each of 6 prompts (every one new to the server) at 2 times, the legend and
the 4 x 4 tiles of a zoom-4 view of Europe and a zoom-5 view of the Alps, then a
/map.tif of the Alps; that is 8 views' worth of embeddings per prompt and time,
more than the smaller budgets hold, so the caches fill and evict. The server's RSS is
sampled from /proc every 50 ms; its peak (VmHWM) is reported with the model alone
(after start-up) as the baseline.

    python benchmarks/bench_serve_memory.py [--model atlas] [--cache-mb 256 1024]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx

from common import save

PROMPTS = ("sand dunes", "snow-covered mountains", "a busy harbour", "rice paddies", "vineyards",
           "dense jungle")  # fmt: skip
TIMES = ("2024-01-15T09:00", "2024-07-15T21:00")
VIEWS = ((4, range(7, 11), range(4, 8)), (5, range(15, 19), range(10, 14)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, bytes."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def run(model: str, cache_mb: int) -> dict:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMNIMAP_CACHE_DIR": tmp, "TQDM_DISABLE": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "omnimap.cli.main", "serve", "--model", model, "--port", str(port),
             "--cache-mb", str(cache_mb)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                for _ in range(1200):
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                started = _rss(proc.pid)[0]
                peak = [started]
                stop = threading.Event()

                def sample():
                    while not stop.is_set():
                        peak.append(_rss(proc.pid)[0])
                        time.sleep(0.05)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                t = time.perf_counter()
                requests = 0
                for prompt in PROMPTS:
                    for when in TIMES:
                        assert client.get("/legend", params={"q": prompt, "when": when}).status_code == 200
                        for z, xs, ys in VIEWS:
                            for x in xs:
                                for y in ys:
                                    r = client.get(f"/tiles/{z}/{x}/{y}.png", params={"q": prompt, "when": when})
                                    assert r.status_code == 200, r.text
                                    requests += 1
                        r = client.get("/map.tif", params={"q": prompt, "when": when, "region": "Alps"})
                        assert r.status_code == 200, r.text
                        requests += 2
                seconds = time.perf_counter() - t
                stop.set()
                sampler.join()
                steady, hwm = _rss(proc.pid)
                health = client.get("/health").json()
        finally:
            proc.terminate()
            proc.wait(30)
    return {"cache_mb": cache_mb, "requests": requests, "seconds": round(seconds, 1),
            "rss_after_start_mb": round(started / 2**20), "rss_end_mb": round(steady / 2**20),
            "peak_rss_mb": round(max(hwm, max(peak)) / 2**20),
            "tile_cache_mb": round(health["tile_cache_bytes"] / 2**20, 1)}  # fmt: skip


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="atlas")
    parser.add_argument("--cache-mb", type=int, nargs="+", default=[256, 1024])
    args = parser.parse_args()
    rows = []
    for cache_mb in args.cache_mb:
        rows.append(run(args.model, cache_mb))
        print(rows[-1], flush=True)
    result = {"model": args.model, "runs": rows}
    save("serve_memory", result)
    return result


if __name__ == "__main__":
    main()
