"""The actor's ChunkEngine and the one thread it lives on.

The server binds and the batcher exists before the engine does (health says NOT_SERVING while it loads), so the
batcher holds this host from the start; loading, compiling and every batch run on the same single thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from actor.engine import ChunkEngine, ChunkRequest, ChunkResult, EngineConfig, RtcPrefix
from policy.compiled import describe_compiles
from policy.model_dir import ModelDir
from runtime.sessions import SessionSettings

log = logging.getLogger(__name__)


class ActorHost:
    """Loads, warms up and runs the actor's ChunkEngine on its own thread (`executor`)."""

    def __init__(
        self,
        model_dir: ModelDir,
        config: EngineConfig,
        settings: SessionSettings,
        *,
        num_steps: int,
        max_batch: int,
    ) -> None:
        self._model_dir = model_dir
        self._config = config
        self._settings = settings
        self._num_steps = num_steps
        self._max_batch = max_batch
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="actor")
        self._engine: ChunkEngine | None = None

    async def load(self) -> None:
        """Builds and compiles the engine on the actor thread, leaving the event loop free to answer health."""
        self._engine = await asyncio.get_running_loop().run_in_executor(self.executor, self._build)

    def run(self, requests: Sequence[ChunkRequest]) -> list[ChunkResult]:
        """One batch, on the actor thread (the batcher's executor)."""
        if self._engine is None:
            raise RuntimeError("the actor engine is still loading")
        return self._engine.run(requests)

    def _build(self) -> ChunkEngine:
        engine = ChunkEngine.from_model_dir(self._model_dir, self._config, num_steps=self._num_steps)
        self._warm_up(engine)
        log.info("actor compiled %s", describe_compiles(engine.sampler.compiles))
        return engine

    def _warm_up(self, engine: ChunkEngine) -> None:
        """Compiles every batch bucket of the engine a session mix can hit, with and without RTC, before the first
        robot waits."""
        settings, image_size = self._settings, self._model_dir.config.vision.image_size
        black = {key: np.zeros((image_size, image_size, 3), np.uint8) for key in settings.cameras.values()}
        plain = ChunkRequest(black, "warm up", "warm up", np.zeros(settings.state_dims, np.float32))
        rtc = RtcPrefix(np.zeros((settings.action_horizon // 2, settings.action_dims), np.float32), 1)
        guided = dataclasses.replace(plain, rtc=rtc)
        for bucket in engine.sampler.buckets:
            engine.run([plain] * bucket)
            engine.run([guided] + [plain] * (bucket - 1))
            if bucket >= self._max_batch:
                break
