"""A run's settings are declared once (trainer.training.settings) and reach a run's config one way: the same flags
make the same run under `python -m trainer` and in each trial of `python -m trainer.tune`, a recipe file's size
and settings stand where the command line is silent, and a trial's draws override the rest."""
from __future__ import annotations

import dataclasses
import json

import pytest

from trainer import cli, tune
from trainer.training import settings
from trainer.training.config import TrainConfig

pytestmark = pytest.mark.fast

RUN_FLAGS = ["--seed", "3", "--dataset", "mnist", "--data-dir", "/data", "--channels", "3", "--image-size", "64",
             "--limit", "64", "--conditional", "--device", "cpu", "--features", "16", "--groups", "4", "--r1", "0.5"]


def trainer_run(flags: list[str]) -> TrainConfig:
    args = cli.build_parser().parse_args(["--epochs", "1", *flags])
    recipe = settings.resolve_recipe(args.recipe, args.arch)
    return cli.run_config(args, recipe, recipe.arch, world_size=1)


def trial_run(flags: list[str], drawn: dict | None = None) -> TrainConfig:
    args = tune.build_parser().parse_args(flags)
    chosen = settings.resolve_recipe(args.recipe, args.arch)
    tuning = tune.Tuning(args, chosen, settings.given(args), space=None, study_name="s", runs=None, metric="fid",
                         log=print)
    return tuning.config(drawn or {}, "trial-0")


def test_the_same_flags_make_the_same_run_in_both_commands():
    trained, trial = trainer_run(["--arch", "r3gan", *RUN_FLAGS]), trial_run(["--arch", "r3gan", *RUN_FLAGS])
    shared = [s.name for s in settings.RUN_SETTINGS] + [s.name for s in settings.RECIPE_SETTINGS] + ["recipe"]
    assert {n: getattr(trained, n) for n in shared} == {n: getattr(trial, n) for n in shared}
    assert (trained.seed, trained.dataset, trained.data_dir, trained.channels, trained.image_size, trained.limit,
            trained.conditional, trained.device, trained.features, trained.groups, trained.r1) == (
        3, "mnist", "/data", 3, 64, 64, True, "cpu", 16, 4, 0.5)
    assert trained.class_loss == 1.0  # the stable preset's, which a conditional run keeps


def test_a_recipe_files_size_and_settings_stand_where_the_command_line_is_silent(tmp_path):
    path = settings.RecipeFile(name="mine", arch="r3gan", base="stable", settings={"r1": 2.0, "batch_size": 16},
                               size={"features": 24, "depth": 2}).write(tmp_path / "mine.json")
    silent = trainer_run(["--recipe", str(path)])
    assert (silent.arch, silent.recipe, silent.features, silent.depth, silent.r1, silent.batch_size) == (
        "r3gan", "mine", 24, 2, 2.0, 16)
    told = trainer_run(["--recipe", str(path), "--features", "8", "--r1", "0.1"])
    assert (told.features, told.depth, told.r1, told.batch_size) == (8, 2, 0.1, 16)
    assert json.loads(path.read_text())["size"] == {"features": 24, "depth": 2}


def test_a_trials_draws_override_the_recipe_and_the_flags_fix_the_rest():
    trial = trial_run(["--arch", "r3gan", "--r1", "0.5"], drawn={"lr_g": 1e-3, "features": 32})
    assert (trial.lr_g, trial.features, trial.r1, trial.recipe) == (1e-3, 32, 0.5, "stable")
    assert (trial.class_samples, trial.encoder_steps) == (0, 0)  # a trial measures its generator, nothing more


def test_every_run_setting_is_a_config_field_with_its_declared_default():
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert {s.name: s.default for s in settings.RUN_SETTINGS} == {s.name: fields[s.name] for s in settings.RUN_SETTINGS}
    parsed = cli.build_parser().parse_args(["--arch", "gan", "--epochs", "1"])
    assert all(getattr(parsed, s.name) == s.default for s in settings.RUN_SETTINGS if not s.env)


@pytest.mark.parametrize("path", sorted(settings.SHIPPED_RECIPES.glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_recipe_reads_and_makes_a_run_of_its_architecture(path):
    recipe = settings.read_recipe_file(path)
    assert recipe.name == path.stem  # `--recipe NAME` finds it by its file's name; the manifest records this one
    run = trainer_run(["--recipe", path.stem])
    assert (run.arch, run.recipe) == (recipe.arch, recipe.name)
    assert {k: getattr(run, k) for k in recipe.settings} == recipe.settings
    assert {k: getattr(run, k) for k in recipe.size} == recipe.size
