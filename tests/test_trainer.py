import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from shared.imaging import torchscript
from shared.store import Store
from tests.conftest import ROOT, assert_user_error, run_cli, run_main
from trainer.cli import main as trainer_main
from trainer.training.config import TrainConfig
from trainer.training.loop import train
from trainer.training.state import STATE_FILE, TrainingState, mark_published, published_version, resume_or_start

REPORT_FILES = {"losses.png", "d_scores.png", "samples.png", "sweep.png", "history.csv"}


@pytest.mark.slow
@pytest.mark.parametrize("arch,size", [("gan", 28), ("dcgan", 32)])
def test_cli_trains_and_publishes_versions(tmp_path, fashion_dir, arch, size):
    out = tmp_path / "models"
    args = ("trainer", "--arch", arch, "--epochs", "1", "--limit", "256", "--batch-size", "64",
            "--out", str(out), "--data-dir", str(fashion_dir), "--class-samples", "2000", "--encoder-steps", "5")
    first = run_cli(*args, "--eval-samples", "300")
    assert first.returncode == 0, first.stderr
    metrics = Store(out).get(arch).manifest.metrics  # evaluated right after publishing, and the table printed
    assert metrics.samples == 300 and metrics.fid > metrics.real_floor["fid"]
    assert f"{metrics.fid:.4f}" in first.stderr and f"{metrics.real_floor['fid']:.4f}" in first.stderr
    assert first.stdout.strip() == str(out / arch / "v1")
    # a second run (without the work after training, which the first checked) is the next version, with its seed
    second = run_cli(*args[:-4], "--seed", "1", "--no-evaluate", "--no-classes", "--no-encoder")
    assert second.returncode == 0 and second.stdout.strip() == str(out / arch / "v2")
    assert Store(out).get(arch).manifest.seed == 1 and "classes.json" not in Store(out).get(arch).manifest.files

    version = Store(out).get(arch, 1)
    m = version.manifest.model_dump(mode="json")
    assert (m["name"], m["version"], m["architecture"], m["latent_dim"]) == (arch, 1, arch, 100)
    assert m["image_shape"] == [1, size, size] and m["epochs"] == 1 and m["batch_size"] == 64 and m["seed"] == 0
    assert m["dataset"] == "fashion-mnist" and m["learning_rate"] == 2e-4 and m["torch_version"] == torch.__version__
    networks = {f"{net}{suffix}" for net in ("generator", "discriminator", "encoder") for suffix in (".pt", ".pt2", ".onnx")}
    assert networks | {"classes.json", "classifier.pt"} | {f"report/{f}" for f in REPORT_FILES} == set(m["files"])
    assert set(m["forms"]) == {"generator", "discriminator", "encoder"}
    assert all(set(diffs) == {"export", "onnx"} and max(diffs.values()) < 1e-5 for diffs in m["forms"].values())
    assert m["encoder"]["steps"] == 5
    assert m["iterations"] == 4
    assert (m["precision"], m["cuda_graphs"], m["world_size"], m["global_batch_size"]) == ("fp32", False, 1, 64)

    G = torchscript.load(version.generator_path)
    D = torchscript.load(version.discriminator_path)
    with torch.no_grad():
        for n in (1, 5):  # traced with a batch of 2: other batch sizes must work too
            images = G(torch.randn(n, 100))
            assert images.shape == (n, 1, size, size) and images.abs().max() <= 1
            assert D(images).shape == (n,)

    for name in REPORT_FILES - {"history.csv"}:
        with Image.open(version.path / "report" / name) as im:
            im.verify()
            assert im.format == "PNG" and im.width > 100
    rows = (version.path / "report" / "history.csv").read_text().splitlines()
    assert rows[0] == "iteration,epoch,loss_D,loss_G,D_x,D_G_z" and len(rows) == 1 + 4


def test_help_is_complete():
    result = run_cli("trainer", "--help")
    assert result.returncode == 0
    for flag in ("--arch", "--epochs", "--out", "--name", "--batch-size", "--lr", "--seed", "--device",
                 "--cuda-graphs", "--precision",
                 "--dataset", "--data-dir", "--limit", "--run-dir", "--resume", "MODEL_DIR", "DATA_DIR"):
        assert flag in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["--arch", "gan", "--epochs", "1", "--name", "../evil"], "invalid model name"),
    (["--arch", "gan", "--epochs", "0"], "positive integer"),
    (["--arch", "vae", "--epochs", "1"], "invalid choice"),
    (["--arch", "gan", "--epochs", "1", "--device", "tpu"], "device must be"),
    (["--arch", "gan", "--epochs", "1", "--lr", "nan"], "positive number"),
    (["--arch", "gan", "--epochs", "1", "--device", "cpu", "--cuda-graphs", "on"], "needs a CUDA device"),
    (["--arch", "gan", "--epochs", "1", "--precision", "fp8"], "invalid choice"),
])
def test_bad_flags_exit_2_without_traceback(tmp_path, args, needle, capsys):
    result = run_main(trainer_main, *args, "--out", str(tmp_path), capsys=capsys)
    assert_user_error(result, needle)
    assert not (tmp_path / "evil").exists()


def _config(fashion_dir, epochs, **kw):
    return TrainConfig(**{"arch": "gan", "epochs": epochs, "limit": 512, "batch_size": 64,
                          "data_dir": str(fashion_dir), "device": "cpu", **kw})


def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path, fashion_dir):
    quiet = dict(log=lambda m: None, progress=False)
    straight = train(_config(fashion_dir, 3), tmp_path / "a", **quiet)
    train(_config(fashion_dir, 1), tmp_path / "b", **quiet)
    resumed = train(_config(fashion_dir, 3), tmp_path / "b", resume=True, **quiet)
    for p, q in zip(straight.generator.state_dict().values(), resumed.generator.state_dict().values()):
        assert torch.equal(p, q)
    assert torch.equal(straight.history, resumed.history) and len(resumed.history) == 3 * 8
    state = TrainingState.load(tmp_path / "b" / STATE_FILE)
    assert state.epoch == 3 and state.step == 0 and set(state.weights) == {"G", "D", "opt_G", "opt_D", "steps", "lecam_anchors"}
    assert state.rng and torch.equal(state.history, resumed.history)


def test_resume_refuses_a_run_of_another_architecture(tmp_path, fashion_dir):
    train(_config(fashion_dir, 1), tmp_path / "run", log=lambda m: None, progress=False)
    with pytest.raises(ValueError, match="holds a gan run"):
        resume_or_start(TrainConfig(arch="dcgan", epochs=1, limit=64, data_dir=str(fashion_dir), device="cpu"),
                        tmp_path / "run", resume=True, log=lambda m: None)


def _start_training(tmp_path, fashion_dir, epochs):
    cmd = [sys.executable, "-m", "trainer", "--arch", "gan", "--epochs", str(epochs), "--limit", "4096",
           "--out", str(tmp_path / "models"), "--data-dir", str(fashion_dir), "--no-progress", "--no-evaluate",
           "--no-encoder", "--no-classes"]
    return cmd, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(state_path, at_least, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_path.exists():
            try:
                if TrainingState.load(state_path).epoch >= at_least:
                    return
            except Exception:  # being replaced right now; os.replace makes that a clean retry
                pass
        time.sleep(0.05)
    raise AssertionError("training made no progress")


@pytest.mark.slow
def test_sigkill_then_resume_finishes_the_run(tmp_path, fashion_dir):
    epochs = 60
    cmd, proc = _start_training(tmp_path, fashion_dir, epochs)
    state_path = tmp_path / "models" / ".runs" / "gan" / STATE_FILE
    _wait_for_epochs(state_path, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = TrainingState.load(state_path).epoch
    assert 2 <= done_before < epochs, "the run finished before it could be killed"
    assert not (tmp_path / "models" / "gan").exists() or Store(tmp_path / "models").versions("gan") == []

    resumed = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    version = Store(tmp_path / "models").get("gan")
    assert version.version == 1 and version.manifest.iterations == epochs * 32
    history = (version.path / "report" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + epochs * 32

    # published runs are not resumed: a new one starts (of one epoch: all it has to show)
    again = subprocess.run([*cmd[:cmd.index("--epochs") + 1], "1", *cmd[cmd.index("--epochs") + 2:], "--resume"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "starting a new run" in again.stderr
    assert Store(tmp_path / "models").get("gan").manifest.iterations == 32


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_cleanly(tmp_path, fashion_dir):
    cmd, proc = _start_training(tmp_path, fashion_dir, 200)
    state_path = tmp_path / "models" / ".runs" / "gan" / STATE_FILE
    _wait_for_epochs(state_path, 1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    state = TrainingState.load(state_path)
    assert state.epoch < 200 and len(state.history) == state.epoch * 32 + state.step


def test_publishing_marks_the_run_without_rewriting_its_state(tmp_path, fashion_dir):
    quiet = dict(log=lambda m: None, progress=False)
    run = tmp_path / "run"
    train(_config(fashion_dir, 1), run, **quiet)
    state_bytes = (run / STATE_FILE).read_bytes()
    mark_published(run, 7)
    assert published_version(run) == 7 and (run / STATE_FILE).read_bytes() == state_bytes
    cfg, saved = resume_or_start(_config(fashion_dir, 1), run, resume=True, log=lambda m: None)
    assert saved is None  # finished and published: --resume starts a new run
    cfg, saved = resume_or_start(_config(fashion_dir, 2), run, resume=True, log=lambda m: None)
    assert saved is not None and saved.epoch == 1 and cfg.epochs == 2  # more epochs asked for: continue it
    train(_config(fashion_dir, 1), run, **quiet)
    assert published_version(run) is None  # a new run in the directory is not published yet


def test_statistics_accumulated_on_the_device_equal_the_per_step_ones(tmp_path, fashion_dir):
    from trainer.training.architectures import get_architecture
    from trainer.training.data import load_training_images
    from trainer.training.interrupt import StopRequested
    from trainer.training.loop import eager_step, run_epoch
    from trainer.training.nets import Nets
    from trainer.training.recipe import build_recipe

    cfg = _config(fashion_dir, 1, batch_size=100)
    arch = get_architecture("gan")
    data = load_training_images("fashion-mnist", str(fashion_dir), 28, limit=512)
    torch.manual_seed(0)
    recipe = build_recipe(cfg)
    nets = Nets.build(arch, recipe, torch.device("cpu"))
    state, seen = TrainingState(cfg), []
    assert run_epoch(eager_step(nets, recipe, data), data, state, 100, StopRequested(),
                     on_step=lambda step, stats: seen.append(stats.tolist()))  # read every step, synchronising
    assert state.history.tolist() == seen and len(seen) == 6  # 512 images: 5 batches of 100 and one of 12


def test_bf16_autocast_trains_and_is_recorded(tmp_path, fashion_dir):
    result = train(_config(fashion_dir, 1, precision="bf16"), tmp_path / "run", log=lambda m: None, progress=False)
    assert torch.isfinite(result.history).all() and len(result.history) == 8
    assert all(p.dtype == torch.float32 for p in result.generator.parameters())  # fp32 master weights
