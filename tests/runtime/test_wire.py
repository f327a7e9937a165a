"""Decoding untrusted tensors and images: impossible shapes and image bombs are refused before any work."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import MAX_IMAGE_SIDE, WireError, encoded_image_size, image_to_numpy, numpy_to_image, tensor_to_numpy


def _scene(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth RGB image whose three channels differ everywhere (so any channel swap shows)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([40 + 3 * x, 30 + 4 * y, 200 - 2 * x - y], axis=-1).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding, tolerance", [("raw", 0.0), ("png", 0.0), ("jpeg", 3.0)])
def test_encoded_frames_decode_to_the_same_pixels_in_rgb_order(encoding, tolerance):
    frame = _scene()
    decoded = image_to_numpy(numpy_to_image(frame, encoding), "observation.images['agentview']")
    assert decoded.shape == frame.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(np.float64) - frame).mean()
    swapped = np.abs(decoded.astype(np.float64) - frame[..., ::-1]).mean()
    assert error <= tolerance
    assert swapped > 40  # a BGR/RGB mix-up anywhere on the path would be caught


@pytest.mark.parametrize(
    "shape, data",
    [
        ([2**32, 2**32], b""),  # 2^64 elements: an int64 product wraps to 0 and would match the empty data
        ([2**62, 4], b""),
        ([2**62, 8], b"\0" * 32),
        ([1] * 9, b"\0\0\0\0"),  # rank above the limit
    ],
)
def test_impossible_tensor_shapes_are_refused_with_the_field(shape, data):
    with pytest.raises(WireError, match="observation.state"):
        tensor_to_numpy(pb.Tensor(dtype="float32", shape=shape, data=data), "observation.state")


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_encoded_sizes_are_read_from_png_and_jpeg_headers():
    frame = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    for encoding in ("png", "jpeg"):
        assert encoded_image_size(numpy_to_image(frame, encoding).data) == (80, 48)
    ok, progressive = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and encoded_image_size(progressive.tobytes()) == (80, 48)
    assert encoded_image_size(b"not an image") is None


def _jpeg_header(width: int, height: int) -> bytes:
    """SOI, then a baseline frame header declaring width x height."""
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"


@pytest.mark.parametrize("encoding", [pb.Image.PNG, pb.Image.JPEG])
@pytest.mark.parametrize("size", [(4 * MAX_IMAGE_SIDE, 4 * MAX_IMAGE_SIDE), (MAX_IMAGE_SIDE, 2048), (1, 65535)])
def test_an_image_bomb_is_refused_from_its_header_without_decoding(encoding, size, monkeypatch):
    header = _png_header if encoding == pb.Image.PNG else _jpeg_header
    data = header(*size) + b"\0" * 64

    def no_decoding(*args, **kwargs):
        raise AssertionError("the bomb reached the decoder")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    width, height = size
    with pytest.raises(WireError, match=rf"{width}x{height} exceeds .* \(refused before decoding\)"):
        image_to_numpy(pb.Image(encoding=encoding, data=data), "observation.images['agentview']")


@pytest.mark.parametrize("encoding", [pb.Image.PNG, pb.Image.JPEG])
def test_an_encoded_frame_without_a_size_header_is_not_decoded(encoding, monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded a frame without a header"))
    with pytest.raises(WireError, match="no (PNG|JPEG) header with the image size"):
        image_to_numpy(pb.Image(encoding=encoding, data=b"\xff\xd8garbage" * 10), "observation.images['wrist']")


def test_a_raw_frame_beyond_the_pixel_limit_is_refused_before_its_bytes_are_counted():
    image = pb.Image(encoding=pb.Image.RAW_RGB8, shape=[2**31 - 1, 2**31 - 1, 3], data=b"")
    with pytest.raises(WireError, match="exceeds"):
        image_to_numpy(image, "observation.images['wrist']")
