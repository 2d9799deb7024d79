"""Which runtime serves which batch size: the per-bucket choice with forwards mocked faster and slower, the pixel
bound that disqualifies a runtime, the candidates a version has (its forms, the installed extras, native bf16), a
runtime that is not installed refused at startup, every runtime's pixels on trained versions, RUNTIME=auto end to
end, and a torch without TorchScript: the service and the trainer on the other forms."""
from __future__ import annotations

import dataclasses
import importlib.util
import time

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from service.api.settings import Settings
from service.engine.forward_choice import choose_forwards
from service.engine.runtimes import Candidate, Forwards, candidates
from shared.imaging import precision, torchscript
from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.imaging.networks import load_network
from shared.store import Store, form_file
from tests.conftest import train_and_publish
from tests.service_helpers import grid_images, make_client, wait_ready

TS32, TS16, ORT = Candidate("torchscript", "fp32"), Candidate("torchscript", "bf16"), Candidate("onnxruntime", "fp32")


def mocked(seconds: dict, calls: list, value: dict | None = None):
    """A `build` whose forwards take known times (by candidate, or by (candidate, batch size)), record which ran,
    and draw every pixel at `value[candidate]` (0 by default)."""
    def build(candidate: Candidate):
        def forward(z: torch.Tensor) -> torch.Tensor:
            calls.append(str(candidate))
            time.sleep(seconds.get((str(candidate), len(z)), seconds[str(candidate)]))
            return torch.full((len(z), 1, 2, 2), (value or {}).get(str(candidate), 0), dtype=torch.uint8)
        return forward
    return build


def test_each_batch_size_is_served_by_the_fastest_candidate_measured_there():
    calls = []
    # ONNX Runtime fastest for one image, bf16 from two up, fp32 never
    build = mocked({"torchscript fp32": 0.008, "torchscript bf16": 0.003, "onnxruntime fp32": 0.012,
                    ("onnxruntime fp32", 1): 0.001}, calls)
    plan = choose_forwards([TS32, TS16, ORT], build, LatentLayout(4), 8, {1, 8})
    assert [(b.size, str(Candidate(b.runtime, b.precision))) for b in plan.buckets] == [
        (1, "onnxruntime fp32"), (2, "torchscript bf16"), (4, "torchscript bf16"), (8, "torchscript bf16")]
    assert (plan.runtime, plan.precision) == ("onnxruntime+torchscript", "fp32+bf16")
    assert set(plan.forward_seconds) == {TS32, TS16, ORT}  # every candidate timed at every bucket
    assert all(set(sizes) == {1, 2, 4, 8} for sizes in plan.forward_seconds.values())

    calls.clear()
    plan(torch.zeros(1, 4))
    plan(torch.zeros(3, 4))  # a batch of 3 runs in the bucket of 4
    plan(torch.zeros(8, 4))
    assert calls == ["onnxruntime fp32", "torchscript bf16", "torchscript bf16"]
    # admission starts from the costs of what runs at each size
    assert plan.timings() == [(1, plan.forward_seconds[ORT][1]), (2, plan.forward_seconds[TS16][2]),
                              (4, plan.forward_seconds[TS16][4]), (8, plan.forward_seconds[TS16][8])]
    described = plan.describe()
    assert described["buckets"][0] == {"batch": 1, "runtime": "onnxruntime", "precision": "fp32",
                                       "forward_ms": pytest.approx(plan.forward_seconds[ORT][1] * 1000, abs=1e-3)}
    assert "1: onnxruntime fp32" in plan.reason

    # a candidate a little faster (within the switch margin) does not take a bucket from the one below it
    calls.clear()
    plan = choose_forwards([TS32, ORT], mocked({"torchscript fp32": 0.010, "onnxruntime fp32": 0.0095,
                                                ("onnxruntime fp32", 1): 0.001}, calls), LatentLayout(4), 4, {1, 4})
    assert [b.runtime for b in plan.buckets] == ["onnxruntime", "onnxruntime", "onnxruntime"]
    plan = choose_forwards([TS32, ORT], mocked({"torchscript fp32": 0.0095, "onnxruntime fp32": 0.010,
                                                ("onnxruntime fp32", 1): 0.001}, calls), LatentLayout(4), 4, {1, 4})
    assert [b.runtime for b in plan.buckets] == ["onnxruntime", "onnxruntime", "onnxruntime"]  # 5% is not enough


def test_a_candidate_whose_pixels_leave_the_bound_is_never_used():
    calls = []
    # the fastest everywhere, but 13 grey levels off the fp32 reference (the bound is 12)
    build = mocked({"torchscript fp32": 0.004, "torchscript bf16": 0.004, "onnxruntime fp32": 0.001}, calls,
                   value={"onnxruntime fp32": precision.BF16_MAX_GREY_DIFF + 1})
    plan = choose_forwards([TS32, TS16, ORT], build, LatentLayout(4), 4, {1, 4})
    assert all(b.runtime == "torchscript" for b in plan.buckets)
    assert plan.grey_diff[ORT] == (precision.BF16_MAX_GREY_DIFF + 1, precision.BF16_MAX_GREY_DIFF + 1)
    assert plan.grey_diff[TS16] == (0, 0.0)
    (why,) = plan.left_out
    assert why.startswith("onnxruntime fp32") and "past the bound" in why
    assert ORT not in plan.forward_seconds  # not even timed


def test_one_candidate_is_served_as_asked_and_timed_where_admission_needs():
    calls = []
    plan = choose_forwards([TS16], mocked({"torchscript bf16": 0}, calls), LatentLayout(4), 256, {1, 8, 256},
                           runtime_asked="torchscript", precision_asked="bf16", native_bf16=None)
    assert [(b.size, b.runtime, b.precision) for b in plan.buckets] == [(256, "torchscript", "bf16")]
    assert set(plan.forward_seconds[TS16]) == {1, 8, 256}  # not every bucket: nothing to choose between
    assert plan.reason.startswith("as asked") and "emulated" in plan.reason  # bf16 where nothing computes it natively


def without(version, *files: str):
    """`version` as if its manifest did not list `files` (an older version)."""
    listed = {k: v for k, v in version.manifest.files.items() if k not in files}
    return dataclasses.replace(version, manifest=version.manifest.model_copy(update={"files": listed}))


def test_a_version_is_offered_to_each_runtime_that_has_its_form_here(trained_store, monkeypatch):
    version, cpu = Store(trained_store).get("dcgan"), torch.device("cpu")
    has_openvino = importlib.util.find_spec("openvino") is not None
    offered, _ = candidates(version, cpu, "auto", (precision.FP32,))  # no native bf16: fp32 only
    assert offered == [TS32, Candidate("export", "fp32"), ORT] + [Candidate("openvino", "fp32")] * has_openvino
    offered, _ = candidates(version, cpu, "auto", (precision.FP32, precision.BF16))
    assert TS16 in offered and Candidate("export", "bf16") in offered and len(offered) == 5 + 2 * has_openvino
    offered, _ = candidates(version, cpu, "auto", (precision.BF16,))  # bf16 asked: bf16 only, even emulated
    assert {c.precision for c in offered} == {"bf16"}

    # an older version without ONNX: ONNX Runtime asked for, the forms it has serve, and the reason says what to run
    offered, left_out = candidates(without(version, "generator.onnx"), cpu, "onnxruntime", (precision.FP32,))
    assert offered == [TS32, Candidate("export", "fp32")]
    assert "no onnx form (python -m trainer.upgrade adds it)" in left_out[0]

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime"
                        else real_find_spec(name, *a))
    offered, left_out = candidates(version, cpu, "auto", (precision.FP32,))
    assert ORT not in offered
    assert "onnxruntime: onnxruntime is not installed (pip install 'latentlab[onnx]')" in left_out


def test_a_runtime_that_is_not_installed_is_refused_at_startup(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino"
                        else real_find_spec(name, *a))
    with pytest.raises(ValidationError, match=r"RUNTIME=openvino cannot be used: openvino is not installed "
                                              r"\(pip install 'latentlab\[openvino\]'\)"):
        Settings(model_dir=tmp_path, runtime="openvino")
    with pytest.raises(ValidationError, match="onnxruntime|openvino"):  # the choices named
        Settings(model_dir=tmp_path, runtime="tensorrt")
    assert Settings(model_dir=tmp_path, runtime="auto").runtime == "auto"


@pytest.mark.slow
@pytest.mark.parametrize("store, model", [("trained_store", "dcgan"), ("trained_store", "gan"),
                                          ("conditional_store", "gan"), ("conditional_store", "dcgan")])
def test_every_runtime_keeps_the_pixels_of_torchscript_fp32(store, model, request):
    """Each candidate's served pixels on 64 latents against TorchScript fp32's: fp32 runtimes within a grey level
    (float sums in another order), bf16 within the bf16 bound (emulated where the CPU has no bf16: slow, so few
    latents; tests/test_precision.py holds bf16 to its bound on 512)."""
    version = Store(request.getfixturevalue(store)).get(model)
    layout, cpu = LatentLayout.of(version.manifest), torch.device("cpu")
    offered, _ = candidates(version, cpu, "auto", (precision.FP32, precision.BF16))
    module = load_network(version.path, version.manifest.files, "generator")
    build = Forwards(version, cpu, layout, 64, False, module, "torchscript")
    z = layout.seeded(3, 64)
    reference = build(TS32)(z).int()
    assert {c.runtime for c in offered} >= {"torchscript", "export", "onnxruntime"}
    for candidate in offered:
        diff = (build(candidate)(z).int() - reference).abs()
        largest = 1 if candidate.precision == "fp32" else precision.BF16_MAX_GREY_DIFF
        assert diff.max() <= largest, (str(candidate), int(diff.max()))
        assert diff.float().mean() < (0.01 if candidate.precision == "fp32" else precision.BF16_MEAN_GREY_DIFF)


@pytest.mark.slow
def test_auto_measures_every_runtime_and_serves_each_batch_size_with_its_choice(trained_store):
    with make_client(trained_store, runtime="auto", precision="auto", max_batch_latents=8, warmup_batch=2) as client:
        wait_ready(client)
        served = client.get("/models/dcgan").json()["runtimes"][0]
        assert served["runtime_asked"] == "auto" and [b["batch"] for b in served["buckets"]] == [1, 2, 4, 8]
        assert {"torchscript fp32", "export fp32", "onnxruntime fp32"} <= set(served["forward_ms"])
        assert all(set(ms) == {"1", "2", "4", "8"} for ms in served["forward_ms"].values())
        assert all(d["max"] <= precision.BF16_MAX_GREY_DIFF for d in served["grey_diff"].values())
        for count in (1, 8):
            assert client.post("/generate", json={"model": "dcgan", "seed": 0, "count": count}).status_code == 200
        metrics = client.get("/metrics").text
        for bucket in (served["buckets"][0], served["buckets"][-1]):  # each forward counted under what ran it
            assert (f'latentlab_forward_seconds_count{{model="dcgan",precision="{bucket["precision"]}",'
                    f'runtime="{bucket["runtime"]}"}}') in metrics


@pytest.fixture
def no_torchscript(monkeypatch):
    """A torch whose TorchScript refuses to load or save, as PyTorch's retirement of it will make it."""
    def refuse(*args, **kwargs):
        raise RuntimeError("TorchScript is no longer supported: use torch.export")

    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(torch.jit, "save", refuse)
    torchscript.available.cache_clear()
    yield
    torchscript.available.cache_clear()


@pytest.mark.slow
def test_without_torchscript_the_service_serves_the_other_forms(trained_store, request):
    version = Store(trained_store).get("dcgan")
    with torch.no_grad():  # TorchScript's pixels, while it still runs
        expected = to_uint8(load_network(version.path, version.manifest.files, "generator")(
            LatentLayout(100).seeded(0, 4))).numpy()
    request.getfixturevalue("no_torchscript")
    with make_client(trained_store, runtime="auto", precision="fp32", max_batch_latents=4, warmup_batch=2) as client:
        wait_ready(client)
        served = client.get("/models/dcgan").json()["runtimes"][0]
        assert "torchscript" not in served["runtime"]
        assert "torchscript: this torch cannot run TorchScript" in served["left_out"]
        response = client.post("/generate", json={"model": "dcgan", "seed": 0, "count": 4, "nrow": 4})
        got = grid_images(response)
        assert np.abs(got.astype(int) - expected[:, 0].astype(int)).max() <= 1  # one grey level: other float sums
        upload = [("files", ("grid.png", response.content, "image/png"))]
        scored = client.post("/score", data={"model": "dcgan"}, files=upload)  # its discriminator's export form
        assert scored.status_code == 200 and len(scored.json()["scores"]) == 1


@pytest.mark.slow
def test_without_torchscript_the_trainer_publishes_the_other_forms_and_reads_them(no_torchscript, fashion_dir,
                                                                                   tmp_path):
    from trainer.evaluation.evaluator import evaluate_version
    from trainer.training.config import TrainConfig

    said = []
    number = train_and_publish(tmp_path, TrainConfig(arch="dcgan", epochs=1, limit=64, data_dir=str(fashion_dir),
                                                     device="cpu", class_samples=500, encoder_steps=5), encoder=True,
                               log=said.append)
    assert [m for m in said if "TorchScript" in m] == [
        "TorchScript skipped: this torch cannot run it; the version gets its torch.export and ONNX forms"]
    version = Store(tmp_path).get("dcgan", number)
    files = version.manifest.files
    for network in ("generator", "discriminator", "encoder"):
        assert form_file(network, "torchscript") not in files
        assert {form_file(network, "export"), form_file(network, "onnx")} <= files.keys()
    assert "classes.json" in files and "classifier.pt" not in files  # the classifier is TorchScript only
    assert version.manifest.export_max_abs_diff is None and set(version.manifest.forms["generator"]) == {"export",
                                                                                                          "onnx"}
    assert version.manifest.generator_sha256 == files["generator.pt2"].sha256
    record = evaluate_version(Store(tmp_path), version, samples=64, data_dir=str(fashion_dir), log=lambda m: None,
                              use_inception=False)
    assert record["fid"] > 0
