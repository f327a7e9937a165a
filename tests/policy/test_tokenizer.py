import time
from pathlib import Path

import pytest

from policy.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, TextTokenizer, train_tokenizer


def test_special_ids_match_paligemma(tokenizer: TextTokenizer) -> None:
    assert (tokenizer.pad_id, tokenizer.eos_id, tokenizer.bos_id) == (0, 1, 2)
    assert (PAD_ID, EOS_ID, BOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert tokenizer.pieces()[:4] == ("<pad>", "</s>", "<s>", "<unk>")


def test_default_vocab_size_and_pieces(tokenizer: TextTokenizer) -> None:
    assert tokenizer.vocab_size == 1024
    pieces = tokenizer.pieces()
    assert len(pieces) == tokenizer.vocab_size
    assert all(tokenizer.id_to_piece(i) == pieces[i] for i in (0, 5, 300, 1023))


@pytest.mark.parametrize(
    "text",
    [
        "Task: put the red cube in the blue bowl, State: 0 128 255;\nAction: ",
        "Task: pick up the mug. Subtask: ",
        "  double  spaces and trailing space ",
        "Ünïcode ✓ and emoji 🤖 fall back to bytes",
    ],
)
def test_encode_decode_round_trip(tokenizer: TextTokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_bos_and_eos_are_placed_at_the_ends(tokenizer: TextTokenizer) -> None:
    plain = tokenizer.encode("lift the cube")
    assert tokenizer.encode("lift the cube", add_bos=True) == [2, *plain]
    assert tokenizer.encode("lift the cube", add_eos=True) == [*plain, 1]
    assert 1 not in plain and 2 not in plain


def test_decode_stops_at_eos_and_skips_control_ids(tokenizer: TextTokenizer) -> None:
    ids = [tokenizer.bos_id, *tokenizer.encode("pick up the red cube"), tokenizer.eos_id, *tokenizer.encode("junk")]
    assert tokenizer.decode(ids) == "pick up the red cube"
    assert tokenizer.decode([*tokenizer.encode("grasp"), 0, 0]) == "grasp"


def test_decode_rejects_ids_outside_vocab(tokenizer: TextTokenizer) -> None:
    with pytest.raises(ValueError, match="1024"):
        tokenizer.decode([5, 1024])
    with pytest.raises(ValueError, match="-1"):
        tokenizer.id_to_piece(-1)


def test_digits_are_single_pieces(tokenizer: TextTokenizer) -> None:
    ids = tokenizer.encode("255")
    assert [tokenizer.id_to_piece(i) for i in ids] == ["2", "5", "5"]


def test_newline_is_one_token(tokenizer: TextTokenizer) -> None:
    (newline,) = tokenizer.encode("\n")
    assert tokenizer.id_to_piece(newline) == "\n"
    assert not tokenizer.is_byte(newline)


def test_byte_fallback_pieces_are_flagged(tokenizer: TextTokenizer) -> None:
    ids = tokenizer.encode("🤖")
    assert ids and all(tokenizer.is_byte(i) for i in ids)
    assert all(tokenizer.is_control(i) for i in (0, 1, 2))
    assert not tokenizer.is_control(tokenizer.encode("lift")[0])


def test_training_is_deterministic_and_fast(tmp_path: Path, tokenizer_path: Path) -> None:
    start = time.perf_counter()
    again = train_tokenizer(tmp_path / "again.model")
    assert time.perf_counter() - start < 2.0
    assert again.read_bytes() == tokenizer_path.read_bytes()


def test_vocab_size_and_extra_text_are_honoured(tmp_path: Path) -> None:
    word = "zyzzyva"
    plain = TextTokenizer(train_tokenizer(tmp_path / "plain.model", vocab_size=600))
    extra = TextTokenizer(train_tokenizer(tmp_path / "extra.model", vocab_size=600, extra_text=[word] * 50))
    assert plain.vocab_size == extra.vocab_size == 600
    assert len(extra.encode(word)) == 1 < len(plain.encode(word))


def test_symbols_in_extra_text_become_single_pieces(tmp_path: Path) -> None:
    """Location words such as `<x12><y07>` must each be one piece, or the planner would spell them out and the
    actor would read digits."""
    labels = ["move to the red cube <x12><y07>", "lift the red cube <x03><y41>"]
    tokenizer = TextTokenizer(train_tokenizer(tmp_path / "loc.model", vocab_size=512, extra_text=labels))
    ids = tokenizer.encode("grasp the blue ball <x12><y41>")
    assert [tokenizer.id_to_piece(i) for i in ids[-2:]] == ["<x12>", "<y41>"]
    assert tokenizer.decode(ids) == "grasp the blue ball <x12><y41>"
    assert len(tokenizer.encode("<x13>")) > 1  # only symbols the text holds are reserved


def test_impossible_vocab_size_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="100000"):
        train_tokenizer(tmp_path / "big.model", vocab_size=100_000)


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "paligemma.model"
    with pytest.raises(FileNotFoundError, match="nope"):
        TextTokenizer(missing)
    with pytest.raises(FileNotFoundError, match=str(tmp_path.name)):
        TextTokenizer(tmp_path)


def test_non_sentencepiece_file_names_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"definitely not a protobuf \xff\xfe")
    with pytest.raises(ValueError, match="junk.model"):
        TextTokenizer(junk)
