"""Protobuf messages ↔ numpy: decoding bytes, refusing what cannot be decoded with an error naming the field.

Everything that arrives from the network passes through here before it reaches an engine: a typed tensor's
bytes must hold its dtype and shape; images are checked against the size their header declares before they
are decoded (raw RGB8, JPEG, PNG). What a model input must be (float state, finite values, cameras, task) is
`policy.inputs`'s to check. Error messages quote what the caller sent only in bounded form, so that a hostile
field cannot make the error itself too large to send.
"""

from __future__ import annotations

import math
import struct

import cv2
import numpy as np

from protos.robot_runtime.v1 import runtime_pb2 as pb

MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = 4096 * 1024  # 4.2 Mpx: more than any robot camera sends, far more than a model resizes to
MAX_TENSOR_RANK = 8
MAX_ERROR_CHARS = 1024
MAX_QUOTED_CHARS = 64
_TENSOR_DTYPES = {"float32", "float64", "float16", "int32", "int64", "uint8", "bool"}


class WireError(ValueError):
    """Invalid input on the wire; `field` is the message path of the offending field. A message for the user,
    like `policy.errors.UserFacingError` (the wire layer imports nothing of the policy's)."""

    def __init__(self, field: str, message: str):
        super().__init__(bounded(f"{field}: {message}"))
        self.field = field


def quoted(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """repr(text), cut to `limit` characters: a caller's string inside an error message."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def bounded(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def tensor_to_numpy(tensor: pb.Tensor, field: str) -> np.ndarray:
    if tensor.dtype not in _TENSOR_DTYPES:
        raise WireError(
            field, f"dtype {quoted(tensor.dtype)} is not supported; expected one of {sorted(_TENSOR_DTYPES)}"
        )
    if len(tensor.shape) > MAX_TENSOR_RANK:
        raise WireError(field, f"shape has {len(tensor.shape)} dimensions, more than {MAX_TENSOR_RANK}")
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise WireError(field, f"shape {list(shape)} has a negative dimension")
    dtype = np.dtype(tensor.dtype).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge shape cannot wrap around to a small size
    if len(tensor.data) != expected:
        raise WireError(field, f"{len(tensor.data)} bytes do not hold {tensor.dtype} {list(shape)} ({expected} bytes)")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def numpy_to_tensor(array: np.ndarray) -> pb.Tensor:
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return pb.Tensor(dtype=array.dtype.name, shape=list(array.shape), data=little.tobytes())


def image_to_numpy(image: pb.Image, field: str) -> np.ndarray:
    """uint8 [H,W,3] RGB from a raw or encoded frame."""
    if image.encoding == pb.Image.RAW_RGB8:
        shape = tuple(image.shape)
        if len(shape) != 3 or shape[2] != 3 or min(shape) <= 0:
            raise WireError(field, f"raw image shape must be [H, W, 3], got {list(shape[:MAX_TENSOR_RANK])}")
        _check_size(shape[1], shape[0], field)
        if len(image.data) != shape[0] * shape[1] * 3:
            raise WireError(field, f"{len(image.data)} bytes do not hold a uint8 image of shape {list(shape)}")
        frame = np.frombuffer(image.data, np.uint8).reshape(shape)
    elif image.encoding in (pb.Image.JPEG, pb.Image.PNG):
        kind = pb.Image.Encoding.Name(image.encoding)
        declared = encoded_image_size(image.data)
        if declared is None:
            raise WireError(field, f"no {kind} header with the image size found ({len(image.data)} bytes)")
        _check_size(*declared, field)
        decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise WireError(field, f"cannot decode the {kind} bytes ({len(image.data)} bytes)")
        if decoded.shape[:2] != declared[::-1]:
            width, height = declared
            raise WireError(field, f"decoded {decoded.shape[1]}x{decoded.shape[0]}, the header says {width}x{height}")
        frame = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    else:
        raise WireError(field, "encoding must be RAW_RGB8, JPEG or PNG")
    return frame


def needs_decoding(image: pb.Image) -> bool:
    """Whether `image_to_numpy` would run a decoder (worth a worker thread, unlike a raw frame's view)."""
    return image.encoding in (pb.Image.JPEG, pb.Image.PNG)


def _check_size(width: int, height: int, field: str) -> None:
    if min(width, height) <= 0:
        raise WireError(field, f"image of {width}x{height} is empty")
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise WireError(
            field,
            f"image of {width}x{height} exceeds {MAX_IMAGE_SIDE} pixels per side or {MAX_IMAGE_PIXELS} pixels "
            "(refused before decoding)",
        )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, …); C4, C8 and CC share the range but are not frames.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def encoded_image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG declares in its header, read without decoding; None if none is found, so
    that a frame declaring 16384² is refused before a decoder allocates it."""
    if data[:8] == _PNG_SIGNATURE and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _JPEG_SOF and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data starts: no frame header before it
            return None
        i += 2 + length
    return None


def numpy_to_image(frame: np.ndarray, encoding: str = "raw", quality: int = 95) -> pb.Image:
    """uint8 [H,W,3] RGB → Image message (`raw`, `jpeg` or `png`)."""
    frame = np.ascontiguousarray(frame, np.uint8)
    if encoding == "raw":
        return pb.Image(encoding=pb.Image.RAW_RGB8, shape=list(frame.shape), data=frame.tobytes())
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    if encoding == "jpeg":
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        kind = pb.Image.JPEG
    elif encoding == "png":
        ok, data = cv2.imencode(".png", bgr)
        kind = pb.Image.PNG
    else:
        raise ValueError(f"encoding must be raw, jpeg or png, got {encoding!r}")
    if not ok:
        raise ValueError(f"OpenCV could not encode the frame as {encoding}")
    return pb.Image(encoding=kind, data=data.tobytes())
