import math

import pytest
import torch

from trainer.evaluation.metrics import class_coverage, fid, frechet_distance, kid, mmd2_unbiased, precision_recall

pytestmark = pytest.mark.fast  # make check runs it on every commit


def gaussian(n, d, mean=0.0, std=1.0, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * std + mean


def test_fid_of_a_set_against_itself_is_zero():
    x = gaussian(2000, 16)
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form():
    # diagonal covariances: FD = |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([3.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float(((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())
    assert frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(expected, rel=1e-10)
    # a full (rotated) covariance: FD is invariant to rotating both distributions together
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    got = frechet_distance(q @ mu1.double(), q @ torch.diag(s1).double() @ q.T,
                           q @ mu2.double(), q @ torch.diag(s2).double() @ q.T)
    assert got == pytest.approx(expected, rel=1e-8)


def test_fid_between_shifted_gaussian_samples_approaches_the_closed_form():
    d, shift = 8, 0.5
    a, b = gaussian(20000, d, seed=1), gaussian(20000, d, mean=shift, std=2.0, seed=2)
    expected = d * shift**2 + d * (1 + 4 - 2 * 2)  # |dmu|^2 + Tr(I + 4I - 2*2I)
    assert fid(a, b) == pytest.approx(expected, rel=0.05)


def test_kid_is_unbiased_on_a_small_known_example():
    # unbiased MMD^2 by the definition, with explicit loops over pairs
    x, y = gaussian(6, 3, seed=3), gaussian(5, 3, mean=0.3, seed=4)
    k = lambda a, b: (float(a @ b) / 3 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(6) for j in range(5)) / (6 * 5)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    # unbiased: over many draws from one distribution the mean is ~0 (a biased estimate stays above 0)
    draws = torch.tensor([mmd2_unbiased(gaussian(50, 4, seed=s), gaussian(50, 4, seed=1000 + s)) for s in range(300)])
    assert abs(draws.mean()) < 3 * draws.std() / math.sqrt(len(draws))
    assert (draws < 0).any()
    mean, std = kid(gaussian(400, 4, seed=5), gaussian(400, 4, mean=1.0, seed=6), subsets=20, subset_size=100)
    assert mean > 0.1 and std > 0


def test_precision_recall_of_identical_and_disjoint_sets():
    x = gaussian(1500, 8, seed=7)
    assert precision_recall(x, x.clone()) == pytest.approx((1.0, 1.0))
    far = gaussian(1500, 8, mean=100.0, seed=8)
    assert precision_recall(x, far) == pytest.approx((0.0, 0.0))
    # a generator covering half of the data: precise, but recalls only about half
    half = x[x[:, 0] > 0]
    precision, recall = precision_recall(x, half)
    assert precision > 0.95 and 0.3 < recall < 0.75


def test_class_coverage():
    one_class = torch.zeros(100, 10)
    one_class[:, 3] = 1.0
    c = class_coverage(one_class)
    assert c["class_entropy"] == 0.0 and c["class_histogram"][3] == 1.0 and c["mean_confidence"] == 1.0
    uniform = torch.eye(10).repeat(10, 1)
    assert class_coverage(uniform)["class_entropy"] == pytest.approx(1.0)
    two = class_coverage(torch.eye(10)[[0, 1] * 50])
    assert two["class_entropy"] == pytest.approx(math.log(2) / math.log(10))
