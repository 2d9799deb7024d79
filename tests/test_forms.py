"""Every network in three forms: TorchScript, a torch.export program and ONNX, each checked at publish (a wrong one
is refused), agreeing on the pixels, added to older versions by `python -m trainer.upgrade`, and served as files
with a strong ETag."""
from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime
import pytest
import torch

from shared.imaging import torchscript
from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.store import FORMS, Store, form_file
from tests.conftest import run_cli
from tests.service_helpers import copy_store, make_client, strip_forms, wait_ready
from trainer.publishing.export import ExportError, export_network
from trainer.training.architectures import get_architecture

SERVED_STORE = "trained_store"  # the conftest `client` serves it


def onnx_images(path, latents: torch.Tensor, layout: LatentLayout) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"latents": layout.style_of(latents).numpy()}
    if layout.conditional:
        feed["class"] = layout.class_weights(latents).numpy()
    return to_uint8(torch.from_numpy(session.run(["images"], feed)[0])).numpy()


def form_images(version, form: str, latents: torch.Tensor) -> np.ndarray:
    """A version's generator in `form` on `latents`, quantised as the service quantises."""
    path = version.path / form_file("generator", form)
    if form == "onnx":
        return onnx_images(path, latents, LatentLayout.of(version.manifest))
    module = torchscript.load(path) if form == "torchscript" else torch.export.load(path).module()
    with torch.no_grad():
        return to_uint8(module(latents)).numpy()


# ---------------------------------------------------------------------- each form checked at publish
def test_every_form_is_written_and_agrees_with_the_eager_network(tmp_path):
    arch = get_architecture("gan")
    G = arch.generator().eval()
    z = arch.layout.seeded(0, 16)
    diffs = export_network("generator", G, z[:2], z, tmp_path, arch.layout)
    assert set(diffs) == set(FORMS) and max(diffs.values()) < 1e-5
    assert {p.name for p in tmp_path.iterdir()} == {form_file("generator", form) for form in FORMS}
    with torch.no_grad():
        assert torch.allclose(torch.export.load(tmp_path / "generator.pt2").module()(z[:5]), G(z[:5]), atol=1e-6)


@pytest.mark.parametrize("form", ["export", "onnx"])
def test_a_wrong_export_is_refused_and_names_its_form_and_difference(tmp_path, monkeypatch, form):
    arch = get_architecture("gan")
    G = arch.generator().eval()
    z = arch.layout.seeded(0, 8)
    if form == "export":  # the program read back is another network's: what a broken exporter would hand back
        other = arch.generator().eval()
        wrong = torch.export.export(other, (z[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
        monkeypatch.setattr(torch.export, "load", lambda path: wrong)
        needle = "torch.export export of MLPGenerator differs from the eager model by"
    else:  # ONNX Runtime's answer off by 0.5: a graph that computes something else
        run = onnxruntime.InferenceSession.run
        monkeypatch.setattr(onnxruntime.InferenceSession, "run",
                            lambda self, names, feed: [out + 0.5 for out in run(self, names, feed)])
        needle = "ONNX export of MLPGenerator differs from the eager model by 0.5"
    with pytest.raises(ExportError, match=needle):
        export_network("generator", G, z[:2], z, tmp_path, arch.layout)
    assert not (tmp_path / form_file("generator", form)).exists()  # the refused file is not left behind


def test_float_noise_from_a_sound_form_is_not_refused(tmp_path, monkeypatch):
    """Reordered float sums move each output in its last bits, relative to the terms summed: 1.1e-5 of the largest
    logit has come from a sound ONNX form of a discriminator after 30 minutes of training."""
    arch = get_architecture("gan")
    D = arch.discriminator().eval()
    images = torch.rand(8, *arch.image_shape) * 2 - 1
    run = onnxruntime.InferenceSession.run
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", lambda self, names, feed: [
        out + 2e-5 * max(1.0, float(np.abs(out).max())) for out in run(self, names, feed)])
    diffs = export_network("discriminator", D, images[:2], images, tmp_path, arch.layout)
    assert 1e-5 < diffs["onnx"] < 1e-4 and (tmp_path / form_file("discriminator", "onnx")).exists()


def test_a_conditional_generators_onnx_takes_the_class_as_a_second_input(conditional_store):
    for version in Store(conditional_store).versions("gan") + Store(conditional_store).versions("dcgan"):
        session = onnxruntime.InferenceSession(str(version.path / "generator.onnx"), providers=["CPUExecutionProvider"])
        layout = LatentLayout.of(version.manifest)
        assert [(i.name, i.shape[1]) for i in session.get_inputs()] == [("latents", layout.style),
                                                                       ("class", layout.classes)]


# ---------------------------------------------------------------------- the same pixels in every form
@pytest.mark.parametrize("store_fixture,model", [("trained_store", "gan"), ("trained_store", "dcgan"),
                                                 ("conditional_store", "gan"), ("conditional_store", "dcgan")])
def test_every_form_draws_the_torchscript_pixels(request, store_fixture, model):
    version = Store(request.getfixturevalue(store_fixture)).get(model)
    latents = LatentLayout.of(version.manifest).seeded(3, 32)
    reference = form_images(version, "torchscript", latents).astype(int)
    for form in ("export", "onnx"):
        assert np.abs(form_images(version, form, latents).astype(int) - reference).max() <= 1, form


# ---------------------------------------------------------------------- older versions upgraded in place
def test_the_upgrade_command_adds_the_missing_forms_once(trained_store, tmp_path):
    root = copy_store(trained_store, tmp_path / "store")
    strip_forms(root)
    before = {v.name: v for name in ("gan", "dcgan") for v in Store(root).versions(name)}
    assert all("generator.onnx" not in v.manifest.files for v in before.values())

    first = run_cli("trainer.upgrade", "--store", str(root))
    assert first.returncode == 0, first.stderr
    after = {v.name: v for name in ("gan", "dcgan") for v in Store(root).versions(name)}  # every hash checked
    for name, version in after.items():
        assert {form_file(n, f) for n in ("generator", "discriminator") for f in FORMS} <= set(version.manifest.files)
        latents = LatentLayout.of(version.manifest).seeded(5, 16)
        reference = form_images(version, "torchscript", latents).astype(int)
        assert np.abs(form_images(version, "onnx", latents).astype(int) - reference).max() <= 1
        assert version.manifest.files["generator.pt"] == before[name].manifest.files["generator.pt"]

    files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    second = run_cli("trainer.upgrade", "--store", str(root))
    assert second.returncode == 0 and "2 versions have every form" in second.stdout
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()} == files


# ---------------------------------------------------------------------- files served with a strong ETag
def test_a_versions_onnx_file_is_served_with_its_hash_as_a_strong_etag(client, trained_store):
    version = Store(trained_store).get("dcgan")
    r = client.get("/models/dcgan/versions/1/files/generator.onnx")
    assert r.status_code == 200 and r.content == (version.path / "generator.onnx").read_bytes()
    sha = version.manifest.files["generator.onnx"].sha256
    assert r.headers["etag"] == f'"{sha}"' and "immutable" in r.headers["cache-control"]
    again = client.get("/models/dcgan/versions/1/files/generator.onnx", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == f'"{sha}"'
    changed = client.get("/models/dcgan/versions/1/files/generator.onnx", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200
    missing = client.get("/models/dcgan/versions/1/files/nothing.onnx")
    assert missing.status_code == 404 and "generator.onnx" in missing.json()["detail"]  # it says what there is
    no_version = client.get("/models/dcgan/versions/9/files/generator.onnx")
    assert no_version.status_code == 404 and no_version.json()["detail"].endswith("has no version 9; it has 1")
    assert client.get("/models/dcgan/versions/1/files/..%2Fmanifest.json").status_code == 404


def test_files_need_a_key_where_keys_are_set(trained_store):
    with make_client(trained_store, api_keys="k-files-1") as c:
        wait_ready(c)
        assert c.get("/models/gan/versions/1/files/generator.onnx").status_code == 401
        ok = c.get("/models/gan/versions/1/files/generator.onnx", headers={"Authorization": "Bearer k-files-1"})
        assert ok.status_code == 200
