"""CUDA-only checks, skipped without a GPU; benchmarks/gpu_check.sh runs them on one."""
import numpy as np
import pytest
import torch

from service.runner import GeneratorRunner, bucket_sizes
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
