"""The inference server over HTTP, in process: every endpoint, streaming, the generation
parameters, and agreement with transformers' own `generate`.

Outputs are compared token for token with `model.generate` on the same tiny model (greedy), so a
mistake in padding, positions, the KV cache or sampling shows up as different text.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hf_helpers import (
    Server,
    StartServer,
    reference_greedy,
    reference_greedy_ids,
    reference_tokens,
    sse_events,
)

from kaito.runtimes.hf import ServerOptions
from kaito.runtimes.hf._model import load_model
from kaito.runtimes.hf._server import create_app as create_app_with_loader
from kaito.runtimes.hf._server import wait_until_loaded

PROMPTS = [
    "The cat sat by the window and",
    "Question: What is the capital of France?\nAnswer:",
    "A",
    "Kubernetes runs containers on a group of machines called a cluster. You describe",
]


async def test_health_is_503_until_the_model_is_loaded(phi3_model: Path, tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_load(options: ServerOptions) -> Any:
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(timeout=10)
        return load_model(options)

    options = ServerOptions(model=str(phi3_model), adapters_dir=str(tmp_path / "none"))
    app = create_app_with_loader(options, load=slow_load)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/health")
        assert response.status == 503
        assert (await response.json())["status"] == "Loading"
        response = await client.post("/v1/completions", json={"prompt": "x"})
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "model_not_ready"
        response = await client.get("/metrics")
        assert response.status == 200
        assert "kaito_hf_model_loaded 0" in await response.text()
        gate.set()
        assert await wait_until_loaded(app) is None
        response = await client.get("/health")
        assert response.status == 200
        assert (await response.json())["status"] == "Healthy"


async def test_a_model_that_cannot_load_reports_failed_health(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from kaito.runtimes.hf import create_app

    (tmp_path / "empty").mkdir()
    app = create_app(ServerOptions(model=str(tmp_path / "empty"), adapters_dir=str(tmp_path)))
    async with TestClient(TestServer(app)) as client:
        error = await wait_until_loaded(app)
        assert error is not None
        assert "loading the model failed" in error
        response = await client.get("/health")
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "Failed"
        assert body["detail"] == error


async def test_models_lists_the_served_name(server: Server) -> None:
    response = await server.client.get("/v1/models")
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny"]
    assert body["data"][0]["owned_by"] == "kaito"
    assert body["data"][0]["max_model_len"] == 4096


async def test_home_answers(server: Server) -> None:
    response = await server.client.get("/")
    assert response.status == 200
    assert await response.json() == {"message": "Server is running"}


async def test_completions_match_transformers_generate(server: Server, phi3_model: Path) -> None:
    for prompt in PROMPTS:
        answer = await server.complete(prompt, max_tokens=10)
        expected = reference_greedy(phi3_model, prompt, 10)
        choice = answer["choices"][0]
        assert choice["text"] == expected, prompt
        assert answer["object"] == "text_completion"
        assert answer["model"] == "tiny"
        usage = answer["usage"]
        assert usage["prompt_tokens"] == len(reference_tokens(phi3_model, prompt))
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        if choice["finish_reason"] == "length":
            assert usage["completion_tokens"] == 10
        else:
            assert choice["finish_reason"] == "stop"


async def test_concurrent_requests_are_batched_and_unchanged(
    start_server: StartServer, phi3_model: Path
) -> None:
    server = await start_server(max_batch_size=8)
    prompts = [p for p in PROMPTS for _ in range(2)]
    answers = await asyncio.gather(*(server.complete(p, max_tokens=16) for p in prompts))
    for prompt, answer in zip(prompts, answers, strict=True):
        assert answer["choices"][0]["text"] == reference_greedy(phi3_model, prompt, 16)
    samples = await server.metrics()
    steps = samples["kaito_hf_batch_size_count"]
    single = samples['kaito_hf_batch_size_bucket{le="1"}']
    assert steps > single, "no decode step ran with more than one request"
    assert samples["kaito_hf_prefill_batch_size_count"] < len(prompts), "no prefill was shared"


async def test_requests_joining_a_running_batch_get_the_same_text(
    start_server: StartServer, phi3_model: Path
) -> None:
    server = await start_server(max_batch_size=4)
    long_body = {"prompt": PROMPTS[3], "max_tokens": 40, "temperature": 0, "ignore_eos": True}
    alone = (await server.complete(**long_body))["choices"][0]["text"]
    first = await server.client.post("/v1/completions", json={**long_body, "stream": True})
    head = await first.content.readline()  # its first token is out: the batch is running
    late = await asyncio.gather(*(server.complete(p, max_tokens=12) for p in PROMPTS[:3]))
    events = [json.loads(head.decode()[len("data: ") :]), *await sse_events(first)]
    streamed = "".join(e["choices"][0]["text"] for e in events[:-1])
    assert streamed == alone
    for prompt, answer in zip(PROMPTS[:3], late, strict=True):
        assert answer["choices"][0]["text"] == reference_greedy(phi3_model, prompt, 12)
    samples = await server.metrics()
    assert samples["kaito_hf_batch_size_count"] > samples['kaito_hf_batch_size_bucket{le="1"}']


async def test_chat_completion_uses_the_chat_template(server: Server, phi3_model: Path) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    status, answer = await server.post(
        "/v1/chat/completions", {"messages": messages, "max_tokens": 8, "temperature": 0}
    )
    assert status == 200, answer
    prompt = "<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n"
    choice = answer["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": reference_greedy(phi3_model, prompt, 8),
    }
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["usage"]["prompt_tokens"] == len(reference_tokens(phi3_model, prompt))


async def test_chat_completion_accepts_text_parts_and_max_completion_tokens(
    server: Server,
) -> None:
    parts = [
        {"type": "text", "text": "What is the capital "},
        {"type": "text", "text": "of France?"},
    ]
    plain = [{"role": "user", "content": "What is the capital of France?"}]
    _, a = await server.post(
        "/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": parts}],
            "max_completion_tokens": 5,
            "temperature": 0,
        },
    )
    _, b = await server.post(
        "/v1/chat/completions", {"messages": plain, "max_tokens": 5, "temperature": 0}
    )
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    assert a["usage"]["completion_tokens"] <= 5


async def test_chat_stream_sends_role_content_finish_usage_and_done(server: Server) -> None:
    messages = [{"role": "user", "content": "Tell me about bread."}]
    _, whole = await server.post(
        "/v1/chat/completions",
        {"messages": messages, "max_tokens": 12, "temperature": 0, "ignore_eos": True},
    )
    response = await server.client.post(
        "/v1/chat/completions",
        json={
            "messages": messages,
            "max_tokens": 12,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = await sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == whole["choices"][0]["message"]["content"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length"
    assert set(finishes[:-1]) == {None}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


async def test_completions_take_several_prompts_token_ids_and_echo(
    server: Server, phi3_model: Path
) -> None:
    answer = await server.complete(PROMPTS[:2], max_tokens=6)
    texts = [c["text"] for c in sorted(answer["choices"], key=lambda c: c["index"])]
    assert texts == [reference_greedy(phi3_model, p, 6) for p in PROMPTS[:2]]
    ids = reference_tokens(phi3_model, PROMPTS[0])
    by_ids = await server.complete(ids, max_tokens=6)
    assert by_ids["choices"][0]["text"] == texts[0]
    by_id_lists = await server.complete([ids, ids], max_tokens=6)
    assert [c["text"] for c in by_id_lists["choices"]] == [texts[0], texts[0]]
    echoed = await server.complete(PROMPTS[0], max_tokens=6, echo=True)
    assert echoed["choices"][0]["text"] == PROMPTS[0] + texts[0]


async def test_completions_default_to_16_tokens(server: Server) -> None:
    answer = await server.complete("The", max_tokens=None, ignore_eos=True)
    assert answer["usage"]["completion_tokens"] == 16
    assert answer["choices"][0]["finish_reason"] == "length"


async def test_completion_stream_matches_the_whole_answer(server: Server) -> None:
    body = {"prompt": PROMPTS[0], "max_tokens": 10, "temperature": 0, "ignore_eos": True}
    _, whole = await server.post("/v1/completions", body)
    response = await server.client.post("/v1/completions", json={**body, "stream": True})
    events = await sse_events(response)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["text"] for e in events[:-1])
    assert text == whole["choices"][0]["text"]
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in e for e in events[:-1])


async def test_stop_sequences_cut_the_text_in_both_modes(server: Server) -> None:
    base = await server.complete(PROMPTS[1], max_tokens=24, ignore_eos=True)
    text = base["choices"][0]["text"]
    stop = next(text[i : i + 3] for i in range(4, len(text) - 3) if text[i : i + 3].strip())
    expected = text[: text.index(stop)]
    answer = await server.complete(PROMPTS[1], max_tokens=24, ignore_eos=True, stop=[stop])
    assert answer["choices"][0]["text"] == expected
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] < 24
    response = await server.client.post(
        "/v1/completions",
        json={
            "prompt": PROMPTS[1],
            "max_tokens": 24,
            "temperature": 0,
            "ignore_eos": True,
            "stop": stop,
            "stream": True,
        },
    )
    events = await sse_events(response)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == expected
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_seed_makes_sampling_reproducible(server: Server) -> None:
    async def sample(seed: int) -> str:
        answer = await server.complete(
            PROMPTS[0], max_tokens=16, temperature=1.0, seed=seed, ignore_eos=True
        )
        return str(answer["choices"][0]["text"])

    first, again, other = await asyncio.gather(sample(7), sample(7), sample(8))
    assert first == again
    assert first != other


async def test_top_k_1_and_tiny_top_p_sample_the_greedy_token(server: Server) -> None:
    greedy = (await server.complete(PROMPTS[0], max_tokens=12, ignore_eos=True))["choices"][0]
    top_k = await server.complete(
        PROMPTS[0], max_tokens=12, temperature=1.5, top_k=1, ignore_eos=True
    )
    top_p = await server.complete(
        PROMPTS[0], max_tokens=12, temperature=1.5, top_p=1e-6, ignore_eos=True
    )
    assert top_k["choices"][0]["text"] == greedy["text"]
    assert top_p["choices"][0]["text"] == greedy["text"]


async def test_logit_bias_forces_a_token(server: Server, phi3_model: Path) -> None:
    (token,) = reference_tokens(phi3_model, " the")
    answer = await server.complete(PROMPTS[0], max_tokens=5, logit_bias={str(token): 100})
    assert answer["choices"][0]["text"] == " the" * 5


async def test_repetition_penalty_matches_transformers(server: Server, phi3_model: Path) -> None:
    status, answer = await server.post(
        "/chat",
        {
            "prompt": PROMPTS[0],
            "return_full_text": False,
            "generate_kwargs": {
                "do_sample": False,
                "max_new_tokens": 16,
                "repetition_penalty": 1.5,
            },
        },
    )
    assert status == 200, answer
    expected = reference_greedy(phi3_model, PROMPTS[0], 16, repetition_penalty=1.5)
    assert answer["Result"] == expected
    assert expected != reference_greedy(phi3_model, PROMPTS[0], 16)


async def test_legacy_chat_with_prompt_returns_the_full_text(
    server: Server, phi3_model: Path
) -> None:
    kwargs = {"do_sample": False, "max_new_tokens": 8}
    status, answer = await server.post("/chat", {"prompt": PROMPTS[0], "generate_kwargs": kwargs})
    assert status == 200
    assert answer == {"Result": PROMPTS[0] + reference_greedy(phi3_model, PROMPTS[0], 8)}
    status, answer = await server.post(
        "/chat", {"prompt": PROMPTS[0], "generate_kwargs": kwargs, "return_full_text": False}
    )
    assert answer == {"Result": reference_greedy(phi3_model, PROMPTS[0], 8)}


async def test_legacy_chat_with_messages_returns_the_reply(server: Server) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    _, openai = await server.post(
        "/v1/chat/completions", {"messages": messages, "temperature": 0, "max_tokens": 6}
    )
    max_length = openai["usage"]["prompt_tokens"] + 6  # max_length counts the prompt too
    status, legacy = await server.post(
        "/chat",
        {"messages": messages, "generate_kwargs": {"do_sample": False, "max_length": max_length}},
    )
    assert status == 200, legacy
    assert legacy["Result"] == openai["choices"][0]["message"]["content"]


async def test_legacy_chat_defaults_sample_up_to_200_tokens(server: Server) -> None:
    status, answer = await server.post("/chat", {"prompt": "The", "return_full_text": False})
    assert status == 200
    assert isinstance(answer["Result"], str)
    samples = await server.metrics()
    assert samples["kaito_hf_generation_tokens_total"] <= 200


async def test_eos_token_id_and_min_new_tokens(server: Server, phi3_model: Path) -> None:
    first_token = reference_greedy_ids(phi3_model, PROMPTS[0], 1)[0]
    kwargs: dict[str, Any] = {"do_sample": False, "max_new_tokens": 8, "eos_token_id": first_token}
    body = {"prompt": PROMPTS[0], "return_full_text": False, "generate_kwargs": kwargs}
    _, stopped = await server.post("/chat", body)
    assert stopped == {"Result": ""}
    kwargs["min_new_tokens"] = 4
    _, longer = await server.post("/chat", body)
    assert len(longer["Result"]) > 0


async def test_metrics_count_requests_tokens_and_latencies(server: Server) -> None:
    await server.complete(PROMPTS[0], max_tokens=5, ignore_eos=True)
    await server.client.get("/v1/models")
    samples = await server.metrics()
    assert samples['kaito_hf_requests_total{endpoint="/v1/completions",status="200"}'] == 1
    assert samples['kaito_hf_requests_total{endpoint="/v1/models",status="200"}'] == 1
    assert samples["kaito_hf_generation_tokens_total"] == 5
    assert samples["kaito_hf_prompt_tokens_total"] > 0
    assert samples["kaito_hf_time_to_first_token_seconds_count"] == 1
    assert samples["kaito_hf_inter_token_latency_seconds_count"] == 4
    assert samples['kaito_hf_requests_finished_total{reason="length"}'] == 1
    assert samples["kaito_hf_queue_depth"] == 0
    assert samples["kaito_hf_running_requests"] == 0
    assert samples["kaito_hf_model_loaded"] == 1
    response = await server.client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
