"""Fixtures of the HF runtime tests: one tiny phi-3 model per session, and in-process servers.

The model is generated once into a session temporary cache (`ensure_tiny_model`), the same way
the quickstart makes it. Servers run in the test's event loop on an aiohttp test server bound
to 127.0.0.1, with handler cancellation on as in production, so a client that disconnects
cancels its handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hf_helpers import Server, StartServer

from kaito.presets import builtin_presets
from kaito.runtimes.hf import ServerOptions, create_app, ensure_tiny_model, wait_until_loaded


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kaito-models")


@pytest.fixture(scope="session")
def phi3_model(model_cache: Path) -> Path:
    return ensure_tiny_model(builtin_presets()["phi-3-mini-4k-instruct"], model_cache)


@pytest.fixture
async def start_server(phi3_model: Path, tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start a server on the tiny phi-3 model; keyword arguments override `ServerOptions`."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**overrides: Any) -> Server:
        values: dict[str, Any] = {
            "model": str(phi3_model),
            "adapters_dir": str(tmp_path / "no-adapters"),
            "served_model_name": "tiny",
        }
        values.update(overrides)
        app = create_app(ServerOptions(**values))
        client: TestClient[Any, Any] = TestClient(TestServer(app, handler_cancellation=True))
        await client.start_server()
        clients.append(client)
        error = await wait_until_loaded(app)
        assert error is None, error
        return Server(client)

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server()
