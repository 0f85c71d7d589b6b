"""Where the client finds its cluster: a kubeconfig file, or the pod's service account.

The parsing and credential handling (certificates, tokens, exec plugins, token refresh) are
kubernetes_asyncio's; this module only decides which source to use, and always fills a fresh
`Configuration` instead of the library's process-wide default, so that two clients for two
clusters (a test's emulator and a real cluster, say) never share settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_kube_config
from kubernetes_asyncio.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_HOST_ENV_NAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)

from kaito.kube._errors import KubeError


class ConfigError(KubeError):
    """No usable cluster configuration: missing or broken kubeconfig, unknown context, or no
    service account when running in-cluster was asked for."""


def kubeconfig_path(path: str | os.PathLike[str] | None = None) -> str:
    """The kubeconfig to read: `path`, else `$KUBECONFIG` (may list several files joined by
    the OS path separator), else `~/.kube/config`. Read at call time, not at import."""
    if path is not None:
        return os.fspath(path)
    env = os.environ.get("KUBECONFIG")
    if env:
        return env
    return str(Path.home() / ".kube" / "config")


def _existing_kubeconfig(path: str | os.PathLike[str] | None) -> str:
    source = kubeconfig_path(path)
    candidates = [os.path.expanduser(p) for p in source.split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in candidates):
        raise ConfigError(f"kubeconfig not found: {source}")
    return source


async def load_kubeconfig(
    path: str | os.PathLike[str] | None = None, context: str | None = None
) -> Configuration:
    """A configuration for `context` (default: the file's current context) of a kubeconfig."""
    source = _existing_kubeconfig(path)
    configuration = Configuration()
    try:
        await load_kube_config(
            config_file=source,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, ValueError) as exc:
        raise ConfigError(f"cannot use kubeconfig {source}: {exc}") from exc
    return configuration


def load_in_cluster(
    *,
    token_file: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Configuration:
    """A configuration from the pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT`, the
    mounted token (re-read as it rotates) and the cluster CA. The files default to the
    standard service-account mount."""
    configuration = Configuration()
    loader = InClusterConfigLoader(
        token_filename=os.fspath(token_file or SERVICE_TOKEN_FILENAME),
        cert_filename=os.fspath(ca_file or SERVICE_CERT_FILENAME),
        environ=dict(os.environ if environ is None else environ),
    )
    try:
        loader.load_and_set(configuration)
    except (ConfigException, OSError) as exc:
        raise ConfigError(f"cannot use the in-cluster service account: {exc}") from exc
    return configuration


def in_cluster(environ: Mapping[str, str] | None = None) -> bool:
    """True when running in a pod (the service host variable is set)."""
    return bool((os.environ if environ is None else environ).get(SERVICE_HOST_ENV_NAME))
