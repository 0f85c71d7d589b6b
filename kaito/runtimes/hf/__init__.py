"""The Hugging Face transformers runtime: kaito's own inference server, and tiny models.

`python -m kaito.runtimes.hf` serves a transformers model over HTTP on port 5000: the legacy
`POST /chat` API of the seed, an OpenAI-compatible API (`/v1/chat/completions` with streaming,
`/v1/completions`, `/v1/models`), `GET /health` and `GET /metrics`. Concurrent requests share
one running batch that requests join and leave between decode steps (continuous batching);
LoRA adapters found under the adapters directory are applied with their strengths
(`KAITO_ADAPTER_STRENGTHS`, a `strength` file, or 1.0; see `--help`).

`generate_tiny_model` / `ensure_tiny_model` make small random models with a preset's exact
architecture, tokenizer markers and chat template, so that tests and the offline quickstart go
through the same loading path as a real preset.

Importing this package does not import torch, transformers or aiohttp: `create_app` and the
generators import them when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaito.runtimes.hf._adapters import STRENGTH_FILE, STRENGTHS_ENV
from kaito.runtimes.hf._options import OptionsError, ServerOptions, parse_options
from kaito.runtimes.hf._tiny import (
    CACHE_ENV,
    TinyModelError,
    TinySize,
    default_cache_dir,
    ensure_tiny_model,
    generate_tiny_model,
)

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "CACHE_ENV",
    "STRENGTHS_ENV",
    "STRENGTH_FILE",
    "OptionsError",
    "ServerOptions",
    "TinyModelError",
    "TinySize",
    "create_app",
    "default_cache_dir",
    "ensure_tiny_model",
    "generate_tiny_model",
    "parse_options",
    "wait_until_loaded",
]


def create_app(options: ServerOptions) -> web.Application:
    """The inference server as an aiohttp application (what `python -m kaito.runtimes.hf`
    runs). The model starts loading when the application starts; `/health` is 503 until then."""
    from kaito.runtimes.hf._server import create_app as _create_app

    return _create_app(options)


async def wait_until_loaded(app: web.Application) -> str | None:
    """Wait until a started application has loaded its model; the error message if it failed."""
    from kaito.runtimes.hf._server import wait_until_loaded as _wait

    return await _wait(app)
