"""Crash-proof writing: publishers and state saves killed (SIGKILL) at every point of their work, and writes
on a full disk. Whatever happens, readers see only complete versions and whole states, numbers are never
handed out twice, and the next writer clears what the dead one left."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.errors import WriteFailed
from shared.store import GENERATOR, Store, StoreWriteFailed
from tests.conftest import run_cli
from trainer.training.config import TrainConfig
from trainer.training.state import TrainingState

CHILD = Path(__file__).with_name("crash_child.py")


@pytest.fixture(scope="module")
def writers():
    """The process that forks a writer per kill point (tests/crash_child.py)."""
    proc = subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


def child(writers, job: str, target: Path, kill_at: int) -> tuple[int, int]:
    """A writer doing `job` on `target`, killed at its `kill_at`th watched line (0: never): its exit, lines run."""
    writers.stdin.write(f"{job} {target} {kill_at}\n")
    writers.stdin.flush()
    code, lines = writers.stdout.readline().split()
    return int(code), int(lines)


def lines_run(writers, job: str, target: Path) -> int:
    """How many watched lines a whole, unkilled run executes (the points there are to kill it at)."""
    code, lines = child(writers, job, target, 0)
    assert code == 0
    return lines


def state(epoch: int, size: int = 256) -> TrainingState:
    return TrainingState(config=TrainConfig(arch="gan"), epoch=epoch, perm=torch.arange(10),
                         weights={k: {"w": torch.full((size,), float(epoch))} for k in ("G", "D", "opt_G", "opt_D")},
                         rng={"cpu": torch.get_rng_state()})


def publish_one(root: Path, payload: bytes) -> int:
    store = Store(root)
    with store.staging("m") as stage:
        (stage / GENERATOR).write_bytes(payload)
        return store.publish("m", stage, {"architecture": "gan", "latent_dim": 100, "image_shape": [1, 28, 28]}).version


def debris(model_dir: Path) -> list[str]:
    """What no finished writer leaves: stagings, temporary files, empty claims."""
    found = [p.name for p in model_dir.iterdir() if p.name.startswith(".staging-") or p.name.endswith(".tmp")]
    found += [p.name for p in model_dir.glob("v*") if p.is_dir() and not any(p.iterdir())]
    found += [f"{p.parent.name}/{p.name}" for p in model_dir.glob("v*/.*.tmp")]
    return found


def test_a_publisher_killed_at_any_point_leaves_a_clean_store(tmp_path, writers):
    root = tmp_path / "store"
    assert publish_one(root, b"first") == 1
    total = lines_run(writers, "publish", root)  # publishes v2
    assert total > 50
    highest = 2
    for n in range(1, total + 1):  # every line: staging, hashing, the claim, the manifest, the rename, clean-up
        code, _ = child(writers, "publish", root, n)
        assert code == -9, f"line {n} of {total}"
        store = Store(root)
        listed = store.versions("m")
        for v in listed:  # complete and verified: every file the manifest lists is there with its hash
            assert v.manifest.files and all((v.path / f).is_file() for f in v.manifest.files)
        assert listed[0].version == 1 and [v.version for v in listed] == sorted({v.version for v in listed})
        assert store.high_water("m") >= max(v.version for v in listed)
        # the next publish takes a number never handed out before and leaves no debris, its own or the dead's
        number = publish_one(root, f"after {n}".encode())
        assert number > highest and number > store.high_water("m") - 1
        highest = number
        assert debris(root / "m") == [], f"killed at line {n} of {total}"
        assert Store(root).get("m").version == number
        for older in Store(root).versions("m")[1:-1]:  # deleted, as an operator may: v1 and the newest stay, so
            shutil.rmtree(older.path)                   # each point's listing verifies two versions, not hundreds


def test_a_state_save_killed_at_any_point_leaves_the_old_or_the_new_state(tmp_path, writers):
    path = tmp_path / "state.pt"
    old = state(3)
    old.save(path)
    total = lines_run(writers, "state", path)  # epoch 3 -> 4
    assert TrainingState.load(path).epoch == 4
    old.save(path)
    seen = set()
    for n in range(1, total + 1):  # every line of the save
        code, _ = child(writers, "state", path, n)
        assert code == -9, f"line {n} of {total}"
        found = TrainingState.load(path)  # loads: never a torn file
        assert (found.epoch, float(found.weights["G"]["w"][0])) in {(3, 3.0), (4, 4.0)}
        seen.add(found.epoch)
        old.save(path)  # the next save clears the dead one's temporary file
        assert [p.name for p in tmp_path.iterdir()] == ["state.pt"], f"killed at line {n} of {total}"
    assert seen == {3, 4}  # killed both before and after the rename


# ---------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (the tests run as root, here and in CI); `grow()` frees space by enlarging it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk tests need one")

    class Disk:
        path = mount

        @staticmethod
        def grow(size: str = "64m") -> None:
            subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    yield Disk
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_publishing_on_a_full_disk_fails_in_one_line_and_keeps_the_store(small_disk):
    root = small_disk.path / "store"
    assert publish_one(root, b"small") == 1
    with pytest.raises(StoreWriteFailed, match="No space left on device") as failed:
        publish_one(root, os.urandom(2 << 20))
    assert failed.value.exit_code == 1 and "\n" not in str(failed.value)
    assert [v.version for v in Store(root).versions("m")] == [1] and debris(root / "m") == []
    small_disk.grow()
    assert publish_one(root, os.urandom(2 << 20)) == 2


def test_saving_the_state_on_a_full_disk_keeps_the_previous_one(small_disk):
    path = small_disk.path / "state.pt"
    state(1).save(path)
    big = state(2, size=1 << 18)  # 4 MB
    with pytest.raises(WriteFailed, match="the previous state is intact"):
        big.save(path)
    assert TrainingState.load(path).epoch == 1 and sorted(os.listdir(small_disk.path)) == ["state.pt"]
    small_disk.grow()
    big.save(path)
    assert TrainingState.load(path).epoch == 2


@pytest.mark.slow
def test_the_trainer_on_a_full_disk_says_so_in_one_line_and_resumes(small_disk, fashion_dir):
    store = small_disk.path / "models"
    train = ("trainer", "--arch", "gan", "--epochs", "1", "--limit", "128", "--batch-size", "64", "--out", str(store),
             "--data-dir", str(fashion_dir), "--device", "cpu", "--no-progress", "--no-evaluate", "--no-encoder",
             "--no-classes")
    small_disk.grow("3m")  # room for the training state (2.6 MB), not for the version (1.1 MB) too
    failed = run_cli(*train)
    assert failed.returncode == 1, failed.stderr
    error = [line for line in failed.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and "No space left on device" in error[0] and "Traceback" not in failed.stderr
    assert Store(store).versions("gan") == [] and debris(store / "gan") == []
    small_disk.grow()
    resumed = run_cli(*train, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert [v.version for v in Store(store).versions("gan")] == [1]
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(store)
