"""Turning generated token ids into text, one token at a time, with stop sequences.

Two things make this harder than `decode(ids)` at the end:

- A token is not always a whole piece of text. Byte-level BPE splits a multi-byte character
  over tokens (the first decodes to U+FFFD), and SentencePiece drops a word's leading space when
  the word is decoded alone. So each step decodes a short window that starts a few tokens back
  and keeps only what the newest tokens added, and holds the text back while it ends in an
  incomplete character.
- A stop sequence may arrive split over tokens. The text that could still turn into a stop
  sequence ("Obs" while waiting to see whether "Observation:" follows) is held back from a
  stream; once a stop sequence appears, the text ends right before it.

`TextStream` is pure Python around a `decode(ids) -> str` function, so it runs in the worker
thread with the worker's own tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]
_PROMPT_CONTEXT = 5
"""Prompt tokens in front of the first window, so that the first word keeps its space."""


class TextStream:
    """The text of one generation as its tokens arrive."""

    def __init__(self, decode: Decode, prompt_ids: Sequence[int], stop: Sequence[str]) -> None:
        self._decode = decode
        self._ids: list[int] = list(prompt_ids[-_PROMPT_CONTEXT:])
        self._prefix = 0
        self._read = len(self._ids)
        self._stop = tuple(s for s in stop if s)
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self.text = ""
        """The generated text so far: complete characters, cut before a stop sequence."""
        self.stopped = False
        """A stop sequence appeared; `text` ends right before it."""
        self._sent = 0

    def push(self, token_id: int) -> None:
        """Add one generated token (one that is part of the output, not a stop token)."""
        if self.stopped:
            return
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._append(after[len(before) :])
            self._prefix, self._read = self._read, len(self._ids)

    def finish(self) -> None:
        """No more tokens come: keep whatever is pending, even an incomplete character."""
        if self.stopped or self._read == len(self._ids):
            return
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._append(after[len(before) :])
        self._prefix = self._read = len(self._ids)

    def _append(self, piece: str) -> None:
        start = max(0, len(self.text) - self._longest_stop + 1)
        self.text += piece
        if not self._stop:
            return
        found = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.stopped = True

    def take(self, final: bool = False) -> str:
        """The text not handed out yet; unless `final`, without a tail that may begin a stop
        sequence."""
        end = len(self.text)
        if not final and not self.stopped:
            end -= self._pending_stop_prefix()
        if end <= self._sent:
            return ""
        piece = self.text[self._sent : end]
        self._sent = end
        return piece

    def _pending_stop_prefix(self) -> int:
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
