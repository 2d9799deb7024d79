"""Sample-quality metrics on feature vectors: FID, KID, precision/recall, class coverage.

Pure functions of tensors (float64 where it matters); the feature network lives in
`trainer.classifier` and the orchestration in `trainer.evaluate`.
"""
from __future__ import annotations

import math

import torch


def _stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians.

    Tr((S1 S2)^1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    S1^1/2 S2 S1^1/2, which has the same spectrum and avoids a non-symmetric matrix square root.
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return max(float(value), 0.0)


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D)."""
    return frechet_distance(*_stats(real), *_stats(fake))


def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel of Binkowski et al. (KID)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD^2 over random subsets."""
    g = torch.Generator().manual_seed(seed)
    size = min(subset_size, len(real), len(fake))
    real, fake = real.double(), fake.double()
    values = []
    for _ in range(subsets):
        a = real[torch.randperm(len(real), generator=g)[:size]]
        b = fake[torch.randperm(len(fake), generator=g)[:size]]
        values.append(mmd2_unbiased(a, b))
    t = torch.tensor(values)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point in the same set."""
    radii = torch.empty(len(features), dtype=features.dtype)
    for i in range(0, len(features), chunk):
        d = torch.cdist(features[i:i + chunk], features)
        radii[i:i + chunk] = d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0
    return radii


def _inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    inside = torch.empty(len(points), dtype=torch.bool)
    for i in range(0, len(points), chunk):
        inside[i:i + chunk] = (torch.cdist(points[i:i + chunk], centres) <= radii).any(dim=1)
    return inside


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-nearest-neighbour manifolds.

    Precision: share of generated samples inside the real manifold (realism).
    Recall: share of real samples inside the generated manifold (coverage of the data).
    `real_radii`: `kth_neighbour_radii(real, k)` when already known (most of the cost, for a large real set).
    """
    real, fake = real.float(), fake.float()
    real_radii = kth_neighbour_radii(real, k) if real_radii is None else real_radii
    precision = _inside_any_ball(fake, real, real_radii).float().mean()
    recall = _inside_any_ball(real, fake, kth_neighbour_radii(fake, k)).float().mean()
    return float(precision), float(recall)


def class_coverage(probabilities: torch.Tensor) -> dict:
    """Histogram of predicted classes, its entropy normalised to [0, 1], and the mean confidence."""
    classes = probabilities.shape[1]
    histogram = torch.bincount(probabilities.argmax(1), minlength=classes).double() / len(probabilities)
    nonzero = histogram[histogram > 0]
    entropy = float(-(nonzero * nonzero.log()).sum() / math.log(classes))
    return {
        "class_histogram": [round(float(h), 4) for h in histogram],
        "class_entropy": max(entropy, 0.0),
        "mean_confidence": float(probabilities.max(1).values.mean()),
    }


def minimum_samples(k: int = 3) -> int:
    """The fewest samples `compare` works on: every point needs k other points for its neighbourhood radius.
    (FID and KID are only meaningful with thousands; they are computable from this many.)"""
    return k + 1


def compare(real: torch.Tensor, other: torch.Tensor, other_probs: torch.Tensor, k: int = 3,
            real_radii: torch.Tensor | None = None) -> dict:
    """Every metric of one feature set against the real one (`other_probs`: its class probabilities; `real_radii`
    as `precision_recall` takes them)."""
    kid_mean, kid_std = kid(real, other)
    precision, recall = precision_recall(real, other, k, real_radii)
    return {"fid": fid(real, other), "kid": kid_mean, "kid_std": kid_std, "precision": precision, "recall": recall,
            **class_coverage(other_probs)}
