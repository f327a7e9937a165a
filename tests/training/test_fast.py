import json

import numpy as np
import pytest

from policy import fast
from policy.normalize import RunningStats, normalize
from training.lerobot import LeRobotDataset

HORIZON = 10


@pytest.fixture(scope="module")
def chunks(recorded_dataset) -> np.ndarray:
    """Quantile-normalized action chunks of the recording, clipped to [-1, 1] as training feeds FAST."""
    ds = LeRobotDataset(recorded_dataset, HORIZON)
    raw, _ = ds.action_chunks(np.arange(len(ds)))
    stats = RunningStats()
    stats.update(raw)
    return np.clip(normalize(raw, stats.get_statistics(), use_quantiles=True), -1, 1)


@pytest.fixture(scope="module")
def tokenizer(chunks) -> fast.FastTokenizer:
    return fast.FastTokenizer.fit(list(chunks), vocab_size=512)


def test_dct_lays_out_low_frequencies_first_across_dims():
    t = np.arange(8)[:, None]
    chunk = np.concatenate([np.full((8, 1), 0.5), np.cos(np.pi * (t + 0.5) * 3 / 8)], axis=1)
    coefficients = fast.dct_coefficients(chunk, scale=10)
    assert coefficients.shape == (8, 2)
    assert coefficients[0, 0] == round(0.5 * np.sqrt(8) * 10)  # orthonormal DC term
    assert np.count_nonzero(coefficients[:, 0]) == 1
    assert np.flatnonzero(coefficients[:, 1]).tolist() == [3]


def test_round_trip_and_compression_on_recorded_actions(tokenizer, chunks):
    lengths, errors = [], []
    for chunk in chunks:
        ids = tokenizer.encode(chunk)
        decoded = tokenizer.decode(ids)
        assert decoded.valid
        lengths.append(len(ids))
        errors.append(decoded.actions - chunk)
    errors = np.stack(errors)
    coefficients = chunks.shape[1] * chunks.shape[2]
    # Rounding at scale 10 moves each orthonormal coefficient by at most 0.05 (RMS 0.05/sqrt(3)); the inverse
    # DCT keeps the RMS and bounds every entry by the sum over the H coefficients of one dim.
    assert np.abs(errors).max() <= 0.05 * np.sqrt(HORIZON) + 1e-6
    assert np.sqrt(np.mean(errors**2)) < 0.05 / np.sqrt(3) + 0.005
    assert coefficients / np.mean(lengths) > 2.0, f"compression {coefficients / np.mean(lengths):.2f}x"


def test_invalid_sequences_decode_to_a_flagged_zero_chunk(tokenizer, chunks):
    ids = tokenizer.encode(chunks[0])
    for bad in ([], ids[:-3], ids + ids, [tokenizer.vocab_size + 5], [-1]):
        decoded = tokenizer.decode(bad)
        assert not decoded.valid
        assert decoded.actions.shape == (HORIZON, 7) and not decoded.actions.any()


def test_save_load_and_the_released_file_layout(tokenizer, chunks, tmp_path):
    tokenizer.save(tmp_path / "mine")
    loaded = fast.FastTokenizer.load(tmp_path / "mine")
    assert loaded.encode(chunks[5]) == tokenizer.encode(chunks[5])

    # The released tokenizer: byte-level BPE with the GPT-2 split regex, no horizon/dims in its config.
    from tokenizers import ByteLevelBPETokenizer, trainers

    released = ByteLevelBPETokenizer()
    coefficients = [fast.dct_coefficients(c, 10) for c in chunks]
    low = min(int(c.min()) for c in coefficients)
    texts = ["".join(chr(v - low) for v in c.reshape(-1)) for c in coefficients]
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=2, special_tokens=[], show_progress=False)
    released._tokenizer.train_from_iterator(texts, trainer=trainer)
    directory = tmp_path / "released"
    directory.mkdir()
    released._tokenizer.save(str(directory / fast.TOKENIZER_FILE))
    config = {
        "processor_class": "UniversalActionProcessor",
        "scale": 10,
        "vocab_size": 400,
        "min_token": low,
        "action_dim": None,
        "time_horizon": None,
    }
    (directory / fast.PROCESSOR_CONFIG).write_text(json.dumps(config))
    tok = fast.FastTokenizer.load(directory)
    ids = tok.encode(chunks[7])
    decoded = tok.decode(ids, time_horizon=HORIZON, action_dim=7)
    assert decoded.valid and np.abs(decoded.actions - chunks[7]).max() <= 0.05 * np.sqrt(HORIZON) + 1e-6
    with pytest.raises(ValueError, match="time_horizon"):
        tok.decode(ids)
    with pytest.raises(FileNotFoundError, match="processor_config"):
        fast.FastTokenizer.load(tmp_path)


def test_paligemma_vocabulary_mapping():
    ids = np.array([0, 1, 1023])
    text = fast.to_text_ids(ids, 257_152)
    np.testing.assert_array_equal(text, [257_152 - 1 - 128, 257_152 - 2 - 128, 257_152 - 1 - 128 - 1023])
    np.testing.assert_array_equal(fast.from_text_ids(text, 257_152), ids)


def test_fit_needs_consistent_chunks():
    with pytest.raises(ValueError, match="at least one"):
        fast.FastTokenizer.fit([])
    with pytest.raises(ValueError, match="differ in shape"):
        fast.FastTokenizer.fit([np.zeros((4, 2)), np.zeros((5, 2))], vocab_size=300)
    with pytest.raises(ValueError, match="byte alphabet"):
        fast.FastTokenizer.fit([np.zeros((4, 2))], vocab_size=100)
