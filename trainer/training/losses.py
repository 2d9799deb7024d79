"""What the two players minimise: the adversarial loss and the regularisers of D (R1, R2, LeCam, the auxiliary class
loss), as one object, `Objective`, that the training step asks for each player's loss.

Nothing here synchronises with the host (no `.item()`, no data-dependent Python branches): the training step may
run in a CUDA graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

LECAM_DECAY = 0.99  # of the anchors, moving averages of D's mean output on real and on generated images


class AdversarialLoss(Protocol):
    name: str
    scores: str  # what `score` reports: "probability" (sigmoid of D's output) or "raw" (D's output itself)
    relativistic: bool  # G's loss compares its fakes with real images (it needs D's logits of both)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor: ...

    def generator(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None) -> torch.Tensor: ...

    def score(self, logits: torch.Tensor) -> torch.Tensor: ...


class NonSaturatingBCE:
    """The study's loss: D separates real (1) from fake (0) by BCE; G maximises log D(G(z))."""

    name, scores, relativistic = "bce", "probability", False

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def generator(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits).mean()


class Hinge:
    """D: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))); G: -mean(D(G(z))). D's outputs are raw scores,
    not probabilities: above +1 confidently real, below -1 confidently fake."""

    name, scores, relativistic = "hinge", "raw", False

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def generator(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return -fake_logits.mean()

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean()


class RelativisticPairing:
    """RpGAN (Jolicoeur-Martineau 2019; R3GAN's loss): each real image is paired with a fake and D is asked which
    of the two is more real, softplus(-(D(x) - D(G(z)))); G the opposite, softplus(-(D(G(z)) - D(x))). With R1 and
    R2 it converges locally (Huang et al. 2024) and covers modes the classic loss drops. D's outputs are raw scores."""

    name, scores, relativistic = "rpgan", "raw", True

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(fake_logits - real_logits).mean()

    def generator(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return F.softplus(real_logits - fake_logits).mean()

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean()


LOSSES: dict[str, type] = {"bce": NonSaturatingBCE, "hinge": Hinge, "rpgan": RelativisticPairing}


def lecam_penalty(d_real: torch.Tensor, d_fake: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """LeCam (Tseng et al. 2021, as PyTorch-StudioGAN computes it): mean(relu(D(x) - a_fake)^2) +
    mean(relu(a_real - D(G(z)))^2), with a_real, a_fake moving averages of D's mean outputs (updated in place
    first). It keeps D's outputs on each side from drifting past the other side's usual value."""
    anchors.lerp_(torch.stack([d_real.detach().mean(), d_fake.detach().mean()]), 1 - LECAM_DECAY)
    return F.relu(d_real - anchors[1]).square().mean() + F.relu(anchors[0] - d_fake).square().mean()


def _given(labels: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """D's arguments after the images: the classes, for a conditional D."""
    return () if labels is None else (labels,)


@dataclass(frozen=True)
class Objective:
    """The adversarial loss plus D's regularisers, each off at 0:
    - `r1`: gamma/2 E|grad_x D(x)|^2 on real images (Mescheder et al. 2018);
    - `r2`: the same on generated images (R3GAN pairs both with the relativistic loss);
    - `penalty_every`: R1 and R2 only every K steps, K times as strong (StyleGAN2's lazy regularisation: the
      double backward they need is the dearest part of a step);
    - `lecam`: LeCam regularisation towards moving anchors (Tseng et al. 2021);
    - `class_loss`: for a conditional D, cross-entropy of its projection class scores: on real images in D's
      loss (fakes would teach D G's mistakes: TAC-GAN's argument), on G's fakes, as the class they were drawn
      in, in G's."""

    adversarial: AdversarialLoss
    r1: float = 0.0
    r2: float = 0.0
    penalty_every: int = 1
    lecam: float = 0.0
    class_loss: float = 0.0

    def discriminator(self, D: nn.Module, D_local: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                      labels: torch.Tensor | None, seen: Callable[[torch.Tensor], torch.Tensor],
                      anchors: torch.Tensor, penalise: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's loss on `real` against `fake` (of the classes `labels` when conditional), as D sees them through
        `seen` (the recipe's augmentation and noise); with D's outputs on both; R1 and R2 when `penalise` (every
        `penalty_every`th step). `D` is the DDP wrapper when distributed: only its forward all-reduces the gradients
        in backward, once for both terms."""
        real = real.detach().requires_grad_(bool(self.r1) and penalise)
        fake = fake.detach().requires_grad_(bool(self.r2) and penalise)
        d_real, class_term = self._judged(D, seen(real), labels)
        d_fake = D_local(seen(fake), *_given(labels))
        loss = self.adversarial.discriminator(d_real.float(), d_fake.float()) + class_term
        if self.lecam:
            loss = loss + self.lecam * lecam_penalty(d_real.float(), d_fake.float(), anchors)
        penalised = [(weight * self.penalty_every, images, logits) for weight, images, logits
                     in ((self.r1, real, d_real), (self.r2, fake, d_fake)) if weight and penalise]
        if penalised:  # both gradients from one double backward: each image batch only reaches its own logits
            grads = torch.autograd.grad(sum(logits.float().sum() for _, _, logits in penalised),
                                        [images for _, images, _ in penalised], create_graph=True)
            for (weight, _, _), grad in zip(penalised, grads):
                loss = loss + weight / 2 * grad.square().flatten(1).sum(1).mean()
        return loss, d_real, d_fake

    def generator(self, D_local: nn.Module, fake_seen: torch.Tensor, labels: torch.Tensor | None,
                  real_seen: torch.Tensor | None = None) -> torch.Tensor:
        """G's loss on its fakes as D sees them, beside the real images `real_seen` where the loss compares the two
        (D's gradients from here are discarded)."""
        d_out, class_term = self._judged(D_local, fake_seen, labels)
        d_real = None
        if self.adversarial.relativistic:
            with torch.no_grad():  # no gradient reaches G through the real images' logits
                d_real = D_local(real_seen, *_given(labels)).float()
        return self.adversarial.generator(d_out.float(), d_real) + class_term

    def _judged(self, D: nn.Module, images: torch.Tensor,
                labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | float]:
        """D's logits on `images`, and class_loss x the cross-entropy of its class scores against `labels`
        (one-hot rows as target probabilities: no host sync); 0 where there is none."""
        if not (self.class_loss and labels is not None):
            return D(images, *_given(labels)), 0.0
        logits, scores = D(images, labels, class_scores=True)
        return logits, self.class_loss * F.cross_entropy(scores.float(), labels.float())
