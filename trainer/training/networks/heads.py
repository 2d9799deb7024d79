"""What the conditional discriminators share: the projection head (Miyato & Koyama 2018)."""
from __future__ import annotations

import torch
from torch import nn


def projected(logits: torch.Tensor, features: torch.Tensor, D: nn.Module, y: torch.Tensor | None,
              class_scores: bool = False):
    """The projection discriminator's output: the unconditional logit plus <embed(y), features> (features pooled
    by summing over space, as Miyato & Koyama do). That is y . s, where s_k = <e_k, features> is the projection's
    score of class k; with `class_scores`, s (N, classes) is returned too: the auxiliary classifier that
    `--class-loss` trains (a classifier sharing the projection's embedding, so D gains no parameters)."""
    if y is None:
        return logits
    scores = features @ D.embed.weight.to(features.dtype)  # read once: under spectral norm a read is an iteration
    out = logits + (scores * y.to(scores.dtype)).sum(1)
    return (out, scores) if class_scores else out
