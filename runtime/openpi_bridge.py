"""openpi's websocket policy-server protocol over the runtime's sessions, so openpi clients work unchanged.

What openpi's `serving/websocket_policy_server.py` and the `openpi-client` package agree on, and this serves:
- `GET /healthz` answers 200 `OK`; any other path is the websocket handshake (no compression).
- On connect the server sends one binary frame: the metadata dict, msgpack-numpy packed.
- Then every binary frame from the client is a packed observation dict (LIBERO: `observation/image`,
  `observation/wrist_image`, `observation/state`, `prompt`), answered by a packed dict with `actions`
  (float [H, D]), `policy_timing` and `server_timing` (`infer_ms`, from the second answer `prev_total_ms`).
- A failure is sent as a text frame and the connection is closed; openpi-client raises on a text frame.
  openpi sends a traceback there; this bridge sends one line that names the offending key.

Each connection is one session of the registry. Observations are translated to `pb.Observation` and go through
`SessionRegistry.accept` and the `ChunkBatcher` exactly as the gRPC stream's do, so validation lives in one place;
this module only translates openpi keys to wire fields and wire field names back to openpi keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import http
import json
import logging
import pathlib
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msgpack
import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from actor.engine import InvalidRequest
from policy.errors import UserFacingError
from policy.inputs import LIBERO_CAMERAS, InputError
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.stats import StatsRecorder
from protos.wire import WireError, numpy_to_image, numpy_to_tensor
from runtime.batcher import ChunkBatcher
from runtime.chunks import ChunkMaker
from runtime.sessions import Session, SessionRegistry

log = logging.getLogger(__name__)
_ws_log = log.getChild("websockets")
_ws_log.setLevel(logging.WARNING)  # one line per handshake and close is noise next to our session lines

# openpi's LIBERO example keys for our LIBERO cameras, so both map onto the same image keys.
LIBERO_IMAGE_KEYS = {
    "observation/image": LIBERO_CAMERAS["agentview"],
    "observation/wrist_image": LIBERO_CAMERAS["wrist"],
}
_UNSUPPORTED_KINDS = frozenset("VOc")
STOP_GRACE_S = 5.0


# -- msgpack-numpy -------------------------------------------------------------------------------------------


class FrameError(UserFacingError):
    """A frame that is not msgpack-numpy as openpi-client writes it."""


def packb(obj: Any) -> bytes:
    """msgpack with numpy arrays and scalars as openpi_client.msgpack_numpy writes them."""
    return msgpack.packb(obj, default=_encode_numpy)


def unpackb(data: bytes) -> Any:
    """The inverse of `packb`; never unpickles, and checks every array's bytes against its dtype and shape."""
    try:
        return msgpack.unpackb(data, object_hook=_decode_numpy)
    except FrameError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise FrameError(f"the frame is not msgpack ({type(err).__name__}: {err})") from err


def _encode_numpy(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in _UNSUPPORTED_KINDS:
        raise ValueError(f"msgpack-numpy cannot carry dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _decode_numpy(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = _wire_dtype(obj.get(b"dtype"))
        shape = obj.get(b"shape")
        data = obj.get(b"data")
        if not isinstance(shape, list | tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise FrameError(f"an array's shape must be a list of non-negative ints, got {shape!r}")
        if not isinstance(data, bytes):
            raise FrameError(f"an array's data must be bytes, got {type(data).__name__}")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(data) != expected:
            raise FrameError(f"{len(data)} bytes do not hold a {dtype.str} array of shape {list(shape)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if b"__npgeneric__" in obj:
        try:
            return _wire_dtype(obj.get(b"dtype")).type(obj.get(b"data"))
        except (TypeError, ValueError, OverflowError) as err:
            raise FrameError(f"bad numpy scalar: {err}") from err
    return obj


def _wire_dtype(spec: Any) -> np.dtype:
    if isinstance(spec, bytes):
        spec = spec.decode("ascii", "replace")
    try:
        dtype = np.dtype(spec) if isinstance(spec, str) else None
    except (TypeError, ValueError, SyntaxError):
        dtype = None
    if dtype is None or dtype.kind in _UNSUPPORTED_KINDS or dtype.itemsize == 0:
        raise FrameError(f"unsupported array dtype {spec!r}")
    return dtype


# -- openpi observation ↔ wire -------------------------------------------------------------------------------


class BadObservation(UserFacingError):
    """An observation the runtime refuses; the message names the openpi key."""


@dataclasses.dataclass(frozen=True)
class OpenpiKeys:
    """Which openpi observation key holds what: image key → our camera name, the state key, the prompt key."""

    images: Mapping[str, str]
    state: str | None = "observation/state"
    prompt: str = "prompt"

    @classmethod
    def libero(cls, cameras: Mapping[str, str]) -> OpenpiKeys:
        """openpi's LIBERO example keys, bound to whichever cameras feed base_0_rgb and left_wrist_0_rgb."""
        by_model_key = {model_key: name for name, model_key in cameras.items()}
        missing = [k for k in LIBERO_IMAGE_KEYS.values() if k not in by_model_key]
        if missing:
            raise UserFacingError(
                f"the openpi bridge maps LIBERO's images to {sorted(LIBERO_IMAGE_KEYS.values())}, but no camera "
                f"feeds {missing[0]!r} (cameras: {dict(cameras)})"
            )
        return cls({key: by_model_key[model_key] for key, model_key in LIBERO_IMAGE_KEYS.items()})

    def required(self) -> list[str]:
        return sorted([*self.images, *([self.state] if self.state else []), self.prompt])


class ObservationTranslator:
    """openpi dict → `pb.Observation`, and the wire's field names in errors → openpi keys."""

    def __init__(self, keys: OpenpiKeys, cameras: Mapping[str, str]):
        unmapped = sorted(set(cameras) - set(keys.images.values()))
        unknown = sorted(set(keys.images.values()) - set(cameras))
        if unmapped or unknown:
            raise UserFacingError(
                f"the openpi key map {dict(keys.images)} must cover exactly the cameras {sorted(cameras)}"
            )
        self.keys = keys
        self._key_of_camera = {camera: key for key, camera in keys.images.items()}
        self._camera_of_model_key = {model_key: camera for camera, model_key in cameras.items()}

    def to_wire(self, obs: Any, step: int) -> pb.Observation:
        if not isinstance(obs, dict):
            raise BadObservation(f"the observation must be a map of openpi keys, got {type(obs).__name__}")
        message = pb.Observation(step=step, timestamp=time.time(), task=self._prompt(obs))
        for key, camera in self.keys.images.items():
            message.images[camera].CopyFrom(numpy_to_image(_image(self._get(obs, key), key)))
        if self.keys.state is not None:
            message.state.CopyFrom(numpy_to_tensor(_array(self._get(obs, self.keys.state), self.keys.state)))
        return message

    def describe(self, err: WireError | InputError) -> str:
        """The wire's `field: problem` message, with the field spelled as the openpi key it came from."""
        text = str(err)
        detail = text.removeprefix(f"{err.field}: ")
        return f"{self.openpi_key(err.field)}: {detail}"

    def openpi_key(self, field: str) -> str:
        path = field.removeprefix("observation.")
        if path == "state" and self.keys.state:
            return self.keys.state
        if path in ("task", "subtask"):
            return self.keys.prompt
        match = re.fullmatch(r"images\[(['\"])(.+)\1\]", path)
        if match:
            name = match.group(2)
            camera = name if name in self._key_of_camera else self._camera_of_model_key.get(name, "")
            return self._key_of_camera.get(camera, field)
        return field

    def _get(self, obs: dict, key: str) -> Any:
        if key not in obs:
            raise BadObservation(f"{key}: missing from the observation; expected keys {self.keys.required()}")
        return obs[key]

    def _prompt(self, obs: dict) -> str:
        prompt = obs.get(self.keys.prompt, "")
        if isinstance(prompt, bytes):
            try:
                prompt = prompt.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BadObservation(f"{self.keys.prompt}: is not UTF-8 text") from err
        if not isinstance(prompt, str):
            raise BadObservation(f"{self.keys.prompt}: expected a string, got {type(prompt).__name__}")
        return str(prompt)


def _image(value: Any, key: str) -> np.ndarray:
    """uint8 HWC, accepting what openpi's policies accept too: CHW layout and float images in [0, 1]."""
    if not isinstance(value, np.ndarray):
        raise BadObservation(f"{key}: expected a uint8 image array [H, W, 3], got {type(value).__name__}")
    if value.dtype.kind == "f":
        if not np.all(np.isfinite(value)):
            raise BadObservation(f"{key}: float image contains NaN or Inf")
        value = np.clip(value * 255.0, 0, 255).astype(np.uint8)
    elif value.dtype != np.uint8:
        raise BadObservation(
            f"{key}: expected a uint8 image [H, W, 3] (or float in [0, 1]), got {value.dtype} {list(value.shape)}"
        )
    if value.ndim == 3 and value.shape[0] == 3 and value.shape[-1] != 3:
        value = np.moveaxis(value, 0, -1)
    return value


def _array(value: Any, key: str) -> np.ndarray:
    if isinstance(value, list | tuple):
        try:
            value = np.asarray(value)
        except ValueError as err:
            raise BadObservation(f"{key}: is not a rectangular array of numbers") from err
    if not isinstance(value, np.ndarray):
        raise BadObservation(f"{key}: expected a float array, got {type(value).__name__}")
    return value


# -- the server ----------------------------------------------------------------------------------------------


class OpenpiBridge:
    """A websocket server in the runtime's event loop; one session per connection."""

    def __init__(
        self,
        registry: SessionRegistry,
        batcher: ChunkBatcher,
        stats: StatsRecorder,
        metadata: pb.RuntimeMetadata,
        *,
        keys: OpenpiKeys | None = None,
        on_observation: Callable[[], None] = lambda: None,
        wait_for_subtask_ms: float = 0.0,
        token: str | None = None,
        tls: tuple[pathlib.Path, pathlib.Path] | None = None,
        max_message_mb: int = 64,
    ):
        cameras = registry.settings.cameras
        self._translator = ObservationTranslator(keys or OpenpiKeys.libero(cameras), cameras)
        self._registry = registry
        self._batcher = batcher
        self._chunks = ChunkMaker(batcher, stats, wait_for_subtask_ms=wait_for_subtask_ms)
        self._stats = stats
        self._on_observation = on_observation
        self._token = token
        self._tls = tls
        self._max_size = max_message_mb * 1024 * 1024
        self._metadata = self._metadata_dict(metadata)
        self._server: Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listens (wss:// with the runtime's TLS certificate, if it has one); → the bound port."""
        try:
            self._server = await serve(
                self._connection,
                host,
                port,
                compression=None,
                max_size=self._max_size,
                process_request=self._http,
                logger=_ws_log,
                ssl=self._ssl_context(),
            )
        except OSError as err:
            raise UserFacingError(f"the openpi bridge cannot listen on {host}:{port}: {err.strerror or err}") from err
        return int(self._server.sockets[0].getsockname()[1])

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self._tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self._tls
        context.load_cert_chain(cert, key)
        return context

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), STOP_GRACE_S)
        self._server = None

    def _metadata_dict(self, metadata: pb.RuntimeMetadata) -> dict[str, Any]:
        keys = self._translator.keys
        return {
            "server": "robot-runtime",
            "version": metadata.version,
            "action_dims": metadata.action_dims,
            "action_horizon": metadata.action_horizon,
            "state_dims": metadata.state_dims,
            "num_denoise_steps": metadata.num_denoise_steps,
            "image_keys": dict(keys.images),
            "state_key": keys.state,
            "prompt_key": keys.prompt,
            "model_config": json.loads(metadata.model_config_json) if metadata.model_config_json else {},
        }

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """`/healthz` as openpi serves it; with a token, the handshake needs openpi-client's api_key (or Bearer)."""
        if urlsplit(request.path).path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self._token and not self._authorized(request.headers.get("Authorization", "")):
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong token (Api-Key or Bearer)\n")
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() not in ("api-key", "bearer"):
            return False
        return hmac.compare_digest(credential.strip().encode(), str(self._token).encode())

    async def _connection(self, connection: ServerConnection) -> None:
        session = self._registry.open(f"openpi-{uuid.uuid4().hex[:12]}", "")
        self._stats.count("sessions_opened")
        log.info("openpi client %s opened session %s", connection.remote_address, session.id)
        try:
            await connection.send(packb(self._metadata))
            await self._serve(connection, session)
        except ConnectionClosed:
            pass
        finally:
            session.finished = True  # openpi's protocol has no resume: the id is free at once
            self._batcher.forget(session.id)
            self._registry.close(session)
            self._stats.count("sessions_closed")
            log.info("openpi session %s closed", session.id)

    async def _serve(self, connection: ServerConnection, session: Session) -> None:
        step = 0
        prev_total_ms: float | None = None
        async for frame in connection:
            started = time.perf_counter()
            try:
                reply = await self._infer(session, frame, step)
            except (BadObservation, FrameError) as err:
                await self._refuse(connection, f"invalid observation: {err}", CloseCode.POLICY_VIOLATION)
                return
            except Exception as err:  # the client gets one line; the log keeps the traceback
                log.exception("openpi session %s failed", session.id)
                await self._refuse(connection, f"the actor failed: {type(err).__name__}", CloseCode.INTERNAL_ERROR)
                return
            reply["server_timing"] = {"infer_ms": (time.perf_counter() - started) * 1e3}
            if prev_total_ms is not None:
                reply["server_timing"]["prev_total_ms"] = prev_total_ms
            await connection.send(packb(reply))
            prev_total_ms = (time.perf_counter() - started) * 1e3
            step += 1

    async def _refuse(self, connection: ServerConnection, message: str, code: CloseCode) -> None:
        """A text frame makes openpi-client raise with our message; then the connection ends."""
        self._stats.count("errors")
        line = " ".join(message.split())
        log.info("openpi client %s refused: %s", connection.remote_address, line)
        await connection.send(line)
        await connection.close(code, line.encode()[:120].decode("utf-8", "ignore"))

    async def _infer(self, session: Session, frame: str | bytes, step: int) -> dict[str, Any]:
        if isinstance(frame, str):
            raise BadObservation("send observations as binary msgpack frames, not text")
        obs = self._translator.to_wire(unpackb(frame), step)
        try:
            request = self._registry.accept(session, obs)
        except (WireError, InputError) as err:
            raise BadObservation(self._translator.describe(err)) from err
        self._stats.count("observations")
        self._on_observation()
        try:
            chunk = await self._chunks.make(session, request, session.subtask_version)
        except InvalidRequest as err:
            raise BadObservation(self._translator.describe(err)) from err
        _drain(session.updates)
        return {
            "actions": np.asarray(chunk.actions, np.float32),
            "subtask": chunk.subtask,
            "subtask_version": chunk.subtask_version,
            "policy_timing": {
                "infer_ms": chunk.timings.total_ms,
                "queue_ms": chunk.queue_ms,
                "prefill_ms": chunk.timings.prefill_ms,
                "denoise_ms": chunk.timings.denoise_ms,
                "batch_size": chunk.timings.batch_size,
            },
        }


def _drain(queue: asyncio.Queue) -> None:
    """Subtask updates are pushed for gRPC streams; here they ride on the next reply, so none may pile up."""
    while not queue.empty():
        queue.get_nowait()
