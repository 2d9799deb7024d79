"""The `latentlab` client and CLI against a real service process: every method, typed errors, retries that
honour Retry-After (a server that sheds, then serves), API keys, the async twin, exit codes."""
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
import pytest
import tomllib
import torch

import latentlab
from latentlab import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    NotFoundError,
    PayloadTooLargeError,
    RetryPolicy,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from shared.imaging.grids import to_uint8
from shared.imaging.latents import STUDY_SWEEP_DIMS, STUDY_SWEEP_VALUES, seeded_latents
from shared.imaging.sampling import generate, sweep_layout
from shared.imaging.torchscript import load
from shared.store import Store
from tests.conftest import ROOT
from tests.service_helpers import service

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
KEY = "client-test-key"


@pytest.fixture(scope="module")
def url(semantic_store):
    with service(semantic_store) as found:
        yield found


@pytest.fixture(scope="module")
def keyed_url(semantic_store):
    with service(semantic_store, API_KEYS=KEY, MAX_BODY_BYTES="4096") as found:
        yield found


@pytest.fixture(scope="module")
def client(url):
    with Client(url) as c:
        yield c


def pixels(store: Path, latents: torch.Tensor) -> np.ndarray:
    """What the store's generator makes of the latents, as the service quantises it: (N, H, W) uint8."""
    generator = load(Store(store).get("gan").generator_path)
    return to_uint8(generate(generator, latents)).numpy()[:, 0]


def test_generate_splits_the_grid_into_the_services_own_pixels(client, semantic_store):
    result = client.generate("gan", seed=3, count=10, nrow=4, padding=3, scale=3)
    assert (result.model, result.version, result.media_type) == ("gan", 1, "image/png")
    assert result.images.shape == (10, 28, 28) and result.images.dtype == np.uint8
    assert np.array_equal(result.images, pixels(semantic_store, seeded_latents(3, 10, 100)))
    assert result.image.size == ((4 * 31 + 3) * 3, (3 * 31 + 3) * 3)
    latents = np.random.default_rng(0).normal(size=(2, 100))
    given = client.generate("gan", latents=latents)
    assert np.array_equal(given.images, pixels(semantic_store, torch.tensor(latents, dtype=torch.float32)))
    assert np.array_equal(client.generate("gan", latent=latents[1]).images[0], given.images[1])


def test_a_labelled_sweep_splits_exactly_too(client, semantic_store):
    result = client.sweep("gan", seed=0, count=4, scale=2)  # the study's coordinates and values, labelled
    layout = sweep_layout(seeded_latents(0, 4, 100), STUDY_SWEEP_DIMS, STUDY_SWEEP_VALUES, "set", False)
    assert result.images.shape == (len(STUDY_SWEEP_DIMS) * len(STUDY_SWEEP_VALUES) * 4, 28, 28)
    assert np.array_equal(result.images, pixels(semantic_store, layout.latents))


def test_every_other_method(client, semantic_store, tmp_path):
    assert [m["name"] for m in client.models()] == ["gan"] and client.model("gan")["latest"] == 1
    assert client.health()["status"] == "ready"
    assert np.array_equal(client.latents(3, 2), seeded_latents(3, 3, 100)[2].numpy())

    history = client.history("gan", every=10)
    assert history.iterations_per_epoch == 8192 // 128 and len(history.steps["loss_D"]) == 25 * 64 // 10
    assert history.steps["iteration"][0] == 10

    directions = client.directions("gan", k=3)
    assert directions.vectors.shape == (3, 100) and np.allclose(np.linalg.norm(directions.vectors, axis=1), 1, atol=1e-5)
    assert client.sweep("gan", directions=[0, 1], values=[-3, 3], count=2).images.shape == (2 * 2 * 2, 28, 28)

    classes = client.classes("gan")
    assert len(classes["classes"]) == 10 and classes["classes"][1]["name"] == "Trouser"
    trousers = client.generate("gan", class_="Trouser", seed=1, count=4)
    found = client.class_latents("gan", "Trouser", seed=1, count=4)
    assert found.latents.shape == (4, 100) and trousers.headers["x-class"] == "Trouser"
    assert np.array_equal(client.generate("gan", latents=found.latents).images, trousers.images)

    path = client.interpolate("gan", (0, 0), (0, 1), steps=5)
    assert np.array_equal(path.images[[0, -1]], client.generate("gan", seed=0, count=2).images)
    animation = client.interpolate("gan", (0, 0), client.latents(0, 1), steps=6, format="gif", scale=2)
    assert animation.media_type == "image/gif" and animation.images.shape == (6, 28, 28)
    animation.save(tmp_path / "path.gif")
    assert (tmp_path / "path.gif").read_bytes()[:6] == b"GIF89a"

    picture = trousers.images[0]
    scores = client.score("gan", [picture, trousers.image])
    assert [s["filename"] for s in scores["scores"]] == ["image-0.png", "image-1.png"]
    projection = client.project("gan", picture, steps=20)
    assert projection.latent.shape == (100,) and projection.start == "encoder" and projection.steps == 20
    assert projection.losses["final"]["total"] <= projection.losses["start"]["total"]
    side_by_side = client.project_image("gan", picture, steps=20)
    assert side_by_side.images.shape == (2, 28, 28) and np.array_equal(side_by_side.images[0], picture)
    assert np.array_equal(side_by_side.images[1], client.generate("gan", latent=projection.latent).images[0])


def test_each_refusal_raises_its_own_error_with_the_servers_detail(client, keyed_url):
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        client.generate("nope", seed=0)
    with pytest.raises(NotFoundError, match="model 'gan' has no version 9; it has 1"):  # what the store lacks: a 404
        client.history("gan", version=9)
    with pytest.raises(UnprocessableEntityError) as e:
        client.generate("gan", seed=-1)
    assert e.value.status_code == 422 and e.value.errors[0]["loc"][:2] == ["body", "seed"]
    assert e.value.message.startswith("seed: ")
    with pytest.raises(UnprocessableEntityError) as e:
        client.generate("gan", latent=[0.5] * 7)
    assert e.value.errors[0]["type"] == "model_mismatch" and "100" in e.value.errors[0]["msg"]
    with pytest.raises(AuthenticationError):
        Client(keyed_url).models()
    with pytest.raises(PayloadTooLargeError):
        Client(keyed_url, api_key=KEY).generate("gan", latents=np.zeros((40, 100)))


def test_api_key_from_the_argument_or_the_environment(keyed_url, monkeypatch):
    assert Client(keyed_url, api_key=KEY).generate("gan", seed=0, count=1).images.shape == (1, 28, 28)
    monkeypatch.setenv("LATENTLAB_API_KEY", KEY)
    monkeypatch.setenv("LATENTLAB_URL", keyed_url)
    assert Client().url == keyed_url and Client().models()[0]["name"] == "gan"


class Shedder:
    """A server in front of the real service: answers 503 + Retry-After to the first `shed` requests, then
    passes requests on. Records when each arrived."""

    def __init__(self, upstream: str, shed: int, retry_after: str | None = "1", status: int = 503):
        self.upstream, self.shed, self.retry_after, self.status = upstream, shed, retry_after, status
        self.arrivals: list[float] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                owner.arrivals.append(time.monotonic())
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if len(owner.arrivals) <= owner.shed:
                    self.send_response(owner.status)
                    if owner.retry_after is not None:
                        self.send_header("Retry-After", owner.retry_after)
                    data = json.dumps({"detail": "busy: try again"}).encode()
                    self.send_header("Content-Type", "application/json")
                else:
                    answer = httpx.post(owner.upstream + self.path, content=body,
                                        headers={"Content-Type": "application/json"}, timeout=30)
                    self.send_response(answer.status_code)
                    for name in ("content-type", "x-model", "x-model-version", "x-image-count", "x-grid"):
                        self.send_header(name, answer.headers[name])
                    data = answer.content
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_retries_honour_retry_after_then_succeed(client, url):
    with Shedder(url, shed=2, retry_after="1") as shedder:
        result = Client(shedder.url).generate("gan", seed=5, count=3)
    assert len(shedder.arrivals) == 3
    gaps = np.diff(shedder.arrivals)
    assert (gaps >= 1.0).all() and (gaps < 1.1 + 0.5).all()  # Retry-After plus at most 10%, and some latency
    assert np.array_equal(result.images, client.generate("gan", seed=5, count=3).images)


def test_retries_are_bounded_in_attempts_and_in_time(url):
    with Shedder(url, shed=100, retry_after="0.05") as shedder:
        with pytest.raises(ServiceUnavailableError) as e:
            Client(shedder.url, retry=RetryPolicy(attempts=3)).generate("gan", seed=0)
    assert len(shedder.arrivals) == 3 and e.value.retry_after == 0.05 and "busy" in e.value.message
    with Shedder(url, shed=100, retry_after="30") as shedder:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError):
            Client(shedder.url, retry=RetryPolicy(total_seconds=5)).generate("gan", seed=0)
    assert len(shedder.arrivals) == 1 and time.monotonic() - started < 5  # a 30 s wait would pass the deadline
    with Shedder(url, shed=100, status=400, retry_after=None) as shedder:  # only 502-504 are retried
        with pytest.raises(BadRequestError):
            Client(shedder.url).generate("gan", seed=0)
    assert len(shedder.arrivals) == 1


def test_connection_errors_are_retried_with_backoff_then_raised():
    started = time.monotonic()
    with pytest.raises(APIConnectionError, match="ConnectError"):
        Client("http://127.0.0.1:9", retry=RetryPolicy(attempts=3, backoff=0.2)).models()
    assert time.monotonic() - started < 5


def test_the_async_twin(url, client):
    async def main():
        async with AsyncClient(url) as aclient:
            results = await asyncio.gather(*(aclient.generate("gan", seed=s, count=2) for s in range(3)))
            history = await aclient.history("gan", every=100)
            with pytest.raises(NotFoundError):
                await aclient.classes("nope")
            return results, history
    results, history = asyncio.run(main())
    for seed, result in enumerate(results):
        assert np.array_equal(result.images, client.generate("gan", seed=seed, count=2).images)
    assert history.model == "gan"

    async def shed():
        with Shedder(url, shed=1, retry_after="0.2") as shedder:
            async with AsyncClient(shedder.url) as aclient:
                await aclient.generate("gan", seed=0, count=1)
        return shedder.arrivals
    arrivals = asyncio.run(shed())
    assert len(arrivals) == 2 and arrivals[1] - arrivals[0] >= 0.2


def cli(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "latentlab"), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=env.pop("cwd", None))


def test_the_cli_and_its_exit_codes(url, client, tmp_path):
    done = cli("generate", "--model", "gan", "--seed", "0", "--scale", "2", "-o", str(tmp_path / "s.png"),
               LATENTLAB_URL=url)
    assert done.returncode == 0 and "8 images from gan v1" in done.stderr, done.stderr
    assert (tmp_path / "s.png").read_bytes() == client.generate("gan", seed=0, scale=2).data
    models = cli("--url", url, "models")
    assert models.returncode == 0 and json.loads(models.stdout)[0]["name"] == "gan"

    client.generate("gan", seed=4, count=1).save(tmp_path / "picture.png")
    projected = cli("--url", url, "project", "--model", "gan", str(tmp_path / "picture.png"), "--steps", "5")
    assert projected.returncode == 0, projected.stderr
    (tmp_path / "latent.json").write_text(projected.stdout)
    again = cli("--url", url, "generate", "--model", "gan", "--latent", str(tmp_path / "latent.json"),
                "-o", str(tmp_path / "again.png"))
    assert again.returncode == 0, again.stderr
    answer = json.loads(projected.stdout)
    assert np.array_equal(client.generate("gan", latent=answer["latent"]).data, (tmp_path / "again.png").read_bytes())

    picked = cli("--url", url, "generate", "--model", "gan", "-o", str(tmp_path / "picked.png"))  # no --seed
    assert picked.returncode == 0, picked.stderr
    seed = int(re.search(r"seed (\d+) \(the same images again: --seed \1\)", picked.stderr).group(1))
    assert (tmp_path / "picked.png").read_bytes() == client.generate("gan", seed=seed).data

    refused = cli("--url", url, "generate", "--model", "nope", "--seed", "0", "-o", str(tmp_path / "x.png"))
    assert refused.returncode == 1 and "no model named 'nope'" in refused.stderr and "Traceback" not in refused.stderr
    invalid = cli("--url", url, "sweep", "--model", "gan", "--dims", "500")
    assert invalid.returncode == 1 and "dims.0" in invalid.stderr
    unreachable = cli("--url", "http://127.0.0.1:9", "--retries", "0", "models")
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr
    assert cli("generate").returncode == 2  # --model is required
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("script,needle", [("latentlab", "generate"), ("latentlab-train", "--tensorboard"),
                                           ("latentlab-serve", "MODEL_DIR")])
def test_console_scripts_are_installed(script, needle):
    done = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and needle in done.stdout


def test_every_client_method_is_a_cli_command():
    from latentlab.cli import build_parser
    from latentlab.client import Routes

    methods = {name.replace("_", "-") for name in vars(Routes) if not name.startswith("_")}
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert methods - {"model", "project-image"} <= commands  # those two are `models` and `project -o`


def test_the_client_needs_no_torch_and_no_server_code():
    code = ("import sys; sys.modules['torch'] = None; import latentlab, latentlab.cli; "
            "assert not {'service', 'trainer', 'shared', 'fastapi'} & set(sys.modules), sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["client"]:
        assert not requirement.startswith("torch"), requirement
    assert latentlab.Client.__module__ == "latentlab.client"


def test_download_fetches_a_versions_network_in_each_form(client, semantic_store):
    version = Store(semantic_store).get("gan")
    onnx = client.download("gan", version.version)  # the ONNX generator by default
    assert onnx == (version.path / "generator.onnx").read_bytes()
    session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["latents"]
    assert client.download("gan", version.version, "export", "encoder") == (version.path / "encoder.pt2").read_bytes()
    with pytest.raises(ValueError, match="form must be one of"):
        client.download("gan", version.version, "tflite")
    with pytest.raises(NotFoundError):
        client.download("gan", 99)


def test_the_download_command_writes_the_file_and_says_its_hash(url, semantic_store, tmp_path):
    version = Store(semantic_store).get("gan")
    out = tmp_path / "g.onnx"
    done = subprocess.run([sys.executable, "-m", "latentlab", "--url", url, "download", "--model", "gan", "--version",
                           str(version.version), "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == (version.path / "generator.onnx").read_bytes()
    assert json.loads(done.stdout)["sha256"] == version.manifest.files["generator.onnx"].sha256
