"""Chaos under load: three replicas of `python -m service` on one store behind HAProxy (deploy/haproxy.cfg), a
steady load through the balancer from wrk and from plain httpx clients (neither retries: what the balancer alone
hides; httpx sends a POST's body in a second packet, wrk in the same one) and from the project's client (with its
retries), and four events, one after the other:

  (a) a rolling restart: each replica in turn gets SIGTERM (it drains), exits, and is started again;
  (b) SIGKILL of one replica, which is then started again;
  (c) one replica's store volume unreadable for a few seconds (its MODEL_DIR, a link, points nowhere);
  (d) an overload burst: 64 raw clients asking 256 images each, at once when refused, for 10 s.

For each: requests, failed requests (wrk's errors and non-2xx, httpx's non-200 and errors; the client's exceptions
after its retries), p50 and p99, beside the calm run; then whether every image the clients got is the same picture
as the same request served by a calm replica directly (load.same_picture), and how many are so byte for byte.
Prints a markdown table (docs/scaling.md).

    python benchmarks/chaos.py --store ./models --model dcgan
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load import ClientLoad, same_picture  # noqa: E402
from serve_compare import LUA, burst  # noqa: E402
from servers import start_balancer, start_service, stop  # noqa: E402


class Cluster:
    def __init__(self, store: Path, views: Path, base_port: int, settings: dict[str, str]) -> None:
        self.store, self.views, self.settings = store, views, settings
        self.ports = [base_port + i for i in (1, 2, 3)]
        for i in range(3):
            (views / f"replica{i + 1}").symlink_to(store)
        self.procs = [self.start(i) for i in range(3)]

    def start(self, i: int) -> subprocess.Popen:
        return start_service(str(self.views / f"replica{i + 1}"), self.ports[i], "cpu", **self.settings)

    def replace(self, i: int, sig: int) -> int:
        """Stop replica i with `sig`, start it again; its exit status."""
        os.killpg(self.procs[i].pid, sig)
        code = self.procs[i].wait(timeout=120)
        self.procs[i] = self.start(i)
        time.sleep(1.5)  # two health checks, 500 ms apart, put it back
        return code

    def unreadable(self, i: int, seconds: float) -> None:
        link = self.views / f"replica{i + 1}"
        link.unlink()
        link.symlink_to(self.views / "nowhere")
        time.sleep(seconds)
        link.unlink()
        link.symlink_to(self.store)

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


class Wrk:
    """wrk through the balancer until stopped (SIGINT makes it print its summary)."""

    def __init__(self, port: int, model: str, count: int, connections: int) -> None:
        self.proc = subprocess.Popen(["wrk", "-t1", f"-c{connections}", "-d600s", "--timeout", "30s", "-s", str(LUA),
                                      f"http://127.0.0.1:{port}", "--", model, str(count)],
                                     stdout=subprocess.PIPE, text=True)

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])


def run(event, balancer: int, args) -> dict:
    wrk = Wrk(balancer, args.model, args.count, args.connections)
    clients = ClientLoad(f"http://127.0.0.1:{balancer}", args.model, args.clients, args.count)
    plain = ClientLoad(f"http://127.0.0.1:{balancer}", args.model, args.clients, args.count, retries=False)
    time.sleep(2)
    note = event()
    time.sleep(2)
    return {"wrk": wrk.stop(), "clients": clients.stop(), "plain": plain.stop(), "note": note}


def alike(answers: dict[int, bytes], port: int, model: str, count: int, sample: int = 50) -> tuple[int, int, int]:
    """(the same picture, byte for byte, checked): answers re-requested from one calm replica directly."""
    seeds = sorted(answers)[::max(1, len(answers) // sample)]
    calm = {s: httpx.post(f"http://127.0.0.1:{port}/generate", json={"model": model, "seed": s, "count": count},
                          timeout=60).content for s in seeds}
    return (sum(same_picture(calm[s], answers[s]) for s in seeds), sum(calm[s] == answers[s] for s in seeds),
            len(seeds))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=os.environ.get("MODEL_DIR", "./models"))
    p.add_argument("--model", default="dcgan")
    p.add_argument("--count", type=int, default=4, help="images per request")
    p.add_argument("--connections", type=int, default=4, help="wrk's connections")
    p.add_argument("--clients", type=int, default=2, help="client threads: latentlab.Client (with retries), and as many "
                                                          "plain httpx ones (without)")
    p.add_argument("--calm-seconds", type=float, default=10)
    p.add_argument("--port", type=int, default=18700, help="the balancer; replicas on the next three ports")
    p.add_argument("--precision", default="fp32", help="the replicas' PRECISION (fp32: bytes comparable anywhere)")
    args = p.parse_args()
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"this benchmark needs {tool}: apt-get install {tool}")
    with tempfile.TemporaryDirectory() as views:
        cluster = Cluster(Path(args.store).resolve(), Path(views), args.port, {"PRECISION": args.precision})
        balancer = start_balancer(args.port, cluster.ports)
        try:
            rows = {"calm": run(lambda: time.sleep(args.calm_seconds) or "", args.port, args)}
            rows["(a) rolling restart, SIGTERM"] = run(
                lambda: "exit statuses " + ", ".join(str(cluster.replace(i, signal.SIGTERM)) for i in range(3)),
                args.port, args)
            rows["(b) SIGKILL of one replica"] = run(
                lambda: f"exit status {cluster.replace(1, signal.SIGKILL)}", args.port, args)
            rows["(c) one store volume unreadable 5 s"] = run(
                lambda: cluster.unreadable(2, 5.0) or "", args.port, args)
            burst_result = {}
            rows["(d) overload burst"] = run(
                lambda: burst_result.update(asyncio.run(burst(args.port, args.model))) or "", args.port, args)
            answers = {k: v for row in rows.values() for k, v in row["clients"].answers.items()}
            same, bytewise, checked = alike(answers, cluster.ports[0], args.model, args.count)
        finally:
            stop(balancer)
            cluster.stop()
    calm_p99 = rows["calm"]["wrk"]["p99_ms"]
    print(f"{args.model}, {args.count} images per request; wrk -c{args.connections} and {args.clients} plain httpx "
          f"threads (no retries), {args.clients} latentlab.Client threads (with retries), through HAProxy to 3 "
          f"replicas, PRECISION={args.precision}; {os.cpu_count()} CPUs\n")
    print("| event | wrk requests | wrk failed | wrk p50 / p99 ms | p99 vs calm | httpx requests | httpx failed | "
          "client requests | client failed (after retries) | client p99 s | note |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        w, c, h = row["wrk"], row["clients"], row["plain"]
        print(f"| {name} | {w['requests']} | {w['errors']} | {w['p50_ms']:.1f} / {w['p99_ms']:.1f} | "
              f"{w['p99_ms'] / calm_p99:.2f}x | {len(h.seconds)} | {len(h.failures)} | {len(c.seconds)} | "
              f"{len(c.failures)} | {c.p99():.2f} | {row['note']} |")
    slowest = burst_result.get("max_s")
    print(f"\nburst (64 raw clients x 256 images, 10 s, through the balancer): {burst_result.get('answered')} answered"
          f"{f' (slowest {slowest:.2f} s)' if slowest is not None else ''}, {burst_result.get('refused')} refused with "
          f"503 + Retry-After, {burst_result.get('other')} other; /healthz p99 {burst_result.get('healthz_p99_ms', 0):.1f}"
          " ms")
    print(f"the same pictures as a calm replica's: {same} of {checked} sampled client answers ({bytewise} byte for "
          "byte)")
    for row in rows.values():
        for kind in ("clients", "plain"):
            for failure in row[kind].failures[:3]:
                print(f"{kind} failure:", failure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
