"""Fixtures for the simulator tests: an emulator, a `KubeClient` for it, the simulators.

Every test runs the simulators against the real emulator over HTTP, through `KubeClient`, the
way the end-to-end tests and the local mode do. `start_sims` starts them with a configuration
(and, for tests about time, a `ManualClock`) and stops them when the test ends. Object
builders live in `sim_support`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sim_support import StartSims

from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator, nodeclaim_crd
from kaito.kube.simulators import Clock, SimulatorConfig, Simulators


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(crds=[nodeclaim_crd()]) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator, tmp_path: Path) -> AsyncIterator[KubeClient]:
    path = emu.write_kubeconfig(tmp_path / "kubeconfig")
    async with await KubeClient.from_kubeconfig(path, request_timeout=10) as kube:
        yield kube


@pytest.fixture
async def start_sims(client: KubeClient) -> AsyncIterator[StartSims]:
    started: list[Simulators] = []

    async def start(
        config: SimulatorConfig | None = None, *, clock: Clock | None = None
    ) -> Simulators:
        sims = Simulators(client, config, clock=clock)
        await sims.start()
        started.append(sims)
        return sims

    yield start
    for sims in started:
        await sims.stop()
