"""ReasoningPlanner on a tiny random pi0.5: the think/act choice is the one a full pass over the prompt gives,
the reasoning is the greedy continuation of the think row, and bad requests are refused by field. The planner
service's sessions think from their latest reasoning, renew it on think and keep it on act."""

from __future__ import annotations

import asyncio
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from planner.decoder import DecodeRequest, DecodeRequestError, vocab_mask
from planner.reasoning import (
    ReasoningPlanner,
    ReasoningRequest,
    ReasoningSessions,
    SessionReasoning,
)
from planner.reference import full_recompute_generate
from planner.sampling import choose_token
from planner.service import PlannerService
from policy import masks
from policy.batching import Row, build_input
from policy.prompts import (
    TokenizedPrompt,
    pad_tokens,
    reasoning_first_context,
    reasoning_prefix_ids,
    tokenize_reasoning_prompt,
)
from protos.robot_runtime.v1 import runtime_pb2 as pb
from protos.wire import numpy_to_image

EMBEDDING = "PaliGemma/llm/embedder/input_embedding"
# Below the protocol's ids of the tiny 512-token vocabulary (380, 381, 382), as training requires.
TOKENIZER_PIECES = 360
MAX_NEW_TOKENS = 6
CONTEXTS = (
    "Instruction: put the red cube in the bowl",
    "Next I pick up the red cube",
    "Instruction: open the drawer",
    "Next I move to the bowl",
    "Next I open the gripper",
)


@pytest.fixture(scope="module")
def reasoning_tokenizer(tmp_path_factory):
    from policy.tokenizer import TextTokenizer, train_tokenizer

    path = tmp_path_factory.mktemp("reasoning_tokenizer") / "tiny.model"
    return TextTokenizer(train_tokenizer(path, vocab_size=TOKENIZER_PIECES, extra_text=CONTEXTS))


@pytest.fixture(scope="module")
def make_reasoner(planner_config, reasoning_tokenizer):
    def make(model):
        return ReasoningPlanner(model, reasoning_tokenizer, planner_config, max_new_tokens=MAX_NEW_TOKENS)

    return make


@pytest.fixture(scope="module")
def reasoner(make_reasoner, planner_model):
    return make_reasoner(planner_model)


@pytest.fixture(scope="module")
def swapped_model(make_planner_model, planner_params, reasoner):
    """`<bor>` and `<boa>` trade embedding rows: it thinks wherever the tiny network acts (see the first test)."""
    return make_planner_model(_swapped_begin_rows(planner_params, reasoner.special))


@pytest.fixture(scope="module")
def swapped_reasoner(make_reasoner, swapped_model):
    return make_reasoner(swapped_model)


@pytest.fixture(scope="module")
def reasoning_requests(camera_images):
    return [ReasoningRequest(images, context) for images, context in zip(camera_images, CONTEXTS, strict=True)]


def _full_pass_begin_logits(model, cfg, tokenizer, special, request) -> np.ndarray:
    """logits of (`<bor>`, `<boa>`) at `<eop>` from one uncached pass over images + `<bos>{context}<eop>`."""
    prefix = pad_tokens(reasoning_prefix_ids(tokenizer, request.context, special), cfg.max_token_len)
    obs = build_input(cfg, [Row(dict(request.cameras), prefix)])
    hidden, _, input_mask = model.fill_prefix(obs)
    logits = model.logits(hidden[0, masks.last_valid_index(input_mask)[0]])
    return np.asarray(logits, np.float32)[[special.begin_reasoning, special.begin_action]]


def _swapped_begin_rows(params: dict, special) -> dict:
    table = params[EMBEDDING].copy()
    table[[special.begin_reasoning, special.begin_action]] = table[[special.begin_action, special.begin_reasoning]]
    return {**params, EMBEDDING: table}


def test_the_choice_is_the_argmax_of_the_two_begin_tokens_after_eop(
    reasoner,
    swapped_reasoner,
    planner_model,
    swapped_model,
    planner_config,
    reasoning_tokenizer,
    reasoning_requests,
):
    # Logits are tied to the input embedding: swapping the two rows swaps their logits (the prefix never reads
    # either token), so every request is checked once thinking and once acting.
    special = reasoner.special
    for model, planner in ((planner_model, reasoner), (swapped_model, swapped_reasoner)):
        for request in reasoning_requests:
            step = planner.plan(request)
            bor, boa = _full_pass_begin_logits(model, planner_config, reasoning_tokenizer, special, request)
            assert step.decision == ("think", "act")[int(np.argmax([bor, boa]))]
            np.testing.assert_allclose(step.margin, bor - boa, atol=1e-4)
    margins = [reasoner.plan(r).margin for r in reasoning_requests]
    swapped_margins = [swapped_reasoner.plan(r).margin for r in reasoning_requests]
    np.testing.assert_allclose(swapped_margins, np.negative(margins), atol=1e-4)


def test_thinking_decodes_the_greedy_continuation_of_the_think_row(
    reasoner, planner_model, planner_config, reasoning_tokenizer, reasoning_requests
):
    special = reasoner.special
    allowed = vocab_mask(reasoning_tokenizer, "ascii", planner_config.vocab_size)
    graphdef, state = nnx.split(planner_model)

    @jax.jit
    def reference(state, obs):
        def greedy(logits, rng):
            return choose_token(logits, rng, allowed=allowed, temperature=jnp.float32(0), top_p=jnp.float32(1))

        return full_recompute_generate(nnx.merge(graphdef, state), obs, MAX_NEW_TOKENS, greedy)

    decoded = 0
    for request in reasoning_requests[:3]:
        step = reasoner.plan(request, force="think")
        assert step.decision == "think" and step.decode_ms > 0 and step.prefill_ms > 0
        prompt = tokenize_reasoning_prompt(
            reasoning_tokenizer, request.context, special.begin_reasoning, special, max_len=planner_config.max_token_len
        )
        row = Row(dict(request.cameras), TokenizedPrompt(prompt.tokens, prompt.mask), ar_mask=prompt.ar_mask)
        expected = [int(t) for t in np.asarray(reference(state, build_input(planner_config, [row])))[0]]
        if reasoning_tokenizer.eos_id in expected:
            expected = expected[: expected.index(reasoning_tokenizer.eos_id) + 1]
        assert step.token_ids == tuple(expected)
        assert step.finished == (expected[-1] == reasoning_tokenizer.eos_id)
        assert step.text == reasoning_tokenizer.decode(step.token_ids).strip()
        assert not set(step.token_ids) & set(special)
        decoded += len(step.token_ids) > 1
    assert decoded, "the tiny network should write more than EOS for some context"


def test_acting_decodes_nothing_and_hands_the_context_to_the_actor(reasoner, reasoning_requests):
    step = reasoner.plan(reasoning_requests[1], force="act")
    assert (step.decision, step.text, step.token_ids, step.decode_ms) == ("act", reasoning_requests[1].context, (), 0)
    assert step.prefill_ms > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"context": "  "}, r"request\.context: is empty"),
        ({"context": "pick up the cube " * 20}, r"request\.context: is too long: the reasoning row has \d+ tokens"),
        ({"cameras": {}}, r"request\.cameras: is empty"),
        ({"cameras": {"top_cam": np.zeros((8, 8, 3), np.uint8)}}, r"request\.cameras\['top_cam'\]: unknown camera"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(reasoner, reasoning_requests, change, message):
    with pytest.raises(DecodeRequestError, match=message):
        reasoner.plan(dataclasses.replace(reasoning_requests[0], **change))


def test_bad_settings_are_refused(reasoner, reasoning_requests):
    with pytest.raises(DecodeRequestError, match="force must be one of"):
        reasoner.plan(reasoning_requests[0], force="wait")  # type: ignore[arg-type]
    with pytest.raises(DecodeRequestError, match="temperature"):
        reasoner.plan(reasoning_requests[0], temperature=-1.0)


SESSION_TASK = "put the red cube in the bowl"


def _plan_proto(step: int, cameras: dict[str, np.ndarray], task: str = SESSION_TASK) -> pb.PlanRequest:
    images = {key: numpy_to_image(image) for key, image in cameras.items()}
    return pb.PlanRequest(session_id="arm", observation_step=step, images=images, task=task)


def test_a_session_thinks_into_a_new_reasoning_and_acts_on_the_one_it_has(reasoner, swapped_reasoner, camera_images):
    # The two planners choose opposite ways on the first context, so both branches run.
    renewed = kept = 0
    for planner in (reasoner, swapped_reasoner):
        sessions = ReasoningSessions(planner)
        service = PlannerService(sessions)
        before = SessionReasoning(SESSION_TASK, reasoning_first_context(SESSION_TASK), 0, 0)
        for step, cameras in enumerate(camera_images[:4], start=1):
            expected = planner.plan(ReasoningRequest(cameras, before.text))
            reply = asyncio.run(service.plan(_plan_proto(step, cameras)))
            after = sessions.get("arm")
            if expected.decision == "think" and expected.text:
                assert after == SessionReasoning(SESSION_TASK, expected.text, before.version + 1, step)
                assert (reply.subtask, tuple(reply.tokens)) == (expected.text, expected.token_ids)
                renewed += 1
            else:
                assert after == dataclasses.replace(before, step=step)
                assert reply.subtask == ""
                kept += 1
            before = after
    assert renewed and kept


def test_a_new_task_or_a_step_that_does_not_increase_starts_the_session_over(reasoner, swapped_reasoner, camera_images):
    cameras = camera_images[0]
    first = ReasoningRequest(cameras, reasoning_first_context(SESSION_TASK))
    thinker = next(p for p in (reasoner, swapped_reasoner) if p.plan(first).decision == "think")
    sessions = ReasoningSessions(thinker)
    request = DecodeRequest(cameras, SESSION_TASK)
    _, thought = sessions.plan("arm", 5, request)
    assert thought.version == 1 and thought.text
    assert sessions.plan("arm", 5, request)[1] == thought
    _, other = sessions.plan("arm", 6, DecodeRequest(cameras, "Instruction: open the drawer"))
    assert other.task == "Instruction: open the drawer" and other.version <= 1 and other.step == 6

    one = ReasoningSessions(thinker, max_sessions=1)
    one.plan("a", 1, request)
    one.plan("b", 1, request)
    assert one.get("a") is None and one.get("b") is not None
