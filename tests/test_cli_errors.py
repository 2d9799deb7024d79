"""One error convention for every command: a user's mistake is one line and exit 2; a bug keeps its traceback."""
from __future__ import annotations

import pytest

import service.__main__ as service_main
import shared.__main__ as shared_main
import trainer.classifier as classifier
import trainer.cli as trainer_cli
import trainer.evaluate as evaluate
from shared.errors import UserError, command
from shared.store import Store
from tests.conftest import assert_user_error, run_cli, run_main


def test_the_helper_maps_user_errors_and_lets_bugs_through(capsys):
    @command("prog")
    def fails(error):
        raise error

    class Custom(UserError):
        exit_code = 7

    assert fails(UserError("use --flag")) == 2
    assert capsys.readouterr().err == "prog: error: use --flag\n"
    assert fails(Custom("x")) == 7
    with pytest.raises(ValueError):  # not a UserError: a bug, with its traceback
        fails(ValueError("bug"))


@pytest.mark.parametrize("main,args,needle", [
    (trainer_cli.main, ("--arch", "gan", "--epochs", "1", "--device", "cuda:7"), "no CUDA GPU"),
    (trainer_cli.main, ("--arch", "gan", "--epochs", "1", "--name", "Bad Name"), "invalid model name"),
    (trainer_cli.main, ("--arch", "gan", "--epochs", "1", "--eval-samples", "2"), "at least 4"),
    (evaluate.main, ("--model", "gan", "--store", "/nonexistent"), "no model named"),
    (classifier.main, ("--data-dir", "{garbage}"), "garbage"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, main, args, needle, capsys):
    garbage = tmp_path / "garbage"  # IDX files that are not
    garbage.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (garbage / name).write_bytes(b"not gzip")
    result = run_main(main, *(a.format(garbage=garbage) for a in args), capsys=capsys)
    assert_user_error(result)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and needle in errors[0]


def test_service_and_shared_follow_it_too(tmp_path):
    for env, needles in [({"MAX_IMAGES": "0", "PORT": "0"}, ("MAX_IMAGES", "PORT")), ({"DEVICE": "cuda:9"}, ("CUDA",))]:
        bad = run_cli("service", env={"MODEL_DIR": str(tmp_path), **env}, timeout=60)
        assert_user_error(bad, *needles, one_line=True)
        assert bad.stderr.startswith("service: error: ")
    empty = run_cli("shared", str(tmp_path))
    assert empty.returncode == 1 and "no complete model version" in empty.stderr
    assert run_cli("shared", "--help").returncode == 0


@pytest.mark.parametrize("main,argv", [
    (trainer_cli.main, ["--arch", "gan", "--epochs", "1"]),
    (evaluate.main, ["--model", "gan"]),
    (classifier.main, []),
    (shared_main.main, []),
])
def test_a_bug_inside_a_command_keeps_its_traceback(monkeypatch, tmp_path, main, argv):
    def bug(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.chdir(tmp_path)
    for module, name in [(trainer_cli, "train"), (evaluate, "check_evaluable"), (evaluate, "Store"),
                         (classifier, "load_classifier"), (shared_main, "Store")]:
        monkeypatch.setattr(module, name, bug)
    with pytest.raises(ValueError, match="a bug"):
        main(argv)


def test_service_main_lets_a_bug_through(monkeypatch):
    monkeypatch.setattr(service_main, "create_app", lambda settings: 1 / 0)
    monkeypatch.setenv("DEVICE", "cpu")
    with pytest.raises(ZeroDivisionError):
        service_main.main([])


def test_a_failed_export_check_is_one_line_and_publishes_nothing(tmp_path, fashion_dir, monkeypatch, capsys):
    import trainer.publishing.export

    monkeypatch.setattr(trainer.publishing.export, "TOLERANCE", -1.0)  # every export now "differs" from its eager model
    code = trainer_cli.main(["--arch", "gan", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--device", "cpu",
                             "--out", str(tmp_path), "--data-dir", str(fashion_dir), "--no-progress", "--no-evaluate"])
    err = capsys.readouterr().err
    assert code == 2 and "TorchScript export of" in err and "Traceback" not in err
    assert [line for line in err.splitlines() if "error" in line][0].startswith("python -m trainer: error:")
    assert Store(tmp_path).versions("gan") == [] and Store(tmp_path).high_water("gan") == 0
    assert [p.name for p in (tmp_path / "gan").iterdir()] == [".lock"]  # no staging left
