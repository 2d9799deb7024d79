"""CUDA-only checks, skipped without a GPU; benchmarks/gpu_check.sh runs them on one."""
import numpy as np
import pytest
import torch

from service.engine.runner import GeneratorRunner, bucket_sizes
from shared.imaging import torchscript
from shared.imaging.latents import seeded_latents
from tests.service_helpers import make_client, png, wait_ready

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_cuda_graph_replays_match_the_eager_forward(trained_store, arch):
    device = torch.device("cuda")
    module = torchscript.load(trained_store / arch / "v1" / "generator.pt", device)
    graphs = GeneratorRunner(module, device, 100, max_batch=64, cuda_graphs=True)
    eager = GeneratorRunner(module, device, 100, max_batch=64, cuda_graphs=False)
    assert [b.size for b in graphs.buckets] == bucket_sizes(64)  # every bucket captured
    for n in (1, 3, 8, 17, 64, 65):  # 65: above the largest bucket, eager fallback
        z = seeded_latents(n, n, 100)
        a, b = graphs(z).clone(), eager(z)
        assert a.shape == b.shape and a.dtype == torch.uint8
        assert (a.int() - b.int()).abs().max() <= 1  # padding rows never leak into the real ones


def test_the_service_on_cuda_serves_what_the_cpu_serves(trained_store):
    body = {"model": "dcgan", "seed": 3, "count": 16}
    with make_client(trained_store, device="cuda") as gpu, make_client(trained_store, device="cpu") as cpu:
        wait_ready(gpu)
        wait_ready(cpu)
        assert gpu.get("/readyz").json()["device"].startswith("cuda")
        a = np.asarray(png(gpu.post("/generate", json=body)), dtype=np.int16)
        b = np.asarray(png(cpu.post("/generate", json=body)), dtype=np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2  # other kernels, other rounding


def cuda_config(fashion_dir, epochs, **kw):
    from trainer.training.config import TrainConfig

    return TrainConfig(**{"arch": "dcgan", "epochs": epochs, "limit": 1024, "batch_size": 64,
                          "data_dir": str(fashion_dir), "device": "cuda", **kw})


def test_a_graphed_run_takes_the_eager_runs_steps(tmp_path, fashion_dir):
    """Same seed, same data order and noise: the histories agree within 1e-3 over the first 16 steps (cuDNN
    picks kernels per run; the graph replays the same arithmetic)."""
    from trainer.training.loop import train

    quiet = dict(log=lambda m: None, progress=False)
    graphed = train(cuda_config(fashion_dir, 1, cuda_graphs="on"), tmp_path / "g", **quiet)
    eager = train(cuda_config(fashion_dir, 1, cuda_graphs="off"), tmp_path / "e", **quiet)
    assert graphed.cuda_graphs and not eager.cuda_graphs
    assert torch.allclose(graphed.history[:16], eager.history[:16], atol=1e-3, rtol=1e-3)


def test_graph_mode_resumes(tmp_path, fashion_dir):
    from trainer.training.loop import train

    quiet = dict(log=lambda m: None, progress=False)
    train(cuda_config(fashion_dir, 1, cuda_graphs="on"), tmp_path / "run", **quiet)
    resumed = train(cuda_config(fashion_dir, 2, cuda_graphs="on"), tmp_path / "run", resume=True, **quiet)
    assert resumed.cuda_graphs and len(resumed.history) == 2 * 16 and torch.isfinite(resumed.history).all()


def test_a_decaying_learning_rate_trains_eagerly_on_cuda(tmp_path, fashion_dir):
    """A captured optimiser step keeps the rate it was captured with: --lr-decay turns auto's graph off."""
    from trainer.training.loop import train
    from trainer.training.settings import recipe_settings

    logged = []
    result = train(cuda_config(fashion_dir, 1, cuda_graphs="auto", **recipe_settings("study", "dcgan", lr_decay=1.0)),
                   tmp_path / "run", log=logged.append, progress=False)
    assert not result.cuda_graphs and any("eager steps" in line for line in logged)


def test_every_recipe_component_runs_in_a_cuda_graph(tmp_path, fashion_dir):
    """EMA, spectral norm, the hinge loss, DiffAugment's random draws and R1's double backward, captured."""
    from trainer.training.loop import train
    from trainer.training.settings import recipe_settings

    quiet = dict(log=lambda m: None, progress=False)
    components = recipe_settings("stable", "dcgan", ema=0.999, spectral_norm=True, r1=1.0, loss="hinge",
                                 augment="translation,cutout", augment_p=0.5, d_steps=2)
    result = train(cuda_config(fashion_dir, 1, cuda_graphs="on", **components), tmp_path / "run", **quiet)
    assert result.cuda_graphs and torch.isfinite(result.history).all()
    assert any(p.abs().sum() > 0 for p in result.generator.parameters())  # the EMA generator was trained
