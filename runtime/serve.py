"""The two processes: `serve` (runtime + actor, supervising a local planner) and `serve-planner`.

Both bind first and report NOT_SERVING on grpc.health.v1 while the model loads and compiles, then SERVING.
SIGTERM/SIGINT stop them cleanly: new calls are refused, running ones get a short grace period, and the
runtime terminates the planner process it started.

`--reasoning` serves a reasoning checkpoint (seed 002): the planner decides think vs act per session
(`planner.reasoning.ReasoningSessions`), and the actor runs the act row with the session's latest reasoning
(`actor.engine.EngineConfig(reasoning=True)`), the task as a first segment's context until the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from policy.inputs import LIBERO_CAMERAS
from policy.model_dir import ModelDir
from protos import grpc_server
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.robot_runtime.v1 import runtime_pb2_grpc as pb_grpc
from protos.stats import StatsRecorder
from runtime import DEFAULT_WAIT_FOR_SUBTASK_MS
from runtime.sessions import SessionRegistry, SessionSettings, config_json

if TYPE_CHECKING:  # the planner process imports it once it loads the model
    from planner.service import PlannerService

log = logging.getLogger("robot_runtime")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    checkpoint: pathlib.Path
    tokenizer: pathlib.Path | None = None
    config: str | None = None
    asset_id: str | None = None

    def open(self) -> ModelDir:
        return ModelDir.open(self.checkpoint, config_name=self.config, tokenizer=self.tokenizer, asset_id=self.asset_id)

    def cli_args(self) -> list[str]:
        args = ["--checkpoint", str(self.checkpoint)]
        for flag, value in (("--tokenizer", self.tokenizer), ("--config", self.config), ("--asset-id", self.asset_id)):
            if value is not None:
                args += [flag, str(value)]
        return args


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """planner_max_tokens None: the planner's default (20 tokens of subtask, 48 of reasoning)."""

    model: ModelSource
    address: str = "127.0.0.1:50051"
    planner_address: str | None = None
    planner_interval_s: float = 0.0
    wait_for_subtask_ms: float = DEFAULT_WAIT_FOR_SUBTASK_MS
    noise_scale: float | None = None  # None: the checkpoint's serving.json, else 1
    cameras: dict[str, str] = dataclasses.field(default_factory=lambda: dict(LIBERO_CAMERAS))
    action_dims: int | None = None
    state_dims: int | None = None
    max_batch: int = 8
    max_wait_ms: float = 2.0
    num_steps: int = 10
    security: grpc_server.Security = grpc_server.Security()
    max_message_mb: int = grpc_server.DEFAULT_MAX_MESSAGE_MB
    planner_cpus: str | None = None
    planner_devices: str | None = None
    planner_max_tokens: int | None = None
    planner_max_batch: int = 4
    reasoning: bool = False
    ready_file: pathlib.Path | None = None
    openpi_port: int | None = None
    openpi_host: str = "127.0.0.1"
    compile_cache: str | None = None  # the local planner's --compile-cache (DIR or off); None: its default


@dataclasses.dataclass(frozen=True)
class PlannerOptions:
    """max_tokens None: 20 tokens of subtask, or 48 of reasoning with `reasoning`."""

    model: ModelSource
    address: str = "127.0.0.1:50052"
    max_tokens: int | None = None
    vocab: str = "ascii"
    reasoning: bool = False
    security: grpc_server.Security = grpc_server.Security()
    max_message_mb: int = grpc_server.DEFAULT_MAX_MESSAGE_MB
    max_batch: int = 4


def set_cpu_affinity(cpus: str | None) -> None:
    """`0,2-3` → pin this process to those cores (Linux)."""
    if not cpus:
        return
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    os.sched_setaffinity(0, chosen)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- planner process -----------------------------------------------------------------------------------------


async def serve_planner(options: PlannerOptions) -> None:
    from planner.decoder import DEFAULT_MAX_NEW_TOKENS, SubtaskDecoder
    from planner.reasoning import (
        DEFAULT_MAX_REASONING_TOKENS,
        ReasoningPlanner,
        ReasoningSessions,
    )
    from planner.service import PlannerService
    from policy.batching import BATCH_BUCKETS
    from policy.compiled import describe_compiles

    model_dir = options.model.open()
    tokenizer = model_dir.text_tokenizer()
    server = grpc_server.make_server(options.security, options.max_message_mb)
    health = grpc_server.Health(server, [pb.DESCRIPTOR.services_by_name["Planner"].full_name])
    stats = StatsRecorder()
    loop = asyncio.get_running_loop()

    service = _DeferredPlanner()
    grpc_server.add_service(server, service, pb.DESCRIPTOR.services_by_name["Planner"])
    grpc_server.warn_if_exposed(options.address, options.security)
    grpc_server.bind(server, options.address, options.security)
    await server.start()
    await health.set(False)
    log.info("planner listening on %s, loading %s", options.address, model_dir.root)

    max_tokens = options.max_tokens
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_REASONING_TOKENS if options.reasoning else DEFAULT_MAX_NEW_TOKENS

    def build():
        model, cfg = model_dir.load_model(), model_dir.config
        if options.reasoning:
            reasoner = ReasoningPlanner(
                model, tokenizer, cfg, vocab=options.vocab, max_new_tokens=max_tokens, norm_stats=model_dir.norm_stats
            )
            reasoner.warm_up()
            log.info("planner compiled %s", describe_compiles(reasoner.compiles))
            return ReasoningSessions(reasoner)
        decoder = SubtaskDecoder(
            model,
            tokenizer,
            cfg,
            vocab=options.vocab,
            max_new_tokens=max_tokens,
            buckets=tuple(b for b in BATCH_BUCKETS if b < options.max_batch) + (options.max_batch,),
            norm_stats=model_dir.norm_stats,
        )
        decoder.warm_up()
        log.info("planner compiled %s", describe_compiles(decoder.compiles))
        return decoder

    planner = await loop.run_in_executor(None, build)
    service.target = PlannerService(planner, stats, max_batch=options.max_batch)
    await health.set(True)
    log.info("planner ready")
    try:
        await _until_signalled()
    finally:
        await health.set(False)
        await server.stop(grace=2.0)


class _DeferredPlanner(pb_grpc.PlannerServicer):
    """Answers UNAVAILABLE until the model is loaded, then delegates."""

    target: PlannerService | None = None

    async def _ready(self, context):
        if self.target is None:
            import grpc

            await context.abort(grpc.StatusCode.UNAVAILABLE, "the planner is loading its model")
        return self.target

    async def Plan(self, request, context):
        return await (await self._ready(context)).Plan(request, context)

    async def Link(self, request_iterator, context):
        target = await self._ready(context)
        async with contextlib.aclosing(target.Link(request_iterator, context)) as replies:
            async for reply in replies:
                yield reply

    async def GetStats(self, request, context):
        return await (await self._ready(context)).GetStats(request, context)


# -- planner supervision -------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the planner child: the kernel sends SIGTERM when the runtime dies, even by SIGKILL (Linux)."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class PlannerSupervisor:
    """Runs `robot-runtime serve-planner` as a child process and restarts it with backoff when it exits."""

    def __init__(self, options: RuntimeOptions, address: str):
        self._options = options
        self.address = address
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._stopping = False

    def command(self) -> list[str]:
        o = self._options
        cmd = [sys.executable, "-m", "app.cli", "serve-planner", *o.model.cli_args(), "--address", self.address]
        cmd += ["--max-message-mb", str(o.max_message_mb), "--max-batch", str(o.planner_max_batch)]
        if o.planner_max_tokens is not None:
            cmd += ["--max-tokens", str(o.planner_max_tokens)]
        if o.reasoning:
            cmd.append("--reasoning")
        if o.planner_cpus:
            cmd += ["--cpus", o.planner_cpus]
        if o.compile_cache is not None:
            cmd += ["--compile-cache", o.compile_cache]
        return cmd

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self._options.planner_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = self._options.planner_devices
        if self._options.security.token:
            env["ROBOT_RUNTIME_TOKEN"] = self._options.security.token
        return env

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            self.process = subprocess.Popen(self.command(), env=self._env(), preexec_fn=_die_with_parent)
            log.info("planner process %d started", self.process.pid)
            while self.process.poll() is None:
                await asyncio.sleep(0.2)
            if self._stopping:
                return
            self.restarts += 1
            backoff = 0.5 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            log.warning("planner process exited with %s; restarting in %.1fs", self.process.returncode, backoff)
            await asyncio.sleep(backoff)

    def stop(self) -> None:
        self._stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# -- runtime process -----------------------------------------------------------------------------------------


async def serve_runtime(options: RuntimeOptions) -> None:
    from actor.engine import EngineConfig
    from runtime.actor_host import ActorHost
    from runtime.batcher import ChunkBatcher
    from runtime.planner_link import PlannerLink
    from runtime.planner_proxy import PLANNER_SERVICE, PlannerProxy
    from runtime.service import RobotRuntimeService

    model_dir = options.model.open()
    cfg = model_dir.config
    model_dir.text_tokenizer()
    action_stats, state_stats = model_dir.norm_stats.get("actions"), model_dir.norm_stats.get("state")
    action_dims = options.action_dims or (action_stats.dim if action_stats else cfg.action_dim)
    state_dims = options.state_dims or (state_stats.dim if state_stats else cfg.action_dim)
    settings = SessionSettings(dict(options.cameras), state_dims, action_dims, cfg.action_horizon)
    unknown = sorted(set(settings.cameras.values()) - set(cfg.image_keys))
    if unknown:
        raise ValueError(f"--camera maps to {unknown[0]!r}, which the model does not read ({list(cfg.image_keys)})")

    stats = StatsRecorder()
    registry = SessionRegistry(settings, reasoning=options.reasoning)
    metadata = registry.metadata(config_json(cfg), options.num_steps)
    noise_scale = model_dir.serving.noise_scale if options.noise_scale is None else options.noise_scale
    engine_config = EngineConfig(action_dims=action_dims, reasoning=options.reasoning, noise_scale=noise_scale)
    actor = ActorHost(model_dir, engine_config, settings, num_steps=options.num_steps, max_batch=options.max_batch)
    batcher = ChunkBatcher(
        actor,
        stats,
        max_batch=options.max_batch,
        max_wait_ms=options.max_wait_ms,
        executor=actor.executor,
        open_sessions=lambda: len(registry),
    )

    supervisor = None
    planner_address = options.planner_address
    tmp = tempfile.TemporaryDirectory(prefix="robot-runtime-")
    if planner_address is None:
        planner_address = f"unix://{tmp.name}/planner.sock"
        supervisor = PlannerSupervisor(options, planner_address)
    link = PlannerLink(
        lambda: grpc_server.client_channel(planner_address, max_message_mb=options.max_message_mb),
        registry,
        stats,
        interval_s=options.planner_interval_s,
        max_batch=options.planner_max_batch,
        metadata=grpc_server.auth_metadata(options.security.token),
    )
    service = RobotRuntimeService(
        registry,
        batcher,
        stats,
        metadata,
        on_observation=link.notify,
        wait_for_subtask_ms=options.wait_for_subtask_ms,
    )
    planner_channel = lambda: grpc_server.client_channel(planner_address, max_message_mb=options.max_message_mb)  # noqa: E731
    planner_proxy = PlannerProxy(planner_channel, metadata=grpc_server.auth_metadata(options.security.token))
    server = grpc_server.make_server(options.security, options.max_message_mb)
    health = grpc_server.Health(server, [pb.DESCRIPTOR.services_by_name["RobotRuntime"].full_name, PLANNER_SERVICE])
    gate = _ReadyGate(service)
    grpc_server.add_service(server, gate, pb.DESCRIPTOR.services_by_name["RobotRuntime"])
    grpc_server.add_service(server, planner_proxy, pb.DESCRIPTOR.services_by_name["Planner"])
    grpc_server.warn_if_exposed(options.address, options.security)
    port = grpc_server.bind(server, options.address, options.security)
    await server.start()
    await health.set(False)
    log.info("runtime listening on %s (port %d), loading %s", options.address, port, model_dir.root)

    background = []
    if supervisor is not None:
        background.append(asyncio.create_task(supervisor.run()))
    background.append(asyncio.create_task(link.run()))
    background.append(asyncio.create_task(grpc_server.return_freed_memory()))

    bridge = None
    try:
        await actor.load()
        batcher.start()
        gate.open = True
        if options.openpi_port is not None:
            bridge = await _start_openpi_bridge(options, registry, batcher, stats, metadata, link.notify)
        await health.set(True)
        background.append(
            asyncio.create_task(planner_proxy.follow_health(lambda serving: health.set(serving, [PLANNER_SERVICE])))
        )
        log.info("runtime ready on port %d", port)
        if options.ready_file is not None:
            options.ready_file.write_text(f"{port}\n")
        await _until_signalled()
    finally:
        await health.set(False)
        await server.stop(grace=2.0)
        if bridge is not None:
            await bridge.stop()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await planner_proxy.close()
        await batcher.stop()
        if supervisor is not None:
            supervisor.stop()
        tmp.cleanup()


async def _start_openpi_bridge(options: RuntimeOptions, registry, batcher, stats, metadata, notify):
    """openpi's websocket protocol beside the gRPC service, once the actor can answer (as openpi's server does)."""
    from runtime.openpi_bridge import OpenpiBridge

    assert options.openpi_port is not None  # the caller starts the bridge only for a port
    security = options.security
    bridge = OpenpiBridge(
        registry,
        batcher,
        stats,
        metadata,
        on_observation=notify,
        wait_for_subtask_ms=options.wait_for_subtask_ms,
        token=security.token,
        tls=(security.tls_cert, security.tls_key) if security.tls_cert and security.tls_key else None,
        max_message_mb=options.max_message_mb,
    )
    port = await bridge.start(options.openpi_host, options.openpi_port)
    scheme = "wss" if options.security.tls_cert else "ws"
    log.info("openpi websocket bridge on %s://%s:%d", scheme, options.openpi_host, port)
    return bridge


class _ReadyGate(pb_grpc.RobotRuntimeServicer):
    """UNAVAILABLE while the actor loads and compiles; then the real service."""

    def __init__(self, service):
        self.service = service
        self.open = False

    async def _check(self, context):
        if not self.open:
            import grpc

            await context.abort(grpc.StatusCode.UNAVAILABLE, "the runtime is loading and compiling its model")

    async def Session(self, request_iterator, context):
        await self._check(context)
        async with contextlib.aclosing(self.service.Session(request_iterator, context)) as events:
            async for event in events:  # closed at once when the call ends: the session is released now, not at GC
                yield event

    async def GetMetadata(self, request, context):
        return await self.service.GetMetadata(request, context)

    async def GetStats(self, request, context):
        return await self.service.GetStats(request, context)


def run_async(main, *, use_uvloop: bool = True) -> None:
    if use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.run(main)
            return
    asyncio.run(main)


def parse_cameras(specs: Sequence[str] | None) -> dict[str, str]:
    if not specs:
        return dict(LIBERO_CAMERAS)
    cameras = {}
    for spec in specs:
        name, sep, key = spec.partition("=")
        if not sep or not name or not key:
            raise ValueError(f"--camera {spec!r} must be NAME=MODEL_KEY, e.g. agentview=base_0_rgb")
        cameras[name] = key
    return cameras
