"""`SubtaskDecoder`: cameras + task (+ state) → the next subtask in words, with the pi0.5 language model.

Each call batches the requests into a padded bucket, runs the prefix (images + `Task: {task}. Subtask: `) once,
then decodes on from it with `policy.decoding.generate_from`: a preallocated KV cache inside one
`lax.while_loop`, the first token read at each row's last valid prefix token, early exit once every row has
emitted EOS. A vocabulary mask is applied before every greedy or sampled choice (`planner.sampling.choose_token`).

The prefix pass and the decode loop are two compiled executables so their wall times can be reported apart.
Both are compiled ahead of time by `policy.compiled.CompiledStages` (as the actor's are), once per batch bucket
(prefill) and per (bucket, max_new_tokens) (decode), into one process-wide table: decoders over networks of
one config (other weights, other vocab masks) share them. The mask, temperature, top-p and seed are runtime
arguments, so changing them compiles nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from planner.sampling import choose_token
from planner.vocab import all_mask, allowed_set_mask, printable_ascii_mask
from policy import decoding
from policy.batching import BATCH_BUCKETS, Row, bucket_for, build_input
from policy.compiled import CompiledStages, CompileEvent, ExecutableTable
from policy.config import ModelConfig
from policy.errors import UserFacingError
from policy.gemma import KVCache
from policy.inputs import InputError, checked_cameras, checked_task, model_state
from policy.normalize import NormStats
from policy.observation import ModelInput
from policy.pi05 import Pi05
from policy.prompts import tokenize_planner
from policy.tokenizer import TextTokenizer

DEFAULT_MAX_NEW_TOKENS = 20
VOCAB_CHOICES = ("ascii", "all")

# "ascii", "all", allowed strings / token ids, or a ready bool mask over the model vocabulary.
VocabSpec = str | Sequence[str | int] | np.ndarray


class DecodeRequestError(UserFacingError, ValueError):
    """A request or decoder setting that cannot be decoded; the message names the offending field."""


@contextlib.contextmanager
def request_errors() -> Iterator[None]:
    """A request's `InputError` (the shared input checks) raised as the planner's own `DecodeRequestError`."""
    try:
        yield
    except InputError as err:
        raise DecodeRequestError(str(err)) from err


@dataclasses.dataclass(frozen=True)
class DecodeRequest:
    """Model camera key (e.g. `base_0_rgb`) → uint8 [H,W,3] RGB; absent cameras are masked out of the prefix."""

    cameras: Mapping[str, np.ndarray]
    task: str
    state: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class PlanResult:
    """The subtask text and the ids behind it.

    token_ids ends with EOS when `finished`; otherwise the row ran out of `max_new_tokens`. prefill_ms and
    decode_ms belong to the whole batch the row was decoded in (see `SubtaskDecoder.decode`).
    """

    text: str
    token_ids: tuple[int, ...]
    finished: bool
    prefill_ms: float
    decode_ms: float


@dataclasses.dataclass(frozen=True)
class Prefilled:
    """A batch after the compiled prefix pass: what `SubtaskDecoder.decode_prefilled` continues from.

    The rows were padded to a batch bucket; `rows` of them are real. prefill_ms is the pass's wall time.
    """

    hidden: jax.Array  # [bucket,P,D]
    cache: KVCache
    prefix_mask: jax.Array  # [bucket,P]
    rows: int
    prefill_ms: float


class _DecodedAnswer(Protocol):
    """A frozen dataclass with the ids of a decoded answer: PlanResult or planner.reasoning.ReasoningStep."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def token_ids(self) -> tuple[int, ...]: ...


_Decoded = TypeVar("_Decoded", bound=_DecodedAnswer)


def truncated(result: _Decoded, max_tokens: int, tokenizer: TextTokenizer) -> _Decoded:
    """The first `max_tokens` ids of a decoded answer and their text: a request's shorter answer without
    compiling a decode loop of another length (the loop length is the server's)."""
    if not 0 < max_tokens < len(result.token_ids):
        return result
    ids = result.token_ids[:max_tokens]
    return dataclasses.replace(result, text=tokenizer.decode(ids).strip(), token_ids=ids, finished=False)


def vocab_mask(tokenizer: TextTokenizer, vocab: VocabSpec, model_vocab_size: int) -> np.ndarray:
    """The bool [V] mask a vocab setting stands for."""
    if isinstance(vocab, str):
        if vocab == "ascii":
            return printable_ascii_mask(tokenizer, model_vocab_size)
        if vocab == "all":
            return all_mask(tokenizer, model_vocab_size)
        raise DecodeRequestError(
            f"vocab must be one of {list(VOCAB_CHOICES)}, a list of allowed strings/ids or a mask; got {vocab!r}"
        )
    if isinstance(vocab, np.ndarray) and vocab.dtype == bool:
        return _checked_mask(tokenizer, vocab, model_vocab_size)
    return allowed_set_mask(tokenizer, list(vocab), model_vocab_size)


def _checked_mask(tokenizer: TextTokenizer, mask: np.ndarray, model_vocab_size: int) -> np.ndarray:
    if mask.shape != (model_vocab_size,):
        raise DecodeRequestError(f"vocab mask has shape {mask.shape}, expected ({model_vocab_size},)")
    if mask[tokenizer.vocab_size :].any():
        raise DecodeRequestError(f"vocab mask allows ids past the tokenizer's {tokenizer.vocab_size} pieces")
    if not mask.any():
        raise DecodeRequestError("vocab mask allows no token at all")
    return mask.copy()


def _prefill(model: Pi05, obs: ModelInput) -> decoding.PrefixPass:
    return model.fill_prefix(obs)


def _decode(
    model: Pi05,
    hidden: jax.Array,
    cache: KVCache,
    prefix_mask: jax.Array,
    allowed: jax.Array,
    rng: jax.Array,
    temperature: jax.Array,
    top_p: jax.Array,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
) -> tuple[jax.Array, jax.Array]:
    choose = functools.partial(choose_token, allowed=allowed, temperature=temperature, top_p=top_p)
    return decoding.generate_from(model, (hidden, cache, prefix_mask), max_new_tokens, choose, eos_id, pad_id, rng)


# Every decoder's executables: those over networks of one config serve each other.
_EXECUTABLES = ExecutableTable()


def compiled_executables() -> int:
    """How many prefill/decode executables this process has compiled (all decoders together)."""
    return len(_EXECUTABLES)


def _timed(fn: Callable, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, (time.perf_counter() - start) * 1e3


def _row_tokens(row: np.ndarray, steps: int, eos_id: int) -> tuple[tuple[int, ...], bool]:
    produced = row[:steps]
    eos_at = np.flatnonzero(produced == eos_id)
    if eos_at.size:
        return tuple(int(t) for t in produced[: eos_at[0] + 1]), True
    return tuple(int(t) for t in produced), False


class SubtaskDecoder:
    """Decodes subtasks for batches of requests; construct once per model and reuse (compiled code is kept)."""

    def __init__(
        self,
        model: Pi05,
        tokenizer: TextTokenizer,
        cfg: ModelConfig,
        *,
        vocab: VocabSpec = "ascii",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        buckets: Sequence[int] = BATCH_BUCKETS,
        norm_stats: Mapping[str, NormStats] | None = None,
        use_state: bool | None = None,
        forbidden: Sequence[int] = (),
    ) -> None:
        """`forbidden`: ids never emitted whatever `vocab` allows (a protocol's special tokens). `use_state`: the
        state goes into the prompt (needs `norm_stats`); None follows the checkpoint's `discrete_state_input`."""
        if tokenizer.vocab_size > cfg.state_token_offset:
            reserved = f" less its {cfg.vocab_size - cfg.state_token_offset} state tokens" if cfg.state_tokens else ""
            raise DecodeRequestError(
                f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} pieces, more than the model's "
                f"vocabulary of {cfg.vocab_size}{reserved}; it does not belong to this checkpoint"
            )
        if not buckets or any(b <= 0 for b in buckets):
            raise DecodeRequestError(f"buckets must be positive batch sizes, got {tuple(buckets)}")
        _check_max_new_tokens(max_new_tokens)
        if use_state is None:
            use_state = cfg.discrete_state_input
        self._state_in_prompt = use_state
        self._state_stats = _state_stats(norm_stats) if use_state or cfg.state_tokens else None
        self._tokenizer = tokenizer
        self._cfg = cfg
        self._buckets = tuple(sorted(set(buckets)))
        self._max_new_tokens = max_new_tokens
        allowed = vocab_mask(tokenizer, vocab, cfg.vocab_size)
        allowed[list(forbidden)] = False
        allowed[cfg.state_token_offset :] = False
        self._allowed = jnp.asarray(allowed)
        self._stages = CompiledStages(model, _EXECUTABLES)

    @property
    def max_new_tokens(self) -> int:
        return self._max_new_tokens

    @property
    def buckets(self) -> tuple[int, ...]:
        return self._buckets

    @property
    def tokenizer(self) -> TextTokenizer:
        return self._tokenizer

    @property
    def allowed_mask(self) -> np.ndarray:
        return np.asarray(self._allowed)

    @property
    def stages(self) -> CompiledStages:
        """This decoder's compiled stages; the reasoning planner compiles its read-out among them."""
        return self._stages

    @property
    def compiles(self) -> list[CompileEvent]:
        """The compilations this decoder paid for, in order (those another decoder already made are not here)."""
        return self._stages.events

    @property
    def compile_count(self) -> int:
        """Executables this decoder had to compile (those another decoder already compiled are not counted)."""
        return len(self.compiles)

    def decode(
        self,
        requests: Sequence[DecodeRequest],
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        max_new_tokens: int | None = None,
    ) -> list[PlanResult]:
        """One result per request, in order. Greedy at temperature 0, else temperature + top-p sampling.

        Requests beyond the largest bucket go in further batches. prefill_ms is the wall time of the compiled
        prefix pass (SigLIP + language model over images and prompt) of the row's batch; decode_ms that of the
        compiled decode loop (first-token read, cache padding, every decode step). Both stop at a blocking
        wait on the device; preprocessing (image resize, tokenizing), host transfers and compilation are in
        neither.
        """
        new_tokens = self._max_new_tokens if max_new_tokens is None else max_new_tokens
        _check_max_new_tokens(new_tokens)
        check_sampling(temperature, top_p)
        rows = [self._row(i, request) for i, request in enumerate(requests)]
        largest = self._buckets[-1]
        results: list[PlanResult] = []
        for chunk, start in enumerate(range(0, len(rows), largest)):
            rng = jax.random.fold_in(jax.random.key(seed), chunk)
            filled = self.prefill(rows[start : start + largest])
            results += self.decode_prefilled(filled, new_tokens, temperature, top_p, rng)
        return results

    def warm_up(self, batch_sizes: Sequence[int] | None = None) -> None:
        """Compiles every bucket (or those holding `batch_sizes` rows) with black images, off the request path."""
        size = self._cfg.vision.image_size
        black = {key: np.zeros((size, size, 3), np.uint8) for key in self._cfg.image_keys}
        for rows in batch_sizes or self._buckets:
            self.decode([DecodeRequest(black, "warm up", self.warm_up_state)] * bucket_for(rows, self._buckets))

    @property
    def warm_up_state(self) -> np.ndarray | None:
        """A state this decoder takes (zeros), or None when it reads none."""
        if self._state_stats is None:
            return None
        return np.zeros(min(self._state_stats.dim, self._cfg.action_dim), np.float32)

    def prefill(self, rows: Sequence[Row]) -> Prefilled:
        """The compiled prefix pass over `rows` (at most the largest bucket), padded to their bucket."""
        bucket = bucket_for(len(rows), self._buckets)
        obs = build_input(self._cfg, rows, bucket)
        prefill = self._stages.executable(CompileEvent("prefill", bucket), _prefill, (obs,))
        (hidden, cache, prefix_mask), prefill_ms = _timed(prefill, self._stages.state, obs)
        return Prefilled(hidden, cache, prefix_mask, len(rows), prefill_ms)

    def decode_prefilled(
        self, filled: Prefilled, max_new_tokens: int, temperature: float, top_p: float, rng: jax.Array
    ) -> list[PlanResult]:
        """Decodes each real row of `filled` from its last valid prefix token, as `decode` does after `prefill`."""
        _check_max_new_tokens(max_new_tokens)
        check_sampling(temperature, top_p)
        args = (
            filled.hidden,
            filled.cache,
            filled.prefix_mask,
            self._allowed,
            rng,
            jnp.float32(temperature),
            jnp.float32(top_p),
        )
        eos_id, pad_id = self._tokenizer.eos_id, self._tokenizer.pad_id
        settings = {"max_new_tokens": max_new_tokens, "eos_id": eos_id, "pad_id": pad_id}
        event = CompileEvent("decode", filled.hidden.shape[0])
        decode = self._stages.executable(event, _decode, args, settings)
        (tokens, steps), decode_ms = _timed(decode, self._stages.state, *args)
        tokens, steps = np.asarray(tokens), int(steps)
        results = []
        for row in tokens[: filled.rows]:
            ids, finished = _row_tokens(row, steps, eos_id)
            text = self._tokenizer.decode(ids).strip()
            results.append(PlanResult(text, ids, finished, filled.prefill_ms, decode_ms))
        return results

    def _row(self, index: int, request: DecodeRequest) -> Row:
        where = f"requests[{index}]"
        if not isinstance(request, DecodeRequest):
            raise DecodeRequestError(f"{where} must be a DecodeRequest, got {type(request).__name__}")
        with request_errors():
            task = checked_task(request.task, f"{where}.task")
        images = self.checked_cameras(request.cameras, where)
        state = self.normalized_state(request.state, where)
        prompt_state = state if self._state_in_prompt else None
        prompt = tokenize_planner(self._tokenizer, task, max_len=self._cfg.max_token_len, state=prompt_state)
        return Row(images, prompt, state)

    def checked_cameras(self, cameras: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        """The cameras of the request at `where` (`policy.inputs.checked_cameras`)."""
        with request_errors():
            return checked_cameras(cameras, self._cfg.image_keys, f"{where}.cameras")

    def normalized_state(self, state: np.ndarray | None, where: str) -> np.ndarray | None:
        """The model's state (`policy.inputs.model_state`), or None when this decoder does not read it."""
        if self._state_stats is None:
            return None
        with request_errors():
            return model_state(state, self._state_stats, self._cfg, f"{where}.state")


def _state_stats(norm_stats: Mapping[str, NormStats] | None) -> NormStats:
    if not norm_stats or "state" not in norm_stats:
        raise DecodeRequestError("use_state=True needs norm stats with a 'state' entry to normalize the state")
    return norm_stats["state"]


def _check_max_new_tokens(max_new_tokens: int) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise DecodeRequestError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuses a temperature or top-p no decode can run with, naming the setting."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise DecodeRequestError(f"temperature must be a finite number >= 0, got {temperature}")
    if not (0 < top_p <= 1):
        raise DecodeRequestError(f"top_p must be in (0, 1], got {top_p}")
