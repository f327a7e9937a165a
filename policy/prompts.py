"""Prompt text and token layouts for pi0, pi0.5, the subtask planner and the subtask-conditioned actor.

Every layout is one function that builds the text (`*_text`) and one that tokenizes it (`tokenize_*`), so the
runtime and the training pipeline share the exact same strings. Token rows are int32 `[max_len]`, right-padded
with 0, with a bool mask that is True on real tokens; a row that does not fit is cut to `max_len` and a
warning is logged once for that call.

Text cleaning (`clean_task`) is openpi's: strip, `_` -> space, newline -> space. openpi's PaligemmaTokenizer
does not lower-case. The planner and actor layouts clean both task and subtask with `clean_instruction`:
`clean_task` lower-cased, minus trailing `.,;:!?`, so the `.` after the task is never doubled.

`{ids}` is `state_to_text(state)`: the normalized state cut into 256 bins over [-1, 1]
(`np.digitize(x, np.linspace(-1, 1, 257)[:-1]) - 1`, as openpi does: no clipping, so x < -1 gives -1 and
x >= 1 gives 255; NaN is refused), joined by single spaces. openpi discretizes the state before padding it to
the model's action dim, so pass the robot's own normalized state, not the padded one.

Layouts (`<bos>` is the tokenizer's BOS id, `<eos>` its EOS id, `\\n` a newline character):

- pi0 (openpi):            `<bos>` + tokens(`{task}`) + tokens(`\\n`)   (newline tokenized on its own)
- pi0.5 (openpi):          `<bos>Task: {task}, State: {ids};\\nAction: `
- planner:                 `<bos>Task: {task}. Subtask: `
- planner with state:      `<bos>Task: {task}, State: {ids}; Subtask: `
- actor:                   `<bos>Task: {task}. Subtask: {subtask};\\nAction: `
- actor with state:        `<bos>Task: {task}, State: {ids}; Subtask: {subtask};\\nAction: `
- planner training target: tokens(`{subtask}`) + `<eos>`, appended to the planner prompt tokens
- FAST segment (training):  tokens(`Action: `) + FAST ids + tokens(`|`) + `<eos>`, after the planner target

The actor text is always the planner text followed by `{subtask};\\nAction: `: the subtask the planner emits
after its prompt is dropped into the actor prompt right after the same prefix.

Training (`training/`) reads two token rows per frame, each the exact row one runtime process builds, so
nothing the network sees at serving differs from what it was trained on:

- text row (`tokenize_text_example`): images + planner prompt (bidirectional) + subtask target (causal,
  subtask CE) + optional FAST segment (causal, FAST CE). The planner decodes after the same prompt and stops
  at the same EOS; the FAST segment sits after that EOS, so it never changes what the planner emits.
- actor row (`tokenize_actor`, unchanged): images + actor prompt (bidirectional). The flow suffix attends to
  this row's KV cache only, as `actor.sampler` does, so it never sees FAST tokens (no leakage of the
  ground-truth actions), and with knowledge insulation the cache is stop-gradiented.

One row cannot serve both: SentencePiece tokenizes `Subtask: {subtask}` as a whole differently from the
prompt and the decoded subtask tokenized apart (the prompt ends in a space), so the subtask tokens the
planner emits are not the ones inside the actor row.

Reasoning ("Do What You Say", seed 002), one row per sample, `<eop>` `<bor>` `<boa>` the protocol's special
tokens (`reasoning_tokens`):

- think: `<bos>{context}` + `<eop>` (bidirectional) + `<bor>{reasoning}<eos>` (causal, text CE)
- act:   `<bos>{context}` + `<eop>` (bidirectional) + `<boa>` (causal; the flow suffix attends to the row)

`{context}` is the instruction or the latest (possibly outdated) reasoning, `{context}; State: {ids}` with the
state. The act row puts its CE on `<boa>` alone, so that the choice the planner makes after `<eop>` (compare
`<bor>` with `<boa>`) is trained by both kinds of samples. Serving builds both rows up to their begin token
with `tokenize_reasoning_prompt`: the actor runs the act row as it stands, the planner `<bos>{context}<eop><bor>`
(`planner.reasoning`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

STATE_BINS = 256
_STATE_BIN_EDGES = np.linspace(-1.0, 1.0, STATE_BINS + 1)[:-1]
_TRAILING_PUNCTUATION = ".,;:!?"


class Tokenizer(Protocol):
    """The slice of `policy.tokenizer.TextTokenizer` that prompt building needs."""

    @property
    def eos_id(self) -> int: ...

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...


class TokenizedPrompt(NamedTuple):
    tokens: np.ndarray  # int32 [..., max_len]
    mask: np.ndarray  # bool [..., max_len]


class PlannerExample(NamedTuple):
    """One planner training row; `ar_mask` follows openpi's `make_attn_mask` (0 = prefix, 1 = causal)."""

    tokens: np.ndarray  # int32 [max_len]
    mask: np.ndarray  # bool [max_len]
    ar_mask: np.ndarray  # int32 [max_len]
    loss_mask: np.ndarray  # bool [max_len]


def clean_task(text: str, *, lower: bool = False) -> str:
    """openpi's prompt cleaning; `lower=True` also lower-cases, as the planner layouts want."""
    cleaned = text.strip().replace("_", " ").replace("\n", " ")
    return cleaned.lower() if lower else cleaned


def clean_instruction(text: str) -> str:
    """Task or subtask text for the planner/actor layouts: cleaned, lower-cased, no trailing punctuation."""
    return clean_task(text, lower=True).rstrip(_TRAILING_PUNCTUATION).rstrip()


def discretize_state(state: npt.ArrayLike) -> np.ndarray:
    """256-bin ids of a normalized state vector, exactly openpi's formula."""
    values = np.asarray(state)
    if values.ndim != 1:
        raise ValueError(f"state must be a 1-D vector, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("state contains NaN; it cannot be discretized")
    return np.digitize(values, bins=_STATE_BIN_EDGES) - 1


def state_to_text(state: npt.ArrayLike) -> str:
    return " ".join(str(int(b)) for b in discretize_state(state))


def pi05_text(task: str, state: npt.ArrayLike) -> str:
    return f"Task: {clean_task(task)}, State: {state_to_text(state)};\nAction: "


def planner_text(task: str, state: npt.ArrayLike | None = None) -> str:
    cleaned = clean_instruction(task)
    if state is None:
        return f"Task: {cleaned}. Subtask: "
    return f"Task: {cleaned}, State: {state_to_text(state)}; Subtask: "


def actor_text(task: str, subtask: str, state: npt.ArrayLike | None = None) -> str:
    return planner_text(task, state) + f"{_require_subtask(subtask)};\nAction: "


def _require_subtask(subtask: str) -> str:
    cleaned = clean_instruction(subtask)
    if not cleaned:
        raise ValueError("subtask is empty; use pi05_text (or the task itself) until the planner has one")
    return cleaned


def pad_tokens(ids: Sequence[int], max_len: int) -> TokenizedPrompt:
    """Right-pad `ids` with 0 to `max_len`, or cut them there with a warning."""
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if len(ids) > max_len:
        logger.warning(
            "prompt has %d tokens, more than max_len=%d; truncating (raise max_token_len if this recurs)",
            len(ids),
            max_len,
        )
    kept = list(ids)[:max_len]
    tokens = np.zeros(max_len, dtype=np.int32)
    tokens[: len(kept)] = kept
    mask = np.zeros(max_len, dtype=bool)
    mask[: len(kept)] = True
    return TokenizedPrompt(tokens, mask)


def tokenize_pi0(tokenizer: Tokenizer, task: str, *, max_len: int) -> TokenizedPrompt:
    ids = tokenizer.encode(clean_task(task), add_bos=True) + tokenizer.encode("\n")
    return pad_tokens(ids, max_len)


def tokenize_pi05(tokenizer: Tokenizer, task: str, state: npt.ArrayLike, *, max_len: int) -> TokenizedPrompt:
    return pad_tokens(tokenizer.encode(pi05_text(task, state), add_bos=True), max_len)


def tokenize_planner(
    tokenizer: Tokenizer, task: str, *, max_len: int, state: npt.ArrayLike | None = None
) -> TokenizedPrompt:
    return pad_tokens(tokenizer.encode(planner_text(task, state), add_bos=True), max_len)


def tokenize_actor(
    tokenizer: Tokenizer, task: str, subtask: str, *, max_len: int, state: npt.ArrayLike | None = None
) -> TokenizedPrompt:
    return pad_tokens(tokenizer.encode(actor_text(task, subtask, state), add_bos=True), max_len)


def planner_target_ids(tokenizer: Tokenizer, subtask: str) -> list[int]:
    """What the planner is trained to emit after its prompt: the subtask tokens, then EOS."""
    return tokenizer.encode(_require_subtask(subtask), add_eos=True)


def tokenize_planner_example(
    tokenizer: Tokenizer,
    task: str,
    subtask: str,
    *,
    max_len: int,
    state: npt.ArrayLike | None = None,
) -> PlannerExample:
    """Planner prompt + target in one row, with the prefix/causal split and the loss on the target only."""
    prefix = tokenizer.encode(planner_text(task, state), add_bos=True)
    target = planner_target_ids(tokenizer, subtask)
    padded = pad_tokens(prefix + target, max_len)
    is_target = np.zeros(max_len, dtype=bool)
    is_target[len(prefix) : len(prefix) + len(target)] = True
    is_target &= padded.mask
    return PlannerExample(padded.tokens, padded.mask, is_target.astype(np.int32), is_target)


FAST_PREFIX = "Action: "
FAST_END = "|"


class TextExample(NamedTuple):
    """The text row of training: planner prompt, subtask target, optional FAST segment (see module docstring)."""

    tokens: np.ndarray  # int32 [max_len]
    mask: np.ndarray  # bool [max_len]
    ar_mask: np.ndarray  # int32 [max_len]
    subtask_loss_mask: np.ndarray  # bool [max_len]
    fast_loss_mask: np.ndarray  # bool [max_len]


def tokenize_text_example(
    tokenizer: Tokenizer,
    task: str,
    subtask: str,
    *,
    max_len: int,
    state: npt.ArrayLike | None = None,
    fast_ids: Sequence[int] | np.ndarray | None = None,
) -> TextExample:
    """`tokenize_planner_example`'s row, then (given `fast_ids`, already in the text vocabulary) the FAST segment.

    The loss covers the FAST ids, `|` and the closing EOS; `Action: ` is scaffolding, given, not predicted.
    """
    prefix = tokenizer.encode(planner_text(task, state), add_bos=True)
    target = planner_target_ids(tokenizer, subtask)
    fast_head: list[int] = []
    fast_body: list[int] = []
    if fast_ids is not None:
        fast_head = tokenizer.encode(FAST_PREFIX)
        fast_body = [int(i) for i in fast_ids] + tokenizer.encode(FAST_END) + [tokenizer.eos_id]
    padded = pad_tokens(prefix + target + fast_head + fast_body, max_len)
    segments = np.repeat(np.arange(4), [len(prefix), len(target), len(fast_head), len(fast_body)])
    segment = np.full(max_len, -1)
    kept = min(len(segments), max_len)
    segment[:kept] = segments[:kept]
    return TextExample(
        padded.tokens,
        padded.mask,
        (segment >= 1).astype(np.int32),
        segment == 1,
        segment == 3,
    )


class ReasoningTokens(NamedTuple):
    begin_reasoning: int
    begin_action: int
    end_of_prefix: int


# PaliGemma ids 257020, 257021, 257022 (<loc1020>..<loc1022>): 132, 131, 130 below the top of the vocabulary.
_REASONING_OFFSETS = (132, 131, 130)
REASONING_INSTRUCTION = "Instruction:"


def reasoning_tokens(vocab_size: int) -> ReasoningTokens:
    """The protocol's special ids, at the same distance from the top in any vocabulary as in PaliGemma's."""
    return ReasoningTokens(*(vocab_size - offset for offset in _REASONING_OFFSETS))


class ReasoningExample(NamedTuple):
    tokens: np.ndarray  # int32 [max_len]
    mask: np.ndarray  # bool [max_len]
    ar_mask: np.ndarray  # int32 [max_len]
    loss_mask: np.ndarray  # bool [max_len]
    acts: bool  # the flow loss applies to this sample


def reasoning_first_context(task: str) -> str:
    """The context before a session's first reasoning: the task as `cot_simple.json` spells a first segment's
    `content` (`Instruction: put the bowl on the plate`); a task already spelled so is kept, not prefixed twice."""
    task = task.strip()
    return task if task.startswith(REASONING_INSTRUCTION) else f"{REASONING_INSTRUCTION} {task}"


def reasoning_context_text(context: str, state: npt.ArrayLike | None = None) -> str:
    cleaned = clean_task(context)
    return cleaned if state is None else f"{cleaned}; State: {state_to_text(state)}"


def reasoning_prefix_ids(
    tokenizer: Tokenizer, context: str, special: ReasoningTokens, state: npt.ArrayLike | None = None
) -> list[int]:
    """`<bos>{context}<eop>`: the bidirectional part every reasoning row starts with."""
    return tokenizer.encode(reasoning_context_text(context, state), add_bos=True) + [special.end_of_prefix]


class ReasoningPrompt(NamedTuple):
    tokens: np.ndarray  # int32 [max_len]
    mask: np.ndarray  # bool [max_len]
    ar_mask: np.ndarray  # int32 [max_len]; 1 on the begin token alone


def tokenize_reasoning_prompt(
    tokenizer: Tokenizer,
    context: str,
    begin: int,
    special: ReasoningTokens,
    *,
    max_len: int,
    state: npt.ArrayLike | None = None,
) -> ReasoningPrompt:
    """`<bos>{context}<eop>` (bidirectional) + `begin` (causal), what serving runs of a reasoning row.

    With `<boa>` it is the act row the actor runs, token for token; with `<bor>` the think row up to where the
    planner starts decoding. A row too long for `max_len` raises ValueError instead of being cut: it would
    lose `<eop>` and `begin`, the two tokens the protocol turns on.
    """
    ids = reasoning_prefix_ids(tokenizer, context, special, state) + [begin]
    if len(ids) > max_len:
        raise ValueError(f"the reasoning row has {len(ids)} tokens, more than max_len={max_len}")
    padded = pad_tokens(ids, max_len)
    ar_mask = np.zeros(max_len, dtype=np.int32)
    ar_mask[len(ids) - 1] = 1
    return ReasoningPrompt(padded.tokens, padded.mask, ar_mask)


def tokenize_reasoning_example(
    tokenizer: Tokenizer,
    context: str,
    reasoning: str | None,
    special: ReasoningTokens,
    *,
    max_len: int,
    state: npt.ArrayLike | None = None,
) -> ReasoningExample:
    """A think row (`reasoning` given) or an act row (`reasoning` None); layouts in the module docstring."""
    prefix = reasoning_prefix_ids(tokenizer, context, special, state)
    if reasoning is None:
        suffix = [special.begin_action]
    else:
        suffix = [special.begin_reasoning, *tokenizer.encode(clean_task(reasoning)), tokenizer.eos_id]
    padded = pad_tokens(prefix + suffix, max_len)
    causal = np.zeros(max_len, dtype=bool)
    causal[len(prefix) : len(prefix) + len(suffix)] = True
    causal &= padded.mask
    return ReasoningExample(padded.tokens, padded.mask, causal.astype(np.int32), causal, reasoning is None)


def stack_prompts(rows: Sequence[TokenizedPrompt]) -> TokenizedPrompt:
    """Stack single rows into a `[B, max_len]` batch."""
    if not rows:
        raise ValueError("stack_prompts needs at least one row")
    lengths = {row.tokens.shape for row in rows} | {row.mask.shape for row in rows}
    if len(lengths) != 1:
        raise ValueError(f"prompt rows differ in shape: {sorted(lengths)}")
    return TokenizedPrompt(
        np.stack([row.tokens for row in rows]).astype(np.int32, copy=False),
        np.stack([row.mask for row in rows]).astype(bool, copy=False),
    )
