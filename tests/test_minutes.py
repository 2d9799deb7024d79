"""`--minutes M`: a run trains for a time budget, stops at the end of the step in which it is spent, publishes as
any run does with the budget in its manifest, and a run stopped short of its budget resumes to the end of it."""
from __future__ import annotations

import json

import pytest

from shared.store import Store
from tests.conftest import assert_user_error, run_cli, run_main
from trainer.cli import main as trainer_main
from trainer.training.config import TrainConfig
from trainer.training.loop import train
from trainer.training.state import STATE_FILE, TrainingState

BUDGET = 0.05  # minutes: 3 s of training


@pytest.mark.slow
def test_a_run_trains_for_its_minutes_then_publishes(fashion_dir, tmp_path):
    result = run_cli("trainer", "--arch", "gan", "--minutes", str(BUDGET), "--limit", "2048", "--out",
                     str(tmp_path), "--data-dir", str(fashion_dir), "--no-evaluate", "--no-encoder", "--no-classes",
                     "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"{BUDGET:g} minutes of training spent at epoch" in result.stderr + result.stdout
    manifest = json.loads((Store(tmp_path).get("gan").path / "manifest.json").read_text())
    assert manifest["config"]["minutes"] == BUDGET
    # stopped at the end of the step in which the budget was spent: past it, by less than a step or two
    assert BUDGET * 60 <= manifest["train_seconds"] < BUDGET * 60 + 1.0
    assert manifest["iterations"] > 16  # several epochs of 16 steps: the budget, not --epochs, ended it


def test_a_run_needs_epochs_or_minutes(tmp_path, capsys):
    assert_user_error(run_main(trainer_main, "--arch", "gan", "--out", str(tmp_path), capsys=capsys),
                      "--epochs N, or --minutes M")


@pytest.mark.slow
def test_a_budget_cut_short_resumes_to_its_end(fashion_dir, tmp_path):
    cfg = TrainConfig(arch="gan", epochs=100_000, minutes=BUDGET / 2, limit=2048, data_dir=str(fashion_dir),
                      device="cpu", class_samples=0, encoder_steps=0)
    first = train(cfg, tmp_path, log=lambda m: None, progress=False)
    assert not first.interrupted and BUDGET * 30 <= first.seconds
    assert TrainingState.load(tmp_path / STATE_FILE).out_of_minutes()  # saved with its half budget spent
    second = train(TrainConfig(**{**cfg.to_dict(), "minutes": BUDGET}), tmp_path, resume=True, log=lambda m: None,
                   progress=False)
    assert not second.interrupted and BUDGET * 60 <= second.seconds < BUDGET * 60 + 1.0
    assert len(second.history) > len(first.history)
