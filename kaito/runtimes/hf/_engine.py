"""The generation engine: one worker thread, one running batch, continuous batching.

Requests do not wait for each other. The worker keeps a *running batch*: every row is a request
in the middle of generating, and one decode step produces one token for every row at once. Between
two steps, requests join and leave:

- Joining: waiting requests are prefilled together (left-padded to a common length, the
  attention mask marking the padding) and their key/value cache is merged into the running one
  by left-padding whichever is shorter, so every row's newest token sits in the last column.
  Each row's position ids come from its own token count, not from the column, so padding never
  shifts a row's positions.
- Leaving: a row that finished (a stop token, a stop sequence, its token budget) or whose client
  went away is cut out of the cache, and columns that are padding for every remaining row are
  trimmed from the left.

Each row keeps its own sampling parameters (temperature, top-k, top-p, penalties, seed) and stop
conditions; greedy rows take the argmax of the same batched logits.

Only the worker thread touches the model. The event loop hands requests over through a locked
queue (`submit`) and gets text back through `loop.call_soon_threadsafe`, one call per step for
all rows, so `/health` and `/metrics` answer while the model computes. A full queue refuses
new requests (`QueueFull`, answered 429) instead of letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from kaito.runtimes.hf._metrics import ServerMetrics
from kaito.runtimes.hf._model import LoadedModel
from kaito.runtimes.hf._text import TextStream

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled"]
MAX_PREFILL_TOKENS = 8192
"""Most (padded) prompt tokens prefilled in one forward pass; more are split into groups."""


class QueueFull(Exception):
    """The engine holds as many requests as it may; try again later."""


class EngineClosed(Exception):
    """The engine has stopped and takes no more requests."""


@attrs.frozen(kw_only=True)
class SamplingParams:
    """How one request picks its tokens and when it stops. Temperature 0 means greedy."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 (or less) keeps every token."""
    repetition_penalty: float = 1.0
    """transformers' multiplicative penalty over prompt and output tokens (1 is off)."""
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_new_tokens: int = 0
    logit_bias: tuple[tuple[int, float], ...] = ()
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] | None = None
    """Tokens that end the generation; None means the model's end-of-sequence tokens."""
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def adjusts_logits(self) -> bool:
        return bool(
            self.repetition_penalty != 1.0
            or self.presence_penalty
            or self.frequency_penalty
            or self.min_new_tokens
            or self.logit_bias
        )


@attrs.frozen
class Delta:
    """One more token of a request, and the text it completed (empty while a character or a
    possible stop sequence is pending)."""

    text: str


@attrs.frozen
class Finished:
    """The request is done; `text` is the last piece of text."""

    text: str
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@attrs.frozen
class Failed:
    """The engine could not finish the request: a fault inside the server, or (`shutting_down`)
    the server stopping before it got to it. Never the client's mistake."""

    message: str
    shutting_down: bool = False


Event = Delta | Finished | Failed
Sink = Callable[[Event], None]


class Ticket:
    """A submitted request, as its submitter sees it."""

    def __init__(self) -> None:
        self.cancelled = False
        self.arrived = time.monotonic()

    def cancel(self) -> None:
        """Stop generating (the worker drops the row before its next step); idempotent."""
        self.cancelled = True


@attrs.define
class _Request:
    ticket: Ticket
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    sink: Sink
    loop: asyncio.AbstractEventLoop


@attrs.define(eq=False)
class _Row:
    request: _Request
    stream: TextStream
    stop_ids: frozenset[int]
    generator: torch.Generator | None
    generated: list[int] = attrs.Factory(list)
    last_token_at: float = 0.0
    done: FinishReason | None = None

    @property
    def params(self) -> SamplingParams:
        return self.request.params


@attrs.define
class _Batch:
    """The running batch: rows and their tensors, all in the same row order."""

    rows: list[_Row]
    cache: Any  # DynamicCache
    mask: torch.Tensor  # [B, T] 1 for real tokens, 0 for left padding
    lengths: torch.Tensor  # [B] tokens of each row in the cache (its next position)
    last: torch.Tensor  # [B] each row's newest token, not yet in the cache

    def select(self, keep: list[int]) -> None:
        """Keep only these rows, and drop the columns that are padding for all of them."""
        index = torch.tensor(keep, device=self.mask.device)
        self.rows = [self.rows[i] for i in keep]
        self.lengths = self.lengths[index]
        self.last = self.last[index]
        trim = self.mask.shape[1] - int(self.lengths.max())
        self.mask = self.mask[index, trim:]
        for layer in self.cache.layers:  # with several GPUs, layers live on different devices
            on_device = index.to(layer.keys.device)
            layer.keys = layer.keys[on_device, :, trim:]
            layer.values = layer.values[on_device, :, trim:]


def _left_pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
    missing = length - tensor.shape[-2]
    return F.pad(tensor, (0, 0, missing, 0)) if missing else tensor


def _merge(a: _Batch, b: _Batch) -> _Batch:
    width = max(a.mask.shape[1], b.mask.shape[1])
    layers = [
        (
            torch.cat([_left_pad(la.keys, width), _left_pad(lb.keys, width)]),
            torch.cat([_left_pad(la.values, width), _left_pad(lb.values, width)]),
        )
        for la, lb in zip(a.cache.layers, b.cache.layers, strict=True)
    ]
    mask = torch.cat(
        [F.pad(a.mask, (width - a.mask.shape[1], 0)), F.pad(b.mask, (width - b.mask.shape[1], 0))]
    )
    return _Batch(
        rows=a.rows + b.rows,
        cache=DynamicCache(layers),
        mask=mask,
        lengths=torch.cat([a.lengths, b.lengths]),
        last=torch.cat([a.last, b.last]),
    )


def _adjust_logits(logits: torch.Tensor, rows: Sequence[_Row]) -> None:
    """Penalties, biases and minimum lengths, per row, in place."""
    for i, row in enumerate(rows):
        params = row.params
        if not params.adjusts_logits:
            continue
        scores = logits[i]
        if params.logit_bias:
            ids = torch.tensor([t for t, _ in params.logit_bias], device=scores.device)
            bias = torch.tensor([b for _, b in params.logit_bias], device=scores.device)
            scores.index_add_(0, ids, bias.to(scores.dtype))
        if params.repetition_penalty != 1.0:
            seen = torch.tensor(
                sorted({*row.request.prompt_ids, *row.generated}), device=scores.device
            )
            picked = scores[seen]
            scores[seen] = torch.where(
                picked < 0, picked * params.repetition_penalty, picked / params.repetition_penalty
            )
        if (params.presence_penalty or params.frequency_penalty) and row.generated:
            counts = torch.bincount(
                torch.tensor(row.generated, device=scores.device), minlength=scores.shape[0]
            )[: scores.shape[0]].to(scores.dtype)
            scores -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0)
        if len(row.generated) < params.min_new_tokens and row.stop_ids:
            scores[torch.tensor(sorted(row.stop_ids), device=scores.device)] = -float("inf")


def _filter_top_k_top_p(logits: torch.Tensor, top_k: list[int], top_p: list[float]) -> None:
    """Set to -inf what each row's top-k and top-p leave out, in place."""
    vocab = logits.shape[-1]
    ordered, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(vocab, device=logits.device).expand_as(ordered)
    k = torch.tensor([kk if 0 < kk < vocab else vocab for kk in top_k], device=logits.device)
    drop = ranks >= k[:, None]
    p = torch.tensor(top_p, device=logits.device, dtype=logits.dtype)
    if bool((p < 1.0).any()):
        probs = ordered.masked_fill(drop, -float("inf")).softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above each one
        drop |= (before >= p[:, None]) & (ranks > 0)
    logits.scatter_(1, order, ordered.masked_fill(drop, -float("inf")))


def _sample(logits: torch.Tensor, rows: Sequence[_Row]) -> list[int]:
    """One token per row from float32 logits [B, V]."""
    _adjust_logits(logits, rows)
    chosen = logits.argmax(dim=-1).tolist()
    sampled = [i for i, row in enumerate(rows) if not row.params.greedy]
    if not sampled:
        return [int(t) for t in chosen]
    index = torch.tensor(sampled, device=logits.device)
    temperatures = torch.tensor(
        [rows[i].params.temperature for i in sampled], device=logits.device, dtype=logits.dtype
    )
    sub = logits[index] / temperatures[:, None]
    top_k = [rows[i].params.top_k for i in sampled]
    top_p = [rows[i].params.top_p for i in sampled]
    if any(k > 0 for k in top_k) or any(p < 1.0 for p in top_p):
        _filter_top_k_top_p(sub, top_k, top_p)
    probs = sub.softmax(dim=-1).cpu()
    for j, i in enumerate(sampled):
        chosen[i] = int(torch.multinomial(probs[j], 1, generator=rows[i].generator))
    return [int(t) for t in chosen]


class Engine:
    """Continuous batching over one loaded model; see the module docstring."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int,
        max_queue: int,
        metrics: ServerMetrics,
        max_prefill_tokens: int = MAX_PREFILL_TOKENS,
    ) -> None:
        self._loaded = loaded
        self._model = loaded.model
        self._device = loaded.device
        self._peft = loaded.default_adapter is not None
        self._active_adapter = loaded.default_adapter
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self._max_prefill_tokens = max_prefill_tokens
        self._metrics = metrics
        self._decode = self._make_decoder(loaded.tokenizer)
        self._pending: deque[_Request] = deque()
        self._running = 0
        self._lock = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="kaito-hf-engine", daemon=True)
        self._batch: _Batch | None = None
        self._outbox: list[tuple[_Request, Event]] = []

    @staticmethod
    def _make_decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
        # The worker decodes with its own copy of a fast tokenizer: the Rust object must not be
        # used from two threads at once, and the event loop encodes with the original.
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            from tokenizers import Tokenizer

            copy = Tokenizer.from_str(backend.to_str())

            def decode(ids: Sequence[int]) -> str:
                return str(copy.decode(list(ids), skip_special_tokens=True))

            return decode

        def decode_slow(ids: Sequence[int]) -> str:
            return str(tokenizer.decode(list(ids), skip_special_tokens=True))

        return decode_slow

    # -- the event loop's side -----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker; requests still waiting or running get `Failed`."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        adapter: str | None,
        sink: Sink,
    ) -> Ticket:
        """Queue a request; `sink` gets its events on the calling event loop.

        Raises `QueueFull` when `max_batch_size + max_queue` requests are already in.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closing:
                raise EngineClosed("the server is shutting down")
            if len(self._pending) + self._running >= self.max_batch_size + self.max_queue:
                raise QueueFull(
                    f"the server is busy: {self._running} requests are generating and "
                    f"{len(self._pending)} are waiting (limit {self.max_queue}); retry later"
                )
            ticket = Ticket()
            self._pending.append(_Request(ticket, list(prompt_ids), params, adapter, sink, loop))
            self._metrics.queue_depth.set(len(self._pending))
            self._lock.notify()
        return ticket

    # -- the worker's side ---------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    while not self._closing and not self._pending and self._batch is None:
                        self._lock.wait()
                    if self._closing:
                        break
                    admitted = self._admit()
                try:
                    if admitted:
                        self._join(admitted)
                    self._drop_finished()
                    if self._batch is not None:
                        self._decode_step()
                        self._drop_finished()
                except Exception:
                    log.exception("generation step failed; failing the running batch")
                    failure = Failed("internal error while generating; see the server logs")
                    self._fail_all(admitted, failure)
                self._publish()
        self._shutdown()

    def _admit(self) -> list[_Request]:
        gone = sum(1 for r in self._pending if r.ticket.cancelled)
        if gone:  # clients that gave up while waiting free their queue places at once
            self._pending = deque(r for r in self._pending if not r.ticket.cancelled)
            self._metrics.cancelled.inc(gone)
        room = self.max_batch_size - (len(self._batch.rows) if self._batch else 0)
        admitted: list[_Request] = []
        while self._pending and len(admitted) < room:
            admitted.append(self._pending.popleft())
        self._running = (len(self._batch.rows) if self._batch else 0) + len(admitted)
        self._metrics.queue_depth.set(len(self._pending))
        self._metrics.running.set(self._running)
        return admitted

    def _forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        rows: Sequence[_Request],
    ) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if self._peft:
            names = [r.adapter or self._loaded.default_adapter for r in rows]
            if len(set(names)) == 1:
                if names[0] != self._active_adapter:
                    self._model.set_adapter(names[0])
                    self._active_adapter = names[0]
            else:
                kwargs["adapter_names"] = names
        out = self._model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def _prefill(self, requests: list[_Request]) -> _Batch:
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.zeros((len(requests), width), dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for i, request in enumerate(requests):
            n = len(request.prompt_ids)
            ids[i, width - n :] = torch.tensor(request.prompt_ids)
            mask[i, width - n :] = 1
        ids, mask = ids.to(self._device), mask.to(self._device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self._forward(ids, mask, positions, cache, requests)
        rows = [self._new_row(r) for r in requests]
        tokens = _sample(logits, rows)
        now = time.monotonic()
        self._metrics.time_to_first_token.observe_many(now - r.ticket.arrived for r in requests)
        self._metrics.generation_tokens.inc(len(rows))
        for row, token in zip(rows, tokens, strict=True):
            self._accept(row, token, now)
        return _Batch(
            rows=rows,
            cache=cache,
            mask=mask,
            lengths=mask.sum(-1),
            last=torch.tensor(tokens, device=self._device),
        )

    def _new_row(self, request: _Request) -> _Row:
        params = request.params
        generator = None
        if not params.greedy:
            generator = torch.Generator()
            seed = params.seed if params.seed is not None else random.getrandbits(63)
            generator.manual_seed(seed)
        if params.ignore_eos:
            stop_ids: frozenset[int] = frozenset()
        elif params.stop_token_ids is not None:
            stop_ids = params.stop_token_ids
        else:
            stop_ids = self._loaded.eos_token_ids
        self._metrics.prompt_tokens.inc(len(request.prompt_ids))
        return _Row(
            request=request,
            stream=TextStream(self._decode, request.prompt_ids, params.stop),
            stop_ids=stop_ids,
            generator=generator,
        )

    def _join(self, requests: list[_Request]) -> None:
        groups: list[list[_Request]] = [[]]
        for request in requests:
            group = groups[-1]
            width = max([len(request.prompt_ids), *(len(r.prompt_ids) for r in group)])
            if group and width * (len(group) + 1) > self._max_prefill_tokens:
                groups.append([request])
            else:
                group.append(request)
        for group in groups:
            self._metrics.prefill_batch_size.observe(len(group))
            joined = self._prefill(group)
            self._batch = joined if self._batch is None else _merge(self._batch, joined)

    def _decode_step(self) -> None:
        batch = self._batch
        assert batch is not None
        self._metrics.batch_size.observe(len(batch.rows))
        ones = torch.ones((len(batch.rows), 1), dtype=batch.mask.dtype, device=batch.mask.device)
        batch.mask = torch.cat([batch.mask, ones], dim=1)
        logits = self._forward(
            batch.last[:, None],
            batch.mask,
            batch.lengths[:, None],
            batch.cache,
            [row.request for row in batch.rows],
        )
        batch.lengths = batch.lengths + 1
        tokens = _sample(logits, batch.rows)
        batch.last = torch.tensor(tokens, device=self._device)
        now = time.monotonic()
        self._metrics.inter_token_latency.observe_many(
            now - row.last_token_at for row in batch.rows
        )
        self._metrics.generation_tokens.inc(len(batch.rows))
        for row, token in zip(batch.rows, tokens, strict=True):
            self._accept(row, token, now)

    def _accept(self, row: _Row, token: int, now: float) -> None:
        """Record a row's new token: its text, its events, and whether it is done."""
        row.generated.append(token)
        row.last_token_at = now
        params = row.params
        if token in row.stop_ids:
            row.done = "stop"
        else:
            row.stream.push(token)
            total = len(row.request.prompt_ids) + len(row.generated)
            if row.stream.stopped:
                row.done = "stop"
            elif len(row.generated) >= params.max_new_tokens or total >= self._loaded.max_model_len:
                row.done = "length"
        if row.done is None:
            self._outbox.append((row.request, Delta(row.stream.take())))
            return
        row.stream.finish()
        event = Finished(
            text=row.stream.take(final=True),
            reason=row.done,
            prompt_tokens=len(row.request.prompt_ids),
            completion_tokens=len(row.generated),
        )
        self._outbox.append((row.request, event))
        self._metrics.finished.inc(reason=row.done)
        self._metrics.request_duration.observe(now - row.request.ticket.arrived)

    def _drop_finished(self) -> None:
        batch = self._batch
        if batch is None:
            return
        keep = []
        for i, row in enumerate(batch.rows):
            if row.done is None and row.request.ticket.cancelled:
                row.done = "cancelled"
                self._metrics.cancelled.inc()
            if row.done is None:
                keep.append(i)
        if not keep:
            self._batch = None
        elif len(keep) < len(batch.rows):
            batch.select(keep)
        with self._lock:
            self._running = len(self._batch.rows) if self._batch else 0
        self._metrics.running.set(self._running)

    def _fail_all(self, admitted: list[_Request], failure: Failed) -> None:
        rows = [row.request for row in self._batch.rows] if self._batch else []
        seen = {id(r) for r in rows}
        for request in rows + [r for r in admitted if id(r) not in seen]:
            self._outbox.append((request, failure))
        self._batch = None
        with self._lock:
            self._running = 0
        self._metrics.running.set(0)

    def _publish(self) -> None:
        """Hand this step's events to their event loops, one call per loop."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sink, Event]]] = {}
        for request, event in self._outbox:
            by_loop.setdefault(request.loop, []).append((request.sink, event))
        self._outbox = []
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver, items)

    def _shutdown(self) -> None:
        with self._lock:
            waiting = list(self._pending)
            self._pending.clear()
        self._fail_all(waiting, Failed("the server is shutting down", shutting_down=True))
        self._publish()


def _deliver(items: list[tuple[Sink, Event]]) -> None:
    for sink, event in items:
        sink(event)
