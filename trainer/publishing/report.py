"""The study's figures for a trained version: training curves, samples and the latent sweep (and, for a conditional
version, `classes.png`: the same eight styles drawn as every class).

`samples.png` and `sweep.png` are made by `shared.sampling` from the exported TorchScript generator:
the same code and the same module the service uses, so `POST /generate {"seed": 0, "count": 8,
"scale": 4}` and `POST /sweep {"scale": 3}` give these very pictures.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from shared.imaging.grids import render_grid
from shared.imaging.latents import STUDY_SWEEP_DIMS, STUDY_SWEEP_VALUES, LatentLayout
from shared.imaging.sampling import class_layout, generate, sample_image, sweep_image
from shared.store import HISTORY_CSV
from trainer.training.state import HISTORY_COLUMNS

SAMPLE_SEED, SAMPLE_COUNT, SAMPLE_SCALE = 0, 8, 4
SWEEP_SCALE = 3


QUALITY_COLUMNS = ("epoch", "fid", "kid", "precision", "recall", "class_entropy", "mean_confidence", "swd", "seconds",
                   "train_seconds")  # seconds: the measurement's own; train_seconds: training up to it
# what quality.png draws, where the measurements have it: the classifier's (FashionMNIST) and the SWD (any data)
QUALITY_PANELS = (("fid", "FID (lower is better)"), ("recall", "recall (higher is better)"),
                  ("swd", "SWD x 1,000 (lower is better)"))


def write_report(report_dir: Path, history: torch.Tensor, iterations_per_epoch: int,
                 generator: torch.nn.Module, layout: LatentLayout, title: str, d_scores: str = "probability",
                 quality: list[dict] = (), classes: list[str] = ()) -> list[Path]:
    """`d_scores`: what the history's D_x and D_G_z are, "probability" (BCE: sigmoid of D) or "raw" (hinge);
    `quality`: what --eval-every measured, epoch by epoch (quality.csv and quality.png when there is any);
    `classes`: a conditional generator's class names, in the order of its input's class weights."""
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        write_history_csv(report_dir / HISTORY_CSV, history, iterations_per_epoch),
        plot_losses(report_dir / "losses.png", history, title, d_scores),
        plot_d_scores(report_dir / "d_scores.png", history, title, d_scores),
    ]
    if quality:
        paths += [write_quality_csv(report_dir / "quality.csv", quality), plot_quality(report_dir / "quality.png",
                                                                                      {title: quality})]
    base = layout.seeded(SAMPLE_SEED, SAMPLE_COUNT)
    sample_image(generator, base, scale=SAMPLE_SCALE).save(report_dir / "samples.png")
    sweep_image(generator, base, STUDY_SWEEP_DIMS, STUDY_SWEEP_VALUES, scale=SWEEP_SCALE).save(report_dir / "sweep.png")
    paths += [report_dir / "samples.png", report_dir / "sweep.png"]
    if layout.conditional:  # the figure of conditional GANs: what z keeps (the style) when only the class changes
        grid = class_layout(layout.style_of(base), range(layout.classes), classes, layout.classes)
        render_grid(generate(generator, grid.latents), grid.nrow, 2, SWEEP_SCALE, grid.row_labels).save(
            report_dir / "classes.png")
        paths.append(report_dir / "classes.png")
    return paths


def write_history_csv(path: Path, history: torch.Tensor, iterations_per_epoch: int) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("iteration", "epoch", *HISTORY_COLUMNS))
        for i, row in enumerate(history.tolist()):
            writer.writerow((i + 1, i // max(1, iterations_per_epoch) + 1, *(f"{v:.6g}" for v in row)))
    return path


def write_quality_csv(path: Path, quality: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(QUALITY_COLUMNS)
        for record in quality:  # a metric the run did not measure (FID on another dataset) is left empty
            writer.writerow(record[c] if c == "epoch" else "" if record.get(c) is None else f"{record[c]:.6g}"
                            for c in QUALITY_COLUMNS)
    return path


def plot_quality(path: Path, runs: dict[str, list[dict]], against: str = "epoch") -> Path:
    """FID, recall and SWD (those the runs measured) against epochs, or against minutes of training
    (`against="minutes"`: what a fixed time buys), one line per run (a run's --eval-every measurements)."""
    if against not in ("epoch", "minutes"):
        raise ValueError(f"against must be epoch or minutes, not {against!r}")
    x_of = (lambda r: r["epoch"]) if against == "epoch" else (lambda r: r.get("train_seconds", float("nan")) / 60)
    plt = _pyplot()
    panels = [(key, what) for key, what in QUALITY_PANELS
              if any(r.get(key) is not None for quality in runs.values() for r in quality)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, (key, what) in zip(axes[0], panels):
        for label, quality in runs.items():
            points = [(x_of(r), r[key]) for r in quality if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set(xlabel="epoch" if against == "epoch" else "minutes of training", ylabel=what)
        if against == "epoch":
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("sample quality while training (FID, recall: latentlab's FashionMNIST feature space)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _column(name: str) -> int:
    return HISTORY_COLUMNS.index(name)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average that keeps the length (shorter windows at the start)."""
    if len(values) == 0:
        return values
    window = max(1, min(window, len(values)))
    c = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (c[1:] - c[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _curve(ax, x: np.ndarray, y: np.ndarray, color: str, label: str, window: int) -> None:
    """One series as faint raw values under its moving average."""
    ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8, label=f"{label}, per iteration")
    ax.plot(x, smooth(y, window), color=color, linewidth=2, label=f"{label}, mean of {window}")
    ax.xaxis.get_major_locator().set_params(integer=True)  # iterations are whole numbers


def plot_losses(path: Path, history: torch.Tensor, title: str, d_scores: str = "probability") -> Path:
    plt = _pyplot()
    h = history.numpy()
    x = np.arange(1, len(h) + 1)
    window = max(1, len(h) // 50)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    _curve(ax, x, h[:, _column("loss_D")], "tab:blue", "discriminator loss", window)
    _curve(ax, x, h[:, _column("loss_G")], "tab:orange", "generator loss", window)
    ax.set(xlabel="iteration", ylabel="BCE loss" if d_scores == "probability" else "hinge loss",
           title=f"{title}: discriminator and generator loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_d_scores(path: Path, history: torch.Tensor, title: str, d_scores: str = "probability") -> Path:
    plt = _pyplot()
    h = history.numpy()
    x = np.arange(1, len(h) + 1)
    window = max(1, len(h) // 50)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, sharey=True)
    for ax, col, series, label, color in ((axes[0], _column("D_x"), "D(x)", "mean D(x), real images", "tab:green"),
                                          (axes[1], _column("D_G_z"), "D(G(z))", "mean D(G(z)), generated images", "tab:red")):
        _curve(ax, x, h[:, col], color, series, window)
        if d_scores == "probability":
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="0.5: cannot tell")
            ax.set(xlabel="iteration", ylabel="discriminator output (probability real)", title=label, ylim=(0, 1))
        else:  # the hinge loss's D outputs unbounded scores: +1 and beyond is "real", -1 and below "fake"
            ax.axhline(0, color="grey", linestyle="--", linewidth=1, label="0: cannot tell")
            ax.set(xlabel="iteration", ylabel="discriminator's raw score (not a probability)", title=label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{title}: how well the discriminator separates real from generated")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
