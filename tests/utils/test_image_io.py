"""Tests of hermes_mm.utils.image_io: images decoded as stored (no EXIF
rotation) and high bit depths scaled by the bit depth their data uses."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from hermes_mm.utils.image_io import (decode_image, exif_orientation,
                                      source_bit_depth, to_uint8)


def exif_jpeg(array_bgr, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array_bgr[..., ::-1])).save(
        buf, 'JPEG', quality=95, exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_read_and_ignored():
    img = np.zeros((8, 16, 3), np.uint8)
    img[:, :4] = 255  # a bright left edge
    data = exif_jpeg(img, 6)
    assert exif_orientation(data) == 6
    # OpenCV's default (MMCV's 'color') rotates; decode_image does not
    assert cv2.imdecode(np.frombuffer(data, np.uint8),
                        cv2.IMREAD_COLOR).shape == (16, 8, 3)
    out = decode_image(data)
    assert out.shape == (8, 16, 3)
    assert out[:, :4].mean() > 200 and out[:, 8:].mean() < 50
    assert exif_orientation(cv2.imencode('.png', img)[1].tobytes()) == 1
    assert exif_orientation(b'not an image') == 1


@pytest.mark.parametrize('peak, bits', [(255, 8), (1000, 10), (1500, 12),
                                        (4095, 12), (9000, 14),
                                        (65535, 16)])
def test_source_bit_depth(peak, bits):
    assert source_bit_depth(np.array([0, peak], np.uint16)) == bits


def test_12_bit_png_is_scaled_by_its_range_not_by_256():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 4096, (16, 16), dtype=np.uint16)
    grey[0, 0] = 4095
    data = cv2.imencode('.png', grey)[1].tobytes()
    out = decode_image(data)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    expected = np.rint(grey * (255 / 4095)).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    # OpenCV's 8-bit conversion: values 0-15, the bug being fixed
    assert cv2.imdecode(np.frombuffer(data, np.uint8),
                        cv2.IMREAD_COLOR).max() <= 15
    assert decode_image(data, 'grayscale').shape == (16, 16)


def test_to_uint8_configured_depth_and_8_bit_passthrough():
    img = np.array([[0, 1023, 4095]], np.uint16)
    np.testing.assert_array_equal(to_uint8(img, bit_depth=16), [[0, 4, 16]])
    np.testing.assert_array_equal(to_uint8(img), [[0, 64, 255]])
    small = np.array([[0, 200]], np.uint16)  # 8-bit data in 16 bits
    np.testing.assert_array_equal(to_uint8(small), [[0, 200]])
    u8 = np.array([[3, 250]], np.uint8)
    assert to_uint8(u8) is u8
    with pytest.raises(ValueError, match='bit_depth must be in'):
        to_uint8(img, bit_depth=20)


def test_undecodable_gives_none():
    assert decode_image(b'') is None
    assert decode_image(b'<html>') is None
