"""An emulated cluster: the API-server emulator, a client connected to it over HTTP, and the
lifecycle simulators that give its objects a life.

This is the cluster of kaito's tests, of `kaito emulator` and of the local mode. The three parts
stay separate (the store knows nothing of pods starting; the simulators speak to it through the
same client protocol as any controller would), and this module only starts and stops them in
the right order: server first, then the client, then the simulators; the reverse on the way out.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from kaito.kube._client import KubeClient
from kaito.kube.emulator import Emulator, nodeclaim_crd
from kaito.kube.simulators import SimulatorConfig, Simulators


class EmulatedCluster:
    """`async with EmulatedCluster(crds=[...]) as cluster:` gives `cluster.client` (a
    `KubeClient` speaking HTTP to the emulator), `cluster.emulator` (its store, faults and
    request log), `cluster.simulators` (None when `simulate=False`) and `cluster.kubeconfig`
    (a file for kubectl and for other processes)."""

    def __init__(
        self,
        crds: Iterable[Mapping[str, Any]] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        simulate: bool = True,
        simulator_config: SimulatorConfig | None = None,
        kubeconfig: str | Path | None = None,
        with_nodeclaim_crd: bool = True,
        watch_history: int = 10000,
    ) -> None:
        all_crds = [*crds]
        if with_nodeclaim_crd:
            all_crds.append(nodeclaim_crd())
        self.emulator = Emulator(host=host, port=port, crds=all_crds, watch_history=watch_history)
        self._simulate = simulate
        self._simulator_config = simulator_config
        self._kubeconfig = Path(kubeconfig) if kubeconfig is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._client: KubeClient | None = None
        self.simulators: Simulators | None = None

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            raise RuntimeError("the emulated cluster is not started")
        return self._client

    @property
    def kubeconfig(self) -> Path:
        if self._kubeconfig is None:
            raise RuntimeError("the emulated cluster is not started")
        return self._kubeconfig

    @property
    def url(self) -> str:
        return self.emulator.url

    async def start(self) -> None:
        await self.emulator.start()
        try:
            if self._kubeconfig is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="kaito-cluster-")
                self._kubeconfig = Path(self._tmp.name) / "kubeconfig"
            self.emulator.write_kubeconfig(self._kubeconfig)
            self._client = await KubeClient.from_kubeconfig(self._kubeconfig)
            if self._simulate:
                self.simulators = Simulators(self._client, self._simulator_config)
                await self.simulators.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.simulators is not None:
            await self.simulators.stop()
            self.simulators = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        await self.emulator.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._kubeconfig = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
