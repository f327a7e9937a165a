"""Vocabulary masks: which token ids the planner may emit, as bool vectors over the model's vocabulary.

The released pi0.5 base LM head happily emits CJK and emoji pieces after a robot prompt, so the planner masks
the logits (disallowed → -inf) before every greedy or sampled choice. A mask always has the model's vocabulary
size; ids the tokenizer does not know (a model vocabulary larger than the tokenizer) are never allowed, since
they cannot be decoded to text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

SPACE_PIECE = "\u2581"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_PRINTABLE_ASCII_BYTES = range(0x20, 0x7F)


class PieceTokenizer(Protocol):
    """The slice of `policy.tokenizer.TextTokenizer` masks are built from."""

    @property
    def eos_id(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def pieces(self) -> tuple[str, ...]: ...

    def is_byte(self, token_id: int) -> bool: ...

    def is_control(self, token_id: int) -> bool: ...

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


def is_printable_ascii(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable()


def piece_text(piece: str) -> str:
    """What a (non-byte, non-control) piece reads as: SentencePiece writes a space as `▁`."""
    return piece.replace(SPACE_PIECE, " ")


def byte_value(piece: str) -> int | None:
    """The byte a byte-fallback piece such as `<0x41>` stands for, or None for other pieces."""
    match = _BYTE_PIECE.fullmatch(piece)
    return int(match.group(1), 16) if match else None


def _check_vocab_size(tokenizer: PieceTokenizer, model_vocab_size: int) -> None:
    if tokenizer.vocab_size > model_vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} pieces, more than the model's vocabulary of {model_vocab_size}"
        )


def _is_unknown_piece(tokenizer: PieceTokenizer, token_id: int, piece: str) -> bool:
    """`<unk>` is neither byte nor control and its piece text is ASCII, but it decodes to ` ⁇ `.

    Only `<...>`-shaped pieces can be such a stand-in, so only those pay for a decode.
    """
    if not (piece.startswith("<") and piece.endswith(">")):
        return False
    return tokenizer.decode([token_id]) != piece_text(piece)


def _allows_as_ascii(tokenizer: PieceTokenizer, token_id: int, piece: str) -> bool:
    if token_id == tokenizer.eos_id:
        return True
    if tokenizer.is_control(token_id):
        return False
    if tokenizer.is_byte(token_id):
        value = byte_value(piece)
        return value is not None and value in _PRINTABLE_ASCII_BYTES
    return is_printable_ascii(piece_text(piece)) and not _is_unknown_piece(tokenizer, token_id, piece)


def printable_ascii_mask(tokenizer: PieceTokenizer, model_vocab_size: int) -> np.ndarray:
    """Allows EOS and every piece that reads as printable ASCII (`▁` as a space; byte pieces by their byte).

    Control pieces other than EOS, `<unk>`, and ids past the tokenizer are disallowed.
    """
    _check_vocab_size(tokenizer, model_vocab_size)
    mask = np.zeros(model_vocab_size, bool)
    for token_id, piece in enumerate(tokenizer.pieces()):
        mask[token_id] = _allows_as_ascii(tokenizer, token_id, piece)
    return mask


def allowed_set_mask(tokenizer: PieceTokenizer, allowed: Iterable[str | int], model_vocab_size: int) -> np.ndarray:
    """Allows EOS plus the given token ids and every id the given strings encode to.

    A string allows the pieces needed to write it (so `["pick up", "the red cube"]` lets the planner write
    those words in any order); an int allows that id. EOS is always allowed so every row can stop.
    """
    _check_vocab_size(tokenizer, model_vocab_size)
    mask = np.zeros(model_vocab_size, bool)
    mask[tokenizer.eos_id] = True
    for item in allowed:
        if isinstance(item, str):
            if not item:
                raise ValueError("allowed strings must not be empty")
            mask[tokenizer.encode(item)] = True
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= int(item) < tokenizer.vocab_size:
                raise ValueError(
                    f"allowed token id {item} is outside the tokenizer vocabulary [0, {tokenizer.vocab_size})"
                )
            mask[int(item)] = True
        else:
            raise TypeError(f"allowed items must be str or int, got {type(item).__name__}")
    return mask


def all_mask(tokenizer: PieceTokenizer, model_vocab_size: int) -> np.ndarray:
    """Allows every id the tokenizer can decode."""
    _check_vocab_size(tokenizer, model_vocab_size)
    mask = np.zeros(model_vocab_size, bool)
    mask[: tokenizer.vocab_size] = True
    return mask


def apply_mask(logits: jax.Array, allowed: jax.Array) -> jax.Array:
    """Logits [..., V] with every disallowed id at -inf."""
    return jnp.where(allowed, logits, -jnp.inf)
