"""Your own pictures: image shapes per architecture, colour folders and CIFAR-10's files, the SWD, and a colour
model trained from a folder of PNGs, checked to have learned the data's colours and served through every route."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab.results import ImageResult
from shared.imaging import torchscript
from shared.imaging.latents import seeded_latents
from shared.store import Store
from tests.conftest import assert_user_error, built_once, run_cli
from tests.service_helpers import make_client, png, wait_ready
from trainer.evaluation.fashion_classifier import load_classifier, to_input_size
from trainer.evaluation.swd import level_sizes, swd
from trainer.tinted import TINTS, tint, write_folder
from trainer.training.architectures import get_architecture
from trainer.training.config import ConfigError
from trainer.training.data import DataError, load_idx_split, load_reference_images, load_training_images

TROUSER, SNEAKER = 1, 7


# ---------------------------------------------------------------------- shapes
@pytest.mark.parametrize("arch,channels,size", [("gan", 3, 28), ("gan", 3, 64), ("gan", 1, 32), ("dcgan", 3, 32),
                                                ("dcgan", 3, 64), ("dcgan", 1, 64)])
def test_each_architecture_takes_its_sizes_in_grey_and_colour(arch, channels, size):
    spec = get_architecture(arch).at(channels, size)
    G, D = spec.generator().eval(), spec.discriminator().eval()
    with torch.no_grad():
        images = G(torch.randn(2, 100))
        assert images.shape == (2, channels, size, size) and D(images).shape == (2,)


def test_the_64_pixel_dcgan_has_the_dcgan_papers_extra_blocks():
    small, large = get_architecture("dcgan"), get_architecture("dcgan").at(3, 64)
    convs = lambda net, kind: [m for m in net.modules() if isinstance(m, kind)]  # noqa: E731
    assert len(convs(large.generator(), torch.nn.ConvTranspose2d)) == 5 == len(convs(small.generator(),
                                                                                    torch.nn.ConvTranspose2d)) + 1
    assert [m.out_channels for m in convs(large.discriminator(), torch.nn.Conv2d)] == [64, 128, 256, 512, 1]


def test_sizes_an_architecture_does_not_take_are_refused_with_exit_2(tmp_path):
    with pytest.raises(ConfigError, match="takes 32, 64"):
        get_architecture("dcgan").at(1, 28)
    result = run_cli("trainer", "--arch", "dcgan", "--epochs", "1", "--image-size", "48", "--out", str(tmp_path))
    assert_user_error(result, "takes 32, 64")
    result = run_cli("trainer", "--arch", "gan", "--epochs", "1", "--channels", "2")
    assert_user_error(result, "invalid choice")


# ---------------------------------------------------------------------- datasets
def test_a_folder_trains_in_the_colour_it_is(tmp_path):
    (tmp_path / "colour" / "red").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "colour" / "red" / "x.png")
    Image.new("L", (10, 10), 200).save(tmp_path / "colour" / "y.jpg")
    images = load_training_images("folder", str(tmp_path / "colour"), image_size=32)
    assert images.shape == (2, 3, 32, 32) and images[0, :, 5, 5].tolist() == [255, 0, 0]
    grey = load_training_images("folder", str(tmp_path / "colour"), image_size=32, channels=1)
    assert grey.shape == (2, 1, 32, 32) and grey[0, 0, 5, 5].item() == 76  # PIL's luma of pure red
    (tmp_path / "grey").mkdir()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(tmp_path / "grey" / "a.png")  # grey pixels stored as RGB
    assert load_training_images("folder", str(tmp_path / "grey"), image_size=28).shape == (1, 1, 28, 28)


def test_unreadable_files_are_skipped_and_counted_and_mixed_sizes_said(tmp_path):
    (tmp_path / "d").mkdir()
    Image.new("RGB", (20, 20), (0, 0, 255)).save(tmp_path / "d" / "good.png")
    Image.new("RGB", (64, 48), (0, 255, 0)).save(tmp_path / "d" / "wide.png")
    (tmp_path / "d" / "broken.png").write_bytes(b"not a png")
    said = []
    images = load_training_images("folder", str(tmp_path / "d"), image_size=32, log=said.append)
    assert images.shape == (2, 3, 32, 32)
    assert any("skipped 1 unreadable" in m and "broken.png" in m for m in said)
    assert any("2 sizes" in m and "aspect not kept" in m for m in said)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of its 1 image files could be read"):
        load_training_images("folder", str(tmp_path / "bad"), 32)


def write_cifar(directory, n: int = 20):
    """CIFAR-10's Python batches, as the real archive unpacks them (random pixels)."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(directory / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}, f)


def test_cifar10_is_read_from_its_local_files_or_refused_clearly(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar-10-batches-py")
    images = load_training_images("cifar10", str(tmp_path), image_size=32)
    assert images.shape == (100, 3, 32, 32) and images.dtype == torch.uint8
    reference, what = load_reference_images("cifar10", str(tmp_path), 64, 3)
    assert reference.shape == (20, 3, 64, 64) and "cifar10 test images" in what
    monkeypatch.setattr("trainer.training.data.CACHE_DIR", tmp_path / "cache")
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        load_training_images("cifar10", str(tmp_path / "nothing"), 32, download=False)


# ---------------------------------------------------------------------- the SWD
def test_swd_is_small_between_halves_of_the_data_and_large_for_noise_or_a_colour_shift(fashion_dir):
    images, labels = load_idx_split(fashion_dir, "test")
    a, b = tint(images[:1000], labels[:1000]), tint(images[1000:2000], labels[1000:2000])
    shifted = tint(images[1000:2000], (labels[1000:2000] + 1) % 10)  # the same shapes in the wrong colours
    noise = torch.randint(0, 256, a.shape, dtype=torch.uint8)
    floor, wrong, random = swd(a, b), swd(a, shifted), swd(a, noise)
    assert list(floor["swd_levels"]) == ["28", "14"] == [str(s) for s in level_sizes(28)]
    assert floor["swd"] < 0.5 * wrong["swd"] and wrong["swd"] < random["swd"]
    assert swd(a, b)["swd_levels"] == floor["swd_levels"]  # the same sets, the same number: patches and directions are seeded


# ---------------------------------------------------------------------- a colour model, end to end
def tinted_pictures(fashion_dir) -> Path:
    """Trousers in green and sneakers in magenta, as a folder of PNGs (one subfolder per class)."""
    def build(root):
        images, labels = load_idx_split(fashion_dir, "train")
        keep = ((labels == TROUSER) | (labels == SNEAKER)).nonzero().view(-1)[:1536]
        write_folder(root, tint(images[keep], labels[keep]), labels[keep])
    return built_once("tinted-pictures", build)


def trained_on_them(fashion_dir, name: str, *flags: str) -> Path:
    """A store with one DCGAN trained on the tinted pictures by the real CLI, as `flags` say."""
    def build(root):
        result = run_cli("trainer", "--arch", "dcgan", "--name", name, *flags, "--dataset", "folder", "--data-dir",
                         str(tinted_pictures(fashion_dir)), "--out", str(root), "--no-progress", "--eval-samples",
                         "500", "--batch-size", "32", "--precision", "fp32", timeout=900)
        assert result.returncode == 0, result.stderr
    return built_once(f"colour-{name}", build)


@pytest.fixture(scope="module")
def colour_store(fashion_dir):
    """A DCGAN trained on the tinted pictures at 32x32 (half the study's width: enough to learn the pairing)."""
    return trained_on_them(fashion_dir, "dcgan", "--features", "32", "--epochs", "4", "--no-encoder", "--no-evaluate")


@pytest.fixture(scope="module")
def colour64_store(fashion_dir):
    """One at 64x64, trained briefly: for the record and the routes."""
    return trained_on_them(fashion_dir, "dcgan64", "--image-size", "64", "--epochs", "1", "--limit", "128",
                           "--encoder-steps", "5", "--eval-every", "1")


def test_the_colour_model_learned_which_colour_goes_with_which_shape(colour_store):
    """Generated images the FashionMNIST classifier calls trousers are mostly green, sneakers mostly magenta."""
    G = torchscript.load(Store(colour_store).get("dcgan").generator_path)
    with torch.no_grad():
        x = G(seeded_latents(0, 1000, 100))
        shape = load_classifier("cpu")(to_input_size(x)).argmax(1)
    lit = (x + 1) / 2
    mask = lit.amax(1, keepdim=True) > 0.5
    colour = (lit * mask).sum((2, 3)) / mask.sum((2, 3)).clamp(min=1)  # the mean colour of the bright pixels
    tints = torch.tensor([TINTS[TROUSER], TINTS[SNEAKER]], dtype=torch.float32)
    nearest = torch.nn.functional.cosine_similarity(colour[:, None], tints[None], dim=2).argmax(1)
    judged = (shape == TROUSER) | (shape == SNEAKER)
    agree = ((nearest == 0) == (shape == TROUSER))[judged].float().mean().item()
    assert judged.float().mean() > 0.5 and agree > 0.7, (judged.float().mean(), agree)


def test_the_colour_versions_record_their_shape_and_swd(colour_store, colour64_store):
    for store, name, size in ((Store(colour_store), "dcgan", 32), (Store(colour64_store), "dcgan64", 64)):
        m = store.get(name).manifest
        assert tuple(m.image_shape) == (3, size, size) and m.generator_io["output"] == ["N", 3, size, size]
        assert m.config["channels"] == 3 and m.config["image_size"] == size and m.dataset == "folder"
    store = Store(colour64_store)
    m = store.get("dcgan64").manifest
    assert m.metrics.swd > 0 and list(m.metrics.swd_levels) == ["64", "32", "16"] and m.metrics.fid is None
    # --eval-every on a folder: the SWD curve, the classifier's columns left empty
    assert [q["epoch"] for q in m.quality_history] == [1] and m.quality_history[0]["swd"] > 0
    rows = (store.get("dcgan64").path / "report" / "quality.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    assert first[header.index("fid")] == "" and float(first[header.index("swd")]) > 0
    assert (store.get("dcgan64").path / "report" / "quality.png").is_file()
    assert Image.open(store.get("dcgan64").path / "report" / "samples.png").mode == "RGB"


def test_every_route_serves_the_64_pixel_colour_model(colour64_store):
    with make_client(colour64_store) as client:
        wait_ready(client)
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert listed["dcgan64"]["versions"][-1]["manifest"]["image_shape"] == [3, 64, 64]
        r = client.post("/generate", json={"model": "dcgan64", "seed": 0, "count": 4, "nrow": 4})
        grid = png(r)
        assert grid.mode == "RGB" and grid.size == (4 * 66 + 2, 66 + 2)
        result = ImageResult.from_response(r.content, dict(r.headers))
        assert result.images.shape == (4, 64, 64, 3)
        assert png(client.post("/sweep", json={"model": "dcgan64", "dims": [0, 1], "values": [-2, 0, 2], "count": 2})).mode == "RGB"
        animation = client.post("/interpolate", json={"model": "dcgan64", "start": {"seed": 0},
                                                      "end": {"seed": 1}, "steps": 4, "format": "gif"})
        assert animation.status_code == 200 and animation.headers["content-type"] == "image/gif"
        picture = io.BytesIO()
        Image.fromarray(result.images[0]).save(picture, "PNG")
        found = client.post("/project", data={"model": "dcgan64", "steps": "5"},
                            files={"file": ("p.png", picture.getvalue(), "image/png")})
        assert found.status_code == 200, found.text
        assert len(found.json()["latent"]) == 100
        scored = client.post("/score", data={"model": "dcgan64"},
                             files=[("files", ("p.png", picture.getvalue(), "image/png"))])
        assert scored.status_code == 200 and scored.json()["image_shape"] == [3, 64, 64]
