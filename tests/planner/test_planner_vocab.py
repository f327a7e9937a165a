"""Vocabulary masks and the token chooser, without the network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from planner.sampling import choose_token, nucleus_filter
from planner.vocab import all_mask, allowed_set_mask, printable_ascii_mask

MODEL_VOCAB = 512


def _decodes_to_printable_ascii(tokenizer, token_id: int) -> bool:
    text = tokenizer.decode([token_id])
    return bool(text) and text.isascii() and text.isprintable()


def test_ascii_mask_follows_the_piece_rules(cjk_tokenizer):
    mask = printable_ascii_mask(cjk_tokenizer, MODEL_VOCAB)
    pieces = cjk_tokenizer.pieces()
    ids = {piece: i for i, piece in enumerate(pieces)}
    assert mask.shape == (MODEL_VOCAB,) and mask.dtype == bool
    assert mask[cjk_tokenizer.eos_id]
    assert not mask[[0, cjk_tokenizer.bos_id, 3]].any(), "pad, BOS and <unk> must stay out"
    assert not mask[ids["\n"]]
    assert mask[ids["<0x41>"]] and mask[ids["<0x20>"]]
    assert not mask[[ids["<0x0A>"], ids["<0x7F>"], ids["<0xE4>"]]].any()
    assert mask[ids["\u2581the"]]
    assert not mask[[ids["红"], ids["🤖"]]].any()
    assert not mask[cjk_tokenizer.vocab_size :].any()


def test_every_piece_the_ascii_mask_allows_decodes_to_printable_ascii(cjk_tokenizer):
    mask = printable_ascii_mask(cjk_tokenizer, MODEL_VOCAB)
    for token_id in np.flatnonzero(mask):
        if token_id != cjk_tokenizer.eos_id:
            assert _decodes_to_printable_ascii(cjk_tokenizer, int(token_id)), cjk_tokenizer.pieces()[token_id]
    refused_ascii = [
        i
        for i in range(cjk_tokenizer.vocab_size)
        if not mask[i] and not cjk_tokenizer.is_control(i) and _decodes_to_printable_ascii(cjk_tokenizer, i)
    ]
    assert refused_ascii == []


def test_allowed_set_mask_allows_the_pieces_of_the_strings_and_ids_plus_eos(cjk_tokenizer):
    mask = allowed_set_mask(cjk_tokenizer, ["pick up", "the red cube", 7], MODEL_VOCAB)
    expected = {*cjk_tokenizer.encode("pick up"), *cjk_tokenizer.encode("the red cube"), 7, cjk_tokenizer.eos_id}
    assert set(np.flatnonzero(mask)) == expected
    with pytest.raises(ValueError, match="outside the tokenizer"):
        allowed_set_mask(cjk_tokenizer, [cjk_tokenizer.vocab_size], MODEL_VOCAB)
    with pytest.raises(TypeError):
        allowed_set_mask(cjk_tokenizer, [1.5], MODEL_VOCAB)


def test_all_mask_allows_exactly_the_decodable_ids(cjk_tokenizer):
    mask = all_mask(cjk_tokenizer, MODEL_VOCAB)
    assert mask[: cjk_tokenizer.vocab_size].all() and not mask[cjk_tokenizer.vocab_size :].any()


def test_a_tokenizer_larger_than_the_model_vocabulary_is_refused(cjk_tokenizer):
    with pytest.raises(ValueError, match="more than the model's vocabulary"):
        printable_ascii_mask(cjk_tokenizer, cjk_tokenizer.vocab_size - 1)


@jax.jit
def _choose_many(logits, allowed, seeds, temperature, top_p):
    def one(seed):
        return choose_token(logits, jax.random.key(seed), allowed=allowed, temperature=temperature, top_p=top_p)

    return jax.vmap(one)(seeds)


def test_chooser_never_picks_a_disallowed_id_even_when_it_dominates():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 64)).astype(np.float32)
    allowed = np.zeros(64, bool)
    allowed[[1, 5, 9, 40]] = True
    logits[:, ~allowed] += 50.0
    seeds = jnp.arange(200)
    greedy = np.asarray(_choose_many(logits, allowed, seeds, jnp.float32(0.0), jnp.float32(1.0)))
    hot = np.asarray(_choose_many(logits, allowed, seeds, jnp.float32(100.0), jnp.float32(1.0)))
    best_allowed = np.flatnonzero(allowed)[np.argmax(logits[:, allowed], axis=1)]
    assert (greedy == best_allowed[None]).all()
    assert allowed[hot].all()
    assert len(np.unique(hot)) == allowed.sum(), "a hot sampler should reach every allowed id"


def test_nucleus_keeps_the_smallest_set_holding_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.isfinite(np.asarray(nucleus_filter(logits, jnp.float32(0.7))))
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    only_top = np.isfinite(np.asarray(nucleus_filter(logits, jnp.float32(1e-6))))
    np.testing.assert_array_equal(only_top, [[True, False, False, False]])


def test_vocab_settings_resolve_to_masks_and_bad_ones_are_refused(cjk_tokenizer):
    from planner.decoder import DecodeRequestError, vocab_mask

    np.testing.assert_array_equal(vocab_mask(cjk_tokenizer, "all", MODEL_VOCAB), all_mask(cjk_tokenizer, MODEL_VOCAB))
    assert vocab_mask(cjk_tokenizer, ["grasp"], MODEL_VOCAB).sum() == len(set(cjk_tokenizer.encode("grasp"))) + 1
    too_wide = np.ones(MODEL_VOCAB, bool)
    for bad, message in [
        ("emoji", "vocab must be one of"),
        (np.ones(MODEL_VOCAB - 1, bool), "vocab mask has shape"),
        (too_wide, "past the tokenizer"),
        (np.zeros(MODEL_VOCAB, bool), "no token at all"),
    ]:
        with pytest.raises(DecodeRequestError, match=message):
            vocab_mask(cjk_tokenizer, bad, MODEL_VOCAB)


def test_a_tiny_temperature_samples_like_greedy_without_nans():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 32)).astype(np.float32) * 30)
    allowed = jnp.ones(32, bool)
    picked = np.asarray(_choose_many(logits, allowed, jnp.arange(5), jnp.float32(1e-30), jnp.float32(0.9)))
    assert (picked == np.argmax(np.asarray(logits), axis=1)[None]).all()
