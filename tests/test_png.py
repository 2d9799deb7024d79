import io

import numpy as np
import pytest
from PIL import Image

from shared.imaging.png import encode_png

pytestmark = pytest.mark.fast  # make check runs it on every commit


@pytest.mark.parametrize("shape,mode", [((1, 1), "L"), ((274, 274), "L"), ((37, 5), "L"), ((9, 13, 3), "RGB"),
                                        ((4, 7, 4), "RGBA"), ((1096, 300, 1), "L")])
def test_decodes_to_exactly_the_pixels(shape, mode):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 2] = 0  # flat regions, as grids have
    decoded = Image.open(io.BytesIO(encode_png(pixels)))
    decoded.load()  # checks the CRCs and the deflate stream
    assert decoded.format == "PNG" and decoded.mode == mode
    assert np.array_equal(np.asarray(decoded), pixels.reshape(shape[0], shape[1], -1).squeeze(-1)
                          if pixels.ndim == 3 and shape[-1] == 1 else pixels)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4,), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((0, 4), np.uint8)])
def test_refuses_what_it_cannot_encode(bad):
    with pytest.raises(ValueError):
        encode_png(bad)
