import pytest
import torch

from service.engine.runner import GeneratorRunner, bucket_sizes
from shared.imaging import torchscript
from shared.imaging.grids import to_uint8
from shared.imaging.latents import seeded_latents

pytestmark = pytest.mark.fast  # make check runs it on every commit


def test_bucket_sizes_are_powers_of_two_up_to_the_batch_limit():
    assert bucket_sizes(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert bucket_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert bucket_sizes(1) == [1]


def test_on_the_cpu_the_runner_is_the_plain_forward_quantised(trained_store):
    module = torchscript.load(trained_store / "dcgan" / "v1" / "generator.pt")
    runner = GeneratorRunner(module, torch.device("cpu"), 100, max_batch=8, cuda_graphs=True)
    assert runner.buckets == []  # no graphs off CUDA, whatever the setting
    z = seeded_latents(0, 5, 100)
    with torch.inference_mode():
        expected = to_uint8(module(z))
    assert torch.equal(runner(z), expected)
