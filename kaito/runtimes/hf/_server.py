"""The HTTP side: aiohttp routes, request checks, OpenAI-shaped answers and streaming.

Handlers run on the event loop and never touch the model: they validate and tokenize a request,
hand it to the engine, and turn the engine's events into a JSON answer or server-sent events.
The model loads in a thread after the server starts listening, so `/health` can say 503
("Loading") until it is ready and Kubernetes' probes see the difference between starting and
broken.

Errors are the client's or the server's, never mixed up: anything wrong with a request (bad
JSON, wrong types, unknown fields or model, too many tokens) is a 4xx with a message that names
the field; a full queue is 429; only a fault inside the server is a 500. Under `/v1/` errors
have OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`); the legacy endpoints
answer `{"detail": "..."}` as upstream's FastAPI server did.

A client that goes away stops its generation: its handler is cancelled (or its next write
fails), and cancelling the ticket makes the worker drop the row before the next decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from kaito.runtimes.hf._api import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    LegacyChatRequest,
    RequestError,
    parse,
)
from kaito.runtimes.hf._engine import (
    Delta,
    Engine,
    EngineClosed,
    Event,
    Failed,
    Finished,
    QueueFull,
    SamplingParams,
    Ticket,
)
from kaito.runtimes.hf._metrics import CONTENT_TYPE, ServerMetrics
from kaito.runtimes.hf._model import LoadedModel, load_model
from kaito.runtimes.hf._options import ServerOptions

log = logging.getLogger(__name__)

LEGACY_DEFAULT_NEW_TOKENS = 200
"""New tokens for a /chat request that sets neither max_length nor max_new_tokens."""
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
"""OpenAI's default `max_tokens` for /v1/completions."""
CLIENT_CLOSED = 499


class ApiError(Exception):
    """An answer other than 200, with what the client needs to know."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    @classmethod
    def from_request_error(cls, exc: RequestError) -> ApiError:
        return cls(exc.status, exc.message, param=exc.param)


class _State:
    def __init__(self, options: ServerOptions, load: Callable[[ServerOptions], LoadedModel]):
        self.options = options
        self.load = load
        self.metrics = ServerMetrics()
        self.loaded: LoadedModel | None = None
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.finished_loading = asyncio.Event()
        self.created = int(time.time())
        self.loading: asyncio.Task[None] | None = None

    def ready(self) -> tuple[LoadedModel, Engine]:
        if self.loaded is None or self.engine is None:
            detail = self.load_error or "the model is still loading; retry shortly"
            raise ApiError(503, detail, type="service_unavailable", code="model_not_ready")
        return self.loaded, self.engine


STATE = web.AppKey("kaito_hf_state", _State)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- errors and metrics ------------------------------------------------------------------------


def _error_response(request: web.Request, error: ApiError) -> web.Response:
    if request.path.startswith("/v1/"):
        body: dict[str, Any] = {
            "error": {
                "message": error.message,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        }
    else:
        body = {"detail": error.message}
    return web.json_response(body, status=error.status)


def _endpoint(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    status = 500
    try:
        response = await handler(request)
        status = request.get("status", response.status)
        return response
    except ApiError as exc:
        status = exc.status
        return _error_response(request, exc)
    except web.HTTPException as exc:
        status = exc.status
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        message = f"{exc.reason}: {request.method} {request.path}"
        return _error_response(request, ApiError(exc.status, message, type=kind))
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        error = ApiError(500, "internal server error; see the server logs", type="internal_error")
        return _error_response(request, error)
    finally:
        state.metrics.requests.inc(endpoint=_endpoint(request), status=str(status))


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None


# -- generation --------------------------------------------------------------------------------


class _Run:
    """The engine tickets of one HTTP request and the queue their events arrive on."""

    def __init__(
        self,
        engine: Engine,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        adapter: str | None,
    ) -> None:
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.tickets: list[Ticket] = []
        try:
            for index, prompt in enumerate(prompts):
                sink = functools.partial(self._put, index)
                self.tickets.append(engine.submit(prompt, params, adapter=adapter, sink=sink))
        except QueueFull as exc:
            self.cancel()
            raise ApiError(429, str(exc), type="server_busy", code="queue_full") from None
        except EngineClosed as exc:
            self.cancel()
            raise ApiError(503, str(exc), type="service_unavailable") from None

    def _put(self, index: int, event: Event) -> None:
        self.queue.put_nowait((index, event))

    async def events(self) -> AsyncIterator[tuple[int, Event]]:
        remaining = len(self.tickets)
        while remaining:
            index, event = await self.queue.get()
            if not isinstance(event, Delta):
                remaining -= 1
            yield index, event

    async def collect(self) -> list[Finished]:
        """Wait for every prompt's end; their texts joined, in prompt order."""
        texts: list[list[str]] = [[] for _ in self.tickets]
        ends: list[Finished | None] = [None] * len(self.tickets)
        async for index, event in self.events():
            if isinstance(event, Failed):
                raise _failure(event)
            texts[index].append(event.text)
            if isinstance(event, Finished):
                ends[index] = event
        return [
            Finished("".join(t), e.reason, e.prompt_tokens, e.completion_tokens)
            for t, e in zip(texts, ends, strict=True)
            if e is not None
        ]

    def cancel(self) -> None:
        for ticket in self.tickets:
            ticket.cancel()


def _failure(event: Failed) -> ApiError:
    if event.shutting_down:
        return ApiError(503, event.message, type="service_unavailable")
    return ApiError(500, event.message, type="internal_error")


def _usage(ends: Sequence[Finished]) -> dict[str, int]:
    prompt = sum(e.prompt_tokens for e in ends)
    completion = sum(e.completion_tokens for e in ends)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


class _Tokens:
    """Tokenizing and token budgets against one loaded model."""

    def __init__(self, loaded: LoadedModel, options: ServerOptions) -> None:
        self.loaded = loaded
        self.options = options

    def encode(self, text: str, *, special: bool) -> list[int]:
        return list(self.loaded.tokenizer(text, add_special_tokens=special)["input_ids"])

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        if not self.loaded.has_chat_template:
            raise ApiError(
                400,
                "this model has no chat template; use /v1/completions or start the server "
                "with --chat-template",
                param="messages",
            )
        try:
            text = self.loaded.tokenizer.apply_chat_template(
                [m.as_template_input() for m in messages],
                tokenize=False,
                add_generation_prompt=True,
            )
        except Exception as exc:  # a template's raise_exception() or a rendering error
            raise ApiError(
                400, f"the chat template rejected the messages: {exc}", param="messages"
            ) from None
        return self.encode(str(text), special=False)

    def check_ids(self, ids: Sequence[int], param: str) -> None:
        vocab = self.loaded.vocab_size
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ApiError(
                400, f"token ids must be between 0 and {vocab - 1}, got {bad[0]}", param=param
            )

    def budget(
        self,
        prompt_len: int,
        requested: int | None,
        param: str,
        *,
        default: int | None = None,
        prompt_param: str = "prompt",
    ) -> int:
        """The new-token budget of a request, checked against the limits."""
        context = self.loaded.max_model_len
        limit = self.options.max_new_tokens
        if prompt_len == 0:
            raise ApiError(400, "the prompt is empty", param=prompt_param)
        if prompt_len >= context:
            raise ApiError(
                400,
                f"the prompt has {prompt_len} tokens; this model's context is {context} tokens "
                "(prompt and completion together)",
                param=prompt_param,
                code="context_length_exceeded",
            )
        if requested is None:
            return min(default or limit, limit, context - prompt_len)
        if requested > limit:
            raise ApiError(
                400,
                f"{param} is {requested}, more than this server's limit of {limit} new tokens",
                param=param,
            )
        if prompt_len + requested > context:
            raise ApiError(
                400,
                f"{prompt_len} prompt tokens plus {param}={requested} exceed this model's "
                f"context of {context} tokens",
                param=param,
                code="context_length_exceeded",
            )
        return requested


def _resolve_model(loaded: LoadedModel, name: str | None) -> str | None:
    """The adapter a request's `model` selects (None: the served model as a whole)."""
    if name is None or name == loaded.name:
        return None
    for adapter in loaded.adapters:
        if adapter.name == name:
            return adapter.name
    available = ", ".join([loaded.name, *(a.name for a in loaded.adapters)])
    raise ApiError(
        404,
        f"the model {name!r} does not exist; available: {available}",
        param="model",
        code="model_not_found",
    )


def _openai_params(
    req: ChatCompletionRequest | CompletionRequest, tokens: _Tokens, max_new_tokens: int
) -> SamplingParams:
    bias = tuple((int(k), float(v)) for k, v in (req.logit_bias or {}).items())
    tokens.check_ids([t for t, _ in bias], "logit_bias")
    return SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k if req.top_k is not None and req.top_k > 0 else 0,
        repetition_penalty=req.repetition_penalty or 1.0,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        min_new_tokens=min(req.min_tokens or 0, max_new_tokens),
        logit_bias=bias,
        seed=None if req.seed is None else req.seed & (2**64 - 1),
        stop=req.stop_sequences,
        ignore_eos=req.ignore_eos,
    )


class _Chunks:
    """The server-sent events of one streamed answer, in OpenAI's chunk format.

    The envelope (id, object, created, model) is serialized once; a token's event only adds its
    JSON-escaped text. The event loop shares the interpreter with the worker that runs the model,
    so every microsecond it spends per token is taken from generation.
    """

    def __init__(self, envelope: dict[str, Any], *, chat: bool) -> None:
        head = json.dumps(envelope, separators=(",", ":"))
        self._head = "data: " + head[:-1] + ',"choices":['
        self._chat = chat

    def _event(self, choices: str, rest: str = "") -> bytes:
        return f"{self._head}{choices}]{rest}}}\n\n".encode()

    def text(self, index: int, text: str) -> bytes:
        piece = json.dumps(text)
        body = f'"delta":{{"content":{piece}}}' if self._chat else f'"text":{piece}'
        return self._event(f'{{"index":{index},{body},"logprobs":null,"finish_reason":null}}')

    def finish(self, index: int, reason: str) -> bytes:
        body = '"delta":{}' if self._chat else '"text":""'
        return self._event(f'{{"index":{index},{body},"logprobs":null,"finish_reason":"{reason}"}}')

    def role(self) -> bytes:
        delta = '"delta":{"role":"assistant","content":""}'
        return self._event(f'{{"index":0,{delta},"logprobs":null,"finish_reason":null}}')

    def usage(self, usage: dict[str, int]) -> bytes:
        return self._event("", ',"usage":' + json.dumps(usage, separators=(",", ":")))


async def _stream(
    request: web.Request, run: _Run, chunks: _Chunks, first: list[bytes], include_usage: bool
) -> web.StreamResponse:
    """Send a run's events as server-sent events, after the `first` ones, then `[DONE]`."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    ends: list[Finished] = []
    try:
        for event_bytes in first:
            await response.write(event_bytes)
        async for index, event in run.events():
            if isinstance(event, Failed):
                failure = _failure(event)
                error = {
                    "message": failure.message,
                    "type": failure.type,
                    "param": None,
                    "code": None,
                }
                await response.write(f"data: {json.dumps({'error': error})}\n\n".encode())
                break
            if event.text:
                await response.write(chunks.text(index, event.text))
            if isinstance(event, Finished):
                ends.append(event)
                await response.write(chunks.finish(index, _finish_reason(event.reason)))
        else:
            if include_usage:
                await response.write(chunks.usage(_usage(ends)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionError:  # the client went away mid-stream
        request["status"] = CLIENT_CLOSED
    finally:
        run.cancel()
    return response


# -- handlers ----------------------------------------------------------------------------------


async def _home(request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": "Server is running"})


async def _health(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.loaded is not None and state.engine is not None:
        return web.json_response({"status": "Healthy", "model": state.loaded.name})
    if state.load_error is not None:
        return web.json_response({"status": "Failed", "detail": state.load_error}, status=503)
    return web.json_response({"status": "Loading"}, status=503)


async def _metrics(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return web.Response(
        body=state.metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE}
    )


async def _models(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    loaded, _ = state.ready()
    data: list[dict[str, Any]] = [
        {
            "id": loaded.name,
            "object": "model",
            "created": state.created,
            "owned_by": "kaito",
            "root": state.options.model,
            "parent": None,
            "max_model_len": loaded.max_model_len,
        }
    ]
    data += [
        {
            "id": adapter.name,
            "object": "model",
            "created": state.created,
            "owned_by": "kaito",
            "root": str(adapter.path),
            "parent": loaded.name,
            "strength": adapter.strength,
        }
        for adapter in loaded.adapters
    ]
    return web.json_response({"object": "list", "data": data})


def _request(model: Any, body: Any) -> Any:
    try:
        return parse(model, body)
    except RequestError as exc:
        raise ApiError.from_request_error(exc) from None


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _json_body(request)
    loaded, engine = state.ready()
    req: ChatCompletionRequest = _request(ChatCompletionRequest, body)
    adapter = _resolve_model(loaded, req.model)
    tokens = _Tokens(loaded, state.options)
    prompt = tokens.chat_prompt(req.messages)
    requested, param = req.max_completion_tokens, "max_completion_tokens"
    if requested is None:
        requested, param = req.max_tokens, "max_tokens"
    budget = tokens.budget(len(prompt), requested, param, prompt_param="messages")
    params = _openai_params(req, tokens, budget)
    model_name = req.model or loaded.name
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    run = _Run(engine, [prompt], params, adapter)
    if not req.stream:
        try:
            (end,) = await run.collect()
        finally:
            run.cancel()
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": end.text},
                        "logprobs": None,
                        "finish_reason": _finish_reason(end.reason),
                    }
                ],
                "usage": _usage([end]),
            }
        )

    chunks = _Chunks(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
        },
        chat=True,
    )
    return await _stream(request, run, chunks, [chunks.role()], req.include_usage)


async def _completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _json_body(request)
    loaded, engine = state.ready()
    req: CompletionRequest = _request(CompletionRequest, body)
    adapter = _resolve_model(loaded, req.model)
    tokens = _Tokens(loaded, state.options)
    if isinstance(req.prompt, str):
        prompts = [tokens.encode(req.prompt, special=True)]
    elif all(isinstance(p, str) for p in req.prompt):
        prompts = [tokens.encode(str(p), special=True) for p in req.prompt]
    elif all(isinstance(p, int) for p in req.prompt):
        prompts = [[int(p) for p in req.prompt]]  # type: ignore[arg-type]
    else:
        prompts = [list(p) for p in req.prompt]  # type: ignore[arg-type]
    for prompt in prompts:
        tokens.check_ids(prompt, "prompt")
    budgets = {
        tokens.budget(len(p), req.max_tokens, "max_tokens", default=COMPLETIONS_DEFAULT_MAX_TOKENS)
        for p in prompts
    }
    params = _openai_params(req, tokens, min(budgets))
    echoes = [loaded.tokenizer.decode(p) if req.echo else "" for p in prompts]
    model_name = req.model or loaded.name
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    run = _Run(engine, prompts, params, adapter)
    if not req.stream:
        try:
            ends = await run.collect()
        finally:
            run.cancel()
        choices = [
            {
                "index": i,
                "text": echoes[i] + end.text,
                "logprobs": None,
                "finish_reason": _finish_reason(end.reason),
            }
            for i, end in enumerate(ends)
        ]
        return web.json_response(
            {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model_name,
                "choices": choices,
                "usage": _usage(ends),
            }
        )

    chunks = _Chunks(
        {"id": completion_id, "object": "text_completion", "created": created, "model": model_name},
        chat=False,
    )
    first = [chunks.text(i, echo) for i, echo in enumerate(echoes) if echo]
    return await _stream(request, run, chunks, first, req.include_usage)


async def _legacy_chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _json_body(request)
    loaded, engine = state.ready()
    req: LegacyChatRequest = _request(LegacyChatRequest, body)
    if (req.prompt is None) == (req.messages is None):
        raise ApiError(400, "give either 'prompt' or 'messages' (exactly one of them)")
    tokens = _Tokens(loaded, state.options)
    if req.messages is not None:
        prompt = tokens.chat_prompt(req.messages)
    else:
        prompt = tokens.encode(str(req.prompt), special=True)
    kwargs = req.generate_kwargs
    requested, param = kwargs.max_new_tokens, "generate_kwargs.max_new_tokens"
    if requested is None and kwargs.max_length is not None:
        requested, param = kwargs.max_length - len(prompt), "generate_kwargs.max_length"
        if requested <= 0:
            raise ApiError(
                400,
                f"max_length {kwargs.max_length} leaves no room after the "
                f"prompt's {len(prompt)} tokens",
                param=param,
            )
    prompt_param = "prompt" if req.prompt is not None else "messages"
    budget = tokens.budget(
        len(prompt), requested, param, default=LEGACY_DEFAULT_NEW_TOKENS, prompt_param=prompt_param
    )
    eos = kwargs.eos_token_id
    stop_ids = None if eos is None else frozenset([eos] if isinstance(eos, int) else eos)
    if stop_ids is not None:
        tokens.check_ids(sorted(stop_ids), "generate_kwargs.eos_token_id")
    stop = kwargs.stop_strings
    params = SamplingParams(
        max_new_tokens=budget,
        temperature=kwargs.temperature if kwargs.do_sample else 0.0,
        top_p=kwargs.top_p,
        top_k=kwargs.top_k,
        repetition_penalty=kwargs.repetition_penalty,
        min_new_tokens=min(budget, max(kwargs.min_new_tokens, kwargs.min_length - len(prompt))),
        seed=None if kwargs.seed is None else kwargs.seed & (2**64 - 1),
        stop=() if stop is None else (stop,) if isinstance(stop, str) else tuple(stop),
        stop_token_ids=stop_ids,
    )
    run = _Run(engine, [prompt], params, None)
    try:
        (end,) = await run.collect()
    finally:
        run.cancel()
    text = end.text
    if req.prompt is not None and req.return_full_text:
        text = req.prompt + text
    if req.clean_up_tokenization_spaces:
        text = loaded.tokenizer.clean_up_tokenization(text)
    return web.json_response({"Result": text})


# -- the application ---------------------------------------------------------------------------


async def _load(state: _State) -> None:
    try:
        loaded = await asyncio.to_thread(state.load, state.options)
    except Exception as exc:
        log.exception("loading the model failed")
        state.load_error = f"loading the model failed: {exc}"
        state.finished_loading.set()
        return
    engine = Engine(
        loaded,
        max_batch_size=state.options.max_batch_size,
        max_queue=state.options.max_queue,
        metrics=state.metrics,
    )
    engine.start()
    state.loaded, state.engine = loaded, engine
    state.metrics.model_loaded.set(1)
    state.finished_loading.set()
    log.info("ready: serving %s", loaded.name)


async def _on_startup(app: web.Application) -> None:
    state = app[STATE]
    state.loading = asyncio.create_task(_load(state))


async def _on_cleanup(app: web.Application) -> None:
    state = app[STATE]
    if state.loading is not None and not state.loading.done():
        state.loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.loading
    if state.engine is not None:
        await asyncio.to_thread(state.engine.close)


def create_app(
    options: ServerOptions, *, load: Callable[[ServerOptions], LoadedModel] = load_model
) -> web.Application:
    """The server as an aiohttp application; the model loads when the application starts."""
    app = web.Application(middlewares=[_middleware], client_max_size=32 * 2**20)
    app[STATE] = _State(options, load)
    app.router.add_get("/", _home)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/chat", _legacy_chat)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/completions", _completions)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app


async def wait_until_loaded(app: web.Application) -> str | None:
    """Wait for the model to finish loading; the error message if it failed."""
    state = app[STATE]
    await state.finished_loading.wait()
    return state.load_error


async def serve(options: ServerOptions) -> int:
    """Run the server until SIGTERM or SIGINT; 1 if the model failed to load."""
    app = create_app(options)
    access_log = logging.getLogger("aiohttp.access") if options.log_level == "debug" else None
    runner = web.AppRunner(app, handler_cancellation=True, access_log=access_log)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    await site.start()
    for address in runner.addresses:
        host, port = address[0], address[1]
        print(f"kaito-hf: listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state = app[STATE]
    stopping = asyncio.create_task(stop.wait())
    loading = asyncio.create_task(state.finished_loading.wait())
    await asyncio.wait({stopping, loading}, return_when=asyncio.FIRST_COMPLETED)
    if state.load_error is None:
        await stopping  # loaded (or still loading): serve until a signal
    loading.cancel()
    stopping.cancel()
    await runner.cleanup()
    return 1 if state.load_error is not None else 0
