"""Shared by the actor suites: one tiny sampler (so buckets compile once per session) and a tiny tokenizer."""

from __future__ import annotations

import pytest

ACTOR_BUCKETS = (1, 2, 4)


@pytest.fixture(scope="session")
def tiny_sampler(tiny_model, tiny_config):
    from actor.sampler import FlowSampler

    return FlowSampler(tiny_model, tiny_config, buckets=ACTOR_BUCKETS)


@pytest.fixture(scope="session")
def actor_tokenizer(tmp_path_factory, tiny_config):
    from policy.tokenizer import TextTokenizer, train_tokenizer

    path = train_tokenizer(tmp_path_factory.mktemp("actor_tokenizer") / "tiny.model", vocab_size=tiny_config.vocab_size)
    return TextTokenizer(path)
