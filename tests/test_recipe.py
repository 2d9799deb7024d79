"""Recipes: each component against a known case, the seed recipe against the study's step, and a run with
every component interrupted mid-epoch and resumed, bit for bit."""
from __future__ import annotations

import copy
import json
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from shared.imaging import torchscript
from shared.imaging.latents import LatentLayout, seeded_latents
from shared.store import Store
from tests.conftest import assert_user_error, run_cli, run_main
from trainer.cli import main as trainer_main
from trainer.training import loop
from trainer.training.architectures import count_parameters, get_architecture
from trainer.training.augment import DiffAugment, cutout, translation
from trainer.training.average import standing_statistics, update_ema
from trainer.training.config import ConfigError, TrainConfig
from trainer.training.data import load_training_images
from trainer.training.distributed import Ranks
from trainer.training.interrupt import StopRequested
from trainer.training.losses import Hinge, NonSaturatingBCE, Objective
from trainer.training.nets import Nets, add_spectral_norm, without_parametrizations
from trainer.training.recipe import Recipe, build_recipe
from trainer.training.settings import recipe_settings
from trainer.training.state import STATE_FILE, TrainingState
from trainer.training.step import train_step


def everything(arch: str) -> dict:
    """Every component on, away from its default (named outright: the presets change as ablations do)."""
    return recipe_settings("stable", arch, loss="hinge", lr_g=1e-4, lr_d=4e-4, augment="translation,cutout",
                           augment_p=0.7, d_steps=2, ema_warmup=False, ema=0.999, spectral_norm=True, r1=1.0,
                           batch_size=32, d_norm="spectral", beta1=0.0, instance_noise=0.1, lecam=0.3, ema_kimg=1.0,
                           lr_decay=0.6)


def averaging(**components) -> Recipe:
    """A recipe with only the moving average's settings (what `update_ema` reads)."""
    return Recipe("test", Objective(Hinge()), optimizer_G=None, optimizer_D=None, **components)


# ---------------------------------------------------------------------- components, one by one
def test_ema_arithmetic_and_warm_up():
    G = torch.nn.Linear(2, 1, bias=False)
    average = torch.nn.Linear(2, 1, bias=False).requires_grad_(False)
    with torch.no_grad():
        average.weight.fill_(0.0)
        G.weight.fill_(1.0)
    steps = torch.zeros(())
    update_ema(average, G, steps, averaging(ema=0.999))  # t=0: d = min(0.999, 1/10) = 0.1
    assert torch.allclose(average.weight, torch.full((1, 2), 0.9)) and steps.item() == 1
    with torch.no_grad():
        G.weight.fill_(2.0)
    update_ema(average, G, steps, averaging(ema=0.999))  # t=1: d = 2/11
    expected = 2 / 11 * 0.9 + 9 / 11 * 2.0
    assert torch.allclose(average.weight, torch.full((1, 2), expected))
    steps.fill_(10_000)  # long after the warm-up, d is the decay itself
    before = average.weight.clone()
    update_ema(average, G, steps, averaging(ema=0.9))
    assert torch.allclose(average.weight, 0.9 * before + 0.1 * 2.0)


@pytest.mark.parametrize("arch,counts", [("gan", (100_609,)), ("dcgan", (661_697,))])
def test_spectral_norm_makes_each_layers_largest_singular_value_one(arch, counts):
    torch.manual_seed(0)
    D = add_spectral_norm(get_architecture(arch).discriminator())
    assert count_parameters(D) == counts[0]  # the seed's count: SN adds only buffers (u, v)
    x = torch.randn(16, 1, *((28, 28) if arch == "gan" else (32, 32)))
    for _ in range(30):  # each training-mode forward runs one power iteration
        D(x)
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m) for m in layers)
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.reshape(m.weight.shape[0], -1), ord=2)
        assert abs(sigma.item() - 1) < 0.02
    exported = without_parametrizations(D, get_architecture(arch).discriminator())
    assert count_parameters(exported) == counts[0] and not any(
        torch.nn.utils.parametrize.is_parametrized(m) for m in exported.modules())
    D.eval()
    exported.eval()
    assert torch.allclose(D(x), exported(x), atol=1e-6)


def test_hinge_loss_on_hand_computed_logits():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # D: mean(relu(1 - [2, .5, -1])) + mean(relu(1 + [-2, 0, 1])) = mean(0, .5, 2) + mean(0, 1, 2)
    assert Hinge().discriminator(real, fake).item() == pytest.approx(2.5 / 3 + 1.0)
    assert Hinge().generator(fake).item() == pytest.approx(1 / 3)  # -mean(fake)
    assert Hinge().score(real).item() == pytest.approx(0.5)  # raw, not a probability
    assert NonSaturatingBCE().score(torch.zeros(3)).item() == 0.5


def test_augmentation_is_differentiable_and_repeats_with_the_seed():
    x = torch.rand(8, 1, 32, 32, requires_grad=True)
    augment = DiffAugment(("translation", "cutout"), probability=0.6)
    torch.manual_seed(3)
    first = augment(x)
    torch.manual_seed(3)
    assert torch.equal(augment(x), first)
    torch.manual_seed(4)
    assert not torch.equal(augment(x), first)
    first.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

    # and through it, gradients reach G
    arch = get_architecture("dcgan")
    G, D = arch.generator(), arch.discriminator()
    Hinge().generator(D(augment(G(torch.randn(4, 100))))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())


def test_translation_shifts_and_cutout_blanks_half_the_side():
    x = torch.ones(64, 1, 16, 16)
    cut = cutout(x)
    blanked = (cut == 0).flatten(1).sum(1)
    assert blanked.max().item() == 8 * 8 and blanked.min().item() > 0  # a half-side square, maybe over an edge
    marker = torch.zeros(64, 1, 16, 16)
    marker[:, :, 8, 8] = 1
    moved = translation(marker)
    positions = moved.flatten(1).argmax(1)
    rows, cols = positions // 16, positions % 16
    assert (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2 and len(set(positions.tolist())) > 5


def test_ema_without_warm_up_uses_the_decay_from_the_first_update():
    G = torch.nn.Linear(2, 1, bias=False)
    average = torch.nn.Linear(2, 1, bias=False).requires_grad_(False)
    with torch.no_grad():
        average.weight.fill_(0.0)
        G.weight.fill_(1.0)
    update_ema(average, G, torch.zeros(()), averaging(ema=0.99, ema_warmup=False))
    assert torch.allclose(average.weight, torch.full((1, 2), 0.01))


def test_the_half_life_average_ramps_up_with_the_images_seen():
    recipe = averaging(ema_kimg=10, images_per_step=100)  # half-life 10,000 images, at most 5% of those seen
    early = recipe.ema_decay(torch.tensor(99.0))  # 10,000 images seen: half-life 500 images = 5 steps
    assert early.item() == pytest.approx(0.5 ** (1 / 5))
    late = recipe.ema_decay(torch.tensor(1e6))  # long after: the half-life itself, 100 steps
    assert late.item() == pytest.approx(0.5 ** (1 / 100))
    assert averaging(ema=0.999).ema_decay(torch.tensor(1e6)).item() == pytest.approx(0.999)


def test_instance_noise_falls_linearly_to_zero_over_the_run():
    recipe = averaging(instance_noise=0.2, noise_steps=100)
    x = torch.zeros(4096, 1, 8, 8)
    for steps, std in ((0, 0.2), (50, 0.1), (100, 0.0), (150, 0.0)):
        assert recipe.d_input(x, torch.tensor(float(steps))).std().item() == pytest.approx(std, abs=2e-3)
    assert averaging().d_input(x, torch.tensor(0.0)) is x  # off: D sees the images themselves, no draw


def test_learning_rates_fall_linearly_to_zero_over_the_runs_last_fraction():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    nets = SimpleNamespace(opt_G=torch.optim.Adam(G.parameters()), opt_D=torch.optim.Adam(D.parameters()))
    recipe = SimpleNamespace(optimizer_G=SimpleNamespace(lr=1e-3), optimizer_D=SimpleNamespace(lr=4e-3))
    schedule = loop.lr_schedule(nets, recipe, decay=0.5)
    for progress, scale in ((0.0, 1.0), (0.5, 1.0), (0.75, 0.5), (0.9, 0.2), (1.0, 0.0), (1.2, 0.0)):
        schedule(progress)
        assert nets.opt_G.param_groups[0]["lr"] == pytest.approx(1e-3 * scale)
        assert nets.opt_D.param_groups[0]["lr"] == pytest.approx(4e-3 * scale)


def test_a_runs_progress_is_its_steps_or_its_minutes_whichever_is_further():
    by_epochs = TrainingState(TrainConfig(epochs=4))
    by_epochs.epoch, by_epochs.step = 1, 5
    assert loop.progress(by_epochs, steps=10) == pytest.approx(15 / 40)
    timed = TrainingState(TrainConfig(epochs=100_000, minutes=2.0))
    assert loop.progress(timed, steps=10, until=time.perf_counter() + 30) == pytest.approx(0.75, abs=0.01)


def test_a_timed_decay_is_refused_across_ranks(tmp_path, fashion_dir):
    cfg = TrainConfig(arch="gan", epochs=1, minutes=1.0, limit=256, data_dir=str(fashion_dir), device="cpu",
                      **recipe_settings("study", "gan", lr_decay=0.5))
    with pytest.raises(ConfigError, match="--lr-decay"):
        loop.train(cfg, tmp_path / "run", log=lambda m: None, progress=False, ranks=Ranks(0, 2, 0))


def test_lecam_penalty_by_hand():
    from trainer.training.losses import LECAM_DECAY, lecam_penalty

    anchors = torch.tensor([1.0, -1.0])  # D's usual outputs: +1 on real images, -1 on generated ones
    d_real, d_fake = torch.tensor([0.5, -2.0]), torch.tensor([2.0, -3.0])
    penalty = lecam_penalty(d_real, d_fake, anchors)
    a_real = LECAM_DECAY * 1.0 + (1 - LECAM_DECAY) * d_real.mean()
    a_fake = LECAM_DECAY * -1.0 + (1 - LECAM_DECAY) * d_fake.mean()
    expected = F.relu(d_real - a_fake).square().mean() + F.relu(a_real - d_fake).square().mean()
    assert torch.allclose(anchors, torch.stack([a_real, a_fake])) and penalty.item() == pytest.approx(expected.item())


def test_d_norm_spectral_replaces_batch_norm_and_publishes_a_plain_d():
    """--d-norm spectral: no BatchNorm left in D, spectral norm on every conv; the exported D is an
    unparametrised copy without BatchNorm that scores like the trained one."""
    arch = get_architecture("dcgan")
    cfg = TrainConfig(arch="dcgan", **recipe_settings("study", "dcgan", d_norm="spectral"))
    nets = Nets.build(arch, build_recipe(cfg), torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in nets.D.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in nets.G.modules())  # G keeps the study's
    convs = [m for m in nets.D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(torch.nn.utils.parametrize.is_parametrized(m) for m in convs)
    plain = without_parametrizations(nets.D, arch.discriminator(batch_norm=False)).eval()
    x = torch.randn(4, 1, 32, 32)
    nets.D.eval()
    assert torch.allclose(plain(x), nets.D(x), atol=1e-6)
    none = Nets.build(arch, build_recipe(TrainConfig(arch="dcgan", d_norm="none")), torch.device("cpu")).D
    assert not any(isinstance(m, torch.nn.BatchNorm2d) or torch.nn.utils.parametrize.is_parametrized(m)
                   for m in none.modules())
    assert count_parameters(none) == count_parameters(arch.discriminator()) - 2 * (128 + 256)  # BN's scale, shift


def test_standing_statistics_are_the_generators_own():
    """BatchNorm statistics that belong to other weights are replaced by the generator's own: each BN layer's
    running mean is that of its inputs over the standing batches."""
    torch.manual_seed(0)
    G = get_architecture("dcgan").generator()
    for m in G.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(5.0)  # as if copied from another generator
            m.running_var.fill_(9.0)
    fixed = standing_statistics(G, LatentLayout(100), 16, "cpu")
    assert fixed is not G and not fixed.training
    assert all(m.running_mean[0].item() == 5.0 for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inputs: dict[str, list] = {}
    replay = copy.deepcopy(fixed).train()  # the same weights, the same standing noise, inputs recorded
    hooks = [m.register_forward_hook(lambda m, x, y, name=name: inputs.setdefault(name, []).append(x[0]))
             for name, m in replay.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _ in range(64):
            replay(torch.randn(16, 100, generator=generator))
    for hook in hooks:
        hook.remove()
    for name, m in fixed.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.allclose(m.running_mean, torch.cat(inputs[name]).mean((0, 2, 3)), atol=1e-4)
    lone = get_architecture("gan").generator()
    assert standing_statistics(lone, LatentLayout(100), 16, "cpu") is lone  # no BatchNorm: nothing to recompute


def test_two_discriminator_steps_per_generator_step(tmp_path, fashion_dir):
    """--d-steps 2: every step takes two batches, D is updated on each, G once; an epoch has half the steps."""
    cfg = TrainConfig(arch="gan", epochs=1, limit=256, data_dir=str(fashion_dir), device="cpu",
                      **recipe_settings("study", "gan", d_steps=2, batch_size=32))
    result = loop.train(cfg, tmp_path / "run", log=lambda m: None, progress=False)
    state = TrainingState.load(tmp_path / "run" / STATE_FILE)
    assert len(result.history) == 4 and result.iterations_per_epoch == 4  # 256 images, 64 a step
    assert {int(v["step"]) for v in state.weights["opt_D"]["state"].values()} == {8}
    assert {int(v["step"]) for v in state.weights["opt_G"]["state"].values()} == {4}


def test_d_steps_are_refused_across_ranks(tmp_path, fashion_dir):
    cfg = TrainConfig(arch="gan", epochs=1, limit=256, data_dir=str(fashion_dir), device="cpu",
                      **recipe_settings("study", "gan", d_steps=2))
    with pytest.raises(ConfigError, match="--d-steps"):
        loop.train(cfg, tmp_path / "run", log=lambda m: None, progress=False, ranks=Ranks(0, 2, 0))


# ---------------------------------------------------------------------- the seed recipe is the study's step
def study_step(G, D, opt_G, opt_D, real, noise):
    """The trainer's step before recipes existed, copied: BCE, D then G, sigmoid means."""
    fake = G(noise)
    d_real, d_fake = D(real), D(fake.detach())
    loss_D = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
              + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    opt_D.step()
    out = D(fake)
    loss_G = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    opt_G.step()
    return torch.stack([loss_D, loss_G, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean()]).detach()


@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_the_seed_recipe_trains_bit_identically_to_the_study_step(arch, fashion_dir):
    spec = get_architecture(arch)
    data = load_training_images("fashion-mnist", str(fashion_dir), spec.image_size, limit=96).float() / 127.5 - 1
    cfg = TrainConfig(arch=arch, **recipe_settings("study", arch))
    runs = []
    for use_recipe in (True, False):
        torch.manual_seed(0)
        nets = Nets.build(spec, build_recipe(cfg), torch.device("cpu"))
        assert nets.G_ema is None
        stats = []
        for i in range(3):
            real, noise = data[i * 32:(i + 1) * 32], torch.randn(32, spec.latent_dim)
            stats.append(train_step(nets, build_recipe(cfg), real, noise) if use_recipe else
                         study_step(nets.G, nets.D, nets.opt_G, nets.opt_D, real, noise))
        runs.append((nets, torch.stack(stats)))
    (a, stats_a), (b, stats_b) = runs
    assert torch.equal(stats_a, stats_b)
    for x, y in zip([*a.G.state_dict().values(), *a.D.state_dict().values()],
                    [*b.G.state_dict().values(), *b.D.state_dict().values()]):
        assert torch.equal(x, y)


# ---------------------------------------------------------------------- resume with everything on
def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


class StopAfter(StopRequested):
    """A stop request that arrives after `checks` looks at it: mid-epoch, as a Ctrl-C would."""

    def __init__(self, checks: int, **kw) -> None:
        super().__init__(**kw)
        self.left = checks

    @property
    def requested(self) -> bool:
        self.left -= 1
        return self.left < 0

    @requested.setter
    def requested(self, value) -> None:
        pass


@pytest.mark.parametrize("arch", ["gan", "dcgan"])
def test_every_component_resumes_bit_identically_from_mid_epoch(tmp_path, fashion_dir, monkeypatch, arch):
    cfg = TrainConfig(arch=arch, epochs=2, limit=320, data_dir=str(fashion_dir), device="cpu",
                      **everything(arch))  # batches of 32, two D steps: 5 steps an epoch
    quiet = dict(log=lambda m: None, progress=False)
    straight = loop.train(cfg, tmp_path / "straight", **quiet)

    monkeypatch.setattr(loop, "StopRequested", lambda **kw: StopAfter(7, **kw))  # epoch 2, step 2 of 5
    stopped = loop.train(cfg, tmp_path / "resumed", **quiet)
    assert stopped.interrupted
    saved = TrainingState.load(tmp_path / "resumed" / STATE_FILE)
    assert (saved.epoch, saved.step) == (1, 2) and {"G_ema", "ema_steps"} <= saved.weights.keys()
    monkeypatch.undo()
    resumed = loop.train(cfg, tmp_path / "resumed", resume=True, **quiet)

    a, b = (TrainingState.load(tmp_path / run / STATE_FILE) for run in ("straight", "resumed"))
    for key in ("G", "G_ema", "ema_steps", "D", "opt_G", "opt_D", "steps", "lecam_anchors"):
        assert equal(a.weights[key], b.weights[key]), key
    assert torch.equal(a.history, b.history) and len(a.history) == 10
    assert equal(straight.generator.state_dict(), resumed.generator.state_dict())
    assert b.weights["ema_steps"].item() == b.weights["steps"].item() == 10
    assert b.weights["lecam_anchors"].abs().sum() > 0
    # the last of 10 steps trained at 9/10 of the run: 0.1 of the last 0.6 of the rates left
    assert b.weights["opt_G"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.1 / 0.6)
    assert b.weights["opt_D"]["param_groups"][0]["lr"] == pytest.approx(4e-4 * 0.1 / 0.6)


# ---------------------------------------------------------------------- what gets published
@pytest.mark.slow
def test_a_recipe_run_publishes_the_average_and_records_every_component(tmp_path, fashion_dir):
    out = tmp_path / "models"
    result = run_cli("trainer", "--arch", "gan", "--epochs", "1", "--limit", "256", "--batch-size", "64",
                     "--out", str(out), "--data-dir", str(fashion_dir), "--no-evaluate", "--recipe", "stable",
                     "--augment", "translation,cutout", "--augment-p", "0.5", "--lr-g", "3e-4", "--loss", "hinge",
                     "--no-encoder")
    assert result.returncode == 0, result.stderr
    version = Store(out).get("gan")
    recipe = version.manifest.recipe
    assert recipe == {"name": "stable", "loss": "hinge", "lr_g": 3e-4, "lr_d": 8e-4, "ema": 0.999, "ema_warmup": True,
                      "ema_kimg": 0.0, "spectral_norm": True, "d_norm": "batch", "augment": "translation,cutout",
                      "augment_p": 0.5, "r1": 1.0, "r2": 0.0, "penalty_every": 1, "beta2": 0.999, "d_steps": 1, "beta1": 0.5, "instance_noise": 0.0, "lecam": 0.0,
                      "lr_decay": 0.0,
                      "class_loss": 0.0, "batch_size": 64, "precision": "fp32", "d_scores": "raw"}
    assert version.manifest.parameters.discriminator == 100_609  # SN baked into plain weights on export
    assert json.loads((version.path / "manifest.json").read_text())["discriminator_output"].startswith("raw")

    # the published generator is G's moving average, not the last G
    state = TrainingState.load(out / ".runs" / "gan" / STATE_FILE)
    spec = get_architecture("gan")
    G, G_ema = spec.generator(), spec.generator()
    G.load_state_dict(state.weights["G"])
    G_ema.load_state_dict(state.weights["G_ema"])
    z = seeded_latents(0, 8, 100)
    published = torchscript.load(version.generator_path)
    with torch.no_grad():
        assert torch.allclose(published(z), G_ema.eval()(z), atol=1e-5)
        assert not torch.allclose(published(z), G.eval()(z), atol=1e-3)


@pytest.mark.parametrize("flags,needle", [
    (["--ema", "1.5"], "[0, 1)"), (["--augment", "rotate"], "unknown augmentation"),
    (["--augment-p", "0"], "(0, 1]"), (["--r1", "-1"], ">= 0"), (["--recipe", "best"], "unknown recipe 'best'"),
    (["--d-norm", "layer"], "invalid choice"), (["--beta1", "1"], "[0, 1)"), (["--instance-noise", "-0.1"], ">= 0"),
    (["--lecam", "nan"], ">= 0"), (["--ema-kimg", "-1"], ">= 0"), (["--class-loss", "-1"], ">= 0"),
])
def test_bad_recipe_flags_exit_2(flags, needle, tmp_path, capsys):
    result = run_main(trainer_main, "--arch", "gan", "--epochs", "1", "--out", str(tmp_path), *flags, capsys=capsys)
    assert_user_error(result, needle)
