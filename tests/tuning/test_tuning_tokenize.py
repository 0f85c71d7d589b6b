"""Rendering rows with the tiny phi-3's chat template: assistant-only labels and the fit."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.tuning import Conversation, DataError, Message
from kaito.tuning._tokenize import IGNORE_INDEX, tokenize_conversations


def conversation(*turns: tuple[str, str]) -> Conversation:
    return Conversation(tuple(Message(role, text) for role, text in turns), "test row 0")


CHAT = conversation(
    ("system", "Be brief."),
    ("user", "What is two plus two?"),
    ("assistant", "Four."),
    ("user", "And three plus three?"),
    ("assistant", "Six."),
)


def learned(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    text: str = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    return text


def test_only_the_assistant_turns_and_their_end_markers_are_learned(phi3_tokenizer: Any) -> None:
    data = tokenize_conversations([CHAT], phi3_tokenizer, max_length=4096)
    example = data.examples[0]
    assert learned(phi3_tokenizer, example.input_ids, example.labels) == (
        "Four.<|end|>\nSix.<|end|>\n"
    )
    rendered = phi3_tokenizer.decode(example.input_ids)
    assert rendered.startswith("<|system|>\nBe brief.<|end|>\n<|user|>\n")
    assert (data.too_long, data.template_errors, data.unmasked) == (0, 0, 0)


def test_without_assistant_only_loss_every_token_is_learned(phi3_tokenizer: Any) -> None:
    data = tokenize_conversations(
        [CHAT], phi3_tokenizer, max_length=4096, assistant_only_loss=False
    )
    assert data.examples[0].labels == data.examples[0].input_ids
    assert IGNORE_INDEX not in data.examples[0].labels


def test_rows_longer_than_the_limit_are_left_out(phi3_tokenizer: Any) -> None:
    short = conversation(("user", "Hi"), ("assistant", "Hello"))
    data = tokenize_conversations([CHAT, short], phi3_tokenizer, max_length=16)
    assert len(data.examples) == 1
    assert data.too_long == 1


def test_no_row_fitting_the_context_is_an_error_with_the_shortest_length(
    phi3_tokenizer: Any,
) -> None:
    with pytest.raises(DataError, match=r"no row fits the context: all 1 rows are longer than 8"):
        tokenize_conversations([CHAT], phi3_tokenizer, max_length=8)


def test_a_tokenizer_without_a_chat_template_is_an_error(phi3_tokenizer: Any) -> None:
    class NoTemplate:
        chat_template = None

    with pytest.raises(DataError, match=r"no chat template; set ModelConfig\.chat_template"):
        tokenize_conversations([CHAT], NoTemplate(), max_length=100)


def test_rows_the_template_refuses_are_counted(phi3_tokenizer: Any) -> None:
    class Strict:
        chat_template = "strict"

        def apply_chat_template(self, messages: Any, **_: Any) -> str:
            raise ValueError("system messages are not supported")

    with pytest.raises(DataError, match=r"refused every row; e\.g\. test row 0: system messages"):
        tokenize_conversations([CHAT], Strict(), max_length=100)
