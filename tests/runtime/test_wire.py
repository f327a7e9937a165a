"""Decoding untrusted tensors and images: impossible shapes and image bombs are refused before any work."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from protos.robot_runtime.v1 import runtime_pb2 as pb
from runtime.wire import MAX_IMAGE_SIDE, WireError, encoded_image_size, image_to_numpy, numpy_to_image, tensor_to_numpy


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


@pytest.mark.parametrize("encoding", [pb.Image.PNG, pb.Image.JPEG])
def test_an_image_bomb_is_refused_from_its_header_without_decoding(encoding, monkeypatch):
    side = 4 * MAX_IMAGE_SIDE
    if encoding == pb.Image.PNG:
        data = _png_header(side, side) + b"\0" * 64
    else:  # SOI, then a baseline frame header declaring side x side
        data = b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, side, side, 1) + b"\x01\x11\x00" + b"\0" * 64

    def no_decoding(*args, **kwargs):
        raise AssertionError("the bomb reached the decoder")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(WireError, match=rf"{side}x{side} exceeds {MAX_IMAGE_SIDE} pixels per side \(not decoded\)"):
        image_to_numpy(pb.Image(encoding=encoding, data=data), "observation.images['agentview']")
