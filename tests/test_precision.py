"""Precision: which devices compute bf16 natively (capabilities mocked both ways), how a version is served (visible
in /models and /metrics), and the pixel bound of bf16 serving against fp32. The choice itself: tests/test_runtimes.py."""
import pytest
import torch

from service.engine.runner import GeneratorRunner
from shared.imaging import precision, torchscript
from shared.imaging.latents import seeded_latents
from tests.service_helpers import make_client, wait_ready

NO_BF16 = {"amx_bf16": False, "avx512_bf16": False, "avx2": True}


@pytest.fixture
def capabilities(monkeypatch):
    """Set what torch.cpu.get_capabilities() reports."""
    monkeypatch.delenv(precision.FORCE_NO_BF16, raising=False)

    def report(found: dict) -> None:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: found, raising=False)
    return report


def test_a_cpu_with_amx_or_avx512_bf16_computes_bf16_natively(capabilities):
    capabilities({**NO_BF16, "amx_bf16": True, "avx512_bf16": True})
    assert precision.native_bf16(torch.device("cpu")) == "amx_bf16"
    capabilities({**NO_BF16, "avx512_bf16": True})
    assert precision.native_bf16(torch.device("cpu")) == "avx512_bf16"
    capabilities(NO_BF16)
    assert precision.native_bf16(torch.device("cpu")) is None


def test_torch_2_11_without_get_capabilities_falls_back_to_its_feature_checks(monkeypatch):
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision.native_bf16(torch.device("cpu")) == "avx512_bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert precision.native_bf16(torch.device("cpu")) is None


def test_cuda_is_native_from_compute_capability_8(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert precision.native_bf16(torch.device("cuda:0")) == "cuda sm_80"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert precision.native_bf16(torch.device("cuda:0")) is None


def test_the_environment_switch_acts_as_a_device_without_native_bf16(capabilities, monkeypatch):
    capabilities({**NO_BF16, "amx_bf16": True})
    monkeypatch.setenv(precision.FORCE_NO_BF16, "1")
    assert precision.native_bf16(torch.device("cpu")) is None


def test_the_rule_auto_is_bf16_only_where_it_is_native_and_asked_precisions_are_kept(capabilities):
    """The one rule everything resolves a precision with: the trainer, the engine and the benchmarks."""
    cpu = torch.device("cpu")
    capabilities({**NO_BF16, "avx512_bf16": True})
    assert precision.allowed_precisions("auto", cpu) == ("fp32", "bf16") and precision.resolve_precision("auto", cpu) == "bf16"
    capabilities(NO_BF16)
    assert precision.allowed_precisions("auto", cpu) == ("fp32",) and precision.resolve_precision("auto", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"  # asked for: kept, even emulated
    assert precision.allowed_precisions("fp32", "cpu") == ("fp32",)
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.allowed_precisions("fp16", cpu)


@pytest.mark.slow
def test_how_a_version_is_served_shows_in_models_and_metrics(trained_store, monkeypatch):
    monkeypatch.setenv(precision.FORCE_NO_BF16, "1")  # a CPU without native bf16: auto changes nothing
    with make_client(trained_store, precision="auto") as client:
        wait_ready(client)
        info = client.get("/models/dcgan").json()
        (served,) = info["runtimes"]
        assert (served["version"], served["precision"], served["precision_asked"], served["native_bf16"]) == (
            1, "fp32", "auto", None)
        assert set(served["forward_ms"]) == {"torchscript fp32"} and served["forward_ms"]["torchscript fp32"]["1"] > 0
        assert 'latentlab_model_loaded{model="dcgan",precision="fp32",role="latest",version="1"} 1.0' in (
            client.get("/metrics").text)
    # Asked-for bf16 is timed at every bucket size at load; on a CPU that emulates bf16 (as CI's may) a
    # DCGAN image takes ~0.1 s (25 s for a 256-latent forward; more on older CPUs),
    # so small batches keep this about reporting.
    with make_client(trained_store, precision="bf16", max_batch_latents=4, warmup_batch=2) as client:
        wait_ready(client)
        served = client.get("/models/dcgan").json()["runtimes"][0]
        assert served["precision"] == "bf16" and "emulated" in served["reason"]
        assert 'precision="bf16",role="latest",version="1"' in client.get("/metrics").text
        assert client.post("/generate", json={"model": "dcgan", "seed": 0, "count": 4}).status_code == 200


def served_pixels(generator_path, precision_name: str, latents: torch.Tensor) -> torch.Tensor:
    module = torchscript.load(generator_path)
    runner = GeneratorRunner(module, torch.device("cpu"), latents.shape[1], max_batch=256, precision=precision_name)
    return torch.cat([runner(chunk).clone() for chunk in latents.split(256)]).int()


@pytest.mark.slow
@pytest.mark.parametrize("store, model", [("trained_store", "dcgan"), ("trained_store", "gan"),
                                          ("semantic_store", "gan")])
def test_bf16_serving_stays_within_the_pixel_bound_of_fp32(store, model, request):
    """The contract of bf16 serving (shared.imaging.precision): on 512 latents (half a million pixels) no grey level differs from fp32's by
    more than BF16_MAX_GREY_DIFF and the mean difference is under BF16_MEAN_GREY_DIFF."""
    path = request.getfixturevalue(store) / model / "v1" / "generator.pt"
    z = seeded_latents(11, 512, 100)  # 2,048 took 220 s on a CPU that emulates bf16
    diff = (served_pixels(path, "bf16", z) - served_pixels(path, "fp32", z)).abs()
    assert diff.max() <= precision.BF16_MAX_GREY_DIFF, f"largest difference {int(diff.max())} grey levels"
    assert diff.float().mean() < precision.BF16_MEAN_GREY_DIFF, f"mean difference {float(diff.float().mean()):.3f}"
    assert diff.any()  # it really ran in bf16: otherwise this test would prove nothing


@pytest.mark.slow
def test_the_dcgan_stable_recipe_trains_in_bf16_only_where_it_is_native(fashion_dir, tmp_path, capabilities, monkeypatch):
    from trainer.training.config import TrainConfig
    from trainer.training.loop import train
    from trainer.training.settings import recipe_settings

    assert recipe_settings("stable", "dcgan")["precision"] == "auto"
    assert recipe_settings("study", "dcgan")["precision"] == "fp32"  # the study's stays fp32, bit for bit
    assert recipe_settings("stable", "gan")["precision"] == "fp32"  # slower in bf16 on the CPU: fp32
    cfg = TrainConfig(arch="dcgan", epochs=1, limit=64, data_dir=str(fashion_dir), device="cpu", encoder_steps=0,
                      class_samples=0, **recipe_settings("stable", "dcgan"))
    capabilities({**NO_BF16, "avx512_bf16": True})
    native = train(cfg, tmp_path / "native", log=lambda m: None, progress=False)
    capabilities(NO_BF16)
    emulated = train(cfg, tmp_path / "emulated", log=lambda m: None, progress=False)
    assert (native.config.precision, emulated.config.precision) == ("bf16", "fp32")  # recorded as trained
    assert native.generator.main[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert emulated.generator.main[0].weight.is_contiguous()  # the study's layout
    assert not torch.allclose(native.history, emulated.history)  # they really trained differently
