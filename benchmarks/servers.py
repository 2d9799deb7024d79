"""Start the servers the benchmarks load: latentlab's `python -m service`, and the naive reference app."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 120) -> subprocess.Popen:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the server on port {port} did not become ready")


def start_service(store: str, port: int, device: str = "auto", **settings: str) -> subprocess.Popen:
    """`python -m service` on `store`, once it answers /readyz; `settings` are more environment variables."""
    env = {**os.environ, "MODEL_DIR": store, "PORT": str(port), "HOST": "127.0.0.1", "DEVICE": device,
           "LOG_LEVEL": "warning", **settings}
    return wait_ready(subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env), port)


def start_naive(generator: str | Path, port: int, device: str = "auto") -> subprocess.Popen:
    """benchmarks/naive_app.py serving one generator file."""
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "naive_app.py"), "--generator", str(generator), "--port", str(port)]
    return wait_ready(subprocess.Popen(cmd, cwd=ROOT, env=env), port)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
