"""Processes to kill: each publishes a version (or saves a training state) and SIGKILLs itself at the Nth line
executed in the store's code or its own, so that a test can stop a writer at every point of its work.

    python tests/crash_child.py        then, on stdin, one job a line: publish ROOT KILL_AT | state PATH KILL_AT

Each job runs in a process of its own, forked from this one once the modules are imported (a fresh interpreter per
kill point would spend its time importing torch); the answer, a line on stdout, is the job's exit (0, or -9 when it
killed itself) and the watched lines it ran (KILL_AT 0: never killed, so the count is the number of points there are).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WATCHED = (str(ROOT / "shared" / "store"), str(ROOT / "trainer" / "state.py"), __file__)

import torch  # noqa: E402  (before any fork: the jobs' imports are done once)

from shared.store import GENERATOR, Store  # noqa: E402
from trainer.training.config import TrainConfig  # noqa: E402
from trainer.training.state import TrainingState  # noqa: E402


def kill_at(n: int) -> list[int]:
    """Count executed lines of the watched files; at the nth, die as a power cut or the OOM killer would."""
    executed = [0]

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.startswith(WATCHED):
            return None  # do not trace this function's lines
        if event == "line":
            executed[0] += 1
            if executed[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return tracer

    sys.settrace(tracer)
    return executed


def publish(root: Path) -> None:
    store = Store(root)
    with store.staging("m") as stage:
        (stage / GENERATOR).write_bytes(b"generator " * 1000)
        (stage / "discriminator.pt").write_bytes(b"discriminator " * 1000)
        (stage / "report").mkdir()
        (stage / "report" / "history.csv").write_text("step,loss\n0,1.0\n")
        store.publish("m", stage, {"architecture": "gan", "latent_dim": 100, "image_shape": [1, 28, 28]})


def next_state(path: Path) -> TrainingState:
    """The state one epoch after the one saved at `path` (made before the count starts: only the save is counted)."""
    state = TrainingState.load(path)
    return TrainingState(config=TrainConfig(arch="gan"), epoch=state.epoch + 1, step=0, perm=state.perm,
                         history=state.history, seconds=1.0, rng=state.rng,
                         weights={k: {"w": torch.full((256,), float(state.epoch + 1))} for k in ("G", "D", "opt_G", "opt_D")})


def after_the_work() -> None:
    """The last point to kill a writer at: its work done, so a kill here must leave the new version or state."""
    return None


def run(job: str, target: Path, n: int) -> str:
    """The job in a child process: its exit and the lines it ran."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the job; if it comes back, say how many lines it took
        os.close(read)
        work = (lambda: publish(target)) if job == "publish" else next_state(target).save
        executed = kill_at(n)
        work(*(() if job == "publish" else (target,)))
        after_the_work()
        sys.settrace(None)
        os.write(write, str(executed[0]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        lines = pipe.read() or "0"
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return f"{code} {lines}"


if __name__ == "__main__":
    for request in sys.stdin:
        job, target, n = request.split()
        print(run(job, Path(target), int(n)), flush=True)
