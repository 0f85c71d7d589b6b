"""Helpers of the HF runtime tests: a thin client for a started server, a Prometheus text
parser, and reference generations computed with transformers directly."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition to {'name{labels}': value} (comments skipped)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        samples[name + (labels or "")] = float(value)
    return samples


class Server:
    """A started server and the few calls the tests make to it."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("/"))

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        response = await self.client.post(path, json=body)
        return response.status, await response.json()

    async def post_raw(self, path: str, data: bytes | str) -> tuple[int, Any]:
        response = await self.client.post(
            path, data=data, headers={"Content-Type": "application/json"}
        )
        return response.status, await response.json()

    async def complete(self, prompt: str | list[int], max_tokens: int = 12, **extra: Any) -> Any:
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra}
        status, answer = await self.post("/v1/completions", body)
        assert status == 200, answer
        return answer

    async def metrics(self) -> dict[str, float]:
        response = await self.client.get("/metrics")
        assert response.status == 200
        return parse_metrics(await response.text())

    async def wait_for(
        self, check: Callable[[dict[str, float]], bool], within: float = 10.0
    ) -> dict[str, float]:
        """Poll /metrics until `check` holds (for at most `within` seconds); the last sample."""
        deadline = time.monotonic() + within
        while True:
            samples = await self.metrics()
            if check(samples):
                return samples
            assert time.monotonic() < deadline, f"metrics never satisfied the check: {samples}"
            await asyncio.sleep(0.02)


async def sse_events(response: Any) -> list[Any]:
    """Every `data:` payload of a server-sent-events response, JSON-decoded except [DONE]."""
    events: list[Any] = []
    async for raw in response.content:
        line = raw.decode().strip()
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


@functools.cache
def _reference_model(path: str) -> tuple[Any, Any]:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoTokenizer,
    )

    architectures = AutoConfig.from_pretrained(path).architectures or []
    image_text = any(a.endswith("ForConditionalGeneration") for a in architectures)
    auto: Any = AutoModelForImageTextToText if image_text else AutoModelForCausalLM
    return auto.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def reference_greedy_ids(
    model_dir: Path, prompt: str, max_new_tokens: int, **kwargs: Any
) -> list[int]:
    """The tokens transformers' own `generate` picks greedily for `prompt` (batch of one)."""
    import torch

    model, tokenizer = _reference_model(str(model_dir))
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, **kwargs)
    return [int(t) for t in out[0, ids.shape[1] :]]


def reference_greedy(model_dir: Path, prompt: str, max_new_tokens: int, **kwargs: Any) -> str:
    """The text of `reference_greedy_ids`, special tokens left out as the server does."""
    _, tokenizer = _reference_model(str(model_dir))
    ids = reference_greedy_ids(model_dir, prompt, max_new_tokens, **kwargs)
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def reference_tokens(model_dir: Path, text: str) -> list[int]:
    _, tokenizer = _reference_model(str(model_dir))
    return list(tokenizer(text).input_ids)


StartServer = Callable[..., Awaitable[Server]]
"""The `start_server` fixture: starts a server, keyword arguments override `ServerOptions`."""
