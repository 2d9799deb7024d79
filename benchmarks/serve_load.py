"""Load test of POST /generate: requests/s and p50/p99 latency, from a separate process.

Starts `python -m service` on a store (or uses --url), then drives it from this process with
`--concurrency` clients for `--duration` seconds per image count, after a warm-up.

    python benchmarks/serve_load.py --store ./models --model gan --counts 1 64
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def drive(url: str, body: dict, concurrency: int, duration: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker():
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                r = await client.post("/generate", json=body)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def start_service(store: str, port: int, device: str = "auto", **settings: str) -> subprocess.Popen:
    """`python -m service` on `store`, once it answers /readyz; `settings` are more environment variables."""
    env = {**os.environ, "MODEL_DIR": store, "PORT": str(port), "HOST": "127.0.0.1", "DEVICE": device,
           "LOG_LEVEL": "warning", **settings}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the service did not become ready")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--url", help="an already running service (else one is started on --store)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="gan")
    p.add_argument("--counts", type=int, nargs="+", default=[1, 64])
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=15.0, help="seconds of load per image count")
    p.add_argument("--scale", type=int, default=1)
    args = p.parse_args()

    proc = None if args.url else start_service(args.store, args.port, args.device)
    url = args.url or f"http://127.0.0.1:{args.port}"
    try:
        info = httpx.get(f"{url}/readyz").json()
        print(f"service {url} on {info['device']}, serving {info['serving']}; {args.concurrency} concurrent clients, "
              f"{args.duration:.0f}s per row, {os.cpu_count()} CPUs")
        print(f"{'images':>6} {'requests':>9} {'req/s':>8} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for count in args.counts:
            body = {"model": args.model, "seed": 0, "count": count, "scale": args.scale}
            asyncio.run(drive(url, body, args.concurrency, min(3.0, args.duration)))  # warm-up
            latencies, errors = asyncio.run(drive(url, body, args.concurrency, args.duration))
            rps = len(latencies) / args.duration
            print(f"{count:>6} {len(latencies):>9} {rps:>8.1f} {rps * count:>9.0f} "
                  f"{statistics.median(latencies) * 1000:>8.1f} {percentile(latencies, 99) * 1000:>8.1f} {errors:>6}")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
