"""Where a request's CPU goes in latentlab: py-spy samples the serving process (every thread, only while it runs on
a CPU) during a wrk load, and each sample is put in the stage its innermost recognised frame belongs to.

    python benchmarks/request_stages.py --store ./models --model dcgan               # 1 image x 32 connections
    python benchmarks/request_stages.py --store ./models --model dcgan --load 64x8 --seconds 20

Prints, per stage, its share of the samples and the CPU milliseconds per request that share stands for (the
process's CPU time from /proc over the same run, split by the shares). Needs py-spy (`pip install py-spy`) and wrk.
Python frames only: time in C extensions (torch's kernels, zlib) is charged to the Python call that made it.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_compare import wrk  # noqa: E402
from servers import cpu_seconds, start_service, stop  # noqa: E402

# (stage, what a frame's "function (file:line)" text contains), matched from the innermost frame outwards
STAGES = (
    ("PNG encoding", ("imaging/png.py", "PIL/")),
    ("grid, quantisation", ("imaging/grids.py", "to_uint8")),
    ("forward", ("engine/runner.py", "engine/runtimes.py", "torch/", "onnxruntime", "openvino")),
    ("batching, hand-off between threads", ("engine/batcher.py", "engine/admission.py", "concurrent/futures",
                                           "threading.py", "anyio/", "queue.py")),
    ("request validation, routing", ("pydantic", "api/lane.py", "api/schemas.py", "api/limits.py", "api/auth.py",
                                    "routes/images.py", "operations/")),
    ("HTTP: parsing, middleware, writing", ("uvicorn/", "httptools", "h11", "api/gathered_writes.py", "starlette/",
                                           "fastapi/", "api/middleware.py", "api/drain.py", "api/telemetry.py",
                                           "prometheus_client")),
    ("event loop", ("asyncio/",)),
)
OTHER = "other"


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):  # innermost last in py-spy's raw format
        for stage, needles in STAGES:
            if any(n in frame for n in needles):
                return stage
    return OTHER


def read_raw(path: Path) -> collections.Counter:
    """py-spy's raw (collapsed) output: `frame;frame;... count` per line -> samples per stage."""
    counts: collections.Counter = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[stage_of(stack.split(";"))] += int(count)
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--model", default="dcgan")
    p.add_argument("--load", default="1x32", help="images per request x connections")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--port", type=int, default=18900)
    args = p.parse_args()
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None or shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs py-spy and wrk: pip install py-spy, apt-get install wrk")
    count, connections = (int(x) for x in args.load.split("x"))
    proc = start_service(str(Path(args.store).resolve()), args.port, "cpu", DRAIN_NOTICE_S="0")
    try:
        wrk(args.port, args.model, count, connections, 3)  # warm: every bucket's first batch done
        with tempfile.TemporaryDirectory() as scratch:
            raw = Path(scratch) / "samples.txt"
            spy = subprocess.Popen([py_spy, "record", "--pid", str(proc.pid), "--rate", str(args.rate),
                                    "--duration", str(args.seconds), "--format", "raw", "--output", str(raw),
                                    "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            result: dict = {}
            before = cpu_seconds(proc.pid)
            load = threading.Thread(target=lambda: result.update(wrk(args.port, args.model, count, connections,
                                                                     args.seconds)))
            load.start()
            load.join()
            cpu = cpu_seconds(proc.pid) - before
            if spy.wait(timeout=60) != 0:
                raise SystemExit(f"py-spy failed: {spy.stderr.read()}")
            stages = read_raw(raw)
    finally:
        stop(proc)
    answered = result["requests"] - result["errors"]
    total = sum(stages.values())
    per_request = cpu * 1000 / max(1, answered)
    print(f"{args.model}, {count} image(s) x {connections} connections, {args.seconds} s: {result['rps']:.0f} "
          f"requests/s, {per_request:.2f} CPU ms per request ({os.cpu_count()} CPUs)\n")
    print("| stage | share of CPU samples | CPU ms per request |\n|---|---|---|")
    for stage, _ in (*STAGES, (OTHER, ())):
        share = stages.get(stage, 0) / max(1, total)
        print(f"| {stage} | {100 * share:.1f}% | {share * per_request:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
