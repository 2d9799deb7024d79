import io

import numpy as np
import pytest
import torch
from PIL import Image

from shared.imaging.grids import grid_size, make_grid, render_grid, to_uint8
from shared.imaging.latents import seeded_latents, sweep_labels, sweep_latents
from shared.imaging.png import encode_png

pytestmark = pytest.mark.fast  # make check runs it on every commit


@pytest.mark.parametrize("n,nrow,padding,channels", [(2, 8, 2, 1), (8, 8, 2, 1), (13, 5, 2, 1), (10, 3, 0, 3), (7, 4, 5, 3)])
def test_grid_layout_matches_torchvision(n, nrow, padding, channels):
    torchvision_utils = pytest.importorskip("torchvision.utils")
    images = to_uint8(torch.rand(n, channels, 9, 7) * 2 - 1)
    ours = make_grid(images.numpy(), nrow=nrow, padding=padding)  # (H, W, C)
    theirs = torchvision_utils.make_grid(images, nrow=nrow, padding=padding)  # (3, H, W)
    assert np.array_equal(ours, theirs[:channels].permute(1, 2, 0).numpy())


def test_a_single_image_is_padded_like_any_grid():
    # torchvision returns a lone image unpadded; a grid of one keeps its frame, so sizes stay predictable
    grid = make_grid(np.full((1, 1, 5, 5), 200, dtype=np.uint8), nrow=8, padding=2)
    assert grid.shape == (9, 9, 1) and grid[0, 0, 0] == 0 and grid[2, 2, 0] == 200


def test_upscale_repeats_every_pixel():
    from shared.imaging.grids import upscale
    grid = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    assert np.array_equal(upscale(grid, 2)[:, :, 0], np.repeat(np.repeat(grid[:, :, 0], 2, 0), 2, 1))


def test_to_uint8_maps_the_tanh_range():
    assert to_uint8(torch.tensor([-1.0, 0.0, 1.0, 2.0, -5.0]).view(1, 1, 1, 5)).flatten().tolist() == [0, 128, 255, 255, 0]


def test_png_has_the_predicted_size_and_pixels():
    images = torch.rand(10, 1, 28, 28) * 2 - 1
    png = encode_png(np.asarray(render_grid(images, nrow=4, padding=2, scale=3)))
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.mode == "L"
    assert im.size == grid_size(10, (28, 28), 4, 2, 3) == ((4 * 30 + 2) * 3, (3 * 30 + 2) * 3)
    # the first image's top-left pixel, after padding and nearest-neighbour scaling
    expected = to_uint8(images)[0, 0, 0, 0].item()
    assert im.getpixel((2 * 3, 2 * 3)) == im.getpixel((2 * 3 + 2, 2 * 3 + 2)) == expected


def test_row_labels_add_a_margin_and_keep_the_grid():
    images = torch.zeros(6, 1, 28, 28)
    plain = render_grid(images, nrow=3, scale=2)
    labelled = render_grid(images, nrow=3, scale=2, row_labels=["z[5]=-3", "z[5]=3"])
    assert labelled.height == plain.height and labelled.width > plain.width
    margin = labelled.crop((0, 0, labelled.width - plain.width, labelled.height))
    assert margin.getextrema() == (0, 255)  # dark text on a white margin


def test_seeded_latents_repeat_and_differ():
    a, b = seeded_latents(7, 4, 100), seeded_latents(7, 4, 100)
    assert torch.equal(a, b) and a.shape == (4, 100) and a.dtype == torch.float32
    assert not torch.equal(a, seeded_latents(8, 4, 100))
    assert torch.equal(seeded_latents(7, 2, 100), a[:2])  # a prefix: more images keep the first ones


def test_sweep_is_dim_major_and_touches_one_coordinate():
    base = torch.randn(4, 10)
    out = sweep_latents(base, dims=[1, 7], values=[-3, 0, 3]).view(2, 3, 4, 10)
    for i, d in enumerate([1, 7]):
        for j, v in enumerate([-3.0, 0.0, 3.0]):
            rows = out[i, j]
            assert torch.all(rows[:, d] == v)
            others = [k for k in range(10) if k != d]
            assert torch.equal(rows[:, others], base[:, others])
    added = sweep_latents(base, [2], [1.5], mode="add")
    assert torch.allclose(added[:, 2], base[:, 2] + 1.5)
    assert sweep_labels([5, 25], [-3, 0, 3]) == ["z[5]=-3", "z[5]=0", "z[5]=3", "z[25]=-3", "z[25]=0", "z[25]=3"]


def test_sweep_rejects_out_of_range_dims():
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        sweep_latents(torch.zeros(2, 10), [10], [1.0])
