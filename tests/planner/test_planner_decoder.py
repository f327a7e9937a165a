"""SubtaskDecoder on a tiny random pi0.5: masking, EOS, batching, compile reuse, sampling, input checks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from planner.decoder import DecodeRequestError, compiled_executables
from planner.reference import full_recompute_generate
from planner.sampling import choose_token
from policy.batching import Row, build_input
from policy.normalize import NormStats
from policy.prompts import tokenize_planner

EMBEDDING = "PaliGemma/llm/embedder/input_embedding"
# Logits are tied to the input embedding, so a row copied from the winner's row and scaled up a little
# outscores the winner where it won, and (being only a little larger) almost nowhere else.
OUTSCORE = 1.05


def _with_embedding_row(params: dict, target: int, copied_from: int, scale: float) -> dict:
    table = params[EMBEDDING].copy()
    table[target] = scale * table[copied_from]
    return {**params, EMBEDDING: table}


def _disallowed_piece_id(mask: np.ndarray, tokenizer, piece: str) -> int:
    token_id = tokenizer.pieces().index(piece)
    assert not mask[token_id]
    return token_id


def test_the_mask_holds_even_when_the_model_prefers_a_disallowed_token(
    make_decoder, make_planner_model, planner_params, planner_model, cjk_tokenizer, requests
):
    request = requests[:1]
    plain = make_decoder(planner_model, vocab="all").decode(request)[0]
    winner = plain.token_ids[0]
    assert winner != cjk_tokenizer.eos_id
    ascii_mask = make_decoder(planner_model).allowed_mask
    red = _disallowed_piece_id(ascii_mask, cjk_tokenizer, "红")
    biased = make_planner_model(_with_embedding_row(planner_params, red, winner, OUTSCORE))

    unmasked = make_decoder(biased, vocab="all").decode(request)[0]
    masked = make_decoder(biased, vocab="ascii").decode(request)[0]

    assert unmasked.token_ids[0] == red and "红" in unmasked.text
    assert all(ascii_mask[t] for t in masked.token_ids)
    assert masked.text.isascii() and masked.text.isprintable()


def test_eos_stops_one_row_while_the_others_continue(
    make_decoder, make_planner_model, planner_params, cjk_tokenizer, requests
):
    rows = requests[:2]
    plain = make_decoder(make_planner_model(planner_params), vocab="all").decode(rows)
    first, second = plain[0].token_ids, plain[1].token_ids
    assert not plain[0].finished and not plain[1].finished
    stop_at = next(k for k in range(1, len(first)) if first[k] not in second and first[k] not in first[:k])
    eos = cjk_tokenizer.eos_id
    biased = make_planner_model(_with_embedding_row(planner_params, eos, first[stop_at], OUTSCORE))

    stopped, running = make_decoder(biased, vocab="all").decode(rows)

    assert stopped.finished and stopped.token_ids == (*first[:stop_at], eos)
    assert stopped.text == cjk_tokenizer.decode(first[:stop_at]).strip()
    assert not running.finished and running.token_ids == second


def test_batched_rows_give_the_same_text_as_each_row_alone(ascii_decoder, requests):
    assert len(requests) > max(ascii_decoder.buckets), "also covers splitting past the largest bucket"
    together = ascii_decoder.decode(requests)
    alone = [ascii_decoder.decode([request])[0] for request in requests]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [r.text for r in together] == [r.text for r in alone]
    assert len({r.token_ids for r in together}) > 1, "distinct inputs should decode differently"


def test_cached_decoding_matches_recomputing_the_full_sequence(
    ascii_decoder, planner_model, planner_config, cjk_tokenizer, requests
):
    request = requests[0]
    assert len(request.cameras) < len(planner_config.image_keys), "an absent camera must not shift positions"
    steps = len(ascii_decoder.decode([request])[0].token_ids)
    prompt = tokenize_planner(cjk_tokenizer, request.task, max_len=planner_config.max_token_len)
    obs = build_input(planner_config, [Row(dict(request.cameras), prompt)])
    allowed = jnp.asarray(ascii_decoder.allowed_mask)
    graphdef, state = nnx.split(planner_model)

    @jax.jit
    def reference(state, obs):
        def greedy(logits, rng):
            return choose_token(logits, rng, allowed=allowed, temperature=jnp.float32(0), top_p=jnp.float32(1))

        return full_recompute_generate(nnx.merge(graphdef, state), obs, steps, greedy)

    expected = tuple(int(t) for t in np.asarray(reference(state, obs))[0])
    assert ascii_decoder.decode([request])[0].token_ids == expected


def test_a_second_call_in_the_same_bucket_compiles_nothing(ascii_decoder, requests):
    ascii_decoder.decode(requests[:1])
    before, own_before = compiled_executables(), ascii_decoder.compile_count
    ascii_decoder.decode(requests[1:2], temperature=0.7, top_p=0.9, seed=3)
    ascii_decoder.decode(requests[2:3], max_new_tokens=ascii_decoder.max_new_tokens)
    assert (compiled_executables(), ascii_decoder.compile_count) == (before, own_before)


def test_sampling_is_reproducible_per_seed_and_varies_across_seeds(ascii_decoder, requests):
    def sample(seed: int) -> list[tuple[int, ...]]:
        return [r.token_ids for r in ascii_decoder.decode(requests[:2], temperature=5.0, top_p=0.95, seed=seed)]

    assert sample(0) == sample(0)
    assert len({tuple(sample(seed)) for seed in range(4)}) > 1
    greedy = [r.token_ids for r in ascii_decoder.decode(requests[:2])]
    assert [r.token_ids for r in ascii_decoder.decode(requests[:2], seed=9)] == greedy


def test_results_report_timings_and_finished_rows(ascii_decoder, cjk_tokenizer, requests):
    for result in ascii_decoder.decode(requests[:2]):
        assert result.prefill_ms > 0 and result.decode_ms > 0
        assert len(result.token_ids) <= ascii_decoder.max_new_tokens
        assert result.finished == (result.token_ids[-1] == cjk_tokenizer.eos_id)


def test_state_goes_into_the_prompt_when_configured(make_decoder, planner_model, requests):
    stats = {"state": NormStats(np.zeros(8), np.ones(8), -np.ones(8), np.ones(8))}
    decoder = make_decoder(planner_model, norm_stats=stats, use_state=True)
    with_state = [dataclasses.replace(r, state=np.linspace(-1, 1, 8)) for r in requests[:1]]
    assert len(decoder.decode(with_state)) == 1
    with pytest.raises(DecodeRequestError, match=r"requests\[0\]\.state: is missing"):
        decoder.decode(requests[:1])
    with pytest.raises(DecodeRequestError, match="norm stats"):
        make_decoder(planner_model, use_state=True)


def test_checkpoints_trained_with_discrete_state_get_the_state_by_default(
    planner_model, planner_config, cjk_tokenizer, requests
):
    from planner.decoder import SubtaskDecoder

    stats = {"state": NormStats(np.zeros(8), np.ones(8), -np.ones(8), np.ones(8))}
    cfg = planner_config.replace(discrete_state_input=True)
    decoder = SubtaskDecoder(planner_model, cjk_tokenizer, cfg, max_new_tokens=4, buckets=(1,), norm_stats=stats)
    with pytest.raises(DecodeRequestError, match=r"requests\[0\]\.state: is missing"):
        decoder.decode(requests[:1])
    plain = SubtaskDecoder(planner_model, cjk_tokenizer, cfg, max_new_tokens=4, buckets=(1,), use_state=False)
    assert len(plain.decode(requests[:1])) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "  "}, r"requests\[0\]\.task: is empty"),
        ({"cameras": {}}, r"requests\[0\]\.cameras: is empty"),
        ({"cameras": {"top_cam": np.zeros((8, 8, 3), np.uint8)}}, r"cameras\['top_cam'\]: unknown camera"),
        ({"cameras": {"base_0_rgb": np.zeros((8, 8, 3), np.float32)}}, r"cameras\['base_0_rgb'\]: must be a uint8"),
        ({"cameras": {"base_0_rgb": np.zeros((8, 8), np.uint8)}}, r"uint8 \[H, W, 3\] RGB image, got uint8 \[8, 8\]"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(ascii_decoder, requests, change, message):
    with pytest.raises(DecodeRequestError, match=message):
        ascii_decoder.decode([dataclasses.replace(requests[0], **change)])


@pytest.mark.parametrize(
    ("options", "message"),
    [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens")],
)
def test_bad_decode_settings_are_refused(ascii_decoder, requests, options, message):
    with pytest.raises(DecodeRequestError, match=message):
        ascii_decoder.decode(requests[:1], **options)


def test_plan_request_must_be_a_request(ascii_decoder):
    with pytest.raises(DecodeRequestError, match=r"requests\[0\] must be a DecodeRequest"):
        ascii_decoder.decode([{"task": "x"}])  # type: ignore[list-item]
