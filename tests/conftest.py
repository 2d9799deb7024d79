import gzip
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
# Under pytest-xdist each worker gets one core's worth of threads (the suite's processes and their children too):
# two workers with a thread pool each the size of the machine would make every torch operation wait on the other's.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # an idle OpenMP thread sleeps instead of spinning on a core
# The service's defaults, auto, pick the runtime and precision by timing its warm-up: a choice that may differ from
# run to run on a busy machine. Tests that compare served pixels with the trainer's rely on TorchScript fp32's exact
# contract, so every service a test starts (in this process or a child) runs that unless it asks otherwise;
# tests/test_precision.py and tests/test_runtimes.py cover the choices.
os.environ["PRECISION"] = "fp32"
os.environ["RUNTIME"] = "torchscript"
FASHION_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write `array` (uint8) as an IDX file, gzip-compressed when the name ends in .gz."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_idx_dataset(directory: Path, n: int = 64, size: int = 28, seed: int = 0) -> Path:
    """A tiny FashionMNIST-shaped dataset: the four IDX .gz files, random pixels."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, size, size), dtype=np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,), dtype=np.uint8))
    return directory


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"FashionMNIST is needed at {FASHION_DIR}: apt-get install dataset-fashion-mnist "
                    "(make test does it where it can)")
    return FASHION_DIR


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repository root, capturing text output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_main(main: Callable[[list[str]], int], *argv: str, capsys) -> subprocess.CompletedProcess:
    """Run a command's `main(argv)` in this process, as `python -m` runs it (argparse's SystemExit gives the exit
    code), its output captured: a user-error check without a new interpreter's two seconds of imports. Each command's
    `python -m` wiring is checked by a test of its own."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["main", *argv], code, out.out, out.err)


def assert_user_error(result: subprocess.CompletedProcess, *needles: str, one_line: bool = False) -> None:
    """The project's convention for a user's mistake: exit 2, the message on stderr, no traceback; with
    `one_line`, stderr is that one line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    if one_line:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def train_and_publish(root: Path, cfg, encoder: bool = False, run_dir: Path | None = None, resume: bool = False,
                      log=lambda message: None) -> int:
    """Train `cfg` with the real trainer code, quietly on the CPU (with `resume`, continuing the run in `run_dir`:
    a finished one is only read back), and publish it to the store `root` (with an encoder of `cfg.encoder_steps`
    steps when asked; what publishing says goes to `log`); the new version's number."""
    import torch

    from shared.store import Store
    from trainer.publishing.encoder import fit_encoder
    from trainer.publishing.publish import publish_run
    from trainer.training.architectures import run_architecture
    from trainer.training.loop import train

    run_dir = run_dir or root / ".runs" / cfg.name
    result = train(cfg, run_dir, resume=resume, log=lambda m: None, progress=False)
    fitted = None
    if encoder:
        fitted = fit_encoder(result.generator, result.config, run_dir, run_architecture(result.config),
                             torch.device("cpu"), log=lambda m: None, progress=False)
    return publish_run(Store(root), result, command=["test"], encoder=fitted, log=log).version


_RUN: dict[str, pytest.TempPathFactory] = {}


@pytest.fixture(scope="session", autouse=True)
def _this_run(tmp_path_factory):
    """Where `built_once` keeps what it builds: this run's temporary folder."""
    _RUN["factory"] = tmp_path_factory


# What built_once did during the test phase now running: the seconds spent in it (building, or waiting for another
# worker's build) and what this process built, by name. Not the test's own time: the budget counts each build apart.
_shared_work: dict = {"seconds": 0.0, "built": {}}


def built_once(name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, made by `build(folder)` once per test run and shared by every test (and every pytest-xdist
    worker) that asks for it: the first to ask builds it under a lock, the others wait for it. Read-only to its users:
    a test that changes a store copies it first (tests.service_helpers.copy_store). LATENTLAB_BUILT_ONCE names a
    folder to keep them in instead, so that several pytest runs of one tree share them (`make test`'s parallel part
    and its serial part)."""
    base = _RUN["factory"].getbasetemp()
    shared = Path(os.environ.get("LATENTLAB_BUILT_ONCE") or
                  (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once")
    shared.mkdir(parents=True, exist_ok=True)
    folder, done = shared / name, shared / f"{name}.done"
    asked = time.perf_counter()
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker killed while building it left
            folder.mkdir()
            started = time.perf_counter()
            build(folder)
            done.touch()
            _shared_work["built"][name] = time.perf_counter() - started
    _shared_work["seconds"] += time.perf_counter() - asked
    return folder


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory, fashion_dir):
    """A store holding gan v1 and dcgan v1, each trained one short epoch by the real trainer code."""
    from trainer.training.config import TrainConfig

    def build(root: Path) -> None:
        for arch in ("gan", "dcgan"):
            train_and_publish(root, TrainConfig(arch=arch, epochs=1, limit=256, batch_size=64,
                                                data_dir=str(fashion_dir), device="cpu", class_samples=2000))
    return built_once("trained-store", build)


def pytest_collection_modifyitems(config, items):
    """CUDA-marked tests run where there is a GPU (benchmarks/gpu_check.sh) and are skipped elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def semantic_store(tmp_path_factory, fashion_dir):
    """A store holding gan v1 trained long enough (EMA + spectral norm + R1 at the study's learning rates; 25 epochs
    on 8,192 images, about 15 s) that its samples cover every FashionMNIST class, with what its latent space means
    (classes.json) and an encoder (200 steps)."""
    from trainer.training.config import TrainConfig
    from trainer.training.loop import train
    from trainer.training.settings import recipe_settings

    cfg = TrainConfig(arch="gan", epochs=25, limit=8192, data_dir=str(fashion_dir), device="cpu", class_samples=5000,
                      encoder_steps=200, **recipe_settings("stable", "gan", lr_g=2e-4, lr_d=2e-4))
    # two builds, each within the per-test ceiling on its own: the training run, then its version published
    trained = built_once("semantic-run", lambda run_dir: train(cfg, run_dir, log=lambda m: None, progress=False))

    def publish(root: Path) -> None:
        run_dir = root / ".runs" / cfg.name
        shutil.copytree(trained, run_dir)
        train_and_publish(root, cfg, encoder=True, run_dir=run_dir, resume=True)
    return built_once("semantic-store", publish)


@pytest.fixture(scope="session")
def conditional_store(tmp_path_factory, fashion_dir):
    """A store of class-conditional models: gan v1 trained long enough to draw the class it is given (the stable
    recipe, 20 epochs on 8,192 images, about 20 s), with classes.json, the classifier and an encoder; and dcgan v1,
    one short epoch (the architecture's shapes and routes)."""
    from trainer.training.config import TrainConfig
    from trainer.training.settings import recipe_settings

    gan = built_once("conditional-gan", lambda root: train_and_publish(root, TrainConfig(
        arch="gan", epochs=20, limit=8192, data_dir=str(fashion_dir), device="cpu", conditional=True,
        class_samples=2000, encoder_steps=50, **recipe_settings("stable", "gan")), encoder=True))
    dcgan = built_once("conditional-dcgan", lambda root: train_and_publish(root, TrainConfig(
        arch="dcgan", epochs=1, limit=256, batch_size=64, data_dir=str(fashion_dir), device="cpu", conditional=True,
        class_samples=1000)))

    def together(root: Path) -> None:  # two builds, each within the per-test ceiling on its own
        for built, name in ((gan, "gan"), (dcgan, "dcgan")):
            shutil.copytree(built / name, root / name)
    return built_once("conditional-store", together)


@pytest.fixture(scope="module")
def client(request):
    """A ready in-process service for a module's tests: on the store fixture the module names in `SERVED_STORE`
    (default `trained_store`), with the settings in `SERVICE_SETTINGS` (default none)."""
    from tests.service_helpers import make_client, wait_ready

    store = request.getfixturevalue(getattr(request.module, "SERVED_STORE", "trained_store"))
    with make_client(store, **getattr(request.module, "SERVICE_SETTINGS", {})) as c:
        wait_ready(c)
        yield c


# ---------------------------------------------------------------------- the suite's time budget
CEILING_S = 45.0  # what one test may take, its setup and teardown included, in a full parallel run on 2 cores
# of a machine as fast as the one the ceiling was set on (a Zen 4 core), where SPEED_PROBE_S is what the probe
# below takes; on a slower machine the ceiling grows by as much (never shrinks), so that the budget catches a test
# that grew, not a machine that is slower
SPEED_PROBE_S = 0.20


def speed_probe() -> float:
    """Seconds one thread takes for a fixed piece of the suite's typical work (convolutions, forward and backward);
    the fastest of five tries."""
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(32, 64, 16, 16, generator=g, requires_grad=True)
        w = torch.randn(64, 64, 3, 3, generator=g, requires_grad=True)
        tries = []
        for _ in range(6):
            start = time.perf_counter()
            for _ in range(10):
                torch.nn.functional.conv2d(x, w, padding=1).square().mean().backward()
            tries.append(time.perf_counter() - start)
        return min(tries[1:])  # the first warms up
    finally:
        torch.set_num_threads(threads)


def pytest_addoption(parser):
    parser.addoption("--ceiling", type=float, default=CEILING_S, metavar="SECONDS",
                     help=f"fail the run if a test takes longer than this, setup and teardown included (default "
                          f"{CEILING_S:g}, times how much slower than the reference this machine's cores are; 0: no "
                          "ceiling)")


@dataclass(frozen=True)
class Budget:
    """The run's per-test ceiling in seconds (0: none), and how much slower than the reference this machine's
    cores are (at least 1), the factor the ceiling was scaled by."""

    ceiling: float
    slower: float

    def over(self, seconds: float) -> bool:
        return bool(self.ceiling) and seconds > self.ceiling


BUDGET = pytest.StashKey[Budget]()


def budget_of(config) -> Budget:
    """--ceiling scaled to this machine, probed once, when the run ends (the probe then competes with no test)."""
    if BUDGET not in config.stash:
        given = config.getoption("ceiling")
        slower = max(1.0, speed_probe() / SPEED_PROBE_S) if given else 1.0
        config.stash[BUDGET] = Budget(given * slower, slower)
    return config.stash[BUDGET]


_seconds: dict[str, float] = {}  # by test id, and by "built once: NAME" for each shared build
BUILT_ONCE = "built once: "


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report carries what built_once did in it (in user_properties, which pytest-xdist sends on)."""
    outcome = yield
    report = outcome.get_result()
    report.user_properties.append(("built_once_s", _shared_work["seconds"]))
    report.user_properties.extend((BUILT_ONCE + name, seconds) for name, seconds in _shared_work["built"].items())
    _shared_work["seconds"], _shared_work["built"] = 0.0, {}


def pytest_runtest_logreport(report):
    """A test's time, less what it spent on shared builds; each build as an entry of its own."""
    shared = dict(report.user_properties)
    own = report.duration - shared.pop("built_once_s", 0.0)
    _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + max(0.0, own)
    for name, seconds in shared.items():
        if name.startswith(BUILT_ONCE):
            _seconds[name] = seconds


def pytest_terminal_summary(terminalreporter, config):
    if os.environ.get("PYTEST_XDIST_WORKER") or not _seconds:
        return
    budget = budget_of(config)
    slowest = sorted(_seconds.items(), key=lambda item: -item[1])[:15]
    scaled = (f"; this machine's cores are {budget.slower:.2f}x slower than the reference"
              if round(budget.slower, 2) > 1 else "")
    terminalreporter.section(f"slowest tests (setup + call + teardown, shared builds apart; ceiling "
                             f"{budget.ceiling:.0f} s{scaled})")
    for nodeid, seconds in slowest:
        over = "  OVER THE CEILING" if budget.over(seconds) else ""
        terminalreporter.write_line(f"{seconds:7.1f}s {nodeid}{over}")


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("PYTEST_XDIST_WORKER") or not _seconds:
        return
    if exitstatus == pytest.ExitCode.OK and any(budget_of(session.config).over(s) for s in _seconds.values()):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a test over the ceiling fails the run (listed above)
