"""Start the servers the benchmarks load: latentlab's `python -m service`, the naive reference app, and the
serving systems a user would pick instead (../shared/peers: BentoML, Ray Serve, TorchServe), each from its
own virtualenv, serving the same generator file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT.parent / "shared" / "peers"


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    path: str = "/generate"  # where POST {"model", "seed", "count"} answers with a PNG grid
    cleanup: list[list[str]] = field(default_factory=list)  # commands that stop what the process left running

    def stop(self) -> None:
        stop(self.proc)
        for command in self.cleanup:
            subprocess.run(command, capture_output=True, timeout=60)


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and every process under it (a server's workers, Triton's
    server binary and its backend stubs), from /proc: what serving cost the machine, whatever the wall clock did."""
    return sum(cpu_by_thread_group(pid).values())


def cpu_by_thread_group(pid: int) -> dict[str, float]:
    """`cpu_seconds` split by where it ran: for each process of the tree (by its command name), its main thread
    (an event loop's: HTTP, validation, encoding) apart from its other threads (inference, OpenMP, I/O pools)."""
    stats: dict[int, tuple[str, list[str]]] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(entry / "stat")) is not None:
            stats[int(entry.name)] = stat
            children.setdefault(int(stat[1][1]), []).append(int(entry.name))
    split: dict[str, float] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        if current not in stats:
            continue
        command, fields = stats[current]
        name = command if current != pid else "server"
        main = _stat(Path("/proc") / str(current) / "task" / str(current) / "stat")
        main_ticks = _ticks(main[1]) if main else 0
        all_ticks = _ticks(fields)  # the whole process, its ended threads too
        for key, ticks in ((f"{name}: main thread", main_ticks), (f"{name}: other threads", all_ticks - main_ticks)):
            split[key] = split.get(key, 0.0) + ticks / TICKS
    return split


def _stat(path: Path) -> tuple[str, list[str]] | None:
    """A /proc stat file's command name and the fields after it (state first), or None when it is gone."""
    try:
        head, _, rest = path.read_text().rpartition(")")
    except OSError:
        return None
    return head.partition("(")[2], rest.split()


def _ticks(fields: list[str]) -> int:
    """User + system clock ticks, from a stat file's fields after the command name."""
    return int(fields[11]) + int(fields[12])


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 120, path: str = "/readyz") -> subprocess.Popen:
    """Until GET `path` answers 200 (a readiness route: /readyz, the protocol's .../ready), or (for a POST route
    such as a peer's /generate) a one-image request does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            url = f"http://127.0.0.1:{port}{path}"
            r = httpx.get(url, timeout=5) if path.endswith(("/readyz", "/ready")) else httpx.post(
                url, json={"model": "dcgan", "seed": 0, "count": 1}, timeout=30)
            if r.status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"the server on port {port} did not become ready")


def start_service(store: str, port: int, device: str = "auto", tree: Path = ROOT,
                  **settings: str) -> subprocess.Popen:
    """`python -m service` of the checkout `tree` on `store`, once it answers /readyz; `settings` are more
    environment variables."""
    env = {**os.environ, "MODEL_DIR": store, "PORT": str(port), "HOST": "127.0.0.1", "DEVICE": device,
           "LOG_LEVEL": "warning", **settings}
    return wait_ready(subprocess.Popen([sys.executable, "-m", "service"], cwd=tree, env=env, start_new_session=True),
                      port)


def start_naive(generator: str | Path, port: int, device: str = "auto") -> subprocess.Popen:
    """benchmarks/naive_app.py serving one generator file."""
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "naive_app.py"), "--generator", str(generator), "--port", str(port)]
    return wait_ready(subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True), port)


def start_peer(name: str, generator: str | Path, port: int, venv: Path, peers_dir: Path = PEERS_DIR) -> Server:
    """One of ../shared/peers, configured as its header says, in its own virtualenv `venv`."""
    env = {**os.environ, "GEN": str(generator), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "PYTHONPATH": ""}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True, "cwd": peers_dir}
    if name == "bentoml":
        env["BENTO_KEEP_SESSION"] = "1"  # works around its inter-service client closing sessions mid-request
        proc = subprocess.Popen([str(venv / "bin" / "bentoml"), "serve", "bentoml_service:LatentLab", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, **quiet)
        return Server(name, wait_ready(proc, port, 240, "/generate"), port)
    if name == "rayserve":  # its documented high-throughput mode, the faster one here
        env.update(PORT=str(port), RAY_SERVE_THROUGHPUT_OPTIMIZED="1", RAY_SERVE_ENABLE_HA_PROXY="1")
        proc = subprocess.Popen([str(venv / "bin" / "python"), "rayserve_app.py"], env=env, **quiet)
        return Server(name, wait_ready(proc, port, 300, "/generate"), port,  # its haproxy outlives `ray stop`
                      cleanup=[[str(venv / "bin" / "ray"), "stop", "--force"], ["pkill", "-f", f"{venv}/.*haproxy"]])
    if name == "torchserve":
        env.update(PORT=str(port), TS_VENV=str(venv))
        proc = subprocess.Popen(["bash", "torchserve_run.sh"], env=env, **quiet)
        return Server(name, wait_ready(proc, port, 300, "/predictions/dcgan"), port, "/predictions/dcgan",
                      cleanup=[[str(venv / "bin" / "torchserve"), "--stop"]])
    raise ValueError(f"unknown peer {name!r}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process and everything it started (its own session), SIGKILL after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"


def start_balancer(port: int, replica_ports: list[int], stats_port: int | None = None) -> subprocess.Popen:
    """HAProxy with the repository's deploy/haproxy.cfg in front of three replicas on this machine, once it
    answers /readyz through a replica (Debian: apt-get install haproxy)."""
    import shutil

    if shutil.which("haproxy") is None:
        raise SystemExit("the balancer needs HAProxy: apt-get install haproxy")
    env = {**os.environ, "LATENTLAB_BIND": f"127.0.0.1:{port}",
           **{f"LATENTLAB_REPLICA{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(replica_ports)}}
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(HAPROXY_CFG)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_ready(proc, port)
