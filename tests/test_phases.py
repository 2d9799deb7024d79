"""The work after training: its counts scale with the run, and every phase shows itself (a bar with the time left on a
terminal, one line with its seconds otherwise)."""
import io
import json
import re
import sys

import pytest

from tests.conftest import run_cli
from trainer.training.budget import FLOOR, FULL, with_budget
from trainer.training.config import TrainConfig
from trainer.training.phases import Phase


def test_a_quick_look_gets_the_floor_and_a_long_run_the_full_counts():
    quick = with_budget(TrainConfig(arch="dcgan", epochs=1), 2048)
    assert (quick.encoder_steps, quick.class_samples, quick.eval_samples) == (100, 2000, 2000)
    assert [getattr(quick, k) for k in FLOOR] == list(FLOOR.values())
    readme_dcgan = with_budget(TrainConfig(arch="dcgan", epochs=5), 60_000)  # the run the projection results were measured with
    assert [getattr(readme_dcgan, k) for k in FULL] == list(FULL.values())
    readme_gan = with_budget(TrainConfig(arch="gan", epochs=40), 60_000)
    assert [getattr(readme_gan, k) for k in FULL] == list(FULL.values())
    between = with_budget(TrainConfig(arch="gan", epochs=1), 60_000)  # a fifth of the reference
    assert (between.encoder_steps, between.class_samples, between.eval_samples) == (200, 4000, 2000)


def test_counts_given_are_kept_and_zero_stays_off():
    cfg = with_budget(TrainConfig(arch="gan", epochs=1, encoder_steps=0, class_samples=500, eval_samples=7000), 2048)
    assert (cfg.encoder_steps, cfg.class_samples, cfg.eval_samples) == (0, 500, 7000)


def test_a_phase_on_a_terminal_shows_a_bar_with_its_name_and_time_left(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    lines = []
    with Phase("classes", 4, progress=True, log=lines.append, detail="2000 samples") as phase:
        for _ in phase.track(range(4)):
            pass
    assert "classes:" in err.getvalue() and "left" in err.getvalue()
    assert re.fullmatch(r"classes: \d+\.\ds \(2000 samples\)", lines[0])


def test_a_failed_phase_logs_no_success_line():
    lines = []
    with pytest.raises(RuntimeError), Phase("evaluation", 2, progress=False, log=lines.append):
        raise RuntimeError("broken")
    assert lines == []


@pytest.mark.slow
def test_the_trainer_logs_each_phase_with_its_seconds_and_records_the_counts(tmp_path, fashion_dir):
    # counts smaller than the defaults: the phases and their records are the behaviour, not the models' quality
    result = run_cli("trainer", "--arch", "gan", "--epochs", "1", "--limit", "512", "--out", str(tmp_path),
                     "--data-dir", str(fashion_dir), "--no-progress", "--encoder-steps", "40",
                     "--class-samples", "800", "--eval-samples", "800")
    assert result.returncode == 0, result.stderr
    for phase, detail in (("encoder", "40/40 steps in fp32"), ("classes", "800 samples in fp32"),
                          ("evaluation", "800 samples in fp32")):
        assert re.search(rf"^{phase}: \d+\.\ds \({re.escape(detail)}\)$", result.stderr, re.M), result.stderr
    manifest = json.loads((tmp_path / "gan" / "v1" / "manifest.json").read_text())
    assert manifest["encoder"]["steps"] == 40 and manifest["metrics"]["samples"] == 800
    assert manifest["config"]["class_samples"] == 800 and manifest["metrics"]["generator_precision"] == "fp32"
