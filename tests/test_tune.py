"""`python -m trainer.tune`: a study of tiny trials prunes the poor ones and writes its best trial as a recipe file
that `python -m trainer --recipe FILE` trains from (and records); a study run again continues where it stopped, a
killed worker's trial included; two workers on a real PostgreSQL share one study."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from shared.store import Store
from tests.conftest import ROOT, assert_user_error, run_cli

pytestmark = pytest.mark.slow

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def tiny(tmp_path: Path, fashion_dir: Path, *extra: str, minutes: float = 0.05) -> list[str]:
    """A search of trials that each train an 8-wide r3gan on 256 images for 3 seconds, read twice."""
    return ["trainer.tune", "--arch", "r3gan", "--minutes-per-trial", str(minutes), "--readings", "2",
            "--eval-samples", "300", "--limit", "256", "--features", "8", "--groups", "4", "--data-dir",
            str(fashion_dir), "--out", str(tmp_path / "store"), "--device", "cpu", "--search", "lr_g,lr_d,batch_size",
            "--recipe-out", str(tmp_path / "best.json"), *extra]


def trials(storage, study: str = "r3gan-fashion-mnist-32") -> list[optuna.trial.FrozenTrial]:
    if isinstance(storage, Path):
        storage = JournalStorage(JournalFileBackend(str(storage)))
    return optuna.load_study(study_name=study, storage=storage).get_trials()


@pytest.fixture(scope="module")
def study(tmp_path_factory, fashion_dir):
    """A study of three tiny trials: the preset (enqueued first, as a new study is), a trial that diverges (a learning
    rate of 1, far above the search's range: its weights blow up in a step or two, whatever else runs on the machine;
    a trial that cannot learn would not do, since a few seconds of training leave an R3GAN no better than it starts),
    then one the sampler draws. Its folder, the command's output and the trials."""
    root = tmp_path_factory.mktemp("study")
    journal = root / "store" / ".tune" / "r3gan-fashion-mnist-32.journal"
    journal.parent.mkdir(parents=True)
    planned = optuna.create_study(study_name="r3gan-fashion-mnist-32",
                                  storage=JournalStorage(JournalFileBackend(str(journal))))
    planned.enqueue_trial({"lr_g": 2e-4, "lr_d": 2e-4, "batch_size": 64})
    planned.enqueue_trial({"lr_g": 1.0, "lr_d": 1.0, "batch_size": 64})
    result = run_cli(*tiny(root, fashion_dir, "--trials", "3"), timeout=600)
    assert result.returncode == 0, result.stderr
    return root, result, trials(journal)


def test_a_trial_that_trails_at_a_reading_is_pruned_there(study):
    _, result, done = study
    assert [t.state for t in done[:2]] == [TrialState.COMPLETE, TrialState.PRUNED]  # successive halving at work
    assert list(done[1].intermediate_values) == [1] and done[1].intermediate_values[1] > done[0].intermediate_values[1]
    assert "trial 0 complete" in result.stderr and "trial 1 pruned after reading 1" in result.stderr
    assert len(done) == 3 and "best: trial" in result.stderr


def test_the_best_trial_is_a_recipe_file_that_trains_and_is_recorded(study, fashion_dir):
    root, _, done = study
    best = min((t for t in done if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    recipe = json.loads((root / "best.json").read_text())
    assert recipe["arch"] == "r3gan" and recipe["base"] == "stable"
    assert {k: recipe["settings"][k] for k in best.params} == best.params
    assert recipe["size"] == {"features": 8, "groups": 4} and recipe["tuned"]["trial"] == best.number

    trained = run_cli("trainer", "--recipe", str(root / "best.json"), "--epochs", "1", "--limit", "64",
                      "--data-dir", str(fashion_dir), "--out", str(root / "models"), "--no-evaluate",
                      "--no-classes", "--no-encoder", "--no-progress", timeout=300)
    assert trained.returncode == 0, trained.stderr
    manifest = Store(root / "models").get("r3gan").manifest
    assert manifest.recipe["name"] == "best" and manifest.recipe["source"]["trial"] == best.number
    assert manifest.recipe["lr_g"] == best.params["lr_g"] and manifest.config["features"] == 8

    wrong = run_cli("trainer", "--recipe", str(root / "best.json"), "--arch", "dcgan", "--epochs", "1")
    assert_user_error(wrong, "is for r3gan, not --arch dcgan")


def test_a_study_run_again_continues_and_a_killed_trial_resumes_from_its_state(tmp_path, fashion_dir):
    journal = tmp_path / "store" / ".tune" / "r3gan-fashion-mnist-32.journal"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen([sys.executable, "-m", *tiny(tmp_path, fashion_dir, "--trials", "2")], cwd=ROOT,
                              env=env, stderr=subprocess.DEVNULL)
    state = tmp_path / "store" / ".tune" / "r3gan-fashion-mnist-32" / "trial-1" / "state.pt"
    deadline = time.monotonic() + 180
    while not state.exists() and time.monotonic() < deadline:  # trial 0 done, trial 1's first epoch saved
        time.sleep(0.1)
    assert state.exists(), "the second trial saved no state"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert [t.state for t in trials(journal)] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert trials(journal)[0].params == {"lr_g": 2e-4, "lr_d": 2e-4, "batch_size": 64}  # a new study: the preset

    again = run_cli(*tiny(tmp_path, fashion_dir, "--trials", "2"), timeout=600)
    assert again.returncode == 0, again.stderr
    assert "1 trial finished so far" in again.stderr  # trial 0 is kept, not run again
    assert "trial 1 did not finish; it continues from its saved state" in again.stderr
    done = trials(journal)
    assert [t.state for t in done[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert done[2].state in (TrialState.COMPLETE, TrialState.PRUNED)  # finished, as its readings earned
    assert done[2].user_attrs["run"] == "trial-1" and done[2].params == done[1].params  # the retry, on trial 1's run


def test_a_study_refuses_another_question(tmp_path, fashion_dir):
    journal = tmp_path / "study.journal"
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(journal))))
    study.set_user_attr("question", {"arch": "r3gan", "dataset": "fashion-mnist", "image_size": 32,
                                     "conditional": False, "minutes_per_trial": 9.0, "metric": "fid", "readings": 2})
    result = run_cli(*tiny(tmp_path, fashion_dir, "--trials", "1", "--study", "s", "--storage", str(journal)))
    assert_user_error(result, "study s was run with minutes_per_trial 9.0", "give the same, or a new --study")


# ---------------------------------------------------------------------- two workers, one PostgreSQL
@pytest.fixture
def postgres():
    """A PostgreSQL server of Debian's package in a temporary directory, on a free port; its URL."""
    if not (POSTGRES_BIN / "initdb").exists():
        pytest.fail("PostgreSQL is needed: apt-get install postgresql (.ci/run does)")
    # not under pytest's temporary folder: as root it is private to root, and PostgreSQL refuses to run as root
    home = Path(tempfile.mkdtemp(prefix="latentlab-postgres-"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = home / "data"
    subprocess.run([*as_user, str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "tune", "--auth", "trust"],
                   check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([*as_user, str(POSTGRES_BIN / "postgres"), "-D", str(data), "-p", str(port),
                               "-k", str(home), "-h", "127.0.0.1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline and server.poll() is None, "PostgreSQL did not start"
            time.sleep(0.2)
        subprocess.run([str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tune", "studies"],
                       check=True, capture_output=True)
        yield f"postgresql://tune@127.0.0.1:{port}/studies"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.serial  # a server and two workers: beside another test's training it takes twice as long
def test_two_workers_share_one_study_on_postgresql(tmp_path, fashion_dir, postgres):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # until the study has two finished trials: the two workers start one each at once
    workers = [subprocess.Popen([sys.executable, "-m", *tiny(tmp_path / f"w{i}", fashion_dir, "--trials", "2",
                                                             "--storage", postgres, "--pruner", "none")],
                                cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [w.communicate(timeout=600)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    done = trials(optuna.storages.RDBStorage(postgres))
    finished = [t for t in done if t.state == TrialState.COMPLETE]
    assert len(finished) >= 2 and len({t.number for t in finished}) == len(finished)
    pids = {t.user_attrs["worker"]["pid"] for t in finished}
    assert pids == {w.pid for w in workers}  # both took trials of the one study
    for i in range(2):  # and each wrote the best it knew of when it ended
        assert json.loads((tmp_path / f"w{i}" / "best.json").read_text())["tuned"]["trial"] in {t.number for t in finished}
