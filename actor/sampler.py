"""Flow-matching action chunks from pi0.5, batched across sessions, compiled once per batch bucket.

The prefix (images + prompt) runs once into a KV cache; then `num_steps` Euler steps run only the action
expert against it, t going from 1 (noise) to 0 (data), exactly openpi's `sample_actions`. Prefix and denoising
are two compiled functions so their times can be reported apart; the cache stays on the device in between.

Shapes are fixed: a call with n rows is padded to the smallest batch bucket >= n (padding rows copy row 0
and are discarded), so each bucket compiles the prefix once per prompt kind (with or without an ar mask, as
the reasoning act row has) and the denoiser, which never reads the prompt, once per RTC mode (a batch with
any RTC row runs the guided denoiser; its other rows get zero weights, which leaves them unguided).
Both are compiled ahead of time by `policy.compiled.CompiledStages` (the planner's way too), each compilation
recorded as a `CompileEvent` with its compile time; the Euler loop is the network's own (`Pi05.denoise`), with
RTC guidance as its guide.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from actor.rtc import Guidance, NormalizedRtcPrefix, guidance_for_rows, guided_velocity
from policy.batching import BATCH_BUCKETS, Row, bucket_for, build_input
from policy.compiled import CompiledStages, CompileEvent
from policy.config import ModelConfig
from policy.gemma import KVCache
from policy.observation import ModelInput
from policy.pi05 import Pi05

Seed = int | Sequence[int]


@dataclasses.dataclass(frozen=True)
class SampleTimings:
    prefill_ms: float
    denoise_ms: float
    total_ms: float


@dataclasses.dataclass(frozen=True)
class SampledChunks:
    actions: Float[np.ndarray, "n t a"]  # float32, the model's normalized space
    timings: SampleTimings
    bucket: int


class FlowSampler:
    """Turns observations (a ModelInput or Rows) and noise into normalized action chunks.

    Shapes are jaxtyping annotations (axis names: `policy.observation`): n rows in, each chunk t action steps of
    a action dims; the compiled functions see the rows padded to a batch bucket of b."""

    def __init__(
        self,
        model: Pi05,
        cfg: ModelConfig | None = None,
        *,
        num_steps: int = 10,
        buckets: Sequence[int] = BATCH_BUCKETS,
    ) -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not buckets or min(buckets) < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {tuple(buckets)}")
        self.cfg = cfg or model.cfg
        self.num_steps = num_steps
        self.buckets = tuple(sorted(set(buckets)))
        self._stages = CompiledStages(model)

    @property
    def max_batch(self) -> int:
        return self.buckets[-1]

    @property
    def stages(self) -> CompiledStages:
        """This sampler's compiled stages."""
        return self._stages

    @property
    def compiles(self) -> list[CompileEvent]:
        """Every compilation this sampler paid for, in order."""
        return self._stages.events

    @property
    def compile_count(self) -> int:
        return len(self.compiles)

    def sample(
        self,
        batch: ModelInput | Sequence[Row],
        *,
        noise: Float[np.ndarray, "n t a"] | None = None,
        seed: Seed | None = None,
        rtc: Sequence[NormalizedRtcPrefix | None] | None = None,
    ) -> Float[np.ndarray, "n t a"]:
        """Normalized actions; see `run` for the arguments."""
        return self.run(batch, noise=noise, seed=seed, rtc=rtc).actions

    def run(
        self,
        batch: ModelInput | Sequence[Row],
        *,
        noise: Float[np.ndarray, "n t a"] | None = None,
        seed: Seed | None = None,
        rtc: Sequence[NormalizedRtcPrefix | None] | None = None,
    ) -> SampledChunks:
        """Samples one chunk per row, with timings.

        noise is the flow's start x_1; or `seed` draws it (one int for the batch, or one per row, so a
        session's chunk does not depend on who it was batched with). rtc: one entry per row, None = unguided.
        """
        start = time.perf_counter()
        rows = batch.batch_size if isinstance(batch, ModelInput) else len(batch)
        if rows == 0:
            raise ValueError("batch has no rows")
        bucket = bucket_for(rows, self.buckets)
        obs = self._padded_input(batch, bucket)
        x_1 = _pad_rows(self._start_noise(noise, seed, rows), bucket)
        guidance = self._guidance(rtc, rows, bucket)

        suffix_obs = dataclasses.replace(obs, images={}, image_masks={}, token_ar_mask=None)
        fill_prefix = self._stages.executable(CompileEvent("prefix", bucket), _prefix, (obs,))
        prefill_start = time.perf_counter()
        cache, prefix_mask = jax.block_until_ready(fill_prefix(self._stages.state, obs))
        args = (suffix_obs, cache, prefix_mask, x_1, guidance)
        event = CompileEvent("denoise", bucket, guided=guidance is not None)
        denoise = self._stages.executable(event, _denoise, args, {"num_steps": self.num_steps})
        denoise_start = time.perf_counter()
        x_0 = denoise(self._stages.state, *args)
        actions = np.asarray(x_0, np.float32)[:rows]
        end = time.perf_counter()
        timings = SampleTimings(
            prefill_ms=(denoise_start - prefill_start) * 1e3,
            denoise_ms=(end - denoise_start) * 1e3,
            total_ms=(end - start) * 1e3,
        )
        return SampledChunks(actions, timings, bucket)

    def _padded_input(self, batch: ModelInput | Sequence[Row], bucket: int) -> ModelInput:
        if not isinstance(batch, ModelInput):
            return build_input(self.cfg, list(batch), bucket)
        if batch.tokens.shape[1] != self.cfg.max_token_len:
            raise ValueError(f"tokens has {batch.tokens.shape[1]} slots, the model expects {self.cfg.max_token_len}")
        if batch.state is None:
            batch = dataclasses.replace(batch, state=jnp.zeros((batch.batch_size, self.cfg.action_dim), jnp.float32))
        return jax.tree.map(lambda x: _pad_rows(jnp.asarray(x), bucket), batch)

    def _start_noise(
        self, noise: Float[np.ndarray, "n t a"] | None, seed: Seed | None, rows: int
    ) -> Float[np.ndarray, "n t a"]:
        shape = (rows, self.cfg.action_horizon, self.cfg.action_dim)
        if noise is not None:
            if seed is not None:
                raise ValueError("give either noise or seed, not both")
            noise = np.asarray(noise, np.float32)
            if noise.shape != shape:
                raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
            return noise
        if seed is None:
            raise ValueError("sampling needs noise or a seed")
        if isinstance(seed, int):
            return np.random.default_rng(seed).standard_normal(shape, np.float32)
        if len(seed) != rows:
            raise ValueError(f"seed has {len(seed)} entries for {rows} rows")
        return np.stack([np.random.default_rng(s).standard_normal(shape[1:], np.float32) for s in seed])

    def _guidance(self, rtc: Sequence[NormalizedRtcPrefix | None] | None, rows: int, bucket: int) -> Guidance | None:
        if rtc is None:
            return None
        if len(rtc) != rows:
            raise ValueError(f"rtc has {len(rtc)} entries for {rows} rows")
        if all(request is None for request in rtc):
            return None
        return guidance_for_rows(rtc, bucket, self.cfg.action_horizon, self.cfg.action_dim)


def _pad_rows(x, bucket: int):
    """x with rows appended (copies of row 0) up to `bucket` rows."""
    missing = bucket - x.shape[0]
    if missing <= 0:
        return x
    stack = np.concatenate if isinstance(x, np.ndarray) else jnp.concatenate
    return stack([x, x[:1].repeat(missing, axis=0)], axis=0)


def _prefix(model: Pi05, obs: ModelInput) -> tuple[KVCache, jax.Array]:
    _, cache, prefix_mask = model.fill_prefix(obs)
    return cache, prefix_mask


def _denoise(
    model: Pi05,
    obs: ModelInput,
    cache: KVCache,
    prefix_mask: jax.Array,
    noise: jax.Array,
    guidance: Guidance | None,
    *,
    num_steps: int,
) -> jax.Array:
    guide = None if guidance is None else functools.partial(guided_velocity, guidance=guidance)
    return model.denoise(obs, cache, prefix_mask, noise, num_steps=num_steps, guide=guide)
