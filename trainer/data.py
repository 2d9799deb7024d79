"""Datasets as one uint8 tensor (N, C, H, W): IDX files (FashionMNIST, MNIST) or a folder of images.

The data is small (FashionMNIST is 47 MB as uint8), so it is held whole on the training device and
batches are taken by index: no DataLoader, no worker processes.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.errors import UserError
from shared.imaging.pixels import fit_image

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "latentlab" / "datasets"
DATASETS = ("fashion-mnist", "mnist", "folder")
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# IDX element types: code -> numpy dtype (big-endian)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(UserError):
    """A dataset problem, with a message that names the file and the fix."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into an array, checking magic, shape and size."""
    path = Path(path)
    fix = "delete it and reinstall ('apt-get install --reinstall dataset-fashion-mnist') or download it again"
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or not gzip: {fix}") from None
    if len(raw) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes): {fix}")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise DataError(f"{path}: not an IDX file (bad magic {raw[:4].hex()}): {fix}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated: {fix}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file holds {len(raw) - header}: {fix}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_names(split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def locate_idx_dir(dataset: str, data_dir: str | os.PathLike | None, download: bool = True) -> Path:
    """Where the IDX files of `dataset` are: `data_dir`, then Debian's package, then a torchvision download."""
    images, labels = _idx_names("train")
    candidates = [Path(data_dir)] if data_dir else []
    if dataset == "fashion-mnist":
        candidates.append(DEBIAN_FASHION_MNIST)
    candidates.append(CACHE_DIR)  # an earlier download
    for d in candidates:
        for sub in (d, d / "raw", d / ("FashionMNIST" if dataset == "fashion-mnist" else "MNIST") / "raw"):
            if _find_idx(sub, images) and _find_idx(sub, labels):
                return sub
    if download:
        return _download(dataset, data_dir)
    raise DataError(_missing_message(dataset, data_dir))


def _missing_message(dataset: str, data_dir: str | os.PathLike | None) -> str:
    looked = f"{data_dir} (--data-dir/DATA_DIR), " if data_dir else ""
    if dataset == "fashion-mnist":
        return (f"FashionMNIST not found in {looked}{DEBIAN_FASHION_MNIST} and it could not be downloaded: "
                "run 'apt-get install dataset-fashion-mnist', or point --data-dir (or DATA_DIR) at a folder "
                "with the four IDX .gz files")
    return (f"MNIST not found{' in ' + looked.rstrip(', ') if looked else ''} and it could not be downloaded: "
            "point --data-dir (or DATA_DIR) at a folder with the four IDX .gz files")


def _download(dataset: str, data_dir: str | os.PathLike | None) -> Path:
    """torchvision's download, for machines with internet; any failure becomes one clear line."""
    try:
        from torchvision import datasets
    except ImportError:
        raise DataError(_missing_message(dataset, data_dir) + " (install the 'train' extra for torchvision)") from None
    cls = datasets.FashionMNIST if dataset == "fashion-mnist" else datasets.MNIST
    try:
        ds = cls(root=str(CACHE_DIR), train=True, download=True)
        cls(root=str(CACHE_DIR), train=False, download=True)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        reason = str(e).splitlines()[0].rstrip(": ")
        raise DataError(f"{_missing_message(dataset, data_dir)} ({reason})") from None
    return Path(ds.raw_folder)


def load_idx_split(directory: Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 1, 28, 28), labels int64 (N,)) of one split."""
    images_stem, labels_stem = _idx_names(split)
    images_path = _find_idx(directory, images_stem)
    labels_path = _find_idx(directory, labels_stem)
    if images_path is None or labels_path is None:
        raise DataError(f"{directory}: missing {images_stem}[.gz] or {labels_stem}[.gz]")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0] or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images (N, H, W) matching {labels_path} (N,), "
            f"got {images.shape} {images.dtype} and {labels.shape}"
        )
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_folder(directory: str | os.PathLike, image_size: int, channels: int = 1) -> torch.Tensor:
    """Every image under `directory` (ImageFolder layout or flat), as uint8 (N, C, size, size)."""
    from PIL import Image, UnidentifiedImageError

    directory = Path(directory) if directory else None
    if directory is None or not directory.is_dir():
        raise DataError(f"--dataset folder needs --data-dir (or DATA_DIR) naming a folder of images; got {directory}")
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise DataError(f"{directory}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in it or below it")
    arrays = []
    for p in paths:
        try:
            with Image.open(p) as im:
                arrays.append(fit_image(im, image_size, channels))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{p}: not a readable image ({e}); remove it from the folder") from None
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Bilinear resize of uint8 (N, C, H, W) images (the seed enlarges 28 -> 32 for the DCGAN)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):  # chunks bound the float32 temporaries
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def load_training_images(dataset: str, data_dir: str | None, image_size: int, channels: int = 1,
                         limit: int | None = None, download: bool = True, log=None) -> torch.Tensor:
    """The training images of `dataset` at the architecture's size, uint8 (N, C, S, S), first `limit` only.

    `log`, if given, is told which folder the images came from (the search falls back silently otherwise).
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset == "folder":
        images = load_folder(data_dir, image_size, channels)
    else:
        directory = locate_idx_dir(dataset, data_dir, download)
        if log:
            log(f"{dataset}: reading {directory}")
        images, _ = load_idx_split(directory, "train")
        if channels != 1:
            images = images.expand(-1, channels, -1, -1)
    if limit:
        images = images[:limit]
    return resize_uint8(images, image_size).contiguous()


