"""PNG encoding of rendered grids."""
from __future__ import annotations

import io

from PIL import Image


def png_bytes(image: Image.Image, compress_level: int = 1) -> bytes:
    """Encode as PNG. Level 1: encoding dominates serving time, and higher levels save little on grids."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
