"""The Open Inference Protocol, measured: the same tritonclient request, byte for byte, against latentlab's /v2
route and against Triton Inference Server serving the same generator (benchmarks/triton_server.py, through
PyTriton), and latentlab's own `POST /generate` for as many images, beside them; with `--mlserver-venv`, MLServer
too (benchmarks/mlserver_runtime.py), which reads JSON tensor data only, so every server also gets tritonclient's
all-JSON request.

The requests are made once by tritonclient (`InferenceServerClient.generate_request_body`: the latents as binary
FP32 tensor data and the images asked back as binary UINT8, or both as JSON), 64 of them with other random
latents each, and wrk posts them in turn (benchmarks/infer.lua); `/generate` gets a new seed per request
(benchmarks/generate.lua). One server runs at a time: each round starts latentlab (PRECISION=auto, both routes
measured on the same process) and the peers in turn, in an order that rotates from round to round; the table
shows medians over the rounds, with the CPU time the server's processes (all of them: Triton's server binary and
backend stubs too) spent per answered request, read from /proc: user + system, not wall time.

    /usr/bin/python3.11 -m venv .triton-venv && .triton-venv/bin/pip install nvidia-pytriton torch==2.14.1
    python3 -m venv .mlserver-venv && .mlserver-venv/bin/pip install mlserver torch==2.14.1
    python benchmarks/protocol_compare.py --store ./models --model dcgan --triton-venv .triton-venv \
        --mlserver-venv .mlserver-venv
    python benchmarks/protocol_compare.py --store ./models --model dcgan --loads 1x1,1x32,64x8 \
        --against-env GOMP_SPINCOUNT=300000      # and latentlab with OpenMP's default spinning beside it
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_compare import wrk  # noqa: E402
from servers import ROOT, cpu_by_thread_group, start_service, stop, wait_ready  # noqa: E402

from shared.store import Store  # noqa: E402

INFER_LUA = ROOT / "benchmarks" / "infer.lua"
BODIES = 64


def write_bodies(directory: Path, count: int, latent_dim: int, binary: bool) -> Path:
    """BODIES tritonclient requests of `count` random latents each, with binary tensor data or all JSON: N.bin (the
    body), N.len (its JSON header's length; empty when the body is all JSON)."""
    import tritonclient.http as triton

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(BODIES):
        latents = triton.InferInput("latents", [count, latent_dim], "FP32")
        latents.set_data_from_numpy(rng.standard_normal((count, latent_dim)).astype(np.float32), binary_data=binary)
        body, json_size = triton.InferenceServerClient.generate_request_body(
            [latents], outputs=[triton.InferRequestedOutput("images", binary_data=binary)])
        (directory / f"{k}.bin").write_bytes(body if isinstance(body, bytes) else body.encode())
        (directory / f"{k}.len").write_text(f"{json_size or ''}\n")
    return directory


def infer_load(port: int, bodies: Path, path: str, connections: int, seconds: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(INFER_LUA),
           f"http://127.0.0.1:{port}", "--", str(bodies), str(BODIES), path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = (result["requests"] - result["errors"]) / result["seconds"]  # answered: a 503 is not served
    return result


def with_cpu(pid: int, load) -> dict:
    """`load()`'s wrk result, with the CPU milliseconds the server's processes spent per answered request, in all
    and by thread group (servers.cpu_by_thread_group)."""
    before = cpu_by_thread_group(pid)
    result = load()
    after = cpu_by_thread_group(pid)
    per_request = 1000 / max(1, result["requests"] - result["errors"])
    result["cpu_split"] = {group: (after[group] - before.get(group, 0.0)) * per_request for group in after}
    result["cpu_ms"] = sum(result["cpu_split"].values())
    return result


def start_peer(script: str, venv: Path, version_dir: Path, model: str, port: int) -> subprocess.Popen:
    """benchmarks/`script` (triton_server.py, mlserver_runtime.py) from its virtualenv, once the model is ready."""
    proc = subprocess.Popen([str(venv / "bin" / "python"), str(ROOT / "benchmarks" / script), "--version",
                             str(version_dir), "--name", model, "--port", str(port)], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_ready(proc, port, 180, f"/v2/models/{model}/ready")


def wait_port_free(port: int, timeout: float = 60) -> None:
    """Until nothing listens on `port` (Triton's server outlives its Python front a little)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.5)
    raise SystemExit(f"port {port} is still taken {timeout:.0f} s after its server was stopped")


def start(server: str, args: argparse.Namespace, version) -> subprocess.Popen:
    if server.startswith("latentlab"):
        other = args.against_env if server != "latentlab" else {}
        return start_service(str(Path(args.store).resolve()), args.port, "cpu", PRECISION="auto",
                             DRAIN_NOTICE_S="0", **args.service_env, **other)  # nothing to notice: stop at once
    if server == "triton":
        return start_peer("triton_server.py", args.triton_venv, version.path, args.model, args.port)
    return start_peer("mlserver_runtime.py", args.mlserver_venv, version.path, args.model, args.port)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--model", default="dcgan")
    p.add_argument("--triton-venv", type=Path, default=ROOT / ".triton-venv",
                   help="the virtualenv with nvidia-pytriton and torch (this script's header)")
    p.add_argument("--mlserver-venv", type=Path, default=None,
                   help="with it, MLServer too (benchmarks/mlserver_runtime.py), and every server's JSON requests")
    p.add_argument("--loads", default="1x32,64x8", help="images per request x connections, comma-separated")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--runs", type=int, default=3, help="rounds, each server once per round")
    p.add_argument("--port", type=int, default=18800)
    p.add_argument("--service-env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="more settings for latentlab, e.g. MAX_QUEUE_DELAY_MS=5000 where a slow CPU cannot answer "
                        "a load within the default second and would refuse it")
    p.add_argument("--against-env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="with it, latentlab a second time in each round with these settings too, /generate only: a "
                        "change measured against what it replaced (GOMP_SPINCOUNT=300000: OpenMP's default spinning)")
    args = p.parse_args()
    args.service_env = dict(item.split("=", 1) for item in args.service_env)
    args.against_env = dict(item.split("=", 1) for item in args.against_env)
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    if not (args.triton_venv / "bin" / "python").exists():
        raise SystemExit(f"no Triton virtualenv at {args.triton_venv}: make it as this script's header says")
    version = Store(args.store).get(args.model)
    loads = [tuple(int(x) for x in load.split("x")) for load in args.loads.split(",")]
    # what each server is sent: tritonclient's request with binary data, and all JSON where MLServer runs too
    formats = {"latentlab": ["binary"], "triton": ["binary"]}
    if args.mlserver_venv is not None:
        formats = {"latentlab": ["binary", "JSON"], "triton": ["binary", "JSON"], "mlserver": ["JSON"]}
    if args.against_env:
        formats["latentlab with " + " ".join(f"{k}={v}" for k, v in args.against_env.items())] = []
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        bodies = {(count, kind): write_bodies(Path(scratch) / f"{kind}-{count}", count, version.latent_dim,
                                              kind == "binary")
                  for count, _ in loads for kind in ("binary", "JSON")}
        for round_ in range(args.runs):
            order = list(formats)[round_ % len(formats):] + list(formats)[:round_ % len(formats)]
            for server in order:
                proc = start(server, args, version)
                try:
                    for count, connections in loads:
                        load = f"{count} x {connections}"
                        for kind in formats[server]:
                            results.setdefault((f"{server} /v2 infer ({kind} request)", load), []).append(with_cpu(
                                proc.pid, lambda: infer_load(args.port, bodies[(count, kind)],
                                                             f"/v2/models/{args.model}/infer", connections,
                                                             args.seconds)))
                        if server.startswith("latentlab"):
                            route = "latentlab /generate (PNG)" + server.removeprefix("latentlab")
                            results.setdefault((route, load), []).append(with_cpu(
                                proc.pid, lambda: wrk(args.port, args.model, count, connections, args.seconds)))
                finally:
                    stop(proc)
                    wait_port_free(args.port)
                print(f"round {round_ + 1}/{args.runs}: {server} done", file=sys.stderr, flush=True)
    print(f"{args.model} v{version.version}, {args.runs} rounds of {args.seconds} s per load, one server at a time; "
          f"{os.cpu_count()} CPUs\n")
    print("| server and route | images x connections | requests/s | images/s | p50 ms | p99 ms | errors | "
          "server CPU ms per request |\n|---|---|---|---|---|---|---|---|")
    for (server, load), runs in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        count = int(load.split(" x ")[0])
        rps = statistics.median(r["rps"] for r in runs)
        print(f"| {server} | {load} | {rps:,.0f} | {rps * count:,.0f} | "
              f"{statistics.median(r['p50_ms'] for r in runs):.1f} | {statistics.median(r['p99_ms'] for r in runs):.1f} "
              f"| {sum(r['errors'] for r in runs)} | {statistics.median(r['cpu_ms'] for r in runs):.2f} |")
    print("\nWhere the server CPU per request went, by process and thread (main: the process's first thread, an "
          "event loop's; other: inference, OpenMP, I/O pools), medians in ms:\n")
    print("| server and route | images x connections | thread groups |\n|---|---|---|")
    for (server, load), runs in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        groups = sorted({group for r in runs for group in r["cpu_split"]})
        split = {g: statistics.median(r["cpu_split"].get(g, 0.0) for r in runs) for g in groups}
        print(f"| {server} | {load} | " + ", ".join(f"{g} {ms:.2f}" for g, ms in split.items() if ms >= 0.005) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
