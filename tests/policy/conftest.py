"""Shared fixtures for policy tests: one tiny SentencePiece model per test session."""

from pathlib import Path

import pytest

from policy.tokenizer import TextTokenizer, train_tokenizer


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tiny.model")


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path: Path) -> TextTokenizer:
    return TextTokenizer(tokenizer_path)
