"""Training speed: seconds per epoch for each architecture and mode on this machine's device.

Median of epochs 2..N (the first includes CUDA graph capture and warm-up), and the speed-up over the
eager fp32 loop measured in the same run. On a CPU only the eager modes run: fp32 and bf16 autocast, each with the
study's NCHW weights and channels-last (what `--precision bf16` trains with).

    python benchmarks/train_speed.py                      # full FashionMNIST, 4 epochs each
    python benchmarks/train_speed.py --limit 8192 --epochs 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.training.config import TrainConfig  # noqa: E402
from trainer.training.loop import train  # noqa: E402

MODES = (("eager", "off", "fp32", False), ("eager channels-last", "off", "fp32", True),
         ("eager bf16", "off", "bf16", False), ("eager bf16 channels-last (--precision bf16)", "off", "bf16", True),
         ("CUDA graph", "on", "fp32", False), ("CUDA graph bf16", "on", "bf16", None))


def seconds_per_epoch(arch: str, graphs: str, precision: str, channels_last: bool | None, args) -> float:
    epoch_times: list[float] = []
    last = [time.perf_counter()]

    def log(message: str) -> None:
        if message.startswith("epoch "):
            now = time.perf_counter()
            epoch_times.append(now - last[0])
            last[0] = now

    cfg = TrainConfig(arch=arch, epochs=args.epochs, batch_size=args.batch_size or (128 if arch == "dcgan" else 64),
                      limit=args.limit, data_dir=args.data_dir, device=args.device, cuda_graphs=graphs,
                      precision=precision, channels_last=channels_last, encoder_steps=0, class_samples=0)
    with tempfile.TemporaryDirectory() as run_dir:
        last[0] = time.perf_counter()
        train(cfg, Path(run_dir), log=log, progress=False)
    return statistics.median(epoch_times[1:] or epoch_times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--limit", type=int, default=None, help="train on the first N images (default: all 60,000)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the study's (gan 64, dcgan 128)")
    p.add_argument("--archs", nargs="+", default=["gan", "dcgan"])
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    cuda = torch.device(args.device).type == "cuda"
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{name}, torch {torch.__version__}; {args.limit or 'all'} images, median of epochs 2..{args.epochs}")
    print("| architecture | mode | s/epoch | speed-up over eager fp32 |\n|---|---|---|---|")
    for arch in args.archs:
        baseline = None
        for label, graphs, precision, channels_last in MODES:
            if graphs == "on" and not cuda:
                continue
            seconds = seconds_per_epoch(arch, graphs, precision, channels_last, args)
            baseline = baseline or seconds
            print(f"| {arch} | {label} | {seconds:.2f} | {baseline / seconds:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
