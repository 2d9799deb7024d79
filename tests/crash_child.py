"""A process to kill: it publishes a version (or saves a training state) and SIGKILLs itself at the Nth line
executed in the store's code or its own, so that a test can stop it at every point of its work.

    python tests/crash_child.py publish ROOT KILL_AT    (KILL_AT 0: never; prints the lines it ran)
    python tests/crash_child.py state PATH KILL_AT
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WATCHED = (str(ROOT / "shared" / "store"), str(ROOT / "trainer" / "state.py"), __file__)


def kill_at(n: int) -> None:
    """Count executed lines of the watched files; at the nth, die as a power cut or the OOM killer would."""
    executed = 0

    def tracer(frame, event, arg):
        nonlocal executed
        if not frame.f_code.co_filename.startswith(WATCHED):
            return None  # do not trace this function's lines
        if event == "line":
            executed += 1
            if executed == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return tracer

    sys.settrace(tracer)
    import atexit
    atexit.register(lambda: print(executed))


def publish(root: Path) -> None:
    from shared.store import GENERATOR, Store

    store = Store(root)
    with store.staging("m") as stage:
        (stage / GENERATOR).write_bytes(b"generator " * 1000)
        (stage / "discriminator.pt").write_bytes(b"discriminator " * 1000)
        (stage / "report").mkdir()
        (stage / "report" / "history.csv").write_text("step,loss\n0,1.0\n")
        store.publish("m", stage, {"architecture": "gan", "latent_dim": 100, "image_shape": [1, 28, 28]})


def save_state(path: Path, kill_after: int) -> None:
    import torch

    from trainer.config import TrainConfig
    from trainer.state import TrainingState

    state = TrainingState.load(path)
    new = TrainingState(config=TrainConfig(arch="gan"), epoch=state.epoch + 1, step=0, perm=state.perm,
                        history=state.history, seconds=1.0, weights={k: {"w": torch.full((256,), float(state.epoch + 1))}
                                                                       for k in ("G", "D", "opt_G", "opt_D")},
                        rng=state.rng)
    kill_at(kill_after)  # only the save is counted
    new.save(path)


if __name__ == "__main__":
    job, target, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if job == "publish":
        kill_at(n)
        publish(target)
    else:
        save_state(target, n)
