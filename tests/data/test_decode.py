"""decode_image: pixel modes against numpy references, and errors that name the source.

PNG test files are assembled here byte by byte (IHDR/PLTE/tRNS/IDAT chunks from numpy
arrays) so the input does not depend on the decoder under test. The 16-bit reference
is ``v >> 8`` (the high byte): what Pillow already gives for 16-bit RGB PNGs and libpng's
``strip_16`` does, and the exact inverse of both ``v * 257`` and ``v << 8`` expansions.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from sphereface2.data.decode import ImageDecodeError, decode_image, encode_jpeg, read_image

RNG = np.random.default_rng(12)


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png(pixels: np.ndarray, color_type: int, depth: int, plte=None, trns=None) -> bytes:
    """A non-interlaced PNG; color types 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    if plte is not None:
        out += _chunk(b"PLTE", plte.astype(np.uint8).tobytes())
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    return out + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint8)


def _decode_quietly(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pillow's palette-transparency warning
        rgb = decode_image(data, source="test image")
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    return rgb


def test_16_bit_gray_png_keeps_the_high_byte():
    values = RNG.integers(0, 65536, (6, 7)).astype(np.uint16)
    rgb = _decode_quietly(_png(values, 0, 16))
    np.testing.assert_array_equal(rgb, _gray_to_rgb(values >> 8))
    # An 8-bit picture widened by *257 (full-range) comes back exactly.
    eight = RNG.integers(0, 256, (6, 7)).astype(np.uint16)
    np.testing.assert_array_equal(_decode_quietly(_png(eight * 257, 0, 16)), _gray_to_rgb(eight))


def test_16_bit_gray_tiff_and_32_bit_integer_images():
    values = RNG.integers(0, 65536, (5, 4)).astype(np.uint16)
    for mode, dtype in (("I;16", "<u2"), ("I;16B", ">u2")):  # little- and big-endian files
        buffer = io.BytesIO()
        image = Image.frombytes(mode, values.shape[::-1], values.astype(dtype).tobytes())
        image.save(buffer, format="TIFF")
        np.testing.assert_array_equal(
            _decode_quietly(buffer.getvalue()), _gray_to_rgb(values >> 8), err_msg=mode
        )
    # Mode I (older Pillow's 16-bit PNGs) in 0..65535 is read as 16-bit; beyond it, refused.
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.int32)).save(buffer, format="TIFF")
    np.testing.assert_array_equal(_decode_quietly(buffer.getvalue()), _gray_to_rgb(values >> 8))
    buffer = io.BytesIO()
    Image.fromarray(np.full((2, 2), 70000, np.int32)).save(buffer, format="TIFF")
    with pytest.raises(ImageDecodeError, match=r"test image: 32-bit integer image with values"):
        _decode_quietly(buffer.getvalue())


def test_16_bit_rgb_and_rgba_png_agree_with_the_gray_rule():
    rgb16 = RNG.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    np.testing.assert_array_equal(_decode_quietly(_png(rgb16, 2, 16)), rgb16 >> 8)
    rgba16 = RNG.integers(0, 65536, (4, 5, 4)).astype(np.uint16)
    np.testing.assert_array_equal(_decode_quietly(_png(rgba16, 6, 16)), rgba16[:, :, :3] >> 8)


@pytest.mark.parametrize(
    "trns",
    [None, bytes([255, 255, 0]), bytes(range(0, 160, 10))],
    ids=["no-transparency", "one-transparent-index", "alpha-per-index"],
)
def test_palette_images_take_their_palette_colours(trns):
    palette = RNG.integers(0, 256, (16, 3))
    indices = RNG.integers(0, 16, (6, 5))
    rgb = _decode_quietly(_png(indices, 3, 8, plte=palette, trns=trns))
    np.testing.assert_array_equal(rgb, palette[indices])  # alpha dropped, colours kept


def test_gray_alpha_images_drop_the_alpha():
    gray_alpha = RNG.integers(0, 256, (5, 6, 2))
    np.testing.assert_array_equal(
        _decode_quietly(_png(gray_alpha, 4, 8)), _gray_to_rgb(gray_alpha[:, :, 0])
    )
    gray_alpha16 = RNG.integers(0, 65536, (5, 6, 2)).astype(np.uint16)
    np.testing.assert_array_equal(
        _decode_quietly(_png(gray_alpha16, 4, 16)), _gray_to_rgb(gray_alpha16[:, :, 0] >> 8)
    )


def test_errors_name_the_source_not_a_buffer(tmp_path):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(b"<html>not found</html>", source="faces/a.png")
    message = str(caught.value)
    assert message.startswith("faces/a.png: cannot decode image (not a known image format")
    assert "BytesIO" not in message and "b'<html>no'" in message

    jpeg = encode_jpeg(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: cannot decode image \(.*truncated"):
        read_image(str(tmp_path / "cut.jpg"))
    png = _png(RNG.integers(0, 256, (32, 32, 3)), 2, 8)
    with pytest.raises(ImageDecodeError, match=r"^cut\.png: cannot decode image") as caught:
        decode_image(png[: len(png) - 40], source="cut.png")
    assert "BytesIO" not in str(caught.value)
