"""latentlab against a naive FastAPI app, side by side: requests/s, p50 and p99 of POST /generate.

Starts both servers on the same generator file (latentlab on the store, the naive app of
benchmarks/naive_app.py on the version's generator.pt) and loads them with wrk (Debian package `wrk`;
benchmarks/generate.lua sends every request with a new seed), taking turns: each load runs
`--runs` times on each server after a warm-up, alternating, so the machine's drift falls on both
alike. The idle server waits on its socket meanwhile. The table shows medians and the ratios.

    python benchmarks/serve_compare.py --store ./models --model dcgan
    DEVICE=cuda python benchmarks/serve_compare.py --store ./models --model dcgan
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import ROOT, start_naive, start_service, stop  # noqa: E402  (this folder is on sys.path)

from shared.store import Store  # noqa: E402

LUA = ROOT / "benchmarks" / "generate.lua"
LOADS = ("1x1", "1x32", "64x8")  # images per request x connections


def wrk(port: int, model: str, count: int, connections: int, seconds: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(LUA),
           f"http://127.0.0.1:{port}", "--", model, str(count)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def measure(ports: dict[str, int], model: str, seconds: int, runs: int, loads: list[tuple[int, int]]) -> dict:
    """Medians per server and load; the servers take turns run by run, so drift on a shared machine
    falls on both alike."""
    medians: dict[str, dict] = {server: {} for server in ports}
    for count, connections in loads:
        results: dict[str, list[dict]] = {server: [] for server in ports}
        for server, port in ports.items():
            wrk(port, model, count, connections, 2)  # warm-up: code paths, thread pools, CUDA graphs
        for _ in range(runs):
            for server, port in ports.items():
                results[server].append(wrk(port, model, count, connections, seconds))
        for server in ports:
            row = {k: statistics.median(r[k] for r in results[server]) for k in ("rps", "p50_ms", "p99_ms", "errors")}
            medians[server][(count, connections)] = row
            print(f"  {server:>9}: {count:>3} image(s), {connections:>2} connection(s): {row['rps']:8.1f} req/s  "
                  f"p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors {row['errors']:.0f}", flush=True)
    return medians


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"), help="model store (env MODEL_DIR)")
    p.add_argument("--model", default="dcgan", help="model name in the store (its latest version is served)")
    p.add_argument("--device", default=os.environ.get("DEVICE", "cpu"), help="cpu or cuda (env DEVICE)")
    p.add_argument("--seconds", type=int, default=10, help="length of each measured run")
    p.add_argument("--runs", type=int, default=3, help="runs per load; the table shows medians")
    p.add_argument("--loads", nargs="+", default=LOADS, help="IMAGESxCONNECTIONS, e.g. 1x32")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    loads = [tuple(int(x) for x in load.split("x")) for load in args.loads]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    version = Store(args.store).get(args.model)
    print(f"{args.model} v{version.version} on {args.device}, {os.cpu_count()} CPUs; wrk -t1, {args.seconds:.0f}s x "
          f"{args.runs} runs per load, medians")

    ports = {"latentlab": args.port, "naive": args.port + 1}
    procs = [start_service(args.store, ports["latentlab"], args.device),
             start_naive(version.generator_path, ports["naive"], args.device)]
    try:
        results = measure(ports, args.model, args.seconds, args.runs, loads)
    finally:
        for proc in procs:
            stop(proc)

    print("\n| load | server | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|---|")
    for count, connections in loads:
        for server in ("latentlab", "naive"):
            r = results[server][(count, connections)]
            print(f"| {count} image{'s' if count > 1 else ''}, {connections} connection{'s' if connections > 1 else ''} "
                  f"| {server} | {r['rps']:.1f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['errors']:.0f} |")
    print()
    for count, connections in loads:
        ours, naive = results["latentlab"][(count, connections)], results["naive"][(count, connections)]
        print(f"{count} image(s), {connections} connection(s): latentlab/naive requests/s {ours['rps'] / naive['rps']:.2f}x, "
              f"p50 {ours['p50_ms']:.1f} vs {naive['p50_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} vs {naive['p99_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
