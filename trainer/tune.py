"""`python -m trainer.tune`: search for the recipe that gives the best pictures of your data in a time budget, with
Optuna.

Each trial is a normal training run of `--minutes-per-trial` minutes, its settings drawn by Optuna's TPE sampler
from the recipe settings that declare a search range (trainer.training.settings) and the architecture's size
(trainer.training.architectures). A trial is measured `--readings` times along its budget (FID in the project's classifier's
features for FashionMNIST, the SWD for other data), and the pruner stops one whose early readings trail the
others' at the same point (successive halving: a multi-fidelity search). The study's first trial is the preset
itself, so the search is measured against what it would replace.

The study lives in a storage: by default a journal file in the store (`STORE/.tune/STUDY.journal`: plain JSON lines,
nothing to install; keep it to continue the search later), or `--storage postgresql://...` for workers on several
machines sharing one study. A trial's training state is saved as any run's: a worker killed or interrupted
continues its trial where it stopped when it starts again. At the end the best trial is written as a recipe file
that `python -m trainer --recipe FILE` trains from.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Callable

from shared.errors import UserError, command
from shared.store import validate_name
from trainer.cli import EXIT_INTERRUPTED, MAX_EPOCHS, log
from trainer.training import settings
from trainer.training.architectures import ARCHITECTURES, get_architecture, run_architecture
from trainer.training.config import ConfigError, TrainConfig
from trainer.training.settings import ChosenRecipe, RecipeFile, Search, positive_float, positive_int

PROG = "python -m trainer.tune"
TUNE_DIR = ".tune"  # in the store: the studies' journals and their trials' training states
HEARTBEAT_SECONDS, GRACE_SECONDS = 60, 300  # a database study's trial whose worker went quiet this long is retried
MAX_RETRIES = 3  # of one trial whose worker died or was interrupted


class TuneError(UserError):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Search for the recipe that trains the best generator of your data in a fixed time, with "
                    "Optuna: each trial a training run of --minutes-per-trial minutes, measured along the way so "
                    "that poor trials stop early; the best written as a recipe file for python -m trainer --recipe.",
        epilog="Exit codes: 0 done; 2 bad input; 130 interrupted (run the same command again: the study and the "
               "interrupted trial continue). Example: python -m trainer.tune --arch r3gan --minutes-per-trial 5 "
               "--hours 3 --out ./models",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES), help="the architecture to tune")
    p.add_argument("--minutes-per-trial", type=positive_float, default=5.0, metavar="M",
                   help="minutes of training each trial gets (measurements not counted)")
    p.add_argument("--trials", type=positive_int, default=None, metavar="N",
                   help="stop when the study holds N finished trials (complete or pruned, by every worker)")
    p.add_argument("--hours", type=positive_float, default=None, metavar="H",
                   help="stop starting trials after H hours (with --trials: whichever comes first)")
    p.add_argument("--study", default=None, help="the study's name (default: ARCH-DATASET-SIZE, -conditional)")
    p.add_argument("--storage", default=None, metavar="URL|FILE",
                   help="where the study lives: a journal file (default: OUT/.tune/STUDY.journal), or a database URL "
                        "(postgresql://user@host/db: workers on several machines share one study; sqlite:///FILE)")
    p.add_argument("--out", default=os.environ.get("MODEL_DIR", "./models"),
                   help="the store whose .tune folder keeps the trials' training states (env MODEL_DIR)")
    p.add_argument("--recipe", default=None, metavar="PRESET|FILE",
                   help="what the search starts from and leaves alone outside its space: a preset or a recipe file "
                        "(default: the architecture's default preset)")
    p.add_argument("--search", default=None, metavar="NAMES",
                   help="comma-separated settings to search (default: every one that declares a range, and the "
                        "architecture's size); the others keep the recipe's values")
    p.add_argument("--readings", type=positive_int, default=3, metavar="K",
                   help="measurements per trial, evenly along its minutes; the pruner compares trials at each")
    p.add_argument("--pruner", choices=("halving", "median", "none"), default="halving",
                   help="halving: successive halving (a trial continues while among the better half at each "
                        "reading); median: while no worse than the median; none: every trial runs its minutes")
    p.add_argument("--eval-samples", type=positive_int, default=2000, metavar="N",
                   help="generated images each reading measures")
    p.add_argument("--recipe-out", default=None, metavar="FILE",
                   help="where the best trial's recipe file goes (default: STUDY.json in the current folder)")
    settings.add_run_arguments(p.add_argument_group("run", "What every trial trains on and where it runs, as "
                                                          "python -m trainer's; the seed is the sampler's too"),
                               ("seed", "dataset", "data_dir", "channels", "image_size", "limit", "conditional",
                                "device"))
    fixed = p.add_argument_group("fixed settings", "Any recipe setting or size given here keeps that value in every "
                                                   "trial and leaves the search space")
    settings.add_run_arguments(fixed, settings.SIZE_SETTINGS)
    settings.add_arguments(fixed)
    return p


# ---------------------------------------------------------------------- the search space
@dataclass(frozen=True)
class Space:
    """What a trial draws: recipe settings and the architecture's size, each with where to look."""

    recipe: dict[str, Search]
    size: dict[str, Search]

    @classmethod
    def of(cls, arch: str, names: str | None, fixed: dict[str, Any]) -> "Space":
        recipe = {s.name: s.search for s in settings.RECIPE_SETTINGS if s.search is not None}
        size = dict(get_architecture(arch).size_search)
        if names is not None:
            wanted = [n.strip() for n in names.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in recipe and n not in size]
            if unknown:
                raise TuneError(f"--search {','.join(unknown)}: not searchable for {arch}; choose among "
                                f"{', '.join([*recipe, *size])}")
            recipe = {n: s for n, s in recipe.items() if n in wanted}
            size = {n: s for n, s in size.items() if n in wanted}
        recipe = {n: s for n, s in recipe.items() if n not in fixed}
        size = {n: s for n, s in size.items() if n not in fixed}
        if not recipe and not size:
            raise TuneError("nothing left to search: every setting in the space is fixed")
        return cls(recipe, size)

    def suggest(self, trial) -> tuple[dict[str, Any], dict[str, Any]]:
        """The trial's recipe settings and size."""
        kinds = {s.name: s.kind for s in settings.RECIPE_SETTINGS}
        drawn = {name: _suggest(trial, name, search, kinds.get(name, int))
                 for name, search in {**self.recipe, **self.size}.items()}
        return ({n: v for n, v in drawn.items() if n in self.recipe}, {n: v for n, v in drawn.items() if n in self.size})

    def starting_point(self, chosen: ChosenRecipe, conditional: bool) -> dict[str, Any]:
        """The preset's own values (and the architecture's own size) wherever the space holds them: trial 0."""
        preset = chosen.config_fields(conditional, {})
        preset |= {n: preset[n] or TrainConfig.lr for n in ("lr_g", "lr_d")}  # unset: both nets at --lr's default
        own = get_architecture(chosen.arch)
        values = {**{n: preset[n] for n in self.recipe}, **{n: chosen.size.get(n, getattr(own, n)) for n in self.size}}
        return {n: v for n, v in values.items() if _inside({**self.recipe, **self.size}[n], v)}


def _suggest(trial, name: str, search: Search, kind: type) -> Any:
    if search.choices is not None:
        return trial.suggest_categorical(name, list(search.choices))
    if kind is int:
        return trial.suggest_int(name, int(search.low), int(search.high), log=search.log)
    return trial.suggest_float(name, search.low, search.high, log=search.log)


def _inside(search: Search, value: Any) -> bool:
    if search.choices is not None:
        return value in search.choices
    return value is not None and search.low <= value <= search.high


# ---------------------------------------------------------------------- the study
def open_storage(where: str):
    """A database URL (heartbeats: a dead worker's trial is retried by the others), or a journal file."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if "://" in where:
        from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

        for attempt in range(5):
            try:
                return RDBStorage(where, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRIES))
            except (IntegrityError, ProgrammingError) as e:
                # another worker is creating the tables this moment (a duplicate table, type or row): they will be
                # there
                creating = e
                time.sleep(0.5 * (attempt + 1))
            except (ImportError, SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
                raise TuneError(f"--storage {where}: cannot open the database: {str(e).splitlines()[0]}") from None
        raise TuneError(f"--storage {where}: the database's tables could not be created: "
                        f"{str(creating).splitlines()[0]}")
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def retry_abandoned(study, log: Callable[[str], None]) -> None:
    """Queue again the trials a worker on this machine left unfinished: killed (still RUNNING, its process gone) or
    interrupted (FAIL, marked so). The retry keeps the trial's `run`, so its training resumes from its state.
    (A database study's heartbeats do this for workers anywhere.)"""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    for trial in trials:
        if trial.number in retried:
            continue
        worker = trial.user_attrs.get("worker", {})
        dead = (trial.state == TrialState.RUNNING and worker.get("host") == socket.gethostname()
                and not _alive(worker.get("pid")))
        if dead:
            study.tell(trial.number, state=TrialState.FAIL)
        if dead or (trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted")):
            RetryHeartbeatStaleTrialCallback(MAX_RETRIES)(study, study.get_trials(deepcopy=False)[trial.number])
            log(f"trial {trial.number} did not finish; it continues from its saved state")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------- one trial
class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a trial: its state is saved; the next start continues it."""


@dataclass
class Tuning:
    """A worker's settled job: everything a trial needs besides what it draws."""

    args: argparse.Namespace
    chosen: ChosenRecipe
    fixed: dict[str, Any]
    space: Space
    study_name: str
    runs: Path  # the trials' run directories
    metric: str
    log: Callable[[str], None]
    evaluators: dict[tuple, Any] = field(default_factory=dict)

    def config(self, drawn: dict[str, Any], run: str) -> TrainConfig:
        """The run of a trial that drew `drawn` (recipe settings and size)."""
        return TrainConfig(arch=self.chosen.arch, name=validate_name(f"{self.study_name}-{run}"[:64]),
                           epochs=MAX_EPOCHS, minutes=self.args.minutes_per_trial, eval_samples=self.args.eval_samples,
                           class_samples=0, encoder_steps=0, **self.chosen.config_fields(self.args, drawn))

    def __call__(self, trial) -> float:
        import optuna

        from trainer.training.loop import train

        recipe, size = self.space.suggest(trial)
        run = trial.user_attrs.get("run") or f"trial-{trial.number}"  # a retried trial keeps its first run
        trial.set_user_attr("run", run)
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        cfg = self.config({**recipe, **size}, run)
        minutes = self.args.minutes_per_trial
        self.log(f"trial {trial.number}: {_shown({**recipe, **size})}")
        record: dict[str, Any] = {}
        for reading in range(1, self.args.readings + 1):
            budget = replace(cfg, minutes=minutes * reading / self.args.readings)
            result = train(budget, self.runs / run, resume=True, log=lambda m: None, progress=False)
            if result.interrupted:
                trial.set_user_attr("interrupted", True)
                raise Interrupted(trial.number)
            record = self.measure(result)
            value = record.get(self.metric, math.nan)
            record |= {"minutes": round(result.seconds / 60, 2), "steps": len(result.history)}
            trial.set_user_attr(f"reading {reading}", record)
            if not math.isfinite(value):
                trial.set_user_attr("diverged", True)
                raise optuna.TrialPruned(f"diverged at reading {reading}")
            trial.report(value, reading)
            if reading < self.args.readings and trial.should_prune():
                raise optuna.TrialPruned(f"{self.metric} {value:.1f} at reading {reading}/{self.args.readings}")
        return record[self.metric]

    def measure(self, result) -> dict[str, Any]:
        """The metrics of the generator the run would publish now."""
        import torch

        from trainer.evaluation.evaluator import Evaluator

        cfg = result.config
        key = (cfg.dataset, cfg.data_dir, cfg.channels, cfg.image_size, result.device)
        if key not in self.evaluators:
            self.evaluators[key] = Evaluator(result.device, cfg.data_dir, cfg.dataset,
                                             (cfg.channels, cfg.image_size, cfg.image_size), log=lambda m: None)
        generator = copy.deepcopy(result.generator).eval()
        with torch.random.fork_rng(devices=[]):
            measured = self.evaluators[key].measure(generator, run_architecture(cfg).layout, self.args.eval_samples,
                                                    precision=cfg.precision)
        return {k: measured[k] for k in ("fid", "precision", "recall", "class_entropy", "swd") if k in measured}


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def report_finished(tuning: Tuning) -> Callable:
    """A line as each trial ends: its outcome and the best so far."""
    from optuna.trial import TrialState

    def callback(study, trial) -> None:
        last = max((int(k.split()[-1]) for k in trial.user_attrs if k.startswith("reading ")), default=0)
        reading = trial.user_attrs.get(f"reading {last}", {})
        shown = f"{tuning.metric.upper()} {reading[tuning.metric]:.1f}" if tuning.metric in reading else "no reading"
        outcome = {TrialState.COMPLETE: "complete", TrialState.PRUNED: f"pruned after reading {last}"}.get(
            trial.state, trial.state.name.lower())
        best = _best(study)
        tuning.log(f"trial {trial.number} {outcome}: {shown}, {reading.get('minutes', 0):.1f} min"
                   + (f" | best: trial {best.number}, {tuning.metric.upper()} {best.value:.1f}" if best else ""))
    return callback


def _best(study):
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None


# ---------------------------------------------------------------------- the command
@command(PROG)
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.trials is None and args.hours is None:
        parser.error("say how long to search: --trials N, or --hours H, or both")
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the retry callback's
    chosen = settings.resolve_recipe(args.recipe, args.arch)
    fixed = settings.given(args)
    arch = get_architecture(args.arch).at(args.channels, args.image_size)  # refused now if the shape is wrong
    space = Space.of(args.arch, args.search, fixed)
    metric = "fid" if args.dataset == "fashion-mnist" else "swd"
    study_name = args.study or "-".join([args.arch, args.dataset, str(arch.image_size),
                                         *(["conditional"] if args.conditional else [])])
    tune_dir = Path(args.out) / TUNE_DIR
    storage = open_storage(args.storage or str(tune_dir / f"{study_name}.journal"))
    pruner = {"halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
              "median": optuna.pruners.MedianPruner(n_startup_trials=2), "none": optuna.pruners.NopPruner()}[args.pruner]
    sampler = optuna.samplers.TPESampler(seed=args.seed, multivariate=True, constant_liar=True)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="minimize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    _check_same_question(study, {"arch": args.arch, "dataset": args.dataset, "image_size": arch.image_size,
                                 "conditional": args.conditional, "minutes_per_trial": args.minutes_per_trial,
                                 "metric": metric, "readings": args.readings})
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(space.starting_point(chosen, args.conditional), user_attrs={"base": chosen.name},
                            skip_if_exists=True)  # (a second worker starting at the same moment)
    retry_abandoned(study, log)

    tuning = Tuning(args, chosen, fixed, space, study_name, tune_dir / study_name, metric, log)
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    log(f"study {study_name} ({args.arch}, {metric.upper()} after {args.minutes_per_trial:g} minutes of training, "
        f"{args.readings} readings): {finished} trial{'' if finished == 1 else 's'} finished so far; searching "
        f"{', '.join([*space.recipe, *space.size])}")
    callbacks = [report_finished(tuning)]
    if args.trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(args.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    interrupted = False
    try:
        if args.trials is None or finished < args.trials:
            study.optimize(tuning, n_trials=None if args.trials is None else args.trials - finished,
                           timeout=args.hours * 3600 if args.hours else None, callbacks=callbacks,
                           catch=(ConfigError,))
    except Interrupted as e:
        interrupted = True
        log(f"interrupted in trial {e}; its state is saved: run the same command to continue the study")
    best = _best(study)
    if best is None:
        log("no trial has completed yet: no recipe file written")
        return EXIT_INTERRUPTED if interrupted else 0
    path = write_best(study, best, tuning, Path(args.recipe_out or f"{study_name}.json"))
    log(f"best: trial {best.number}, {metric.upper()} {best.value:.1f} ({_shown(best.params)})")
    print(path)
    log(f"train from it: python -m trainer --recipe {path} --minutes {args.minutes_per_trial:g}")
    return EXIT_INTERRUPTED if interrupted else 0


def _check_same_question(study, question: dict[str, Any]) -> None:
    """A study answers one question: refuse to mix trials of another architecture, data or budget into it."""
    asked = study.user_attrs.get("question")
    if asked is None:
        study.set_user_attr("question", question)
        return
    differs = {k: (asked.get(k), v) for k, v in question.items() if asked.get(k) != v}
    if differs:
        raise TuneError(f"study {study.study_name} was run with "
                        + ", ".join(f"{k} {a}" for k, (a, _) in differs.items())
                        + f", not {', '.join(f'{v}' for _, v in differs.values())}: give the same, or a new --study")


def write_best(study, best, tuning: Tuning, path: Path) -> Path:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    recipe = RecipeFile(
        name=path.stem, arch=tuning.chosen.arch, base=tuning.chosen.preset,
        settings={**tuning.chosen.settings, **{k: v for k, v in tuning.fixed.items() if k not in settings.SIZE_SETTINGS},
                  **{k: v for k, v in best.params.items() if k in tuning.space.recipe}},
        size={**tuning.chosen.size, **{k: v for k, v in tuning.fixed.items() if k in settings.SIZE_SETTINGS},
              **{k: v for k, v in best.params.items() if k in tuning.space.size}},
        tuned={"study": study.study_name, "trial": best.number, tuning.metric: round(best.value, 3),
               "minutes_per_trial": tuning.args.minutes_per_trial, "dataset": tuning.args.dataset,
               "trials_complete": states.count(TrialState.COMPLETE), "trials_pruned": states.count(TrialState.PRUNED),
               "date": date.today().isoformat()})
    return recipe.write(path)


if __name__ == "__main__":
    sys.exit(main())
