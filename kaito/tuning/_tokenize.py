"""Conversations to token ids and labels, through the model's own chat template.

Each conversation is rendered with the tokenizer's chat template (the same template the
inference server applies to requests, so the adapter learns the format it will be asked in)
and tokenized once, with character offsets.

Labels: with `assistant_only_loss` (the default) only the assistant's turns are learned; every
other token gets the label -100, which the loss ignores. The assistant's characters are found
by rendering the conversation up to each assistant turn twice: with the generation prompt (where
the turn starts) and with the turn (where it ends, its end-of-turn marker included, so that the
model learns to stop). This needs a template whose rendering of a prefix is a prefix of the
whole; for a row where that does not hold, all tokens are learned and the count is logged.

Rows longer than the token limit (`DatasetConfig.max_seq_length`, default the model's context)
are left out rather than cut, since a cut answer teaches the model to stop mid-sentence; when no
row is left the run stops with the shortest length found. No torch here: ids are lists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs

from kaito.tuning._data import Conversation
from kaito.tuning._errors import DataError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@attrs.frozen
class Example:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@attrs.frozen
class TokenizedData:
    examples: tuple[Example, ...]
    too_long: int
    """Rows left out for being longer than the limit."""
    template_errors: int
    """Rows the chat template refused (e.g. a system message where the model has none), or
    where it left no assistant token to learn."""
    unmasked: int
    """Rows learned whole because the template does not render prefixes as prefixes."""

    @property
    def tokens(self) -> int:
        return sum(len(e) for e in self.examples)


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    if not isinstance(text, str):
        raise TypeError("the chat template did not render text")
    return text


def _assistant_spans(tokenizer: Any, messages: list[dict[str, str]], full: str) -> list[range]:
    """Character ranges of the assistant turns in `full`; empty if the template is not
    prefix-stable."""
    spans: list[range] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start_text = _render(tokenizer, messages[:index], generation_prompt=True)
        end_text = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not (full.startswith(start_text) and full.startswith(end_text)):
            return []
        if len(end_text) > len(start_text):
            spans.append(range(len(start_text), len(end_text)))
    return spans


def _labels(ids: Sequence[int], offsets: Sequence[Sequence[int]], spans: list[range]) -> list[int]:
    labels: list[int] = []
    for token, (start, end) in zip(ids, offsets, strict=True):
        inside = any(start in span or (start == end and start - 1 in span) for span in spans)
        labels.append(token if inside else IGNORE_INDEX)
    return labels


def tokenize_conversations(
    conversations: Sequence[Conversation],
    tokenizer: Any,
    *,
    max_length: int,
    assistant_only_loss: bool = True,
) -> TokenizedData:
    """Token ids and labels for every conversation that renders and fits (see the module doc).
    Raises `DataError` when the tokenizer has no chat template or no row fits."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("the model's tokenizer has no chat template; set ModelConfig.chat_template")
    examples: list[Example] = []
    too_long = template_errors = unmasked = 0
    shortest: int | None = None
    first_error = ""
    for conversation in conversations:
        messages = conversation.as_dicts()
        try:
            full = _render(tokenizer, messages, generation_prompt=False)
            spans = _assistant_spans(tokenizer, messages, full) if assistant_only_loss else []
        except Exception as exc:  # jinja raises its own errors for what a template refuses
            template_errors += 1
            first_error = first_error or f"{conversation.source}: {exc}"
            continue
        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(encoded["input_ids"])
        if len(ids) > max_length:
            too_long += 1
            shortest = len(ids) if shortest is None else min(shortest, len(ids))
            continue
        if assistant_only_loss and not spans:
            unmasked += 1
            labels = list(ids)
        elif assistant_only_loss:
            labels = _labels(ids, encoded["offset_mapping"], spans)
        else:
            labels = list(ids)
        if all(label == IGNORE_INDEX for label in labels):
            template_errors += 1  # nothing to learn; a batch of only these has no loss
            first_error = first_error or f"{conversation.source}: no assistant tokens"
            continue
        examples.append(Example(ids, labels))
    if template_errors:
        log.warning("the chat template refused %d rows; e.g. %s", template_errors, first_error)
    if unmasked:
        log.warning(
            "%d rows are learned whole: the chat template does not render them turn by turn",
            unmasked,
        )
    if too_long:
        log.warning("left out %d rows longer than %d tokens", too_long, max_length)
    if not examples:
        if too_long:
            raise DataError(
                f"no row fits the context: all {too_long} rows are longer than {max_length} "
                f"tokens (the shortest has {shortest}); raise DatasetConfig.max_seq_length or "
                "use shorter rows"
            )
        raise DataError(f"the chat template refused every row; e.g. {first_error}")
    return TokenizedData(tuple(examples), too_long, template_errors, unmasked)
