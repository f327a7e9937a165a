"""The actor's chunk engine: per-session requests in robot terms in, action chunks in robot units out.

Pure (no sockets), so the runtime's servicer is a thin adapter. One `run` call batches several sessions:
each request is checked and turned into a model row (actor prompt with its current subtask, or the reasoning
protocol's act row; normalized state, model camera images), the sampler draws all chunks in one pass per
batch bucket, and each chunk is unnormalized, cropped to the robot's dims and optionally clipped. A bad
request raises `InvalidRequest` naming its field and its index, before any compute, so the runtime can
answer that session alone.

RTC: a request may carry an `RtcPrefix`: the previous chunk's queued actions (robot units, not yet executed
when the observation was taken) and the expected inference delay d in control steps. The queued actions are
normalized like the model's actions (a `NormalizedRtcPrefix`); only the robot's dims are guided (the model's
padded dims are never seen by the robot, so nothing ties them to the old chunk). A delay longer than the
queued actions is clamped to them: the robot will have run out by then, and every queued action is committed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from actor.postprocess import ActionLimits, to_model_actions, to_robot_actions
from actor.rtc import DEFAULT_MAX_GUIDANCE_WEIGHT, NormalizedRtcPrefix
from actor.sampler import FlowSampler
from policy.batching import BATCH_BUCKETS, Row
from policy.inputs import InputError, checked_cameras, checked_rtc, checked_task, checked_text, model_state
from policy.model_dir import ModelDir
from policy.normalize import NormStats
from policy.prompts import (
    TokenizedPrompt,
    Tokenizer,
    reasoning_tokens,
    tokenize_actor,
    tokenize_reasoning_prompt,
)


class InvalidRequest(InputError):
    """A request the engine cannot serve: the `InputError` of its field, and `index`, the request in the call."""

    def __init__(self, field: str, message: str, index: int = 0) -> None:
        super().__init__(field, message)
        self.index = index


@dataclasses.dataclass(frozen=True)
class RtcPrefix:
    """The RTC prefix (the wire's `RealTimeChunking`): the previous chunk's queued actions [L, action_dims] (robot
    units, not yet executed), the inference delay, and optionally the execution horizon s (steps of the new
    chunk the robot will run; default H − L)."""

    queued_actions: np.ndarray
    inference_delay: int
    execution_horizon: int | None = None


@dataclasses.dataclass(frozen=True)
class ChunkRequest:
    """One session's observation: model camera key → uint8 [H,W,3], task, current subtask, raw state."""

    images: Mapping[str, np.ndarray]
    task: str
    subtask: str
    state: np.ndarray | None = None
    rtc: RtcPrefix | None = None
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class ChunkTimings:
    """Shared by the requests sampled together: prefill and denoise are the batch's; total adds tokenizing,
    image resizing and post-processing."""

    prefill_ms: float
    denoise_ms: float
    total_ms: float
    batch_size: int


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    actions: np.ndarray  # float32 [H, action_dims], robot units
    timings: ChunkTimings


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How chunks reach the robot. States and actions are normalized as the checkpoint says (`use_quantiles`).

    state_in_prompt: put the discretized normalized state in the actor prompt (then every request needs a
    state); None follows the checkpoint's `discrete_state_input`.
    seed: for requests without their own seed; None draws fresh entropy.
    reasoning: the checkpoint follows the reasoning protocol (seed 002): the prompt is its act row
    `<bos>{subtask}<eop><boa>`, `<boa>` causal, exactly as training builds it; the request's subtask is the
    planner's latest reasoning (or the task, until the planner has one).
    noise_scale: standard deviation of the flow's starting noise (1 = openpi; see policy.model_dir.ServingDefaults).
    """

    action_dims: int
    state_in_prompt: bool | None = None
    reasoning: bool = False
    limits: ActionLimits | None = None
    max_guidance_weight: float = DEFAULT_MAX_GUIDANCE_WEIGHT
    seed: int | None = None
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise ValueError(f"noise_scale must be finite and >= 0, got {self.noise_scale}")
        if self.action_dims < 1:
            raise ValueError(f"action_dims must be >= 1, got {self.action_dims}")
        if not (math.isfinite(self.max_guidance_weight) and self.max_guidance_weight >= 0):
            raise ValueError(f"max_guidance_weight must be finite and >= 0, got {self.max_guidance_weight}")


@dataclasses.dataclass(frozen=True)
class _Prepared:
    row: Row
    noise: np.ndarray
    rtc: NormalizedRtcPrefix | None
    prepare_ms: float


class ChunkEngine:
    """Requests → chunks around a FlowSampler (shared, so its compiled buckets serve every caller)."""

    def __init__(
        self,
        sampler: FlowSampler,
        tokenizer: Tokenizer,
        norm_stats: Mapping[str, NormStats],
        config: EngineConfig,
    ) -> None:
        self.sampler = sampler
        self.model_config = sampler.cfg
        self.config = config
        if "actions" not in norm_stats:
            raise ValueError(f"norm stats need an 'actions' entry, found {sorted(norm_stats)}")
        if not 0 < config.action_dims <= self.model_config.action_dim:
            raise ValueError(
                f"action_dims must be in [1, {self.model_config.action_dim}] (the model's action dim), "
                f"got {config.action_dims}"
            )
        if config.action_dims > norm_stats["actions"].dim:
            stats_dims = norm_stats["actions"].dim
            raise ValueError(f"action_dims {config.action_dims} exceeds the action norm stats' {stats_dims} dims")
        if config.limits is not None:
            config.limits.clip(np.zeros(config.action_dims, np.float32))
        self.tokenizer = tokenizer
        self.norm_stats = dict(norm_stats)
        self.state_in_prompt = (
            self.model_config.discrete_state_input if config.state_in_prompt is None else config.state_in_prompt
        )
        self._rng = np.random.default_rng(config.seed)

    @classmethod
    def from_model_dir(
        cls,
        model_dir: ModelDir,
        config: EngineConfig,
        *,
        num_steps: int = 10,
        buckets: Sequence[int] = BATCH_BUCKETS,
    ) -> ChunkEngine:
        tokenizer = model_dir.text_tokenizer()
        sampler = FlowSampler(model_dir.load_model(), model_dir.config, num_steps=num_steps, buckets=buckets)
        return cls(sampler, tokenizer, model_dir.norm_stats, config)

    def run(self, requests: Sequence[ChunkRequest]) -> list[ChunkResult]:
        """One chunk per request, in order; sessions are sampled together, up to the largest bucket at a time."""
        if not requests:
            return []
        prepared = [self._prepare(index, request) for index, request in enumerate(requests)]
        results: list[ChunkResult] = []
        size = self.sampler.max_batch
        for first in range(0, len(prepared), size):
            results.extend(self._run_group(prepared[first : first + size]))
        return results

    def _run_group(self, group: Sequence[_Prepared]) -> list[ChunkResult]:
        start = time.perf_counter()
        sampled = self.sampler.run(
            [p.row for p in group],
            noise=np.stack([p.noise for p in group]),
            rtc=[p.rtc for p in group],
        )
        actions = to_robot_actions(
            sampled.actions,
            self.norm_stats["actions"],
            action_dims=self.config.action_dims,
            use_quantiles=self.model_config.use_quantiles,
            limits=self.config.limits,
        )
        timings = ChunkTimings(
            prefill_ms=sampled.timings.prefill_ms,
            denoise_ms=sampled.timings.denoise_ms,
            total_ms=(time.perf_counter() - start) * 1e3 + sum(p.prepare_ms for p in group),
            batch_size=len(group),
        )
        return [ChunkResult(chunk, timings) for chunk in actions]

    def _prepare(self, index: int, request: ChunkRequest) -> _Prepared:
        start = time.perf_counter()
        try:
            row, rtc = self._checked(request)
        except InputError as err:
            raise InvalidRequest(err.field, err.message, index) from err
        return _Prepared(row, self._noise(request.seed), rtc, (time.perf_counter() - start) * 1e3)

    def _checked(self, request: ChunkRequest) -> tuple[Row, NormalizedRtcPrefix | None]:
        """The request's model row and RTC prefix; an `InputError` naming the first bad field."""
        cfg = self.model_config
        images = checked_cameras(request.images, cfg.image_keys, "images")
        checked_task(request.task, "task")
        checked_text(request.subtask, "subtask", "the actor needs the planner's current subtask")
        state = None
        if request.state is not None or self.state_in_prompt or cfg.state_tokens:
            state = model_state(request.state, self.norm_stats.get("state"), cfg, "state")
        prompt_state = state if self.state_in_prompt else None
        ar_mask = None
        if self.config.reasoning:
            prompt, ar_mask = self._act_prompt(request.subtask, prompt_state)
        else:
            max_len = cfg.max_token_len
            prompt = tokenize_actor(self.tokenizer, request.task, request.subtask, max_len=max_len, state=prompt_state)
        rtc = None if request.rtc is None else self._normalized_rtc(request.rtc)
        return Row(images, prompt, state, ar_mask), rtc

    def _act_prompt(self, context: str, state: np.ndarray | None) -> tuple[TokenizedPrompt, np.ndarray]:
        special = reasoning_tokens(self.model_config.vocab_size)
        max_len = self.model_config.max_token_len
        try:
            act = tokenize_reasoning_prompt(
                self.tokenizer, context, special.begin_action, special, max_len=max_len, state=state
            )
        except ValueError as err:
            raise InputError("subtask", f"is too long for the act row: {err}") from err
        return TokenizedPrompt(act.tokens, act.mask), act.ar_mask

    def _normalized_rtc(self, prefix: RtcPrefix) -> NormalizedRtcPrefix | None:
        horizon = self.model_config.action_horizon
        s = prefix.execution_horizon
        actions = checked_rtc(
            prefix.queued_actions,
            prefix.inference_delay,
            s,
            action_dims=self.config.action_dims,
            horizon=horizon,
            field="rtc",
        )
        if actions is None:
            return None
        stats, quantiles = self.norm_stats["actions"], self.model_config.use_quantiles
        normalized = to_model_actions(actions, stats, use_quantiles=quantiles)
        delay = min(int(prefix.inference_delay), len(actions), horizon - s if s is not None else horizon)
        return NormalizedRtcPrefix(
            normalized, delay, execution_horizon=s, max_guidance_weight=self.config.max_guidance_weight
        )

    def _noise(self, seed: int | None) -> np.ndarray:
        rng = self._rng if seed is None else np.random.default_rng(seed)
        shape = (self.model_config.action_horizon, self.model_config.action_dim)
        return rng.standard_normal(shape, np.float32) * np.float32(self.config.noise_scale)
