"""Datasets as one uint8 tensor (N, C, H, W): IDX files (FashionMNIST, MNIST), CIFAR-10, or a folder of images.

The data is small (FashionMNIST is 47 MB as uint8), so it is held whole on the training device and
batches are taken by index: no DataLoader, no worker processes.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.errors import UserError
from shared.imaging.pixels import fit_image

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "latentlab"
CACHE_DIR = CACHE_ROOT / "datasets"  # downloads
DATASETS = ("fashion-mnist", "mnist", "cifar10", "folder")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER = "cifar-10-batches-py"  # what cifar-10-python.tar.gz unpacks to
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


@dataclass
class Folder:
    """A folder's images as uint8 (N, 3, S, S) RGB and their labels: the index of each image's class subfolder
    (ImageFolder layout), all 0 in a flat folder. `classes` names the labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: list[Path]  # files with an image's extension that could not be read
    sizes: set[tuple[int, int]]  # the (width, height) of the pictures as found


def read_folder(directory: str | os.PathLike | None, image_size: int) -> Folder:
    """Every readable image under `directory`, resized to `image_size` (bilinear, aspect not kept)."""
    from PIL import Image, UnidentifiedImageError

    directory = Path(directory) if directory else None
    if directory is None or not directory.is_dir():
        raise DataError(f"--dataset folder needs --data-dir (or DATA_DIR) naming a folder of images; got {directory}")
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise DataError(f"{directory}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in it or below it")
    arrays, kept, skipped, sizes = [], [], [], set()
    for p in paths:
        try:
            with Image.open(p) as im:
                sizes.add(im.size)
                arrays.append(fit_image(im, image_size, 3))
            kept.append(p)
        except (UnidentifiedImageError, OSError, ValueError):
            skipped.append(p)
    if not arrays:
        raise DataError(f"{directory}: none of its {len(paths)} image files could be read (the first: "
                        f"{skipped[0]}); they are damaged or not images")
    # ImageFolder: the first path component below `directory` names the class, where there are subfolders
    parts = [p.relative_to(directory).parts for p in kept]
    classes = sorted({q[0] for q in parts if len(q) > 1})
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index.get(q[0], 0) if len(q) > 1 else 0 for q in parts], dtype=torch.int64)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return Folder(images, labels, classes or [directory.name], skipped, sizes)


def is_grey(images: torch.Tensor) -> bool:
    """Whether RGB uint8 (N, 3, H, W) images carry no colour: every pixel's three channels equal."""
    return bool((images[:, :1] == images[:, 1:]).all())


def locate_cifar10(data_dir: str | os.PathLike | None, download: bool = True) -> Path:
    """The `cifar-10-batches-py` folder: in --data-dir, then an earlier download; else torchvision's download."""
    for d in ([Path(data_dir)] if data_dir else []) + [CACHE_DIR]:
        for candidate in (d, d / CIFAR10_FOLDER):
            if (candidate / "data_batch_1").is_file() and (candidate / "test_batch").is_file():
                return candidate
    missing = (f"CIFAR-10 not found in {str(data_dir) + ' (--data-dir/DATA_DIR) or ' if data_dir else ''}{CACHE_DIR} "
               "and it could not be downloaded: point --data-dir (or DATA_DIR) at the unpacked cifar-10-python.tar.gz "
               f"(its {CIFAR10_FOLDER} folder)")
    if not download:
        raise DataError(missing)
    try:
        from torchvision import datasets

        datasets.CIFAR10(root=str(CACHE_DIR), train=True, download=True)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        raise DataError(f"{missing} ({str(e).splitlines()[0].rstrip(': ') if str(e) else type(e).__name__})") from None
    return CACHE_DIR / CIFAR10_FOLDER


def load_cifar10_split(directory: Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from the Python batches of CIFAR-10, as torchvision reads
    them (the batches are pickles: read only files you downloaded from the dataset's site)."""
    import pickle

    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = directory / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64))
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: not a CIFAR-10 batch ({e}); download and unpack cifar-10-python.tar.gz "
                            "again") from None
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


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


@dataclass
class TrainingSet:
    """Training images, uint8 (N, C, S, S), with their labels (N,) int64 and the labels' names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


def load_training_images(dataset: str, data_dir: str | None, image_size: int, channels: int | None = None,
                         limit: int | None = None, download: bool = True, log=None) -> torch.Tensor:
    """The images of `load_training_set`."""
    return load_training_set(dataset, data_dir, image_size, channels, limit, download, log).images


def load_training_set(dataset: str, data_dir: str | None, image_size: int, channels: int | None = None,
                      limit: int | None = None, download: bool = True, log=None) -> TrainingSet:
    """The training images of `dataset` at `image_size`, uint8 (N, C, S, S), first `limit` only, with their
    labels. `channels`: 1 (grey) or 3 (colour); None: what the data is (FashionMNIST and MNIST grey, CIFAR-10
    colour, a folder colour unless every picture in it is grey). Labels: the IDX and CIFAR-10 labels, or a
    folder's class subfolders (all 0 in a flat folder).

    `log`, if given, is told where the images came from and what was skipped or resized."""
    say = log or (lambda message: None)
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset == "folder":
        folder = read_folder(data_dir, image_size)
        if folder.skipped:
            say(f"{data_dir}: skipped {len(folder.skipped)} unreadable file(s), e.g. {folder.skipped[0]}")
        if len(folder.sizes) > 1:
            say(f"{data_dir}: pictures of {len(folder.sizes)} sizes (e.g. "
                f"{', '.join(f'{w}x{h}' for w, h in sorted(folder.sizes)[:3])}); each is resized to "
                f"{image_size}x{image_size}, aspect not kept")
        images, labels, classes = folder.images, folder.labels, folder.classes
        if channels is None:
            channels = 1 if is_grey(images) else 3
        say(f"folder: {len(images)} images from {data_dir} ({'colour' if channels == 3 else 'grey'}"
            f"{', ' + str(len(folder.classes)) + ' classes' if len(folder.classes) > 1 else ''})")
    elif dataset == "cifar10":
        directory = locate_cifar10(data_dir, download)
        say(f"cifar10: reading {directory}")
        images, labels = load_cifar10_split(directory, "train")
        classes = list(CIFAR10_CLASSES)
    else:
        directory = locate_idx_dir(dataset, data_dir, download)
        say(f"{dataset}: reading {directory}")
        images, labels = load_idx_split(directory, "train")
        classes = list(FASHION_MNIST_CLASSES if dataset == "fashion-mnist" else map(str, range(10)))
    if limit:
        images, labels = images[:limit], labels[:limit]
    images = to_channels(images, images.shape[1] if channels is None else channels)
    return TrainingSet(resize_uint8(images, image_size).contiguous(), labels, classes)


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) as grey (C=1: ITU-R 601 luma, as PIL's convert("L")) or colour (C=3: grey repeated)."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    weights = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
    return ((images.to(torch.int32) * weights).sum(1, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)


REFERENCE_IMAGES = 10_000  # real images a quality measurement compares with, at most


def load_reference_images(dataset: str, data_dir: str | None, image_size: int, channels: int,
                          download: bool = True) -> tuple[torch.Tensor, str]:
    """Real images a generator of `dataset` is measured against, at its shape, and what they are: the test split
    (FashionMNIST, MNIST, CIFAR-10), or for a folder (which has none) up to 10,000 of its own images, drawn with a
    fixed seed."""
    if dataset == "folder":
        images = read_folder(data_dir, image_size).images
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:REFERENCE_IMAGES]
        images, what = images[pick.sort().values], f"{min(len(images), REFERENCE_IMAGES)} images of {data_dir}"
    elif dataset == "cifar10":
        images, _ = load_cifar10_split(locate_cifar10(data_dir, download), "test")
        what = f"cifar10 test images ({len(images)})"
    else:
        images, _ = load_idx_split(locate_idx_dir(dataset, data_dir, download), "test")
        what = f"{dataset} test images ({len(images)})"
    return resize_uint8(to_channels(images, channels), image_size).contiguous(), what
