"""Fixtures for the emulator's own tests: a running emulator and a raw HTTP client for it.

These tests speak plain HTTP (aiohttp) to a real socket, so they check the wire format itself;
the conformance suite repeats the semantics through the kubernetes_asyncio-based client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from emu_support import Http, gadget_crd

from kaito.kube.emulator import Emulator, nodeclaim_crd


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(crds=[gadget_crd(), nodeclaim_crd()], bookmark_interval=0.2) as emulator:
        yield emulator


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(session, emu.url)
