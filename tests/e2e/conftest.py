"""Fixtures of the end-to-end tests: a fresh emulated cluster per test, with the lifecycle
simulators running (optionally with failure stages), and the operators the test starts on it.

`make_env(*stages)` starts one with extra simulator stages; `env` is one without. Both stop
every operator (at once, as a kill would), every client and the cluster at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e_support import Env, MakeEnv, environment


@pytest.fixture
async def make_env() -> AsyncIterator[MakeEnv]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(*stages: Any) -> Env:
            env: Env = await stack.enter_async_context(environment(stages))
            return env

        yield make


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()
