import pytest
import torch

from service.engine.runner import GeneratorRunner, bucket_sizes
from shared.imaging import torchscript
from shared.imaging.grids import to_uint8
from shared.imaging.latents import seeded_latents
from shared.imaging.precision import computing_in, within_bf16_bound

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


def test_in_bf16_on_the_cpu_the_runner_holds_bf16_weights_and_leaves_the_callers_module_fp32(trained_store):
    module = torchscript.load(trained_store / "dcgan" / "v1" / "generator.pt")
    cpu, z = torch.device("cpu"), seeded_latents(0, 5, 100)
    runner = GeneratorRunner(module, cpu, 100, max_batch=8, precision="bf16")
    assert {p.dtype for p in runner.module.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in module.parameters()} == {torch.float32}  # warm-up, directions, projection use it
    diff = (runner(z).int() - GeneratorRunner(module, cpu, 100, max_batch=8)(z).int()).abs()
    assert within_bf16_bound(int(diff.max()), float(diff.float().mean()))


class _FixedProjection(torch.nn.Module):
    """A generator whose graph makes an fp32 tensor of its own, as R3GAN's does: it cannot run in bf16 throughout."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ torch.full((z.shape[1], 12), 0.01))


def test_a_generator_that_cannot_run_with_bf16_weights_keeps_autocast():
    module, z = _FixedProjection(), seeded_latents(0, 3, 100)
    runner = GeneratorRunner(module, torch.device("cpu"), 100, max_batch=4, precision="bf16")
    assert runner.module is module
    with torch.inference_mode(), computing_in("bf16", "cpu"):
        expected = to_uint8(module(z).float())
    assert torch.equal(runner(z), expected)
