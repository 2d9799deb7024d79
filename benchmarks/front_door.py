"""The HTTP server in front of the same app: latentlab as it ships (`python -m service`: uvicorn with uvloop, its
httptools protocol that gathers a request's body in one piece, and the lean path) against the same app under
Granian (a Rust HTTP server speaking ASGI), in its multi-threaded and single-threaded runtimes. Each round starts
every server in turn (in a rotated order, so the machine's drift falls on all alike) and loads it with wrk
(benchmarks/generate.lua, a new seed per request); the table shows medians over the rounds of requests/s,
images/s, p50 and p99, and the CPU each request cost the server's process tree (from /proc). With `--before DIR`,
a checkout of another commit (`git worktree add DIR COMMIT`) is served too, by the same interpreter, as `before`:
a change's serving speed, before and after.

    python benchmarks/front_door.py --store ./models --model dcgan
    python benchmarks/front_door.py --store ./models --model dcgan --servers uvicorn,before --before ../base
    python benchmarks/front_door.py --store ./models --model dcgan --rounds 5 --seconds 10 --loads 1x32,64x8,1x1
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

from servers import ROOT, cpu_seconds, start_service, stop, wait_ready  # noqa: E402

LUA = ROOT / "benchmarks" / "generate.lua"
GRANIAN = {"granian": "mt", "granian-st": "st"}  # server name -> Granian's runtime mode
SERVERS = ("uvicorn", *GRANIAN)


def start(server: str, store: str, port: int, device: str, before: str | None = None) -> subprocess.Popen:
    if server == "uvicorn":
        return start_service(store, port, device)
    if server == "before":
        return start_service(store, port, device, tree=Path(before))
    granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or shutil.which("granian")
    if granian is None:
        raise SystemExit("Granian is not installed here (latentlab does not depend on it): pip install granian, "
                         "or leave it out with --servers uvicorn,before")
    env = {**os.environ, "MODEL_DIR": store, "DEVICE": device, "LOG_LEVEL": "warning"}
    command = [granian, "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--loop", "uvloop", "--runtime-mode", GRANIAN[server], "--log-level", "warning",
               "service.api.app:create_app"]
    return wait_ready(subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True), port)


def load(proc: subprocess.Popen, port: int, model: str, count: int, connections: int, seconds: int) -> dict:
    """wrk's report of `connections` clients asking `count` images each, with the server's CPU per request."""
    before = cpu_seconds(proc.pid)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(LUA),
                          f"http://127.0.0.1:{port}", "--", model, str(count)],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    cpu = cpu_seconds(proc.pid) - before
    rps = report["requests"] / report["seconds"]
    return {"rps": rps, "images": rps * count, "p50": report["p50_ms"], "p99": report["p99_ms"],
            "errors": report["errors"], "cpu_ms": 1000 * cpu / max(1, report["requests"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", required=True, help="a model store with MODEL in it")
    p.add_argument("--model", default="dcgan")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}, before")
    p.add_argument("--before", default=None, metavar="DIR", help="a checkout of another commit, served as `before`")
    p.add_argument("--loads", default="1x32,64x8,1x1", help="IMAGESxCONNECTIONS, comma-separated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=8, help="each load's length")
    p.add_argument("--device", default=os.environ.get("DEVICE", "auto"))
    p.add_argument("--port", type=int, default=8031)
    args = p.parse_args()
    servers = args.servers.split(",")
    if "before" in servers and not args.before:
        p.error("--servers before needs --before DIR")
    loads = [tuple(int(x) for x in spec.split("x")) for spec in args.loads.split(",")]
    runs: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(args.rounds):
        for server in servers[round_ % len(servers):] + servers[:round_ % len(servers)]:
            proc = start(server, args.store, args.port, args.device, args.before)
            try:
                load(proc, args.port, args.model, 1, 32, 2)  # warm: the first batches, the allocator
                for count, connections in loads:
                    result = load(proc, args.port, args.model, count, connections, args.seconds)
                    runs.setdefault((server, f"{count}x{connections}"), []).append(result)
                    print(f"round {round_ + 1} {server} {count}x{connections}: {result['rps']:.0f} req/s, "
                          f"p99 {result['p99']:.1f} ms, {result['cpu_ms']:.2f} CPU ms/request", file=sys.stderr)
            finally:
                stop(proc)
    print("| load | server | requests/s | images/s | p50 ms | p99 ms | CPU ms per request | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for count, connections in loads:
        for server in servers:
            rs = runs[(server, f"{count}x{connections}")]
            med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "images", "p50", "p99", "cpu_ms")}
            print(f"| {count}x{connections} | {server} | {med['rps']:.0f} | {med['images']:.0f} | {med['p50']:.1f} | "
                  f"{med['p99']:.1f} | {med['cpu_ms']:.2f} | {sum(r['errors'] for r in rs)} |")


if __name__ == "__main__":
    main()
