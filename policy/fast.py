"""FAST action tokenizer: action chunks ↔ a few discrete tokens, so the language model can predict actions as text.

A chunk [H,D] (normalized actions) is transformed per action dimension over time with the orthonormal DCT-II,
scaled (default 10) and rounded; the integer coefficients are laid out low frequencies first, the D dims of
one frequency side by side, so the informative start of every sequence is the same across chunks. Each
coefficient becomes one character (`chr(c - min_token)`), and byte-level BPE merges frequent runs. The 256
byte symbols are always in the vocabulary, so coefficients outside the range seen in `fit` still encode.

Files are those of the released tokenizer (`physical-intelligence/fast`): `processor_config.json` (scale,
min_token, vocab_size, time_horizon, action_dim) and `tokenizers`' `tokenizer.json`; `load` reads a local
directory holding them, `save` writes the same two files.

In the language model FAST tokens take the top of the PaliGemma vocabulary, below its last 128 entries:
text id = vocab_size - 1 - 128 - fast id, as openpi does.

A sequence that does not decode to H·D coefficients (the model can emit anything) decodes to a zero chunk
flagged invalid, never an exception.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy.fft import dct, idct

logger = logging.getLogger(__name__)

PROCESSOR_CONFIG = "processor_config.json"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_SCALE = 10.0
DEFAULT_VOCAB_SIZE = 1024
SKIP_TOKENS = 128
BYTE_ALPHABET = 256
# Largest coefficient offset a character carries: the code points above start with UTF-16 surrogates,
# which no tokenizer accepts. Only pathological normalization (a constant dimension) reaches it.
MAX_CHAR = 0xD7FF


@dataclasses.dataclass(frozen=True)
class DecodedChunk:
    actions: np.ndarray  # float32 [H,D]; zeros when not valid
    valid: bool


def dct_coefficients(chunk: npt.ArrayLike, scale: float) -> np.ndarray:
    """Rounded, scaled DCT-II coefficients [H,D] (row = frequency) of a chunk [H,D]."""
    values = np.asarray(chunk, np.float64)
    if values.ndim != 2:
        raise ValueError(f"an action chunk must be [horizon, dims], got shape {values.shape}")
    return np.around(dct(values, axis=0, norm="ortho") * scale).astype(np.int64)


def _to_text(coefficients: np.ndarray, min_token: int) -> str:
    return "".join(map(chr, np.clip(coefficients.reshape(-1) - min_token, 0, MAX_CHAR)))


class FastTokenizer:
    """Encodes chunks [H,D] to FAST ids and back; `fit` trains one on a dataset's chunks."""

    def __init__(
        self,
        bpe,
        *,
        scale: float = DEFAULT_SCALE,
        min_token: int = 0,
        time_horizon: int | None = None,
        action_dim: int | None = None,
    ):
        self._bpe = bpe
        self.scale = float(scale)
        self.min_token = int(min_token)
        self.time_horizon = time_horizon
        self.action_dim = action_dim

    @property
    def vocab_size(self) -> int:
        return int(self._bpe.get_vocab_size())

    @classmethod
    def fit(
        cls,
        chunks: Iterable[npt.ArrayLike],
        *,
        scale: float = DEFAULT_SCALE,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
    ) -> FastTokenizer:
        """Trains the BPE on the coefficient strings of `chunks` (all of one shape [H,D])."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        coefficients = [dct_coefficients(c, scale) for c in chunks]
        if not coefficients:
            raise ValueError("FAST needs at least one action chunk to fit")
        shapes = {c.shape for c in coefficients}
        if len(shapes) != 1:
            raise ValueError(f"action chunks differ in shape: {sorted(shapes)}")
        if vocab_size < BYTE_ALPHABET:
            raise ValueError(f"vocab_size must be at least {BYTE_ALPHABET} (the byte alphabet), got {vocab_size}")
        min_token = int(min(c.min() for c in coefficients))
        span = min(int(max(c.max() for c in coefficients)) - min_token, MAX_CHAR)
        if span + 1 > vocab_size:
            logger.warning(
                "FAST: %d distinct coefficients exceed vocab_size %d; rare ones stay multi-byte", span + 1, vocab_size
            )
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        bpe.decoder = decoders.ByteLevel()
        alphabet = sorted(set(pre_tokenizers.ByteLevel.alphabet()) | {chr(i) for i in range(span + 1)})
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=alphabet,
            max_token_length=10_000,
        )
        bpe.train_from_iterator((_to_text(c, min_token) for c in coefficients), trainer=trainer)
        horizon, dims = shapes.pop()
        return cls(bpe, scale=scale, min_token=min_token, time_horizon=horizon, action_dim=dims)

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> FastTokenizer:
        """Reads `processor_config.json` and `tokenizer.json` (the released FAST tokenizer's files)."""
        from tokenizers import Tokenizer

        directory = pathlib.Path(directory).expanduser()
        config_path, bpe_path = directory / PROCESSOR_CONFIG, directory / TOKENIZER_FILE
        for path in (config_path, bpe_path):
            if not path.is_file():
                raise FileNotFoundError(f"FAST tokenizer file {path} is missing")
        config = json.loads(config_path.read_text())
        return cls(
            Tokenizer.from_file(str(bpe_path)),
            scale=config.get("scale", DEFAULT_SCALE),
            min_token=config.get("min_token", 0),
            time_horizon=config.get("time_horizon"),
            action_dim=config.get("action_dim"),
        )

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        directory = pathlib.Path(directory).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "processor_class": "UniversalActionProcessor",
            "scale": self.scale,
            "min_token": self.min_token,
            "vocab_size": self.vocab_size,
            "time_horizon": self.time_horizon,
            "action_dim": self.action_dim,
        }
        (directory / PROCESSOR_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        self._bpe.save(str(directory / TOKENIZER_FILE))
        return directory

    def encode(self, chunk: npt.ArrayLike) -> list[int]:
        """FAST ids of one chunk [H,D]."""
        return list(self._bpe.encode(_to_text(dct_coefficients(chunk, self.scale), self.min_token)).ids)

    def decode(
        self, ids: Sequence[int], *, time_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodedChunk:
        """The chunk [H,D] of `ids`, or a zero chunk with valid=False when they do not spell H·D coefficients."""
        horizon = time_horizon or self.time_horizon
        dims = action_dim or self.action_dim
        if not horizon or not dims:
            raise ValueError("decoding needs time_horizon and action_dim (give them or use a fitted tokenizer)")
        zeros = DecodedChunk(np.zeros((horizon, dims), np.float32), False)
        vocab = self.vocab_size
        ids = [int(i) for i in ids]
        if any(not 0 <= i < vocab for i in ids):
            return zeros
        try:
            text = self._bpe.decode(ids)
        except Exception as err:  # a broken byte sequence is the model's output, not a bug here
            logger.debug("FAST ids do not decode: %s", err)
            return zeros
        coefficients = np.array([ord(ch) for ch in text], np.float64) + self.min_token
        if coefficients.size != horizon * dims:
            return zeros
        actions = idct(coefficients.reshape(horizon, dims) / self.scale, axis=0, norm="ortho")
        return DecodedChunk(actions.astype(np.float32), True)


def to_text_ids(fast_ids: Sequence[int] | np.ndarray, text_vocab_size: int, skip: int = SKIP_TOKENS) -> np.ndarray:
    """FAST ids → ids in the language model's vocabulary (the top of it, below the last `skip` entries)."""
    ids = np.asarray(fast_ids, np.int64)
    return (text_vocab_size - 1 - skip - ids).astype(np.int32)


def from_text_ids(text_ids: Sequence[int] | np.ndarray, text_vocab_size: int, skip: int = SKIP_TOKENS) -> np.ndarray:
    ids = np.asarray(text_ids, np.int64)
    return (text_vocab_size - 1 - skip - ids).astype(np.int32)
