import numpy as np
import pytest
from lerobot_layouts import write_cot

from policy import prompts
from policy.gemma import PALIGEMMA_VOCAB_SIZE
from policy.normalize import NormStats
from training.config import get_config
from training.lerobot import DatasetError, LeRobotDataset
from training.reasoning import ReasoningSampler, load_annotations
from training.samples import SampleMaker


def test_protocol_ids_and_rows(tokenizer_path):
    from policy.tokenizer import TextTokenizer

    tokenizer = TextTokenizer(tokenizer_path)
    special = prompts.reasoning_tokens(PALIGEMMA_VOCAB_SIZE)
    assert special == (257020, 257021, 257022)
    context = "Instruction: put the cup away"
    think = prompts.tokenize_reasoning_example(tokenizer, context, "grasp the cup", special, max_len=32)
    act = prompts.tokenize_reasoning_example(tokenizer, "grasp the cup", None, special, max_len=32)
    eop = int(np.flatnonzero(think.tokens == special.end_of_prefix)[0])
    assert think.tokens[0] == tokenizer.bos_id and think.tokens[eop + 1] == special.begin_reasoning
    n = int(think.mask.sum())
    assert think.tokens[n - 1] == tokenizer.eos_id and not think.acts
    assert think.ar_mask.tolist() == [0] * (eop + 1) + [1] * (n - eop - 1) + [0] * (32 - n)
    assert tokenizer.decode(think.tokens[think.loss_mask][1:]) == "grasp the cup"
    a_eop = int(np.flatnonzero(act.tokens == special.end_of_prefix)[0])
    assert act.acts and act.tokens[a_eop + 1] == special.begin_action and act.mask.sum() == a_eop + 2
    assert act.loss_mask.tolist() == act.ar_mask.astype(bool).tolist() == [i == a_eop + 1 for i in range(32)]


@pytest.fixture(scope="module")
def annotated(recorded_dataset, tmp_path_factory):
    ds = LeRobotDataset(recorded_dataset, 10)
    path = tmp_path_factory.mktemp("cot") / "cot_simple.json"
    return ds, write_cot(ds, path), path


def test_sampler_mixes_thinking_acting_and_outdated_context(annotated):
    _, document, path = annotated
    sampler = ReasoningSampler(load_annotations(path), think_prob=0.5, outdated_prob=0.5)
    segments = document["1"]["segments"]
    frame = segments[2]["start_step"] + 1
    rng = np.random.default_rng(0)
    choices = [sampler.choose(1, frame, rng) for _ in range(400)]
    current, previous = segments[2]["updated_content"], segments[1]["updated_content"]
    thinks = [c for c in choices if c.reasoning is not None]
    acts = [c for c in choices if c.reasoning is None]
    assert 150 < len(thinks) < 250 and all(c.reasoning == current for c in thinks)
    assert {c.context for c in thinks} >= {segments[2]["content"], segments[0]["updated_content"]}
    assert {c.context for c in acts} == {current, previous}
    first = sampler.choose(1, 0, np.random.default_rng(1))
    assert first.context in (segments[0]["content"], segments[0]["updated_content"])
    with pytest.raises(DatasetError, match="episode 7"):
        sampler.choose(7, 0, rng)


def test_reasoning_samples_switch_the_flow_per_sample(annotated, tokenizer_path):
    from policy.tokenizer import TextTokenizer

    ds, _, path = annotated
    config = get_config("pi05_reason_lora_tiny", [f"data.reasoning_json={path}"])
    stats = {k: NormStats(np.zeros(d), np.ones(d), -np.ones(d), np.ones(d)) for k, d in (("state", 8), ("actions", 7))}
    sampler = ReasoningSampler(load_annotations(path), 0.5, 0.0)
    maker = SampleMaker(config.model, config.data, TextTokenizer(tokenizer_path), stats, None, config.text_len, sampler)
    samples = [maker(ds.frame(5), np.random.default_rng(i)) for i in range(12)]
    special = prompts.reasoning_tokens(config.model.vocab_size)
    assert {bool(s["flow_mask"]) for s in samples} == {True, False}
    for s in samples:
        np.testing.assert_array_equal(s["actor_tokens"], s["text_tokens"])
        np.testing.assert_array_equal(s["actor_ar_mask"], s["text_ar_mask"])
        begins = s["text_tokens"][s["subtask_loss_mask"]][0]
        assert begins == (special.begin_action if s["flow_mask"] else special.begin_reasoning)
    with pytest.raises(DatasetError, match="do not exist"):
        load_annotations(path.parent / "missing.json")
