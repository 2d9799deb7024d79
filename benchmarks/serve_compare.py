"""latentlab against what a user would run instead, and against the forward itself: requests/s, p50 and p99
of POST /generate, the forward limit, and an overload burst.

- **The forward limit**: the generator alone, loaded the way the service loads it (TorchScript,
  channels-last on the CPU, the same torch threads), at batch 32 and 64, in fp32 and in bf16 autocast where
  the device computes bf16 natively: images/s. Every load's ratio to the limit of the precision the service
  ran says how much of what the model could do the server delivers.
- **Servers**, one at a time on the same generator file: latentlab (`python -m service`) once per
  `--precisions` setting (default auto and fp32: the PRECISION it starts with) and `--runtimes` setting (default
  auto: RUNTIME; the output names what it chose for the version's buckets, read from GET /models), the naive
  FastAPI app (benchmarks/naive_app.py), and with `--peers` the serving systems of ../shared/peers, each
  configured as its documentation recommends for throughput on a small CPU box, in its own virtualenv
  (`--venvs DIR` holding bentoml/, rayserve/, torchserve/; see ../shared/peers/README.md). wrk loads them
  (benchmarks/generate.lua, a new seed per request); each run starts every server in turn (in a rotated
  order), so the machine's drift falls on all alike, and the table shows medians over `--runs`.
- **Overload** (`--burst`): 64 clients asking 256 images each for 10 s, retrying at once when refused,
  against latentlab: how many were answered and how late, how many refused, and /healthz meanwhile.

    python benchmarks/serve_compare.py --store ./models --model dcgan
    python benchmarks/serve_compare.py --store ./models --model dcgan --peers bentoml,rayserve,torchserve \\
        --venvs ~/peer-venvs --runs 3 --seconds 15 --burst
    python benchmarks/serve_compare.py --store ./models --model dcgan --precisions auto --runtimes auto,torchscript \
        --no-naive --runs 5
    DEVICE=cuda python benchmarks/serve_compare.py --store ./models --model dcgan
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import PEERS_DIR, ROOT, Server, start_naive, start_peer, start_service  # noqa: E402

from shared.imaging import torchscript  # noqa: E402
from shared.imaging.devices import resolve_device  # noqa: E402
from shared.imaging.grids import to_uint8  # noqa: E402
from shared.imaging.latents import seeded_latents  # noqa: E402
from shared.imaging.precision import AUTO, BF16, FP32, allowed_precisions, computing_in  # noqa: E402
from shared.store import Store  # noqa: E402

LUA = ROOT / "benchmarks" / "generate.lua"
LOADS = ("1x1", "1x32", "64x8")  # images per request x connections
PEERS = ("bentoml", "rayserve", "torchserve")


def wrk(port: int, model: str, count: int, connections: int, seconds: int, path: str = "/generate") -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(LUA),
           f"http://127.0.0.1:{port}", "--", model, str(count), path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = (result["requests"] - result["errors"]) / result["seconds"]  # answered: a 503 is not served
    return result


def forward_limit(generator: Path, device: str, precision: str = FP32, batches=(32, 64),
                  seconds: float = 3.0) -> dict[int, float]:
    """Images/s of the generator alone in `precision`: loaded as the service loads it, quantised as it quantises
    (bf16 made fp32 first), no server."""
    dev = resolve_device(device)
    module = torchscript.load(generator, dev)

    def forward(z: torch.Tensor) -> torch.Tensor:
        with computing_in(precision, dev):
            return to_uint8(module(z).float()).cpu()  # .cpu() waits for a GPU

    limits = {}
    with torch.inference_mode():
        for batch in batches:
            z = seeded_latents(0, batch, 100).to(dev)
            for _ in range(5):
                forward(z)
            times, end = [], time.perf_counter() + seconds
            while time.perf_counter() < end:
                started = time.perf_counter()
                forward(z)
                times.append(time.perf_counter() - started)
            limits[batch] = batch / statistics.median(times)
    return limits


def forward_limits(generator: Path, device: str, runs: int = 3) -> dict[str, dict[int, float]]:
    """The limit in each precision the device computes natively, medians of `runs` rounds that alternate them, so
    that the ratio between them is measured side by side."""
    precisions = allowed_precisions(AUTO, resolve_device(device))
    rounds = [{p: forward_limit(generator, device, p) for p in precisions} for _ in range(runs)]
    return {p: {b: statistics.median(r[p][b] for r in rounds) for b in rounds[0][p]} for p in precisions}


def served(port: int, model: str) -> dict:
    """What latentlab chose for the version it serves (GET /models/{model}): its `runtimes` entry."""
    import httpx

    deadline = time.monotonic() + 600
    while (info := httpx.get(f"http://127.0.0.1:{port}/models/{model}", timeout=30).json())["serving"] is None:
        if time.monotonic() > deadline:  # ready means some model is served: the store's others load after it
            raise SystemExit(f"{model} was not served 600 s after the service was ready")
        time.sleep(0.5)
    return {r["version"]: r for r in info["runtimes"]}[info["serving"]]


def start(name: str, args, generator: Path, port: int) -> Server:
    if name.startswith("latentlab"):  # latentlab-<PRECISION>[-<RUNTIME>], RUNTIME auto when left out
        _, precision, *runtime = name.split("-")
        return Server(name, start_service(args.store, port, args.device, PRECISION=precision,
                                          RUNTIME=runtime[0] if runtime else "auto", **args.service_env), port)
    if name == "naive":
        return Server(name, start_naive(generator, port, args.device), port)
    return start_peer(name, generator, port, Path(args.venvs) / name, Path(args.peers_dir))


def measure(servers: list[str], args, generator: Path, loads: list[tuple[int, int]]) -> dict:
    """Medians per server and load, each server measured alone, the order rotated run by run."""
    results: dict[str, dict[tuple, list[dict]]] = {s: {load: [] for load in loads} for s in servers}
    for run in range(args.runs):
        order = servers[run % len(servers):] + servers[:run % len(servers)]
        for name in order:
            server = start(name, args, generator, args.port)
            if name.startswith("latentlab"):
                args.served[name] = served(server.port, args.model)
            try:
                for count, connections in loads:
                    wrk(server.port, args.model, count, connections, 3, server.path)  # warm-up
                    r = wrk(server.port, args.model, count, connections, args.seconds, server.path)
                    results[name][(count, connections)].append(r)
                    print(f"  run {run + 1} {name:>10}: {count:>3} image(s), {connections:>2} connection(s): "
                          f"{r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                          f"errors {r['errors']}", flush=True)
            finally:
                server.stop()
    return {name: {load: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "errors")}
                   for load, runs in by_load.items()} for name, by_load in results.items()}


def table(servers: list[str], medians: dict, limits: dict, loads: list[tuple[int, int]]) -> str:
    lines = ["| load | " + " | ".join(servers) + " |", "|---|" + "---|" * len(servers)]
    for count, connections in loads:
        cells = []
        for name in servers:
            r = medians[name][(count, connections)]
            cell = f"{r['rps']:.1f} ({r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms)"
            cells.append(cell + (f", {r['errors']:.0f} errors" if r["errors"] else ""))
        lines.append(f"| {count} image{'s' if count > 1 else ''}, {connections} connection{'s' * (connections > 1)}: "
                     "req/s (p50 / p99) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(servers: list[str], medians: dict, limits: dict[str, dict[int, float]], loads: list[tuple[int, int]],
           served: dict[str, dict]) -> list[str]:
    out = []
    ours_all = [s for s in servers if s.startswith("latentlab")]
    peers = [s for s in servers if s not in ours_all and s != "naive"]
    for name in ours_all:
        for count, connections in loads:
            ours = medians[name][(count, connections)]
            batch = 32 if count * connections <= 32 else 64
            precision = next(b for b in served[name]["buckets"] if b["batch"] >= batch)["precision"]
            limit = limits.get(precision, limits[FP32])[batch]
            line = (f"{name}, {count} image(s) x {connections} connection(s): {ours['rps'] * count:.0f} "
                    f"images/s = {ours['rps'] * count / limit:.0%} of the {precision} forward limit ({limit:.0f} "
                    f"images/s at batch {batch})")
            if "naive" in medians:
                line += f"; {ours['rps'] / medians['naive'][(count, connections)]['rps']:.2f}x the naive app"
            if "-" in name.removeprefix("latentlab-") and name.rsplit("-", 1)[0] in medians:  # RUNTIME=auto beside it
                auto = medians[name.rsplit("-", 1)[0]][(count, connections)]
                line += (f"; RUNTIME=auto does {auto['rps'] / ours['rps']:.2f}x its requests/s (p50 "
                         f"{auto['p50_ms']:.2f} vs {ours['p50_ms']:.2f} ms: {ours['p50_ms'] / auto['p50_ms']:.2f}x "
                         f"faster, p99 {auto['p99_ms']:.1f} vs {ours['p99_ms']:.1f} ms)")
            if name != "latentlab-fp32" and "latentlab-fp32" in medians:
                fp32 = medians["latentlab-fp32"][(count, connections)]
                line += (f"; {ours['rps'] / fp32['rps']:.2f}x latentlab in fp32 (p50 {ours['p50_ms']:.1f} vs "
                         f"{fp32['p50_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} vs {fp32['p99_ms']:.1f} ms)")
            if peers:
                best = max(peers, key=lambda p: medians[p][(count, connections)]["rps"])
                line += f"; {ours['rps'] / medians[best][(count, connections)]['rps']:.2f}x the best peer ({best})"
            out.append(line)
    return out


PROBE = """
import json, sys, time, httpx
latencies, end = [], time.monotonic() + float(sys.argv[2])
with httpx.Client(base_url=sys.argv[1], timeout=10) as http:
    while time.monotonic() < end:
        started = time.monotonic()
        http.get("/healthz")
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
print(json.dumps(latencies))
"""


async def burst(port: int, model: str, clients: int = 64, count: int = 256, seconds: float = 10.0) -> dict:
    """`clients` clients asking `count` images each, again and again (at once when refused), while another
    process probes /healthz every 50 ms: what was answered, how late, and how the probe fared. The clients
    speak HTTP/1.1 over raw sockets: a Python HTTP library would take more of the two cores than the server."""
    answered, refused, other = [], 0, 0
    probe = subprocess.Popen([sys.executable, "-c", PROBE, f"http://127.0.0.1:{port}", str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    stop_at = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal refused, other
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        seed = i * 1_000_000
        while time.monotonic() < stop_at:
            seed += 1
            body = json.dumps({"model": model, "seed": seed, "count": count}).encode()
            started = time.monotonic()
            writer.write(b"POST /generate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if status == 200:
                answered.append(time.monotonic() - started)
            elif status == 503:
                refused += 1
            else:
                other += 1
        writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    health = sorted(json.loads(probe.communicate(timeout=60)[0]))
    answered.sort()
    return {"answered": len(answered), "refused": refused, "other": other,
            "p50_s": answered[len(answered) // 2] if answered else None,
            "p99_s": answered[int(len(answered) * 0.99)] if answered else None,
            "max_s": answered[-1] if answered else None, "healthz_max_ms": health[-1] * 1000,
            "healthz_p99_ms": health[int(len(health) * 0.99)] * 1000}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"), help="model store (env MODEL_DIR)")
    p.add_argument("--model", default="dcgan", help="model name in the store (its latest version is served)")
    p.add_argument("--device", default=os.environ.get("DEVICE", "cpu"), help="cpu or cuda (env DEVICE)")
    p.add_argument("--seconds", type=int, default=10, help="length of each measured run")
    p.add_argument("--runs", type=int, default=3, help="runs per load; the table shows medians")
    p.add_argument("--loads", nargs="+", default=LOADS, help="IMAGESxCONNECTIONS, e.g. 1x32")
    p.add_argument("--peers", default="", help=f"comma-separated, of: {', '.join(PEERS)} (started from --peers-dir)")
    p.add_argument("--peers-dir", default=str(PEERS_DIR), help="where the peers' files are")
    p.add_argument("--venvs", default=os.path.expanduser("~/peer-venvs"),
                   help="a folder with one virtualenv per peer, named after it")
    p.add_argument("--precisions", default="auto,fp32",
                   help="comma-separated PRECISION settings latentlab is measured with (auto, fp32, bf16), one server each")
    p.add_argument("--runtimes", default="auto",
                   help="comma-separated RUNTIME settings latentlab is measured with (auto, torchscript, export, "
                        "onnxruntime, openvino), one server per precision and runtime")
    p.add_argument("--service-env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="more settings for every latentlab server, e.g. MAX_QUEUE_DELAY_MS=5000 where a slow CPU "
                        "cannot answer a load within the default second and would refuse it")
    p.add_argument("--no-naive", action="store_true", help="leave the naive app out")
    p.add_argument("--burst", action="store_true", help="also the overload burst against latentlab")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    loads = [tuple(int(x) for x in load.split("x")) for load in args.loads]
    args.service_env = dict(setting.split("=", 1) for setting in args.service_env)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    version = Store(args.store).get(args.model)
    peers = [name for name in args.peers.split(",") if name]
    for name in peers:
        if name not in PEERS:
            p.error(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    ours = [f"latentlab-{p}" + ("" if r == "auto" else f"-{r}") for p in args.precisions.split(",") if p
            for r in args.runtimes.split(",") if r]
    servers = [*ours, *([] if args.no_naive else ["naive"]), *peers]
    args.served = {}

    limits = forward_limits(version.generator_path, args.device)
    print(f"{args.model} v{version.version} on {args.device}, {os.cpu_count()} CPUs, torch {torch.get_num_threads()} "
          f"threads; wrk -t1, {args.seconds}s x {args.runs} runs per load, medians")
    for precision, by_batch in limits.items():
        print(f"forward limit, {precision}: " + ", ".join(f"{v:.0f} images/s at batch {b}" for b, v in by_batch.items()))
    if BF16 in limits:
        print("bf16 / fp32 forward limit: " + ", ".join(f"{limits[BF16][b] / limits[FP32][b]:.2f}x at batch {b}"
                                                          for b in limits[FP32]), flush=True)
    medians = measure(servers, args, version.generator_path, loads)
    for name, choice in args.served.items():
        print(f"\n{name} served: " + ", ".join(f"{b['batch']}: {b['runtime']} {b['precision']}"
                                                for b in choice["buckets"]))
    print(table(servers, medians, limits, loads))
    print()
    print("\n".join(ratios(servers, medians, limits, loads, args.served)))
    if args.burst:
        server = start(ours[0], args, version.generator_path, args.port)
        try:
            b = asyncio.run(burst(server.port, args.model))
        finally:
            server.stop()
        print(f"\noverload burst (64 clients x 256 images, 10 s, latentlab): {b['answered']} answered (p50 "
              f"{b['p50_s']:.2f} s, p99 {b['p99_s']:.2f} s, slowest {b['max_s']:.2f} s), {b['refused']} refused with "
              f"503, {b['other']} other; /healthz p99 {b['healthz_p99_ms']:.1f} ms, slowest {b['healthz_max_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
