"""Pixels in and out of PNG: the one image-mode converter (`to_rgb`) that every source and
every reader of stored images goes through, so a 16-bit or 32-bit picture is scaled or refused
the same way wherever it is read."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from afg_datasets.bounds import MAX_IMAGE_SIZE
from afg_datasets.errors import ImageError, first_line

MAX_PICTURE_PIXELS = MAX_IMAGE_SIZE**2  # a stored picture (image, mosaic, atlas) at most

SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")  # greyscale PNG / TIFF of 16 bits
GREY = ("1", "L", "LA", "I", "F", *SIXTEEN_BIT)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with each mode's real range: 16-bit greyscale scaled from 0..65535 (Pillow's
    own conversion clips it at 255, leaving a white image); modes without a fixed range
    (32-bit integer `I`, float `F`) are refused by name, never guessed."""
    if image.mode in SIXTEEN_BIT:
        levels = np.asarray(image, dtype=np.uint16).astype(np.uint32)
        eight = ((levels * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(eight).convert("RGB")
    if image.mode in ("I", "F"):
        raise ImageError(
            f"image mode {image.mode!r} (32-bit {'integer' if image.mode == 'I' else 'float'} "
            "pixels) has no defined range; convert it to 8- or 16-bit first"
        )
    return image.convert("RGB")


def to_channels(image: Image.Image, channels: int) -> np.ndarray:
    """uint8 [H, W, channels] (1: grey, 3: RGB) through `to_rgb`."""
    wanted = "L" if channels == 1 else "RGB"
    if image.mode != wanted:  # 8-bit L and RGB, what a corpus stores, need no conversion
        image = to_rgb(image).convert(wanted)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, C] -> PNG bytes (grayscale for one channel)."""
    array = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def decode_png(data: bytes, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Stored image bytes -> uint8 [H, W, C] (grey modes keep one channel); with `shape`, its
    channels are taken and its size checked before a pixel is decoded; without, at most
    MAX_PICTURE_PIXELS. Whatever the bytes are, anything else is one ImageError naming it."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if shape is not None and (height, width) != tuple(shape[:2]):
            raise ImageError(
                f"a stored image of {width}x{height} px; this corpus's images are "
                f"{shape[1]}x{shape[0]} px"
            )
        if width * height > MAX_PICTURE_PIXELS:
            raise ImageError(
                f"a stored image of {width}x{height} px, over {MAX_PICTURE_PIXELS:,} pixels"
            )
        channels = shape[2] if shape else (1 if image.mode in GREY else 3)
        return to_channels(image, channels)
    except ImageError:
        raise
    except (ValueError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        # Pillow reports a broken file as OSError, ValueError or SyntaxError (a bad chunk)
        raise ImageError(f"a stored image Pillow cannot read: {first_line(err)}") from None
