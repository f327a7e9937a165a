"""`ReasoningPlanner`: think or act, the planner's half of the reasoning protocol ("Do What You Say", seed 002).

A reasoning checkpoint is trained on rows `<bos>{context}<eop>` followed by `<bor>{reasoning}<eos>` (think) or
`<boa>` (act), layouts in `policy.prompts`. The planner runs one prefix pass over `<bos>{context}<eop><bor>`
with `<bor>` causal: nothing before `<bor>` sees it, so the hidden state at `<eop>` is the one of a pass that
ends at `<eop>`, and comparing the `<bor>` and `<boa>` logits read there is the choice both kinds of rows
trained. Think: decoding continues from `<bor>` on the same KV cache (`SubtaskDecoder.decode_prefilled`, the
first reasoning token read at `<bor>`) under the vocabulary mask, with the protocol's own ids forbidden, up to
EOS, the think row's terminator. Act: nothing is decoded; the actor runs the act row
`<bos>{context}<eop><boa>` (`actor.engine.EngineConfig(reasoning=True)`, the context as its subtask).

The context is the instruction as the annotations spell it (the first segment's `content` in
`cot_simple.json`, e.g. `Instruction: put the bowl on the plate`) until there is a reasoning, then the latest
reasoning, outdated or not: training draws both. `ReasoningSessions` keeps that context per session for
`robot-runtime serve --reasoning`.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Mapping
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from planner.decoder import (
    DecodeRequest,
    DecodeRequestError,
    SubtaskDecoder,
    VocabSpec,
    check_sampling,
    request_errors,
    truncated,
)
from policy import masks
from policy.batching import Row
from policy.compiled import CompileEvent
from policy.config import ModelConfig
from policy.inputs import checked_text
from policy.normalize import NormStats
from policy.pi05 import Pi05
from policy.prompts import (
    ReasoningTokens,
    TokenizedPrompt,
    reasoning_first_context,
    reasoning_tokens,
    tokenize_reasoning_prompt,
)
from policy.tokenizer import TextTokenizer

DEFAULT_MAX_REASONING_TOKENS = 48
DEFAULT_MAX_SESSIONS = 1024
DECISIONS = ("think", "act")

Decision = Literal["think", "act"]


@dataclasses.dataclass(frozen=True)
class ReasoningRequest:
    """Model camera key → uint8 [H,W,3] RGB, the context (instruction or latest reasoning), the raw state."""

    cameras: Mapping[str, np.ndarray]
    context: str
    state: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class ReasoningStep:
    """What the planner chose and the text that goes with it.

    think: `text` is the new reasoning (token_ids its ids, EOS last when `finished`). act: `text` is the
    context the actor's act row should hold, token_ids is empty and `finished` True.
    margin = logit(`<bor>`) − logit(`<boa>`) after `<eop>`; the planner thinks at margin >= 0 (argmax over the
    two, ties to the first) unless the call forced a decision. prefill_ms covers the prefix pass and reading
    the two logits, decode_ms the decode loop (0 when acting).
    """

    decision: Decision
    text: str
    margin: float
    token_ids: tuple[int, ...]
    finished: bool
    prefill_ms: float
    decode_ms: float


def _begin_logits(
    model: Pi05, hidden: jax.Array, prefix_mask: jax.Array, *, begin_reasoning: int, begin_action: int
) -> jax.Array:
    """The `<bor>` and `<boa>` logits [B,2] read after `<eop>` (the token before the prefix's last one)."""
    rows = jnp.arange(hidden.shape[0])
    end_of_prefix = masks.last_valid_index(prefix_mask) - 1
    logits = model.logits(hidden[rows, end_of_prefix]).astype(jnp.float32)
    return logits[:, jnp.array([begin_reasoning, begin_action])]


class ReasoningPlanner:
    """Decides think vs act for one observation at a time and writes the reasoning when it thinks."""

    def __init__(
        self,
        model: Pi05,
        tokenizer: TextTokenizer,
        cfg: ModelConfig,
        *,
        vocab: VocabSpec = "ascii",
        max_new_tokens: int = DEFAULT_MAX_REASONING_TOKENS,
        norm_stats: Mapping[str, NormStats] | None = None,
        use_state: bool | None = None,
    ) -> None:
        self._special = reasoning_tokens(cfg.vocab_size)
        if use_state is None:
            use_state = cfg.discrete_state_input
        self._decoder = SubtaskDecoder(
            model,
            tokenizer,
            cfg,
            vocab=vocab,
            max_new_tokens=max_new_tokens,
            buckets=(1,),
            norm_stats=norm_stats,
            use_state=use_state,
            forbidden=self._special,
        )
        self._tokenizer = tokenizer
        self._cfg = cfg

    @property
    def special(self) -> ReasoningTokens:
        return self._special

    @property
    def max_new_tokens(self) -> int:
        return self._decoder.max_new_tokens

    @property
    def compiles(self) -> list[CompileEvent]:
        """The compilations this planner paid for, in order: its decoder's stages and the read-out."""
        return self._decoder.compiles

    @property
    def tokenizer(self) -> TextTokenizer:
        return self._tokenizer

    def plan(
        self,
        request: ReasoningRequest,
        *,
        force: Decision | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> ReasoningStep:
        """Think or act on `request`; `force` skips the choice (the margin is still reported).

        The reasoning is decoded greedily at temperature 0, else with temperature + top-p sampling.
        """
        if force is not None and force not in DECISIONS:
            raise DecodeRequestError(f"force must be one of {list(DECISIONS)} or None, got {force!r}")
        check_sampling(temperature, top_p)
        filled = self._decoder.prefill([self._row(request)])
        args = (filled.hidden, filled.prefix_mask)
        begins = {"begin_reasoning": self._special.begin_reasoning, "begin_action": self._special.begin_action}
        stages = self._decoder.stages
        readout = stages.executable(CompileEvent("readout", filled.hidden.shape[0]), _begin_logits, args, begins)
        start = time.perf_counter()
        begin_logits = np.asarray(readout(stages.state, *args))[0]
        margin = float(begin_logits[0] - begin_logits[1])
        readout_ms = (time.perf_counter() - start) * 1e3
        decision = force or ("think" if margin >= 0 else "act")
        prefill_ms = filled.prefill_ms + readout_ms
        if decision == "act":
            return ReasoningStep("act", request.context, margin, (), True, prefill_ms, 0.0)
        rng = jax.random.key(seed)
        [result] = self._decoder.decode_prefilled(filled, self.max_new_tokens, temperature, top_p, rng)
        return ReasoningStep(
            "think", result.text, margin, result.token_ids, result.finished, prefill_ms, result.decode_ms
        )

    def warm_up(self) -> None:
        """Compiles the prefix pass, the read-out and the decode loop with black images, off the request path."""
        size = self._cfg.vision.image_size
        black = {key: np.zeros((size, size, 3), np.uint8) for key in self._cfg.image_keys}
        self.plan(ReasoningRequest(black, "warm up", self._decoder.warm_up_state), force="think")

    def _row(self, request: ReasoningRequest) -> Row:
        if not isinstance(request, ReasoningRequest):
            raise DecodeRequestError(f"request must be a ReasoningRequest, got {type(request).__name__}")
        with request_errors():
            checked_text(request.context, "request.context", "give the instruction or the latest reasoning")
        images = self._decoder.checked_cameras(request.cameras, "request")
        state = self._decoder.normalized_state(request.state, "request")
        begin = self._special.begin_reasoning
        try:
            prompt = tokenize_reasoning_prompt(
                self._tokenizer, request.context, begin, self._special, max_len=self._cfg.max_token_len, state=state
            )
        except ValueError as err:
            raise DecodeRequestError(f"request.context: is too long: {err}") from err
        return Row(images, TokenizedPrompt(prompt.tokens, prompt.mask), ar_mask=prompt.ar_mask)


@dataclasses.dataclass(frozen=True)
class SessionReasoning:
    """A session's latest reasoning: the context of its next plan, and of the actor's act row.

    version counts the session's thoughts (0: `text` is still the first-step context); `task` and `step` (the
    last observation planned) tell the same session from a new task or a session started afresh.
    """

    task: str
    text: str
    version: int
    step: int


class ReasoningSessions:
    """Think vs act per session, the planner service's reasoning mode as plain code.

    A plan runs with the session's latest reasoning as context (the first-step context until it thinks).
    Thinking makes the decoded reasoning the session's text, with a new version; acting keeps both, so the
    actor goes on with the reasoning it has. A new task, or an observation step that does not increase (a
    reopened session counts afresh), starts the session over. The planner never hears that a session closed,
    so it keeps only the `max_sessions` planned most recently. Not thread-safe: the service plans on one thread.
    """

    def __init__(self, planner: ReasoningPlanner, max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.planner = planner
        self._max_sessions = max_sessions
        self._sessions: collections.OrderedDict[str, SessionReasoning] = collections.OrderedDict()

    def get(self, session_id: str) -> SessionReasoning | None:
        return self._sessions.get(session_id)

    def plan(
        self, session_id: str, observation_step: int, request: DecodeRequest, *, max_tokens: int = 0
    ) -> tuple[ReasoningStep, SessionReasoning]:
        """Thinks or acts on `request` in its session's context → the step and the session's reasoning after it.

        max_tokens > 0 cuts a longer reasoning; the session keeps the cut text, the one the caller is told.
        """
        task = request.task.strip()
        current = self._sessions.get(session_id)
        if current is None or current.task != task or observation_step <= current.step:
            current = SessionReasoning(task, reasoning_first_context(task), 0, observation_step)
        step = self.planner.plan(ReasoningRequest(request.cameras, current.text, request.state))
        step = truncated(step, max_tokens, self.planner.tokenizer)
        if step.decision == "think" and step.text:
            updated = SessionReasoning(task, step.text, current.version + 1, observation_step)
        else:
            updated = dataclasses.replace(current, step=observation_step)
        self._sessions[session_id] = updated
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return step, updated
