"""Bad requests, a full queue, and clients that go away.

Every client mistake must be a 4xx with a message that says what is wrong, in OpenAI's error
shape under /v1/ and `{"detail": ...}` on the legacy /chat; no mistake may produce a 500, and the
server must keep serving afterwards. A full queue answers 429; a client that disconnects stops
its generation, which the cancellation counter and the running gauge show.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hf_helpers import Server, StartServer

MESSAGES = [{"role": "user", "content": "hi"}]

V1_CASES: list[tuple[str, Any, int, str | None, str]] = [
    # path, body, status, param, a piece of the message
    ("/v1/completions", {}, 400, "prompt", "missing required parameter: prompt"),
    ("/v1/completions", {"prompt": 5}, 400, "prompt", "invalid prompt"),
    ("/v1/completions", {"prompt": []}, 400, "prompt", "empty list"),
    ("/v1/completions", {"prompt": [[]]}, 400, "prompt", "must not be empty"),
    ("/v1/completions", {"prompt": [1, "a"]}, 400, "prompt", "invalid prompt"),
    ("/v1/completions", {"prompt": [10**9]}, 400, "prompt", "token ids must be between"),
    ("/v1/completions", {"prompt": ""}, 400, "prompt", "the prompt is empty"),
    ("/v1/completions", {"prompt": "x", "temperature": "hot"}, 400, "temperature", "number"),
    ("/v1/completions", {"prompt": "x", "temperature": 3}, 400, "temperature", "less than"),
    ("/v1/completions", {"prompt": "x", "temperature": float("nan")}, 400, "temperature", "finite"),
    ("/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p", "greater than"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens", "greater than"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 1.5}, 400, "max_tokens", "integer"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 65}, 400, "max_tokens", "limit of 64"),
    ("/v1/completions", {"prompt": "x", "n": 2}, 400, "n", "only n=1"),
    ("/v1/completions", {"prompt": "x", "best_of": 3}, 400, "best_of", "best_of=1"),
    ("/v1/completions", {"prompt": "x", "logprobs": 2}, 400, "logprobs", "not supported"),
    ("/v1/completions", {"prompt": "x", "suffix": "y"}, 400, "suffix", "not supported"),
    ("/v1/completions", {"prompt": "x", "stream": "yes"}, 400, "stream", "boolean"),
    ("/v1/completions", {"prompt": "x", "stop": ["a"] * 5}, 400, "stop", "at most 4"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"a": 1}}, 400, "logit_bias", "token ids"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"1": 500}}, 400, "logit_bias", "-100"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"99999": 1}}, 400, "logit_bias", "between"),
    ("/v1/completions", {"prompt": "x", "seed": "1"}, 400, "seed", "integer"),
    ("/v1/completions", {"prompt": "x", "tools": []}, 400, "tools", "unsupported parameter"),
    ("/v1/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model", "does not exist"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages", "at least 1"),
    ("/v1/chat/completions", {"messages": "hi"}, 400, "messages", "list"),
    ("/v1/chat/completions", {"messages": [{"content": "x"}]}, 400, "messages.0.role", "missing"),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": 3}]},
        400,
        "messages.0.content",
        "invalid",
    ),
    (
        "/v1/chat/completions",
        {"messages": MESSAGES, "logprobs": True},
        400,
        "logprobs",
        "not supported",
    ),
    (
        "/v1/chat/completions",
        {"messages": MESSAGES, "response_format": {"type": "json_object"}},
        400,
        "response_format.type",
        "invalid",
    ),
    (
        "/v1/chat/completions",
        {"messages": MESSAGES, "max_completion_tokens": 100},
        400,
        "max_completion_tokens",
        "limit of 64",
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "word " * 200}]},
        400,
        "messages",
        "context",
    ),
    ("/v1/completions", {"prompt": "word " * 200}, 400, "prompt", "context"),
    ("/v1/completions", {"prompt": "word " * 60, "max_tokens": 60}, 400, "max_tokens", "exceed"),
]


@pytest.fixture
async def strict_server(start_server: StartServer) -> Server:
    return await start_server(max_model_len=128, max_new_tokens=64)


@pytest.mark.parametrize(("path", "body", "status", "param", "message"), V1_CASES)
async def test_openai_endpoints_refuse_bad_requests(
    strict_server: Server, path: str, body: Any, status: int, param: str | None, message: str
) -> None:
    got, answer = await strict_server.post(path, body)
    assert got == status, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert message in error["message"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"prompt"', "must be a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
async def test_malformed_bodies_are_400(
    strict_server: Server, data: str | bytes, message: str
) -> None:
    for path in ("/v1/completions", "/v1/chat/completions"):
        status, answer = await strict_server.post_raw(path, data)
        assert status == 400
        assert message in answer["error"]["message"]
    status, answer = await strict_server.post_raw("/chat", data)
    assert status == 400
    assert message in answer["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "either 'prompt' or 'messages'"),
        ({"prompt": "x", "messages": MESSAGES}, "either 'prompt' or 'messages'"),
        ({"prompt": 3}, "invalid prompt"),
        ({"prompt": "x", "generate_kwargs": "fast"}, "invalid generate_kwargs"),
        ({"prompt": "x", "generate_kwargs": {"num_beams": 2}}, "num_beams"),
        ({"prompt": "x", "generate_kwargs": {"typical_p": 0.5}}, "typical_p"),
        ({"prompt": "x", "generate_kwargs": {"max_new_tokens": 65}}, "limit of 64"),
        ({"prompt": "x", "generate_kwargs": {"max_length": 1}}, "leaves no room"),
        ({"prompt": "x", "generate_kwargs": {"eos_token_id": -1}}, "token ids must be"),
        ({"prompt": "x", "generate_kwargs": {"no_repeat_ngram_size": 2}}, "unsupported"),
        ({"prompt": "x", "stream": True}, "unsupported parameter: stream"),
    ],
)
async def test_legacy_chat_refuses_bad_requests(
    strict_server: Server, body: Any, message: str
) -> None:
    status, answer = await strict_server.post("/chat", body)
    assert status == 400, answer
    assert message in answer["detail"]


async def test_unknown_routes_and_methods_answer_json(strict_server: Server) -> None:
    response = await strict_server.client.get("/v1/nothing")
    assert response.status == 404
    assert (await response.json())["error"]["type"] == "not_found_error"
    response = await strict_server.client.get("/v1/completions")
    assert response.status == 405
    assert "Method Not Allowed" in (await response.json())["error"]["message"]
    response = await strict_server.client.get("/nothing")
    assert response.status == 404
    assert "detail" in await response.json()


async def test_bad_requests_never_cost_a_500_and_the_server_keeps_serving(
    strict_server: Server,
) -> None:
    for path, body, *_ in V1_CASES:
        await strict_server.post(path, body)
    await strict_server.post_raw("/v1/completions", "{")
    answer = await strict_server.complete("The cat", max_tokens=4)
    assert answer["choices"][0]["text"]
    samples = await strict_server.metrics()
    statuses = {key for key in samples if key.startswith("kaito_hf_requests_total")}
    assert not [key for key in statuses if 'status="5' in key], statuses
    assert samples['kaito_hf_requests_total{endpoint="/v1/completions",status="200"}'] == 1


async def _open_stream(server: Server, max_tokens: int = 3000) -> Any:
    response = await server.client.post(
        "/v1/completions",
        json={
            "prompt": "The",
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        },
    )
    assert response.status == 200
    await response.content.readline()  # the first token arrived: it is running
    return response


async def test_a_full_queue_answers_429_and_health_still_answers(
    start_server: StartServer,
) -> None:
    server = await start_server(max_batch_size=1, max_queue=1, max_new_tokens=3000)
    running = await _open_stream(server)
    waiting = asyncio.create_task(server.complete("A", max_tokens=3000, ignore_eos=True))
    await server.wait_for(lambda m: m["kaito_hf_queue_depth"] == 1)
    status, answer = await server.post("/v1/completions", {"prompt": "B", "max_tokens": 4})
    assert status == 429
    assert answer["error"]["code"] == "queue_full"
    health = await server.client.get("/health")  # answered while the model is busy
    assert health.status == 200
    samples = await server.metrics()
    assert samples["kaito_hf_running_requests"] == 1
    assert samples['kaito_hf_requests_total{endpoint="/v1/completions",status="429"}'] == 1
    running.close()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await server.wait_for(
        lambda m: m["kaito_hf_requests_cancelled_total"] == 2 and m["kaito_hf_queue_depth"] == 0
    )


async def test_a_client_that_disconnects_stops_its_generation(start_server: StartServer) -> None:
    server = await start_server(max_new_tokens=3000)
    response = await _open_stream(server)
    response.close()
    samples = await server.wait_for(
        lambda m: (
            m["kaito_hf_requests_cancelled_total"] == 1 and m["kaito_hf_running_requests"] == 0
        )
    )
    assert samples["kaito_hf_generation_tokens_total"] < 3000
    stopped_at = samples["kaito_hf_generation_tokens_total"]
    await asyncio.sleep(0.1)
    assert (await server.metrics())["kaito_hf_generation_tokens_total"] == stopped_at
    answer = await server.complete("The", max_tokens=3)  # and the server goes on serving
    assert answer["usage"]["completion_tokens"] <= 3


async def test_a_non_streaming_client_that_gives_up_stops_its_generation(
    start_server: StartServer,
) -> None:
    server = await start_server(max_new_tokens=3000)
    request = asyncio.create_task(server.complete("The", max_tokens=3000, ignore_eos=True))
    await server.wait_for(lambda m: m["kaito_hf_running_requests"] == 1)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    samples = await server.wait_for(lambda m: m["kaito_hf_requests_cancelled_total"] == 1)
    assert samples["kaito_hf_generation_tokens_total"] < 3000


class _FailsOnce:
    """A model whose first decode step raises, as a GPU error would; then it works again."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.failed = False

    def __call__(self, **kwargs: Any) -> Any:
        if kwargs["input_ids"].shape[1] == 1 and not self.failed:
            self.failed = True
            raise RuntimeError("simulated device failure")
        return self.model(**kwargs)


async def test_a_fault_in_the_model_is_a_500_and_the_server_recovers(
    phi3_model: Any, tmp_path: Any
) -> None:
    import attrs
    from aiohttp.test_utils import TestClient, TestServer

    from kaito.runtimes.hf import ServerOptions
    from kaito.runtimes.hf._model import load_model
    from kaito.runtimes.hf._server import create_app, wait_until_loaded

    def load(options: ServerOptions) -> Any:
        loaded = load_model(options)
        return attrs.evolve(loaded, model=_FailsOnce(loaded.model))

    options = ServerOptions(model=str(phi3_model), adapters_dir=str(tmp_path / "none"))
    app = create_app(options, load=load)
    async with TestClient(TestServer(app)) as client:
        assert await wait_until_loaded(app) is None
        body = {"prompt": "The cat", "max_tokens": 4, "temperature": 0, "ignore_eos": True}
        response = await client.post("/v1/completions", json=body)
        assert response.status == 500
        error = (await response.json())["error"]
        assert error["type"] == "internal_error"
        assert "server logs" in error["message"]
        response = await client.post("/v1/completions", json=body)
        assert response.status == 200
        assert (await response.json())["usage"]["completion_tokens"] == 4
