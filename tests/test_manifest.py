"""The typed manifest: what publishing requires, what old stores hold, what the API declares."""
import json
from pathlib import Path

import pytest

from shared.store import GENERATOR, MANIFEST, Manifest, Store, StoreError
from shared.store.store import file_entries

pytestmark = pytest.mark.fast  # make check runs it on every commit

FORMAT_1 = Path(__file__).parent / "data" / "manifest-format1.json"  # written by the trainer before the typed model


def test_a_manifest_of_the_first_format_loads_with_every_field():
    raw = json.loads(FORMAT_1.read_text())
    manifest = Manifest.model_validate_json(FORMAT_1.read_bytes())
    assert (manifest.name, manifest.version, manifest.architecture, manifest.latent_dim) == ("gan", 1, "gan", 100)
    assert manifest.image_shape == (1, 28, 28) and manifest.betas == (0.5, 0.999)
    assert manifest.parameters.generator == 114_064 and manifest.config["arch"] == "gan"
    assert manifest.metrics.fid == raw["metrics"]["fid"] and manifest.metrics.feature_net.test_accuracy > 0.9
    assert manifest.generator_sha256 == raw["files"][GENERATOR]["sha256"]
    assert json.loads(manifest.to_json()) == raw  # nothing lost or changed on a rewrite


def test_a_store_written_in_the_first_format_is_listed(tmp_path):
    version_dir = tmp_path / "gan" / "v1"
    version_dir.mkdir(parents=True)
    (version_dir / GENERATOR).write_bytes(b"weights")
    raw = json.loads(FORMAT_1.read_text())
    raw["files"] = {rel: entry.model_dump() for rel, entry in file_entries(version_dir).items()}
    (version_dir / MANIFEST).write_text(json.dumps(raw))
    (listed,) = Store(tmp_path).versions("gan")
    assert listed.version == 1 and listed.manifest.epochs == 1 and listed.manifest.metrics.samples == 300


def test_unknown_fields_are_kept_so_newer_manifests_stay_readable():
    raw = {**json.loads(FORMAT_1.read_text()), "recipe": {"name": "future"}}
    manifest = Manifest.model_validate(raw)
    assert json.loads(manifest.to_json())["recipe"] == {"name": "future"}


@pytest.mark.parametrize("draft,needle", [
    ({"latent_dim": 100, "image_shape": [1, 28, 28]}, "architecture"),
    ({"architecture": "gan", "image_shape": [1, 28, 28]}, "latent_dim"),
    ({"architecture": "gan", "latent_dim": 0, "image_shape": [1, 28, 28]}, "latent_dim"),
    ({"architecture": "gan", "latent_dim": 100, "image_shape": [28, 28]}, "image_shape"),
    ({"architecture": "gan", "latent_dim": 100, "image_shape": [1, 28, 28], "epochs": "many"}, "epochs"),
])
def test_publish_refuses_a_broken_manifest_before_claiming_a_number(tmp_path, draft, needle):
    store = Store(tmp_path)
    with store.staging("m") as stage:
        (stage / GENERATOR).write_bytes(b"weights")
        with pytest.raises(StoreError, match=needle):
            store.publish("m", stage, draft)
    assert [p.name for p in (tmp_path / "m").iterdir()] == [".lock"]  # no claim, no staging, no high-water mark


def test_manifest_files_with_a_malformed_hash_make_the_version_invisible(tmp_path):
    store = Store(tmp_path)
    with store.staging("m") as stage:
        (stage / GENERATOR).write_bytes(b"weights")
        version = store.publish("m", stage, {"architecture": "gan", "latent_dim": 100, "image_shape": [1, 28, 28]})
    raw = json.loads((version.path / MANIFEST).read_text())
    raw["files"][GENERATOR]["sha256"] = "not-a-hash"
    (version.path / MANIFEST).write_text(json.dumps(raw))
    assert Store(tmp_path).versions("m") == []


def test_a_draft_copied_from_another_manifest_gets_the_stores_identity(tmp_path):
    draft = json.loads(FORMAT_1.read_text())  # name gan, version 1, its files: all the store's to decide
    store = Store(tmp_path)
    for expected in (1, 2):
        with store.staging("copy") as stage:
            (stage / GENERATOR).write_bytes(b"weights")
            version = store.publish("copy", stage, draft)
        m = version.manifest
        assert (m.name, m.version, set(m.files)) == ("copy", expected, {GENERATOR}) and m.epochs == 1


def test_a_conditional_versions_class_is_found_by_name_or_index_for_both_halves():
    raw = json.loads(FORMAT_1.read_text())
    manifest = Manifest.model_validate({**raw, "latent_dim": 103, "conditional": True, "style_dim": 100,
                                        "class_names": ["T-shirt/top", "Trouser", "Shirt"]})
    assert [manifest.class_index(ref) for ref in ("trouser", "SHIRT", 0, "2")] == [1, 2, 0, 2]
    for unknown in ("Sneaker", 3, "7"):
        with pytest.raises(LookupError, match=r"the classes are 0 'T-shirt/top', 1 'Trouser', 2 'Shirt'"):
            manifest.class_index(unknown)
