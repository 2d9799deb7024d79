"""--tensorboard: the events a run writes, read back with TensorBoard's own reader, across a resumed run."""
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainer.training.board import LOG_EVERY, TAGS
from trainer.training.config import TrainConfig
from trainer.training.loop import train
from trainer.training.state import HISTORY_COLUMNS, STATE_FILE, TrainingState

pytestmark = pytest.mark.fast  # make check runs it on every commit


def _config(fashion_dir, epochs):
    return TrainConfig(arch="gan", epochs=epochs, limit=512, batch_size=32, data_dir=str(fashion_dir), device="cpu")


def _steps(events: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


def test_a_killed_and_resumed_run_appends_to_the_same_curves_without_duplicates(tmp_path, fashion_dir):
    run, board = tmp_path / "run", tmp_path / "tb"
    quiet = dict(log=lambda m: None, progress=False, tensorboard=board)
    train(_config(fashion_dir, 1), run, **quiet)
    shutil.copy(run / STATE_FILE, tmp_path / "epoch-1.pt")
    train(_config(fashion_dir, 2), run, resume=True, **quiet)
    # killed after logging epoch 2 but before its state was saved: the state on disk is epoch 1's
    shutil.copy(tmp_path / "epoch-1.pt", run / STATE_FILE)
    assert TrainingState.load(run / STATE_FILE).epoch == 1
    train(_config(fashion_dir, 3), run, resume=True, **quiet)

    events = EventAccumulator(str(board), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    steps_per_epoch = 512 // 32
    expected = sorted({*range(LOG_EVERY, 3 * steps_per_epoch + 1, LOG_EVERY),  # every 10 steps, and each epoch's end
                       *range(steps_per_epoch, 3 * steps_per_epoch + 1, steps_per_epoch)})
    for tag in TAGS.values():
        assert _steps(events, tag) == expected, tag  # each step once: epoch 2's first logging was purged
    assert [e.step for e in events.Images("samples")] == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]
    sample = events.Images("samples")[-1]
    assert (sample.width, sample.height) == (28 * 8, 28 * 8)  # the 64 fixed latents, 8 by 8
    assert "config/text_summary" in events.Tags()["tensors"]
    history = TrainingState.load(run / STATE_FILE).history  # what the steps recorded, the resumed epochs included
    for column, tag in TAGS.items():
        logged = [e.value for e in events.Scalars(tag)]
        recorded = [history[step - 1, HISTORY_COLUMNS.index(column)].item() for step in expected]
        assert logged == pytest.approx(recorded, rel=1e-5), tag


def test_a_run_shorter_than_the_logging_interval_still_has_its_loss_curve(tmp_path, fashion_dir):
    cfg = TrainConfig(arch="gan", epochs=2, limit=96, batch_size=32, data_dir=str(fashion_dir), device="cpu")
    train(cfg, tmp_path / "run", log=lambda m: None, progress=False, tensorboard=tmp_path / "tb")
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert _steps(events, TAGS["loss_D"]) == [3, 6]  # 3 steps an epoch, fewer than LOG_EVERY: one point per epoch


def test_no_events_without_the_flag(tmp_path, fashion_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(_config(fashion_dir, 1), tmp_path / "run", log=lambda m: None, progress=False)
    assert not list(tmp_path.rglob("events.out.tfevents*"))
