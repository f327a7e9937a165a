"""A hostile-client harness for the runtime's Session stream: seeded attack cases, a driver that runs them
concurrently against a live runtime next to a well-behaved bystander robot, and the report.

Used by `tests/runtime/test_fuzz.py` (a small seeded subset in the default suite) and `bench/fuzz_session.py`
(`make fuzz`, the long run). Cases are built from the real proto classes and then broken: structured
mutations (impossible shapes, image bombs, bad names and sizes, out-of-order steps, takeover attempts) and
byte-level corruption of serialized messages (bit flips, truncation, insertions, random frames), plus
abandoned streams, half-closed streams and raw TCP garbage. A stream *hangs* when the server gives it no
status within `STATUS_TIMEOUT_S` of its last message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import statistics
import struct
import threading
import time
import zlib
from collections.abc import Callable

import grpc
import numpy as np

from client.robot_client import RobotClient
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import numpy_to_image, numpy_to_tensor

STATUS_TIMEOUT_S = 5.0
TASK = "put the red cube in the bowl"
CAMERAS = ("agentview", "wrist")
SESSION_METHOD = "/robot_runtime.v1.RobotRuntime/Session"


@dataclasses.dataclass(frozen=True)
class Case:
    """frames: serialized SessionRequests. mode: `send` (then half-close, a status must follow), `hold`
    (keep the stream open: the server must end it), `abandon` (cancel without reading), `tcp` (raw bytes on a
    plain socket). expect: status names that pass (None: any status but UNKNOWN)."""

    kind: str
    frames: tuple[bytes, ...]
    mode: str = "send"
    expect: frozenset[str] | None = None


def _frame(side: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\0" * 256


def _jpeg_header(width: int, height: int) -> bytes:
    return b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00" + b"\0" * 256


def good_observation(step: int, encoding: str = "raw", state_dims: int = 8) -> pb.Observation:
    rng = np.random.default_rng(step)
    return pb.Observation(
        step=step,
        images={name: numpy_to_image(_frame(seed=step + i), encoding) for i, name in enumerate(CAMERAS)},
        state=numpy_to_tensor(rng.uniform(-1, 1, state_dims).astype(np.float32)),
    )


def _open(session_id: str = "", task: str = TASK, token: str = "") -> bytes:
    return pb.SessionRequest(
        open=pb.SessionOpen(session_id=session_id, task=task, resume_token=token)
    ).SerializeToString()


def _obs(observation: pb.Observation) -> bytes:
    return pb.SessionRequest(observation=observation).SerializeToString()


# -- structured mutations: each returns an observation the server must refuse -------------------------------


def _bad_state(rng: random.Random, obs: pb.Observation) -> None:
    big = rng.choice([2**31, 2**32, 2**62, 2**63 - 1])
    obs.state.CopyFrom(
        rng.choice(
            [
                pb.Tensor(dtype="float32", shape=[big, big]),
                pb.Tensor(dtype="float32", shape=[big, 4], data=b"\0" * 16),
                pb.Tensor(dtype="float32", shape=[-1, 8]),
                pb.Tensor(dtype="float32", shape=[1] * rng.randint(9, 2000)),
                pb.Tensor(dtype="x" * rng.randint(1, 100_000), shape=[8], data=b"\0" * 32),
                pb.Tensor(dtype="int64", shape=[8], data=b"\0" * 64),
                pb.Tensor(dtype="float32", shape=[8], data=b"\0" * rng.randint(0, 31)),
                numpy_to_tensor(np.full(8, rng.choice([np.nan, np.inf, -np.inf]), np.float32)),
                numpy_to_tensor(np.zeros(rng.choice([0, 7, 9, 1000]), np.float32)),
            ]
        )
    )


def _bad_rtc(rng: random.Random, obs: pb.Observation) -> None:
    obs.rtc.inference_delay = rng.choice([1, -1, -(2**31)])
    big = rng.choice([2**32, 2**62])
    obs.rtc.queued_actions.CopyFrom(
        rng.choice(
            [
                pb.Tensor(dtype="float32", shape=[big, 8]),
                pb.Tensor(dtype="float32", shape=[big, big, big]),
                numpy_to_tensor(np.zeros((rng.randint(1, 10_000), 3), np.float32)),
                numpy_to_tensor(np.zeros((100_000, 7), np.float32)),
            ]
        )
    )


def _bad_image(rng: random.Random, obs: pb.Observation) -> None:
    side = rng.choice([4097, 8192, 16384, 65535])
    real_png = numpy_to_image(_frame(), "png").data
    image = rng.choice(
        [
            pb.Image(encoding=pb.Image.PNG, data=_png_header(side, side)),
            pb.Image(encoding=pb.Image.JPEG, data=_jpeg_header(side, rng.choice([side, 1]))),
            pb.Image(encoding=pb.Image.PNG, data=_png_header(4096, 4096)),
            pb.Image(encoding=pb.Image.JPEG, data=_jpeg_header(0, 0)),
            pb.Image(encoding=pb.Image.PNG, data=real_png[: rng.randint(0, 23)]),
            pb.Image(encoding=pb.Image.JPEG, data=b"\xff\xd8" + bytes([rng.randrange(255)]) + rng.randbytes(4000)),
            pb.Image(encoding=pb.Image.PNG, data=b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(0, 4000))),
            pb.Image(encoding=pb.Image.RAW_RGB8, shape=[2**31 - 1, 2**31 - 1, 3]),
            pb.Image(encoding=pb.Image.RAW_RGB8, shape=[64, 64, 3], data=b"\0" * rng.randint(0, 12287)),
            pb.Image(encoding=pb.Image.RAW_RGB8, shape=[-64, -64, 3], data=b"\0" * 12288),
            pb.Image(encoding=rng.randint(3, 2**31 - 1), data=real_png),
        ]
    )
    obs.images[rng.choice(CAMERAS)].CopyFrom(image)


def _bad_cameras(rng: random.Random, obs: pb.Observation) -> None:
    choice = rng.randint(0, 2)
    if choice == 0:
        del obs.images[rng.choice(CAMERAS)]
    elif choice == 1:
        obs.images["x" * rng.randint(1, 100_000)].CopyFrom(obs.images["wrist"])
    else:
        for i in range(rng.randint(3, 300)):
            obs.images[f"camera-{i}-\u00e9"].CopyFrom(obs.images["wrist"])


def _bad_fields(rng: random.Random, obs: pb.Observation) -> None:
    choice = rng.randint(0, 3)
    if choice == 0:
        obs.task = "pick " * rng.randint(200, 200_000)
    elif choice == 1:
        obs.session_id = "s" * rng.randint(1, 8 * 1024 * 1024)
    elif choice == 2:
        obs.step = rng.choice([0, 3, 4])  # not after the step before
    else:
        obs.task = " \t\n"  # an empty task for a session opened without one


MUTATIONS: dict[str, Callable[[random.Random, pb.Observation], None]] = {
    "state": _bad_state,
    "rtc": _bad_rtc,
    "image": _bad_image,
    "cameras": _bad_cameras,
    "fields": _bad_fields,
}


def _structured(rng: random.Random) -> Case:
    kind = rng.choice(sorted(MUTATIONS))
    obs = good_observation(5, rng.choice(["raw", "jpeg"]))
    MUTATIONS[kind](rng, obs)
    # A quarter of the sessions fail mid-way (after a good observation, which costs the actor a chunk).
    mid_session = rng.random() < 0.25 or obs.step != 5  # a step that does not follow step 4 needs step 4 first
    frames = (_open(), _obs(good_observation(4)), _obs(obs)) if mid_session else (_open(), _obs(obs))
    if obs.task == " \t\n":  # an empty task is refused only where the session has none
        frames = (_open(task=""), _obs(obs))
    return Case(f"structured/{kind}", frames, mode=rng.choice(["send", "hold"]), expect=frozenset({"INVALID_ARGUMENT"}))


def _bad_open(rng: random.Random) -> Case:
    opening = rng.choice(
        [
            _open(session_id="s" * rng.randint(129, 8 * 1024 * 1024)),
            _open(session_id=rng.choice(["a\nb", "\x1b[2J", "\u00e9t\u00e9", "x\x00"])),
            _open(task="t" * rng.randint(513, 1_000_000)),
            _obs(good_observation(1)),  # an observation before any open
            b"",  # an empty request: no kind
        ]
    )
    return Case(
        "open",
        (opening, _obs(good_observation(1))),
        mode=rng.choice(["send", "hold"]),
        expect=frozenset({"INVALID_ARGUMENT"}),
    )


def _corrupt(rng: random.Random, data: bytes) -> bytes:
    how = rng.randint(0, 4)
    if how == 0:  # bit flips
        buf = bytearray(data)
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if how == 1:
        return data[: rng.randrange(len(data))]
    if how == 2:
        i = rng.randrange(len(data))
        return data[:i] + rng.randbytes(rng.randint(1, 64)) + data[i:]
    if how == 3:
        return rng.randbytes(rng.randint(1, 4096))
    return b"\xff" * rng.randint(1, 64) + data  # an invalid wire type up front


def _bytes(rng: random.Random) -> Case:
    step = 2
    target = rng.choice(["open", "observation"])
    if target == "open":
        frames = (_corrupt(rng, _open(session_id=f"fuzz-{rng.randrange(10**9)}")), _obs(good_observation(step)))
    else:
        obs = good_observation(step, rng.choice(["raw", "jpeg", "png"]))
        frames = (_open(), _obs(good_observation(1)), _corrupt(rng, _obs(obs)))
    return Case(f"bytes/{target}", frames)  # a corrupted message may still be valid: any status but UNKNOWN


def _abandon(rng: random.Random) -> Case:
    frames = (_open(), _obs(good_observation(1)))[: rng.randint(1, 2)]
    return Case("abandon", frames, mode="abandon")


def _half_close(rng: random.Random) -> Case:
    closing = pb.SessionRequest(close=pb.SessionClose()).SerializeToString()
    return Case("half-close", (_open(), closing)[: rng.randint(1, 2)], expect=frozenset({"OK"}))


def _tcp(rng: random.Random) -> Case:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" if rng.random() < 0.5 else b""
    return Case("tcp", (preface + rng.randbytes(rng.randint(1, 8192)),), mode="tcp")


GENERATORS: tuple[tuple[Callable[[random.Random], Case], float], ...] = (
    (_structured, 0.40),
    (_bytes, 0.35),
    (_bad_open, 0.10),
    (_abandon, 0.06),
    (_half_close, 0.04),
    (_tcp, 0.05),
)


def hostile_cases(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    makers, weights = zip(*GENERATORS)
    return [rng.choices(makers, weights)[0](rng) for _ in range(count)]


# -- the driver ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    kind: str
    status: str  # a status code name, "HANG", "abandoned" or "tcp"
    passed: bool


async def _run_stream(channel: grpc.aio.Channel, case: Case) -> Outcome:
    """Writes the open frame and waits for the server's first answer, as a client does; then the rest. (A
    write racing the server's status would end the call with a client-side INTERNAL instead.)"""
    call = channel.stream_stream(SESSION_METHOD, request_serializer=lambda raw: raw, response_deserializer=bytes)
    stream = call(timeout=120)
    try:
        async with asyncio.timeout(STATUS_TIMEOUT_S):
            for i, frame in enumerate(case.frames):
                if stream.done():
                    break
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                    await stream.write(frame)
                    if i == 0 and case.mode != "abandon":
                        await stream.read()
            if case.mode == "abandon":
                await asyncio.sleep(0.05)
                stream.cancel()
                return Outcome(case.kind, "abandoned", True)
            if case.mode == "send" and not stream.done():
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                    await stream.done_writing()
            with contextlib.suppress(grpc.aio.AioRpcError):
                while await stream.read() is not grpc.aio.EOF:
                    pass
            status = (await stream.code()).name
    except TimeoutError:
        stream.cancel()
        return Outcome(case.kind, "HANG", False)
    passed = status != "UNKNOWN" and (case.expect is None or status in case.expect)
    return Outcome(case.kind, status, passed)


async def _run_tcp(host: str, port: int, case: Case) -> Outcome:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STATUS_TIMEOUT_S)
        writer.write(case.frames[0])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
    return Outcome(case.kind, "tcp", True)


async def attack(
    address: str, cases: list[Case], concurrency: int = 16, rate: float | None = None, max_message_mb: int = 64
) -> list[Outcome]:
    """Runs every case, `concurrency` at a time (and at most `rate` cases a second) → one outcome per case."""
    limit = max_message_mb * 1024 * 1024
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    host, port = address.rsplit(":", 1)
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(index: int, channel, case: Case) -> Outcome:
        if rate:
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        async with gate:
            if case.mode == "tcp":
                return await _run_tcp(host, int(port), case)
            return await _run_stream(channel, case)

    async with grpc.aio.insecure_channel(address, options=options) as channel:
        return list(await asyncio.gather(*(one(i, channel, case) for i, case in enumerate(cases))))


def report(outcomes: list[Outcome]) -> dict:
    statuses = collections.Counter(o.status for o in outcomes)
    failures = collections.Counter(f"{o.kind}:{o.status}" for o in outcomes if not o.passed)
    return {
        "cases": len(outcomes),
        "statuses": dict(sorted(statuses.items())),
        "hangs": statuses.get("HANG", 0),
        "unknown": statuses.get("UNKNOWN", 0),
        "unexpected": dict(sorted(failures.items())),
    }


class Bystander:
    """A well-behaved robot: one RobotClient asking for a chunk every `period_s`, recording round trips."""

    def __init__(self, address: str, period_s: float = 0.1, session_id: str = "bystander"):
        self.client = RobotClient(address, TASK, session_id=session_id, timeout_s=30.0)
        self.period_s = period_s
        self.round_trips_ms: list[tuple[float, float]] = []  # (when, ms)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def __enter__(self) -> Bystander:
        meta = self.client.connect()
        self._images = {name: _frame(seed=i) for i, name in enumerate(meta.cameras)}
        self._state = np.zeros(meta.state_dims, np.float32)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                chunk = self.client.infer(self._images, self._state)
                self.round_trips_ms.append((started, chunk.round_trip_ms))
            except Exception as err:  # noqa: BLE001 - recorded: the report says the bystander suffered
                self.errors.append(f"{type(err).__name__}: {err}"[:300])
            self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def p99_ms(self, since: float, until: float) -> float:
        window = [ms for when, ms in self.round_trips_ms if since <= when < until]
        if len(window) < 2:
            return float("nan")
        return float(statistics.quantiles(window, n=100)[98]) if len(window) >= 100 else max(window)

    def count(self, since: float, until: float) -> int:
        return sum(since <= when < until for when, _ in self.round_trips_ms)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sessions_open(address: str) -> int:
    from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        return pb_grpc.RobotRuntimeStub(channel).GetStats(pb.StatsRequest(), timeout=10).counters["sessions_open"]


def takeover_attempts(address: str, victim_id: str, count: int = 3) -> list[str]:
    """Opens the bystander's session id without its token → the status names (ALREADY_EXISTS expected)."""
    opening = _open(session_id=victim_id)

    async def run() -> list[str]:
        async with grpc.aio.insecure_channel(address) as channel:
            case = Case("takeover", (opening,), mode="hold")
            return [(await _run_stream(channel, case)).status for _ in range(count)]

    return asyncio.run(run())
