"""PNG encoders for a served grid, timed: why shared/imaging/png.py writes PNGs the way it does.

Encodes the 64-image grid of a generator (from a model store, or random pixels) at scale 1 and 4 with
each candidate, checks that every output decodes to the same pixels, and prints the median time and size.

    python benchmarks/png_encoders.py --store ./models --model dcgan
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.imaging import png  # noqa: E402
from shared.imaging.grids import grid_array, to_uint8  # noqa: E402


def pillow(level: int, strategy: int | None = None):
    def encode(grid: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        extra = {} if strategy is None else {"compress_type": strategy}
        Image.fromarray(grid[:, :, 0]).save(buffer, format="PNG", compress_level=level, **extra)
        return buffer.getvalue()
    return encode


def with_deflate(module):
    def encode(grid: np.ndarray) -> bytes:
        saved, png._deflate = png._deflate, module
        try:
            return png.encode_png(grid)
        finally:
            png._deflate = saved
    return encode


def timed(fn, arg, repeats: int) -> tuple[float, int]:
    out = fn(arg)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, len(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="model store to take the generator from (default: random pixels)")
    p.add_argument("--model", default="dcgan")
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args()
    if args.store:
        from shared.imaging import torchscript
        from shared.imaging.latents import seeded_latents
        from shared.store import Store

        generator = torchscript.load(Store(args.store).get(args.model).generator_path)
        with torch.inference_mode():
            images = generator(seeded_latents(0, 64, 100))
    else:
        images = torch.rand(64, 1, 32, 32) * 2 - 1
    quantised = to_uint8(images)

    def naive(_grid: np.ndarray) -> bytes:  # what benchmarks/naive_app.py does, from the float images
        from torchvision.utils import make_grid
        grid = make_grid(images, nrow=8, padding=2, normalize=True, value_range=(-1, 1))
        array = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    candidates = {
        "torchvision make_grid + Pillow defaults (RGB)": naive,
        "Pillow, compress_level=1": pillow(1),
        "Pillow, compress_level=1, Z_RLE": pillow(1, zlib.Z_RLE),
        "Pillow, compress_level=0 (stored)": pillow(0),
        "filter 0 + stdlib zlib level 1": with_deflate(zlib),
        f"filter 0 + {png._deflate.__name__} level 1 (latentlab)": png.encode_png,
    }
    for scale in (1, 4):
        grid = grid_array(quantised, nrow=8, padding=2, scale=scale)
        print(f"\n64-image grid, scale {scale}: {grid.shape[1]}x{grid.shape[0]} px")
        for name, encode in candidates.items():
            if "torchvision" in name and scale != 1:
                continue  # the naive app has no scale
            ms, size = timed(encode, grid, args.repeats if "torchvision" not in name else args.repeats // 4)
            decoded = np.asarray(Image.open(io.BytesIO(encode(grid))).convert("L"))
            exact = "" if "torchvision" in name or np.array_equal(decoded, grid[:, :, 0]) else "  PIXELS DIFFER"
            print(f"  {name:<48} {ms:7.2f} ms  {size / 1024:7.1f} KiB{exact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
