import shutil

import pytest
import torch

from shared.imaging import torchscript
from shared.store import GENERATOR, Store
from tests.conftest import assert_user_error, run_cli
from tests.service_helpers import copy_store, make_client, wait_ready
from trainer.evaluation import fashion_classifier
from trainer.evaluation.evaluator import evaluate_version
from trainer.evaluation.fashion_classifier import (
    CARD,
    WEIGHTS,
    WeightsError,
    accuracy,
    classifier_card,
    embed_dataset,
    load_classifier,
    real_floor,
    reference_features,
)
from trainer.evaluation.metrics import kth_neighbour_radii
from trainer.training.data import load_idx_split


def test_shipped_classifier_matches_its_hash_loads_and_is_accurate(fashion_dir):
    card = classifier_card()
    assert WEIGHTS.stat().st_size < 5 * 2**20 and card["command"] == "python -m trainer.classifier --retrain"
    net = load_classifier()  # checks the sha256
    test_x, test_y = load_idx_split(fashion_dir, "test")
    assert accuracy(net, test_x, test_y) >= 0.90
    assert card["test_accuracy"] >= 0.90


def test_the_cards_real_floor_is_what_the_classifier_measures(fashion_dir):
    # evaluate reads the floor from the card; it must be a measurement of these weights, not a stale number
    measured = real_floor(load_classifier(), fashion_dir)
    recorded = classifier_card()["real_floor"]
    assert measured.keys() == recorded.keys()
    for key in ("fid", "kid", "kid_std", "precision", "recall", "class_entropy", "mean_confidence"):
        assert measured[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-6), key


def test_tampered_classifier_weights_are_refused(tmp_path):
    weights = tmp_path / WEIGHTS.name
    shutil.copy(WEIGHTS, weights)
    with open(weights, "r+b") as f:
        f.seek(2000)
        f.write(b"\xff\xff")
    with pytest.raises(WeightsError, match="--retrain"):
        load_classifier(weights=weights, card=CARD)


def test_the_test_sets_features_are_computed_once_and_a_damaged_copy_is_named_and_made_again(tmp_path, monkeypatch,
                                                                                            fashion_dir):
    monkeypatch.setattr(fashion_classifier, "FEATURES_DIR", tmp_path / "features")
    net, sha256, said = load_classifier(), classifier_card()["sha256"], []
    images = load_idx_split(fashion_dir, "test")[0][:600]
    with torch.inference_mode():
        expected, _ = embed_dataset(net, images)
    expected_radii = kth_neighbour_radii(expected, 3)
    features, radii = reference_features(net, sha256, images, 3, said.append)
    (kept,) = (tmp_path / "features").iterdir()
    assert torch.equal(features, expected) and torch.equal(radii, expected_radii) and said == []

    def embed_again(*args):
        raise AssertionError("the kept features were computed again")

    monkeypatch.setattr(fashion_classifier, "embed_dataset", embed_again)
    features, radii = reference_features(net, sha256, images, 3, said.append)
    assert torch.equal(features, expected) and torch.equal(radii, expected_radii) and said == []
    for other in [(images[:500], 3), (images, 4)]:  # other images or another k: another file
        with pytest.raises(AssertionError, match="computed again"):
            reference_features(net, sha256, *other, said.append)

    monkeypatch.setattr(fashion_classifier, "embed_dataset", embed_dataset)
    kept.write_bytes(kept.read_bytes()[:100])  # a copy cut short
    assert torch.equal(reference_features(net, sha256, images, 3, said.append)[1], expected_radii)
    assert len(said) == 1 and str(kept) in said[0] and "damaged" in said[0]
    assert torch.equal(torch.load(kept, weights_only=True)["features"], expected)  # made again


@pytest.mark.slow
def test_evaluate_cli_records_reproducible_metrics_that_the_service_shows(tmp_path, trained_store, fashion_dir):
    root = copy_store(trained_store, tmp_path / "store")
    args = ("trainer.evaluate", "--store", str(root), "--model", "dcgan", "--samples", "400", "--device", "cpu",
            "--data-dir", str(fashion_dir))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "FID" in first.stdout and "real floor" in first.stdout and "precision" in first.stdout
    store = Store(root)
    m1 = store.get("dcgan").manifest.metrics.model_dump()  # still listed: hashes of the other files still match
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    m2 = store.get("dcgan").manifest.metrics.model_dump()
    volatile = {"seconds", "evaluated_at"}
    assert {k: v for k, v in m1.items() if k not in volatile} == {k: v for k, v in m2.items() if k not in volatile}
    assert m1["samples"] == 400 and len(m1["class_histogram"]) == 10
    for key in ("fid", "kid", "kid_std", "precision", "recall", "class_entropy", "mean_confidence"):
        assert isinstance(m1[key], float) and key in m1["real_floor"]
    floor = m1["real_floor"]
    assert floor["fid"] < m1["fid"] and floor["precision"] > 0.5 and floor["recall"] > 0.5
    assert floor["class_entropy"] > 0.99  # the test set is balanced

    with make_client(root) as c:
        wait_ready(c)
        versions = c.get("/models/dcgan").json()["versions"]
        assert versions[-1]["manifest"]["metrics"]["fid"] == m1["fid"]


class Collapsed(torch.nn.Module):
    """A generator that has collapsed onto one real image, whatever the latent."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.register_buffer("image", image)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.image.expand(z.shape[0], -1, -1, -1)


def test_a_collapsed_generator_scores_low(tmp_path, fashion_dir):
    test_x, _ = load_idx_split(fashion_dir, "test")
    image = test_x[0:1].float() / 127.5 - 1
    store = Store(tmp_path)
    with store.staging("collapsed") as stage:
        with torchscript.quiet_jit():
            torch.jit.script(Collapsed(image)).save(str(stage / GENERATOR))
        version = store.publish("collapsed", stage, {"architecture": "collapsed", "latent_dim": 100,
                                                     "image_shape": [1, 28, 28]})
    metrics = evaluate_version(store, version, samples=500, device="cpu", data_dir=str(fashion_dir), log=lambda s: None)
    assert metrics["class_entropy"] == 0.0
    assert metrics["recall"] < 0.01
    assert metrics["fid"] > 10 * metrics["real_floor"]["fid"]
    assert store.get("collapsed").manifest.metrics.class_entropy == 0.0


@pytest.mark.parametrize("extra,needle", [
    (["--model", "nope"], "no model named"),
    (["--model", "../x"], "invalid model name"),
    (["--model", "gan", "--samples", "3"], "at least 4"),  # k=3 neighbourhoods need 4 points
    (["--model", "gan", "--version", "two"], "--version"),
])
def test_evaluate_bad_input_exits_2(tmp_path, trained_store, extra, needle):
    result = run_cli("trainer.evaluate", "--store", str(trained_store), *extra)
    assert_user_error(result, needle)


@pytest.mark.slow
def test_eval_every_measures_while_training_and_publishes_the_curve(tmp_path, fashion_dir):
    out = tmp_path / "models"
    result = run_cli("trainer", "--arch", "gan", "--epochs", "2", "--limit", "512", "--out", str(out), "--data-dir",
                     str(fashion_dir), "--no-evaluate", "--eval-every", "1", "--eval-samples", "200", "--device", "cpu",
                     "--no-encoder")
    assert result.returncode == 0, result.stderr
    assert "epoch 1: FID" in result.stderr and "epoch 2: FID" in result.stderr
    version = Store(out).get("gan")
    history = version.manifest.quality_history
    assert [r["epoch"] for r in history] == [1, 2] and all(r["fid"] > 0 and 0 <= r["recall"] <= 1 for r in history)
    # the training time each measurement belongs to (FID against minutes), measurements themselves not counted
    assert 0 < history[0]["train_seconds"] < history[1]["train_seconds"] <= version.manifest.train_seconds + 0.1
    rows = (version.path / "report" / "quality.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,fid") and len(rows) == 3
    assert (version.path / "report" / "quality.png").stat().st_size > 1000


def test_inception_fid_uses_weights_already_on_the_machine_and_says_how_to_get_them(tmp_path, monkeypatch,
                                                                                     fashion_dir):
    from torchvision.models.inception import Inception3

    from trainer.evaluation import inception
    from trainer.evaluation.evaluator import Evaluator

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    said = []
    evaluator = Evaluator("cpu", str(fashion_dir), use_inception=True, log=said.append)
    assert evaluator.inception is None and any("Inception FID/KID skipped" in m and "weights='DEFAULT'" in m
                                               for m in said)

    # weights in the hub cache (random ones here: the real file cannot be downloaded) are found and used
    torch.manual_seed(0)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(Inception3(aux_logits=True, init_weights=True).state_dict(), inception.weights_path())
    assert inception.available()
    net = inception.load_inception(torch.device("cpu"))
    real = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    features = inception.inception_features(net, real, torch.device("cpu"))
    assert features.shape == (12, 2048)
    same = inception.inception_metrics(features, real, net, torch.device("cpu"))
    other = inception.inception_metrics(features, 255 - real, net, torch.device("cpu"))
    assert same["inception_fid"] < 1e-3 < other["inception_fid"]


def test_quality_figure_against_minutes_puts_each_measurement_at_its_training_time(tmp_path):
    from trainer.publishing.report import plot_quality

    runs = {"quick": [{"epoch": 1, "fid": 200.0, "recall": 0.01, "train_seconds": 30.0},
                      {"epoch": 2, "fid": 150.0, "recall": 0.02, "train_seconds": 60.0}],
            "slow": [{"epoch": 1, "fid": 180.0, "recall": 0.02, "train_seconds": 240.0}]}
    by_epoch = plot_quality(tmp_path / "epochs.png", runs).read_bytes()
    by_minutes = plot_quality(tmp_path / "minutes.png", runs, against="minutes").read_bytes()
    assert len(by_minutes) > 1000 and by_minutes != by_epoch  # the slow run's point moves from x=1 to x=4
    with pytest.raises(ValueError, match="epoch or minutes"):
        plot_quality(tmp_path / "x.png", runs, against="steps")
