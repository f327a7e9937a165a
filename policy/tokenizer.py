"""SentencePiece text tokenizer: the real PaliGemma model from a local file, or a tiny one trained on the spot.

pi0.5 reads prompts through PaliGemma's SentencePiece model (ids: pad 0, eos 1, bos 2, unk 3). That file is
large and licensed, so the runtime never downloads it: the user points at it. Tests and `init-checkpoint`
instead call `train_tokenizer`, which builds a few-hundred-piece model with the same special ids and the same
text handling as Gemma's (identity normalization, whitespace kept verbatim, digits split one per piece, byte
fallback so any UTF-8 text encodes), so prompt code behaves alike on both.
"""

from __future__ import annotations

import io
import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece

from policy.errors import UserFacingError

PAD_ID = 0
EOS_ID = 1
BOS_ID = 2
UNK_ID = 3

DEFAULT_VOCAB_SIZE = 1024


class TokenizerTrainingError(UserFacingError, ValueError):
    """SentencePiece could not build a vocabulary of the requested size from the given text."""


class TextTokenizer:
    """A SentencePiece model loaded from a local path, with the handful of calls prompts and decoding need."""

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece tokenizer model not found at {path}")
        self._path = path
        self._sp = _load_processor(path)
        if self._sp.bos_id() < 0 or self._sp.eos_id() < 0:
            raise ValueError(
                f"SentencePiece model at {path} defines no BOS or EOS piece "
                f"(bos_id={self._sp.bos_id()}, eos_id={self._sp.eos_id()}); prompts need both"
            )
        self._pieces = tuple(self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size()))

    @property
    def path(self) -> Path:
        return self._path

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    @property
    def bos_id(self) -> int:
        return int(self._sp.bos_id())

    @property
    def eos_id(self) -> int:
        return int(self._sp.eos_id())

    @property
    def pad_id(self) -> int:
        """Always 0: openpi right-pads token rows with 0 whatever the model's own pad setting."""
        return PAD_ID

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        ids = list(self._sp.encode(text, out_type=int))
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` up to (not including) the first EOS; pad and BOS add nothing."""
        kept: list[int] = []
        for raw in ids:
            token = int(raw)
            if token == self.eos_id:
                break
            self._check_id(token)
            kept.append(token)
        return self._sp.decode(kept)

    def id_to_piece(self, token_id: int) -> str:
        self._check_id(int(token_id))
        return self._pieces[int(token_id)]

    def pieces(self) -> tuple[str, ...]:
        """Every piece, indexed by id; the planner builds its vocabulary mask from these."""
        return self._pieces

    def is_byte(self, token_id: int) -> bool:
        """True for byte-fallback pieces such as `<0x41>`, whose piece text is not what they decode to."""
        self._check_id(int(token_id))
        return bool(self._sp.is_byte(int(token_id)))

    def is_control(self, token_id: int) -> bool:
        """True for pad/BOS/EOS-like pieces that decode to nothing."""
        self._check_id(int(token_id))
        return bool(self._sp.is_control(int(token_id)))

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < len(self._pieces):
            raise ValueError(f"token id {token_id} is outside the tokenizer vocabulary [0, {len(self._pieces)})")

    def __repr__(self) -> str:
        return f"TextTokenizer(path={str(self._path)!r}, vocab_size={self.vocab_size})"


def _load_processor(path: Path) -> sentencepiece.SentencePieceProcessor:
    data = path.read_bytes()
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.load_from_serialized_proto(data)
    except (RuntimeError, OSError, TypeError) as exc:
        raise ValueError(f"{path} is not a SentencePiece model: {exc}") from exc
    if processor.get_piece_size() <= 0:
        raise ValueError(f"{path} is not a SentencePiece model: it holds no pieces")
    return processor


def train_tokenizer(
    out_path: str | os.PathLike[str],
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    extra_text: Sequence[str] = (),
) -> Path:
    """Train a tiny BPE SentencePiece model on the built-in robot corpus (+ `extra_text`) and write it.

    Symbols of the form `<name12>` in the text (the built-in tasks' location words, `<x12><y07>`) become
    single pieces, as PaliGemma's `<loc0123>` are. Same arguments give the same bytes: the corpus order is
    fixed and training runs on one thread. The built-in corpus supports vocab sizes from about 330 (256 byte
    pieces + specials + its characters) to about 1150; `extra_text` raises the upper bound.
    Out-of-range sizes raise ValueError.
    """
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    lines = [*robot_corpus(), *(_as_line(t) for t in extra_text)]
    symbols = sorted({symbol for line in lines for symbol in _SYMBOL.findall(line)})
    buffer = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buffer,
            model_type="bpe",
            vocab_size=vocab_size,
            pad_id=PAD_ID,
            eos_id=EOS_ID,
            bos_id=BOS_ID,
            unk_id=UNK_ID,
            byte_fallback=True,
            split_digits=True,
            character_coverage=1.0,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            user_defined_symbols=["\n", *symbols],
            max_sentence_length=1 << 14,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise TokenizerTrainingError(
            f"could not train a {vocab_size}-piece tokenizer (set tokenizer_vocab_size higher): {exc}"
        ) from exc
    path = Path(out_path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _as_line(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"extra_text items must be str, got {type(text).__name__}")
    return text


_SYMBOL = re.compile(r"<[a-z]+\d+>")
_NUMBERED = re.compile(r"<([a-z]+)(\d+)>")


def numbered_symbols(pieces: Sequence[str]) -> dict[str, dict[int, int]]:
    """{name: {number: piece id}} for the pieces that are symbols `<name12>` (`<x12>`, `<y07>`)."""
    families: dict[str, dict[int, int]] = {}
    for piece_id, piece in enumerate(pieces):
        match = _NUMBERED.fullmatch(piece)
        if match is not None:
            families.setdefault(match.group(1), {})[int(match.group(2))] = piece_id
    return families


_COLORS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "gray", "brown")
_OBJECTS = (
    "cube",
    "block",
    "ball",
    "mug",
    "cup",
    "bowl",
    "plate",
    "bottle",
    "can",
    "box",
    "book",
    "pot",
    "pan",
    "lid",
    "sponge",
    "towel",
    "spoon",
    "fork",
    "knife",
    "apple",
    "banana",
    "lemon",
    "carrot",
    "toy",
)
_CONTAINERS = ("bowl", "plate", "basket", "box", "tray", "drawer", "bin", "shelf", "caddy", "rack", "microwave")
_PLACES = (
    "table",
    "stove",
    "cabinet",
    "counter",
    "sink",
    "left side",
    "right side",
    "center of the table",
    "top of the cabinet",
    "front of the stove",
    "back of the table",
)
_LIBERO_TASKS = (
    "pick up the black bowl between the plate and the ramekin and place it on the plate",
    "pick up the black bowl next to the ramekin and place it on the plate",
    "pick up the black bowl from table center and place it on the plate",
    "pick up the black bowl on the cookie box and place it on the plate",
    "pick up the black bowl in the top drawer of the wooden cabinet and place it on the plate",
    "pick up the black bowl on the stove and place it on the plate",
    "pick up the alphabet soup and place it in the basket",
    "pick up the cream cheese and place it in the basket",
    "pick up the salad dressing and place it in the basket",
    "pick up the bbq sauce and place it in the basket",
    "pick up the ketchup and place it in the basket",
    "pick up the tomato sauce and place it in the basket",
    "pick up the butter and place it in the basket",
    "pick up the milk and place it in the basket",
    "pick up the chocolate pudding and place it in the basket",
    "pick up the orange juice and place it in the basket",
    "open the middle drawer of the cabinet",
    "open the top drawer and put the bowl inside",
    "put the bowl on the stove",
    "put the wine bottle on top of the cabinet",
    "put the wine bottle on the rack",
    "push the plate to the front of the stove",
    "put the cream cheese in the bowl",
    "turn on the stove",
    "put both the alphabet soup and the tomato sauce in the basket",
    "put both the cream cheese box and the butter in the basket",
    "turn on the stove and put the moka pot on it",
    "put the black bowl in the bottom drawer of the cabinet and close it",
    "put the white mug on the left plate and put the yellow and white mug on the right plate",
    "pick up the book and place it in the back compartment of the caddy",
    "put both moka pots on the stove",
    "put the yellow and white mug in the microwave and close it",
)
_PRIMITIVES = (
    "grasp",
    "lift",
    "release",
    "lower",
    "push",
    "pull",
    "open",
    "close",
    "rotate",
    "slide",
    "stack",
    "pour",
    "wipe",
    "fold",
    "retreat",
    "approach",
    "align",
    "insert",
    "press",
    "turn on",
    "turn off",
    "done",
)


def robot_corpus() -> Iterator[str]:
    """The built-in training text: task and subtask phrases in every prompt layout, plus digits and punctuation."""
    yield from _LIBERO_TASKS
    yield from (t.capitalize() + "." for t in _LIBERO_TASKS)
    for color, obj in itertools.product(_COLORS, _OBJECTS):
        yield f"pick up the {color} {obj}"
        yield f"move to the {color} {obj}"
        yield f"grasp the {color} {obj}"
        yield f"lift the {color} {obj}"
        yield f"release the {color} {obj}"
    for color, obj, color2, box in itertools.product(_COLORS[:6], _OBJECTS[:8], _COLORS[:6], _CONTAINERS):
        yield f"put the {color} {obj} in the {color2} {box}"
    for obj, place in itertools.product(_OBJECTS, _PLACES):
        yield f"place the {obj} on the {place}"
        yield f"move the {obj} to the {place}"
    for verb, obj in itertools.product(_PRIMITIVES, _OBJECTS):
        yield f"{verb} the {obj}"
    yield from _PRIMITIVES
    yield from (p.capitalize() + "." for p in _PRIMITIVES)
    for i, task in enumerate(_LIBERO_TASKS):
        state = " ".join(str((i * 37 + k * 101) % 256) for k in range(8))
        subtask = f"{_PRIMITIVES[i % len(_PRIMITIVES)]} the {_OBJECTS[i % len(_OBJECTS)]}"
        yield f"Task: {task}, State: {state};\nAction: "
        yield f"Task: {task}. Subtask: "
        yield f"Task: {task}. Subtask: {subtask};\nAction: "
        yield f"Task: {task}, State: {state}; Subtask: {subtask};\nAction: "
        yield f"{task}\n"
    yield " ".join(str(n) for n in range(256))
    yield "Task: Subtask: State: Action: ; , . : ! ? - ( ) ' \" / | \n"
