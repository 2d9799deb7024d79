"""What the service itself costs per request, with the model taken out of the picture.

Publishes a generator that costs almost nothing (one Linear layer to an 8x8 image) to a temporary
store, starts `python -m service` on it, loads it with wrk (a new seed per request) at 1 and 32
connections, and reads the server process's CPU time from /proc before and after each run: CPU
milliseconds per request is the request path's own cost (HTTP parsing, validation, routing,
middleware, the hand-off to the inference thread and back, the grid and its PNG), whatever the
machine's other load does to wall-clock numbers.

    python benchmarks/request_cost.py --runs 5 --seconds 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_compare import wrk  # noqa: E402  (this folder is on sys.path when run as a script)
from servers import cpu_seconds, start_service, stop  # noqa: E402

from shared.store import GENERATOR, Store  # noqa: E402


class Tiny(torch.nn.Module):
    """100 -> 64 -> an 8x8 grey image: microseconds per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(100, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, 1, 8, 8)


def publish_tiny(root: Path, name: str = "tiny") -> None:
    store = Store(root)
    torch.manual_seed(0)
    with store.staging(name) as stage:
        torch.jit.save(torch.jit.trace(Tiny().eval(), torch.zeros(2, 100)), str(stage / GENERATOR))
        store.publish(name, stage, {"architecture": "tiny", "latent_dim": 100, "image_shape": [1, 8, 8]})


def measure(pid: int, port: int, connections: int, seconds: int) -> dict:
    before = cpu_seconds(pid)
    result = wrk(port, "tiny", 1, connections, seconds)
    result["cpu_ms"] = (cpu_seconds(pid) - before) * 1000 / max(1, result["requests"])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--runs", type=int, default=5, help="runs per load; medians are printed")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 32])
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--device", default=os.environ.get("DEVICE", "cpu"), help="cpu or cuda (env DEVICE)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        publish_tiny(Path(tmp))
        proc = start_service(tmp, args.port, args.device)
        try:
            print(f"service on a one-layer generator, {args.device}, {os.cpu_count()} CPUs; wrk -t1, "
                  f"{args.seconds}s x {args.runs} runs")
            print("| connections | requests/s | p50 | p99 | server CPU per request |\n|---|---|---|---|---|")
            for connections in args.connections:
                wrk(args.port, "tiny", 1, connections, 2)  # warm-up
                runs = [measure(proc.pid, args.port, connections, args.seconds) for _ in range(args.runs)]
                med = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "cpu_ms")}
                print(f"| {connections} | {med['rps']:.0f} | {med['p50_ms']:.2f} ms | {med['p99_ms']:.2f} ms | "
                      f"{med['cpu_ms']:.3f} ms |", flush=True)
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
