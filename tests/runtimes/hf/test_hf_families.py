"""Every model family the catalog uses, served end to end on its tiny model: greedy text equal
to transformers' `generate` alone and in a mixed batch, and the family's chat template applied.

The families differ where batching can go wrong: grouped-query attention (llama, qwen), sliding
windows (gemma 3, gpt-oss; the prompts here are longer than their tiny windows), mixtures of
experts (gpt-oss), image-text classes served for text (gemma 3, mistral 3), parallel attention
(falcon).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hf_helpers import StartServer, reference_greedy

from kaito.presets import builtin_presets
from kaito.runtimes.hf import ensure_tiny_model

LONG = (
    "Kubernetes runs containers on a group of machines called a cluster. You describe what you "
    "want in a file, and the control plane works to make the cluster match that description."
)
PROMPTS = [LONG, "The cat sat by the window and", "A"]


@pytest.mark.parametrize(
    "preset_name",
    [
        "llama-3.1-8b-instruct",
        "qwen2.5-coder-7b-instruct",
        "qwen3-8b-awq",
        "mistral-7b-instruct",
        "ministral-3-3b-instruct",
        "gemma-3-4b-instruct",
        "gpt-oss-20b",
        "falcon-7b-instruct",
    ],
)
async def test_each_family_serves_what_generate_produces(
    start_server: StartServer, model_cache: Path, preset_name: str
) -> None:
    model = ensure_tiny_model(builtin_presets()[preset_name], model_cache)
    server = await start_server(model=str(model), max_batch_size=4)
    expected = [reference_greedy(model, p, 8) for p in PROMPTS]
    for prompt, text in zip(PROMPTS, expected, strict=True):
        answer = await server.complete(prompt, max_tokens=8)
        assert answer["choices"][0]["text"] == text, prompt
    together = await asyncio.gather(*(server.complete(p, max_tokens=8) for p in PROMPTS))
    assert [a["choices"][0]["text"] for a in together] == expected
    status, chat = await server.post(
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "temperature": 0},
    )
    assert status == 200, chat
    assert chat["usage"]["prompt_tokens"] > 1
