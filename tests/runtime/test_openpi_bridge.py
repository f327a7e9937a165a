"""The openpi websocket bridge, driven by the real `openpi-client` from PyPI.

openpi-client 0.1.2 pins numpy<2, which jax does not allow; it is installed with `pip install --no-deps
openpi-client` (the modules used here need only msgpack, numpy, websockets and typing_extensions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest

msgpack_numpy = pytest.importorskip("openpi_client.msgpack_numpy", reason="pip install --no-deps openpi-client")
websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")

from server_process import run_server
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from actor.engine import ChunkResult, ChunkTimings
from policy.inputs import LIBERO_CAMERAS
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.stats import StatsRecorder
from protos.wire import image_to_numpy
from runtime import openpi_bridge
from runtime.batcher import BatchedResult
from runtime.launch import ServerProcess
from runtime.sessions import SessionRegistry, SessionSettings

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")
Client = websocket_client_policy.WebsocketClientPolicy
TASK = "put the red cube in the bowl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def libero_observation(state_dims: int, seed: int = 0, **changes) -> dict:
    """What openpi's LIBERO example sends: 224² uint8 frames, a float64 state, the task as the prompt."""
    rng = np.random.default_rng(seed)
    obs = {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.uniform(-1, 1, state_dims),
        "prompt": TASK,
    }
    obs.update(changes)
    return {key: value for key, value in obs.items() if value is not None}


def hang_up(client) -> None:
    """openpi-client has no close(); its socket is `_ws`."""
    client._ws.close()


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


# -- msgpack-numpy, against openpi_client's own codec --------------------------------------------------------

SAMPLES = {
    "float32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "float64": np.linspace(-1, 1, 5),
    "float16": np.array([0.5, -2.0], np.float16),
    "int8": np.array([-128, 0, 127], np.int8),
    "int64": np.array([[1, 2], [3, 4]], np.int64),
    "uint8 image": np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8),
    "bool": np.array([True, False, True]),
    "big-endian": np.arange(3, dtype=">f4"),
    "strings": np.array(["ab", "c"]),
    "0-d": np.array(3.5, np.float32),
    "empty": np.zeros((0, 7), np.float32),
    "non-contiguous": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],
}
SCALARS = [np.float32(1.25), np.float64(-3.5), np.int64(7), np.uint8(200), np.bool_(True), np.int16(-3)]


def nested_sample() -> dict:
    return {
        "actions": SAMPLES["float32"],
        "server_timing": {"infer_ms": 1.5, "counts": [1, 2, np.int64(3)]},
        "prompt": "pick up the cube",
        "flags": {"done": np.bool_(False), "deep": {"x": SAMPLES["int8"], "y": None}},
        "scalars": SCALARS,
    }


def assert_same(ours, theirs) -> None:
    assert type(ours) is type(theirs), (ours, theirs)
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert_same(ours[key], theirs[key])
    elif isinstance(ours, list | tuple):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_same(a, b)
    elif isinstance(ours, np.ndarray):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
    else:
        assert ours == theirs


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_arrays_round_trip_with_openpi_client(name):
    array = SAMPLES[name]
    packed = openpi_bridge.packb(array)
    assert packed == msgpack_numpy.packb(array)
    assert_same(openpi_bridge.unpackb(msgpack_numpy.packb(array)), msgpack_numpy.unpackb(packed))
    np.testing.assert_array_equal(openpi_bridge.unpackb(packed), array)


def test_scalars_and_nested_dicts_round_trip_with_openpi_client():
    sample = nested_sample()
    packed = openpi_bridge.packb(sample)
    assert packed == msgpack_numpy.packb(sample)
    ours, theirs = openpi_bridge.unpackb(msgpack_numpy.packb(sample)), msgpack_numpy.unpackb(packed)
    assert_same(ours, theirs)
    # np.float64 subclasses float, so msgpack writes it as a plain float (in both codecs)
    expected = [float if isinstance(s, float) else type(s) for s in SCALARS]
    assert [type(s) for s in ours["scalars"]] == expected
    assert ours["scalars"] == SCALARS


def test_codec_refuses_what_openpi_client_refuses_to_send():
    for bad in (np.array([object()]), np.array([1 + 2j])):
        with pytest.raises(ValueError):
            openpi_bridge.packb(bad)


@pytest.mark.parametrize(
    "frame, problem",
    [
        ({b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O", b"shape": [1]}, "dtype"),
        ({b"__ndarray__": True, b"data": b"\0" * 7, b"dtype": "<f4", b"shape": [2]}, "7 bytes"),
        ({b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [-1]}, "shape"),
        ({b"__ndarray__": True, b"data": b"", b"dtype": "not a dtype", b"shape": [0]}, "dtype"),
        ({b"__npgeneric__": True, b"data": "x", b"dtype": "<f4"}, "scalar"),
    ],
)
def test_malformed_frames_are_refused_without_unpickling(frame, problem):
    import msgpack

    with pytest.raises(openpi_bridge.FrameError, match=problem):
        openpi_bridge.unpackb(msgpack.packb({"observation/state": frame}))
    with pytest.raises(openpi_bridge.FrameError, match="not msgpack"):
        openpi_bridge.unpackb(b"\xc1 garbage")


# -- the real server -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OpenpiServer:
    runtime: ServerProcess
    openpi_port: int

    @property
    def address(self) -> str:
        return self.runtime.address


@pytest.fixture(scope="module")
def openpi_server(tiny_checkpoint, tmp_path_factory):
    """No planner process: the bridge does not need one (chunks use the task), and it halves start-up time."""
    port, workdir = free_port(), tmp_path_factory.mktemp("openpi")
    no_planner = f"unix://{workdir}/no-planner.sock"
    with run_server(tiny_checkpoint, workdir, "--openpi-port", str(port), "--planner-address", no_planner) as server:
        yield OpenpiServer(server, port)


@pytest.fixture()
def client(openpi_server):
    policy = Client("127.0.0.1", openpi_server.openpi_port)
    yield policy
    hang_up(policy)


def sessions_open(server) -> int:
    with grpc.insecure_channel(server.address) as channel:
        stats = pb_grpc.RobotRuntimeStub(channel).GetStats(pb.StatsRequest(), timeout=10)
    return stats.counters["sessions_open"]


def test_metadata_frame_on_connect(client):
    meta = client.get_server_metadata()
    assert meta["server"] == "robot-runtime"
    assert meta["image_keys"] == {"observation/image": "agentview", "observation/wrist_image": "wrist"}
    assert (meta["state_key"], meta["prompt_key"]) == ("observation/state", "prompt")
    assert meta["action_dims"] > 0 and meta["action_horizon"] > 0 and meta["state_dims"] > 0
    assert isinstance(meta["model_config"], dict)


def test_repeated_infers_return_action_chunks(client):
    meta = client.get_server_metadata()
    replies = [client.infer(libero_observation(meta["state_dims"], seed)) for seed in range(3)]
    for reply in replies:
        actions = reply["actions"]
        assert actions.dtype == np.float32
        assert actions.shape == (meta["action_horizon"], meta["action_dims"])
        assert np.all(np.isfinite(actions))
        assert reply["server_timing"]["infer_ms"] > 0
        assert reply["policy_timing"]["infer_ms"] > 0
    assert "prev_total_ms" not in replies[0]["server_timing"]
    assert all(r["server_timing"]["prev_total_ms"] > 0 for r in replies[1:])


def test_healthz(openpi_server):
    with urllib.request.urlopen(f"http://127.0.0.1:{openpi_server.openpi_port}/healthz", timeout=10) as reply:
        assert reply.status == 200
        assert reply.read() == b"OK\n"


BAD_OBSERVATIONS = {
    "missing wrist image": ({"observation/wrist_image": None}, "observation/wrist_image", "missing"),
    "NaN state": ({"observation/state": np.array([np.nan] * 8)}, "observation/state", "NaN"),
    "short state": ({"observation/state": np.zeros(3)}, "observation/state", "shape"),
    "int32 image": ({"observation/image": np.zeros((224, 224, 3), np.int32)}, "observation/image", "uint8"),
    "4-channel image": ({"observation/image": np.zeros((8, 8, 4), np.uint8)}, "observation/image", "[H, W, 3]"),
    "empty prompt": ({"prompt": "  "}, "prompt", "empty"),
    "prompt not text": ({"prompt": np.zeros(3)}, "prompt", "string"),
}


@pytest.mark.parametrize("case", sorted(BAD_OBSERVATIONS))
def test_bad_observation_gets_a_clear_one_line_error_and_closes(openpi_server, case):
    changes, key, problem = BAD_OBSERVATIONS[case]
    policy = Client("127.0.0.1", openpi_server.openpi_port)
    state_dims = policy.get_server_metadata()["state_dims"]
    if key == "observation/state" and problem == "NaN":
        changes = {key: np.full(state_dims, np.nan)}
    with pytest.raises(RuntimeError) as info:
        policy.infer(libero_observation(state_dims, **changes))
    message = str(info.value).removeprefix("Error in inference server:\n")
    assert key in message and problem in message, message
    assert "\n" not in message and "Traceback" not in message
    with pytest.raises(ConnectionClosed):
        policy.infer(libero_observation(state_dims))
    hang_up(policy)


def test_other_connections_survive_a_failed_one_and_sessions_are_freed(openpi_server):
    baseline = sessions_open(openpi_server)
    good, bad = (Client("127.0.0.1", openpi_server.openpi_port) for _ in range(2))
    state_dims = good.get_server_metadata()["state_dims"]
    wait_until(lambda: sessions_open(openpi_server) == baseline + 2, 10, "two open sessions")
    with pytest.raises(RuntimeError, match="observation/wrist_image"):
        bad.infer(libero_observation(state_dims, **{"observation/wrist_image": None}))
    wait_until(lambda: sessions_open(openpi_server) == baseline + 1, 10, "the failed session to close")

    late = Client("127.0.0.1", openpi_server.openpi_port)
    for policy in (good, late, good):
        assert policy.infer(libero_observation(state_dims))["actions"].ndim == 2
    hang_up(good)
    hang_up(late)
    wait_until(lambda: sessions_open(openpi_server) == baseline, 10, "closed clients' sessions to be freed")
    assert openpi_server.runtime.process.poll() is None


# -- in process, with a stand-in actor: the token --------------------------------------------------------------


class InstantBatcher:
    """Answers every request at once with zeros of the right shape."""

    def __init__(self, horizon: int, action_dims: int):
        self._actions = np.zeros((horizon, action_dims), np.float32)

    def submit(self, session_id, request) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        future.set_result(BatchedResult(ChunkResult(self._actions, ChunkTimings(1.0, 2.0, 3.5, 1)), 0.25))
        return future

    def forget(self, session_id) -> None:
        pass


@contextlib.contextmanager
def in_process_bridge(**options):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    registry = SessionRegistry(SessionSettings(dict(LIBERO_CAMERAS), 8, 7, 4))
    metadata = registry.metadata("{}", 10)
    bridge = openpi_bridge.OpenpiBridge(registry, InstantBatcher(4, 7), StatsRecorder(), metadata, **options)
    try:
        yield asyncio.run_coroutine_threadsafe(bridge.start("127.0.0.1", 0), loop).result(10), registry
    finally:
        asyncio.run_coroutine_threadsafe(bridge.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_token_is_required_as_openpi_clients_api_key():
    with in_process_bridge(token="s3cret") as (port, registry):
        with pytest.raises(InvalidStatus, match="401"):
            Client("127.0.0.1", port)
        with pytest.raises(InvalidStatus, match="401"):
            Client("127.0.0.1", port, api_key="wrong")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            assert reply.status == 200
        policy = Client("127.0.0.1", port, api_key="s3cret")
        reply = policy.infer(libero_observation(8))
        assert reply["actions"].shape == (4, 7)
        assert reply["policy_timing"] == {
            "infer_ms": 3.5,
            "queue_ms": 0.25,
            "prefill_ms": 1.0,
            "denoise_ms": 2.0,
            "batch_size": 1,
        }
        assert len(registry) == 1
        hang_up(policy)
        wait_until(lambda: len(registry) == 0, 10, "the session to close")


def test_tls_serves_wss_to_an_unchanged_openpi_client(tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with in_process_bridge(tls=(cert, key)) as (port, _):
        with pytest.raises(InvalidHandshake):
            Client("ws://localhost", port)
        policy = Client("wss://localhost", port)
        assert policy.infer(libero_observation(8))["actions"].shape == (4, 7)
        hang_up(policy)


def test_chw_and_float_images_are_accepted_like_openpis_policies():
    y, x = np.mgrid[0:224, 0:224]
    hwc = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)  # every pixel and channel tells where it came from
    chw = np.ascontiguousarray(np.moveaxis(hwc, -1, 0))
    floats = hwc.astype(np.float32) / 255.0
    translator = openpi_bridge.ObservationTranslator(openpi_bridge.OpenpiKeys.libero(LIBERO_CAMERAS), LIBERO_CAMERAS)
    message = translator.to_wire(
        libero_observation(8, **{"observation/image": chw, "observation/wrist_image": floats}), 0
    )
    keys = translator.keys.images
    agent = image_to_numpy(message.images[keys["observation/image"]], "agent")
    wrist = image_to_numpy(message.images[keys["observation/wrist_image"]], "wrist")
    np.testing.assert_array_equal(agent, hwc)  # transposed back, not reshaped
    assert np.abs(wrist.astype(int) - hwc).max() <= 1  # float [0, 1] scaled to uint8
    with in_process_bridge() as (port, _):
        policy = Client("127.0.0.1", port)
        reply = policy.infer(libero_observation(8, **{"observation/image": chw, "observation/wrist_image": floats}))
        assert reply["actions"].shape == (4, 7)
        hang_up(policy)


def test_key_map_must_cover_the_cameras():
    with pytest.raises(openpi_bridge.UserFacingError, match="left_wrist_0_rgb"):
        openpi_bridge.OpenpiKeys.libero({"front": "base_0_rgb"})
    keys = openpi_bridge.OpenpiKeys({"observation/image": "agentview"})
    with pytest.raises(openpi_bridge.UserFacingError, match="cover exactly"):
        openpi_bridge.ObservationTranslator(keys, LIBERO_CAMERAS)
