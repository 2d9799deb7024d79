import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import assert_user_error, make_idx_dataset, run_cli, run_main, write_idx
from trainer.cli import main as trainer_main
from trainer.training.data import DataError, load_idx_split, load_training_images, read_idx, resize_uint8

pytestmark = pytest.mark.fast  # make check runs it on every commit


def test_reads_synthetic_idx_gz_and_raw(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", array, compress=False)), array)


def test_real_fashion_mnist_files(fashion_dir):
    images, labels = load_idx_split(fashion_dir, "test")
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10_000,) and set(labels.unique().tolist()) == set(range(10))


@pytest.mark.parametrize("make_bad,message", [
    (lambda p, good: p.write_bytes(good[: len(good) // 2]), "truncated or not gzip"),
    (lambda p, good: p.write_bytes(gzip.compress(b"\x12\x34\x56\x78" + gzip.decompress(good)[4:])), "not an IDX file"),
    (lambda p, good: p.write_bytes(gzip.compress(gzip.decompress(good)[:-7])), "header says shape"),
    (lambda p, good: p.write_bytes(b"plain text, not gzip"), "truncated or not gzip"),
    (lambda p, good: p.write_bytes(gzip.compress(b"\x00\x00")), "too short"),
])
def test_corrupt_idx_files_name_the_path_and_the_fix(tmp_path, make_bad, message):
    good = write_idx(tmp_path / "good.gz", np.zeros((3, 28, 28), np.uint8)).read_bytes()
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    make_bad(bad, good)
    with pytest.raises(DataError) as info:
        read_idx(bad)
    assert message in str(info.value) and str(bad) in str(info.value) and "reinstall" in str(info.value)


def test_limit_and_resize(tmp_path):
    data = make_idx_dataset(tmp_path / "d", n=50)
    images = load_training_images("fashion-mnist", str(data), image_size=32, limit=20)
    assert images.shape == (20, 1, 32, 32) and images.dtype == torch.uint8
    flat = resize_uint8(torch.full((2, 1, 28, 28), 77, dtype=torch.uint8), 32)
    assert torch.all(flat == 77)  # enlarging a flat image keeps it flat


def test_folder_dataset_flat_and_nested(tmp_path):
    (tmp_path / "imgs" / "class_a").mkdir(parents=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "imgs" / "class_a" / "x.png")
    Image.new("L", (10, 10), 200).save(tmp_path / "imgs" / "y.jpg")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    images = load_training_images("folder", str(tmp_path / "imgs"), image_size=28)
    assert images.shape == (2, 3, 28, 28)  # one of them is red: the folder trains in colour
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_training_images("folder", str(tmp_path / "empty"), 28)
    with pytest.raises(DataError, match="needs --data-dir"):
        load_training_images("folder", str(tmp_path / "missing"), 28)


def test_cli_reports_bad_data_in_one_line_with_exit_2(tmp_path, capsys):
    data = make_idx_dataset(tmp_path / "d")
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    result = run_main(trainer_main, "--arch", "gan", "--epochs", "1", "--out", str(tmp_path / "m"), "--data-dir",
                      str(data), capsys=capsys)
    assert_user_error(result)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "train-images-idx3-ubyte.gz" in errors[0]
    # MNIST has no Debian package: an empty --data-dir leaves only the download, which fails offline
    missing = run_cli("trainer", "--arch", "gan", "--epochs", "1", "--out", str(tmp_path / "m"), "--dataset", "mnist",
                      "--data-dir", str(tmp_path / "empty"), env={"XDG_CACHE_HOME": str(tmp_path / "cache"),
                                                                   "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    assert_user_error(missing)
    assert "DATA_DIR" in missing.stderr and str(tmp_path / "empty") in missing.stderr
