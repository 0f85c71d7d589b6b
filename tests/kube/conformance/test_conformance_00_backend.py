"""0. The backend answers: version, discovery root, and its own namespace (also the probe that
reports, once, whether a real cluster is configured)."""

from __future__ import annotations

import pytest

from kaito.kube import NAMESPACE, KubeClient

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)


async def test_backend_answers(backend: Backend, client: KubeClient, ns: str) -> None:
    namespace = await client.get(NAMESPACE, ns)
    assert namespace["metadata"]["name"] == ns
    assert namespace["status"]["phase"] == "Active"
    assert client.requests.count("create", "namespaces") == 1
    assert backend.real is (backend.emulator is None)
