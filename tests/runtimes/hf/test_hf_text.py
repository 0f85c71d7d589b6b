"""Incremental detokenization and stop sequences (`TextStream`), with a toy byte tokenizer whose
tokens can split a UTF-8 character, and one that drops a leading space like SentencePiece."""

from __future__ import annotations

from collections.abc import Sequence

from kaito.runtimes.hf._text import TextStream


def byte_decode(ids: Sequence[int]) -> str:
    """Token id = one byte; incomplete characters decode to U+FFFD, as byte-level BPE does."""
    return bytes(ids).decode("utf-8", errors="replace")


def tokens(text: str) -> list[int]:
    return list(text.encode())


def run(text: str, stop: Sequence[str] = (), prompt: str = "") -> tuple[list[str], TextStream]:
    stream = TextStream(byte_decode, tokens(prompt), stop)
    pieces = []
    for token in tokens(text):
        stream.push(token)
        pieces.append(stream.take())
        if stream.stopped:
            break
    stream.finish()
    pieces.append(stream.take(final=True))
    return pieces, stream


def test_split_characters_are_held_back_until_complete() -> None:
    pieces, stream = run("a東b")
    assert "\ufffd" not in "".join(pieces)
    assert [p for p in pieces if p] == ["a", "東", "b"]
    assert stream.text == "a東b"


def test_an_incomplete_character_at_the_end_is_kept() -> None:
    stream = TextStream(byte_decode, [], ())
    for token in tokens("ok") + tokens("東")[:2]:
        stream.push(token)
    assert stream.take() == "ok"
    stream.finish()
    assert stream.take(final=True) == "\ufffd"


def test_a_stop_sequence_cuts_the_text_before_it() -> None:
    pieces, stream = run("Answer: Paris.\nQuestion: next", stop=["\nQuestion:"])
    assert stream.stopped
    assert stream.text == "Answer: Paris."
    assert "".join(pieces) == "Answer: Paris."


def test_text_that_may_start_a_stop_sequence_is_held_back() -> None:
    stream = TextStream(byte_decode, [], ["STOP"])
    for token in tokens("go ST"):
        stream.push(token)
    assert stream.take() == "go "  # "ST" might become "STOP"
    for token in tokens("AR"):
        stream.push(token)
    assert stream.take() == "STAR"  # it did not
    assert not stream.stopped


def test_the_earliest_of_several_stop_sequences_wins() -> None:
    _, stream = run("one two three", stop=["three", "two"])
    assert stream.text == "one "


def test_a_dropped_leading_space_is_recovered_from_the_prompt() -> None:
    vocab = {1: "▁Hello", 2: "▁world", 3: "!"}

    def sentencepiece_decode(ids: Sequence[int]) -> str:
        return "".join(vocab[i] for i in ids).replace("▁", " ").removeprefix(" ")

    stream = TextStream(sentencepiece_decode, [1], ())
    stream.push(2)
    stream.push(3)
    assert stream.take() == " world!"
