"""The official `openai` Python client, unchanged, against the server: listing models, chat and
text completions with and without streaming, usage, finish reasons, seeds, stop sequences,
token limits and the error classes it raises for our 4xx answers."""

from __future__ import annotations

import openai
import pytest
from hf_helpers import Server

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def client(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url + "v1", api_key="unused", max_retries=0)


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].owned_by == "kaito"


async def test_chat_completion_with_usage_and_finish_reason(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=6,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 6
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 6


async def test_chat_stream_equals_the_whole_answer(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_completion_tokens=10, temperature=0
    )
    stream = await client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_completion_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish = None
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage == whole.usage


async def test_seed_and_stop(client: openai.AsyncOpenAI) -> None:
    async def sample(seed: int) -> str:
        completion = await client.completions.create(
            model="tiny",
            prompt="The cat",
            max_tokens=12,
            temperature=1.0,
            seed=seed,
            extra_body={"ignore_eos": True},
        )
        return completion.choices[0].text

    assert await sample(3) == await sample(3)
    text = await sample(3)
    stop = text[4:6]
    cut = await client.completions.create(
        model="tiny",
        prompt="The cat",
        max_tokens=12,
        temperature=1.0,
        seed=3,
        stop=[stop],
        extra_body={"ignore_eos": True},
    )
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


async def test_completion_stream(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model="tiny",
        prompt="The cat",
        max_tokens=5,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "length"
    whole = await client.completions.create(
        model="tiny", prompt="The cat", max_tokens=5, temperature=0, extra_body={"ignore_eos": True}
    )
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text


async def test_errors_map_to_the_clients_exceptions(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="tiny", messages=MESSAGES, n=2)
    assert bad.value.param == "n"
    with pytest.raises(openai.BadRequestError, match="limit"):
        await client.completions.create(model="tiny", prompt="x", max_tokens=100_000)
