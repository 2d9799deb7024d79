import hashlib
import json
import multiprocessing
import os
import re
import shutil
from pathlib import Path

import pytest

from shared.store import GENERATOR, MANIFEST, Damage, InvalidName, NotFound, Store, StoreError, validate_name
from tests.conftest import run_cli

pytestmark = pytest.mark.fast  # make check runs it on every commit


def publish_dummy(root: Path, name: str = "m", payload: bytes = b"weights") -> int:
    store = Store(root)
    with store.staging(name) as stage:
        (stage / GENERATOR).write_bytes(payload)
        (stage / "report").mkdir()
        (stage / "report" / "history.csv").write_text("iteration\n1\n")
        return store.publish(name, stage, {"architecture": "gan", "latent_dim": 100, "image_shape": [1, 28, 28]}).version


def test_publish_lists_and_hashes(tmp_path):
    assert publish_dummy(tmp_path) == 1
    assert publish_dummy(tmp_path, payload=b"other") == 2
    store = Store(tmp_path)
    versions = store.versions("m")
    assert [v.version for v in versions] == [1, 2]
    manifest = json.loads((tmp_path / "m" / "v2" / MANIFEST).read_text())
    assert manifest["name"] == "m" and manifest["version"] == 2 and manifest["created_at"].endswith("Z")
    assert set(manifest["files"]) == {GENERATOR, "report/history.csv"}
    assert manifest["files"][GENERATOR]["size"] == 5
    assert store.get("m").version == 2 and store.get("m", 1).version == 1
    assert store.model_names() == ["m"]
    hidden = {p.name for p in (tmp_path / "m").iterdir() if p.name.startswith(".")}
    assert hidden == {".lock", ".high-water"}  # the writers' lock and the number mark; no staging left behind
    assert store.high_water("m") == 2


def _publish_in_process(args):
    root, i = args
    return publish_dummy(Path(root), payload=f"w{i}".encode())


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        numbers = pool.map(_publish_in_process, [(str(tmp_path), i) for i in range(12)])
    assert sorted(numbers) == list(range(1, 13))
    assert [v.version for v in Store(tmp_path).versions("m")] == list(range(1, 13))


def test_listing_ignores_incomplete_and_tampered_versions(tmp_path):
    for _ in range(4):
        publish_dummy(tmp_path)
    store = Store(tmp_path)
    assert store.get("m").version == 4  # also fills the verification cache
    (tmp_path / "m" / "v2" / MANIFEST).unlink()  # incomplete: no manifest
    with open(tmp_path / "m" / "v3" / GENERATOR, "r+b") as f:  # tampered: same size, other bytes
        f.write(b"W")
    (tmp_path / "m" / "v4" / "report" / "history.csv").unlink()  # a listed file is missing
    (tmp_path / "m" / "v9").mkdir()  # an empty claim
    (tmp_path / "m" / ".staging-x").mkdir()
    (tmp_path / "m" / "v10").write_text("not a directory")
    (tmp_path / "m" / "v11").mkdir()
    (tmp_path / "m" / "v11" / MANIFEST).write_text("{ not json")
    assert [v.version for v in store.versions("m")] == [1]
    assert store.get("m").version == 1
    with pytest.raises(NotFound, match=r"version 3 is damaged \(generator.pt: sha256"):
        store.get("m", 3)

    # each damaged version is named, with its first failing file and what it expected and found
    damaged = {d.version: d.damage for d in store.damaged("m")}
    assert sorted(damaged) == [2, 3, 4, 11]  # not the empty claim v9, the file v10 or the staging
    assert (damaged[2].file, damaged[2].problem) == (MANIFEST, "missing")
    expected = json.loads((tmp_path / "m" / "v3" / MANIFEST).read_text())["files"][GENERATOR]["sha256"]
    found = hashlib.sha256((tmp_path / "m" / "v3" / GENERATOR).read_bytes()).hexdigest()
    assert damaged[3] == Damage(GENERATOR, "sha256", expected, found)
    assert (damaged[4].file, damaged[4].problem) == ("report/history.csv", "missing")
    assert (damaged[11].file, damaged[11].problem) == (MANIFEST, "unreadable manifest")
    assert store.damaged("m")[1].manifest.version == 3  # what it was published as, while the manifest reads


def test_python_m_shared_names_damaged_versions_and_exits_3(tmp_path):
    for _ in range(2):
        publish_dummy(tmp_path)
    assert run_cli("shared", str(tmp_path)).returncode == 0
    with open(tmp_path / "m" / "v2" / GENERATOR, "r+b") as f:
        f.write(b"W")
    listed = run_cli("shared", str(tmp_path))
    assert listed.returncode == 3, listed.stderr
    assert re.search(r"m +v2 +DAMAGED +generator.pt: sha256 [0-9a-f]{16}\.\.\., the manifest says", listed.stdout)
    assert re.search(r"m +v1 +", listed.stdout) and "1 damaged version(s)" in listed.stderr
    verified = run_cli("shared", "verify", str(tmp_path))
    assert verified.returncode == 3 and "DAMAGED generator.pt" in verified.stdout and "hashed " in verified.stdout
    assert "3  a version is damaged" in run_cli("shared", "--help").stdout
    assert run_cli("shared", str(tmp_path / "empty")).returncode == 1


def test_manifest_must_name_its_own_version(tmp_path):
    publish_dummy(tmp_path)
    os.rename(tmp_path / "m" / "v1", tmp_path / "m" / "v7")  # copied by hand to the wrong place
    assert Store(tmp_path).versions("m") == []


def test_next_version_skips_numbers_already_claimed(tmp_path):
    publish_dummy(tmp_path)
    (tmp_path / "m" / ".high-water").write_text("2\n")  # a publisher died after claiming v2 ...
    (tmp_path / "m" / "v2").mkdir()  # ... and before its rename
    (tmp_path / "m" / "v3").mkdir()
    (tmp_path / "m" / "v3" / "notes.txt").write_text("made by hand")
    assert publish_dummy(tmp_path) == 4
    assert not (tmp_path / "m" / "v2").exists()  # the dead claim is gone, its number stays spent
    assert (tmp_path / "m" / "v3" / "notes.txt").exists()  # what a person put there is left alone


def test_a_deleted_versions_number_is_never_reused(tmp_path):
    assert publish_dummy(tmp_path) == 1
    assert publish_dummy(tmp_path, payload=b"two") == 2
    shutil.rmtree(tmp_path / "m" / "v2")
    assert publish_dummy(tmp_path, payload=b"three") == 3
    assert [v.version for v in Store(tmp_path).versions("m")] == [1, 3]
    shutil.rmtree(tmp_path / "m")  # the model deleted as a whole takes its mark along: numbering starts again
    assert publish_dummy(tmp_path, payload=b"again") == 1


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "UPPER", "-x", "x" * 65, "a b", "ok\n", "..", "v1/../x"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(InvalidName):
        validate_name(name)
    with pytest.raises(InvalidName):
        Store(tmp_path).versions(name)
    with pytest.raises(InvalidName):
        with Store(tmp_path).staging(name):
            pass
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.parametrize("name", ["gan", "dcgan", "a", "my-model_2.1", "x" * 64, "0"])
def test_good_names_pass(name):
    assert validate_name(name) == name


METRICS = {"fid": 1.5, "kid": 0.1, "kid_std": 0.01, "precision": 0.8, "recall": 0.1, "class_histogram": [0.1] * 10,
           "class_entropy": 1.0, "mean_confidence": 0.9, "samples": 100, "latent_seed": 0, "k": 3,
           "reference": "test", "feature_net": {"name": "n", "sha256": "0" * 64, "test_accuracy": 0.9},
           "real_floor": {"fid": 0.4}, "device": "cpu", "seconds": 1.0, "evaluated_at": "2026-11-27T08:00:00Z"}


def test_update_manifest_keeps_hashes_valid(tmp_path):
    publish_dummy(tmp_path)
    store = Store(tmp_path)
    updated = store.update_manifest(store.get("m"), metrics=METRICS)
    assert updated.manifest.metrics.fid == 1.5
    assert store.get("m").manifest.metrics.fid == 1.5
    with pytest.raises(StoreError, match="cannot be changed"):
        store.update_manifest(updated, files={})
    with pytest.raises(StoreError, match="metrics"):
        store.update_manifest(updated, metrics={"fid": "low"})
    assert store.get("m").manifest.metrics.fid == 1.5


def test_missing_store_lists_nothing(tmp_path):
    store = Store(tmp_path / "nowhere")
    assert store.model_names() == [] and store.versions("gan") == []
    with pytest.raises(NotFound):
        store.get("gan")


def test_files_added_to_a_version_are_hashed_and_replaceable_atomically(tmp_path):
    import threading

    publish_dummy(tmp_path)
    store = Store(tmp_path)
    version = store.get("m")
    added = store.add_files(version, {"classes.json": b'{"a": 1}', "extra/notes.txt": b"hello"})
    assert added.manifest.files["classes.json"].size == 8 and (version.path / "extra" / "notes.txt").read_bytes() == b"hello"
    assert Store(tmp_path).get("m").manifest.files.keys() == added.manifest.files.keys()  # verified by a new reader

    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            seen.append(len(Store(tmp_path).versions("m")))  # a fresh reader: no cached verdicts

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(30):  # replaced again and again: the version stays listed and verified throughout
        store.add_files(store.get("m"), {"classes.json": f'{{"a": {i}}}'.encode() * (i + 1)})
    stop.set()
    reader.join()
    assert seen and all(n == 1 for n in seen)  # never a version whose listed files fail their hashes
    final = Store(tmp_path).get("m")
    assert (final.path / "classes.json").read_bytes() == b'{"a": 29}' * 30
    with pytest.raises(StoreError, match="cannot be replaced"):
        store.add_files(final, {GENERATOR: b"other weights"})
