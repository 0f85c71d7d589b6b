"""Building a client from a kubeconfig, from a pod's service account, or whichever applies."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kaito.kube import CONFIG_MAP, ConfigError, KubeClient

pytestmark = pytest.mark.timeout(20)

CM = {"kind": "ConfigMap", "metadata": {"name": "c"}}
CM_PATH = "/api/v1/namespaces/ns/configmaps/c"


async def test_kubeconfig_current_context(server: Any, write_kubeconfig: Any) -> None:
    path = write_kubeconfig({"one": (server.url, "token-1")}, "one")
    async with await KubeClient.from_kubeconfig(path) as kube:
        server.reply("GET", CM_PATH, CM)
        assert (await kube.get(CONFIG_MAP, "c", namespace="ns"))["kind"] == "ConfigMap"
        assert kube.host == server.url
    assert server.last().headers["Authorization"] == "Bearer token-1"
    assert server.last().headers["User-Agent"] == "kaito"


async def test_kubeconfig_named_context(server: Any, write_kubeconfig: Any) -> None:
    path = write_kubeconfig(
        {"one": ("http://127.0.0.1:1", "token-1"), "two": (server.url, "token-2")}, "one"
    )
    server.reply("GET", CM_PATH, CM)
    async with await KubeClient.from_kubeconfig(str(path), context="two") as kube:
        await kube.get(CONFIG_MAP, "c", namespace="ns")
    assert server.last().headers["Authorization"] == "Bearer token-2"


async def test_kubeconfig_from_environment(
    server: Any, write_kubeconfig: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = write_kubeconfig({"env": (server.url, "token-env")}, "env")
    # Several files joined by the path separator, as kubectl allows; missing ones are skipped.
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{path}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    server.reply("GET", CM_PATH, CM)
    async with await KubeClient.from_config() as kube:
        await kube.get(CONFIG_MAP, "c", namespace="ns")
    assert server.last().headers["Authorization"] == "Bearer token-env"


async def test_kubeconfig_errors(
    server: Any, write_kubeconfig: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="not found"):
        await KubeClient.from_kubeconfig(tmp_path / "nope")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope-either"))
    with pytest.raises(ConfigError, match="not found"):
        await KubeClient.from_kubeconfig()
    path = write_kubeconfig({"one": (server.url, "t")}, "one")
    with pytest.raises(ConfigError, match="cannot use kubeconfig"):
        await KubeClient.from_kubeconfig(path, context="missing")


# -- in-cluster ---------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "ca.crt", tmp_path / "tls.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=15,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_server(certificate: tuple[Path, Path], start_server: Any) -> Any:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate[0], certificate[1])
    return await start_server(ssl_context=context)


async def test_in_cluster_over_tls_with_the_service_account(
    tls_server: Any,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = tls_server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    token = tmp_path / "token"
    token.write_text("sa-token")
    tls_server.reply("GET", CM_PATH, CM)
    kube = await KubeClient.in_cluster(token_file=token, ca_file=certificate[0])
    try:
        assert kube.host == f"https://127.0.0.1:{port}"
        await kube.get(CONFIG_MAP, "c", namespace="ns")
    finally:
        await kube.close()
    assert tls_server.last().headers["Authorization"] == "Bearer sa-token"


async def test_in_cluster_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="service account"):
        await KubeClient.in_cluster()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match="service account"):
        await KubeClient.in_cluster(token_file=tmp_path / "none", ca_file=tmp_path / "none")


async def test_from_config_prefers_in_cluster(
    server: Any, write_kubeconfig: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A valid kubeconfig is present, but inside a pod the service account decides; the
    # standard mount is absent here, so the in-cluster attempt is what fails.
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig({"k": (server.url, "t")}, "k")))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError, match="in-cluster"):
        await KubeClient.from_config()
