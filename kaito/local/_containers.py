"""From a pod's container to a process on this machine (pure: no I/O but looking up programs).

The local kubelet has no container engine. It runs what a container would run, the command and
arguments with the container's environment, as a process of this machine, and translates the
three things that differ between a container and a process:

- **files**: each volume mount's path (`/mnt/config`, `/mnt/adapter`) is replaced by the host
  directory that stands for the volume, wherever the path appears in the command line or the
  environment (`--config /mnt/config/inference_config.yaml` becomes a path under the pod's
  directory in the state dir);
- **ports**: every container port gets its own free port on 127.0.0.1, so that several pods
  (of several workspaces) that all listen on 5000 in their containers can run side by side. The
  port reaches the process through its `--port` flag (`--port 5000` becomes `--port 43117`), or
  through `PORT`/`KAITO_PORT` when the command line has no such flag; `--host 0.0.0.0` becomes
  `127.0.0.1`, since a local model should not listen on the network;
- **programs**: `python` is the interpreter kaito runs on (so the server is the kaito installed
  here), other programs are looked up on PATH. A container without a command (an image's own
  entrypoint) cannot run here, and neither can an init container that copies files out of an
  image (adapters packaged as images): both are reported with the reasons a kubelet uses, so the
  workspace's InferenceReady condition says what is wrong.

`$(VAR)` references in commands and arguments are expanded from the container's environment
as Kubernetes does (`$$` escapes).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

PYTHON_NAMES = frozenset({"python", "python3"})
_PYTHON_VERSIONED = re.compile(r"^python3\.[0-9]+$")
PORT_FLAGS = ("--port",)
HOST_FLAGS = ("--host", "--hostname")
ANY_ADDRESS = frozenset({"0.0.0.0", "::", "[::]", ""})
LOOPBACK = "127.0.0.1"
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD_INDEX = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")

RefKind = Literal["configmap", "secret"]
_ENV_FROM: tuple[tuple[str, RefKind], ...] = (
    ("configMapRef", "configmap"),
    ("secretRef", "secret"),
)
_ENV_KEY_REFS: tuple[tuple[str, RefKind], ...] = (
    ("configMapKeyRef", "configmap"),
    ("secretKeyRef", "secret"),
)
_VOLUME_SOURCES: tuple[tuple[str, RefKind, str], ...] = (
    ("configMap", "configmap", "name"),
    ("secret", "secret", "secretName"),
)


class CannotRun(Exception):
    """The container cannot run as a process here; `reason` is the kubelet's waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@attrs.frozen
class Probe:
    """A container probe, pointed at the process's port on 127.0.0.1."""

    kind: Literal["http", "tcp", "exec"]
    port: int | None = None
    path: str = "/"
    scheme: str = "http"
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}{self.path}"


@attrs.frozen
class LocalProcess:
    """What to start for one container, and how to probe it."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None
    ports: Mapping[int, int]
    """Container port -> port on 127.0.0.1."""
    startup: Probe | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None


# -- what a container needs -----------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _flag_values(argv: Sequence[str], flags: Sequence[str]) -> list[tuple[int, str]]:
    """(index, value) of each `--flag value` or `--flag=value` in argv."""
    found: list[tuple[int, str]] = []
    for i, arg in enumerate(argv):
        for flag in flags:
            if arg == flag and i + 1 < len(argv):
                found.append((i + 1, argv[i + 1]))
            elif arg.startswith(flag + "="):
                found.append((i, arg[len(flag) + 1 :]))
    return found


def _probe_specs(container: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for key in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container.get(key)
        if isinstance(spec, Mapping):
            yield spec


def container_ports(container: Mapping[str, Any]) -> list[int]:
    """Every port the container listens on: declared ports, numeric probe ports and the value
    of a `--port` flag, in that order, without repeats."""
    ports: list[int] = []
    for item in container.get("ports") or []:
        port = _int(item.get("containerPort")) if isinstance(item, Mapping) else None
        if port is not None:
            ports.append(port)
    for spec in _probe_specs(container):
        for handler in ("httpGet", "tcpSocket"):
            port = _int((spec.get(handler) or {}).get("port"))
            if port is not None:
                ports.append(port)
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    for _, value in _flag_values([str(a) for a in argv], PORT_FLAGS):
        port = _int(value)
        if port is not None:
            ports.append(port)
    return list(dict.fromkeys(ports))


def needs_image_files(pod: Mapping[str, Any], container: Mapping[str, Any]) -> bool:
    """Whether an init container works on the files of an image other than the pod's own
    (the adapter copiers): those files do not exist on this machine."""
    spec = pod.get("spec") or {}
    images = {str(c.get("image", "")) for c in spec.get("containers") or []}
    return str(container.get("image", "")) not in images


# -- environment ------------------------------------------------------------------------------


def _field_value(pod: Mapping[str, Any], path: str) -> str:
    meta = pod.get("metadata") or {}
    indexed = _FIELD_INDEX.match(path)
    if indexed:
        return str((meta.get(indexed.group(1)) or {}).get(indexed.group(2), ""))
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP") or LOOPBACK,
        "status.hostIP": status.get("hostIP") or LOOPBACK,
    }
    if path not in values:
        raise CannotRun("CreateContainerConfigError", f"field {path} is not supported here")
    return str(values[path] or "")


def _ref_data(
    refs: Mapping[tuple[RefKind, str], Mapping[str, str]], kind: RefKind, name: str
) -> Mapping[str, str] | None:
    data = refs.get((kind, name))
    if data is None or kind == "configmap":
        return data
    return {k: _decoded(v, name, k).decode("utf-8", "replace") for k, v in data.items()}


def _decoded(text: str, secret: str, key: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise CannotRun(
            "CreateContainerConfigError", f"key {key} of Secret {secret} is not base64"
        ) from None


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known variables are replaced, unknown references stay
    as they are, `$$` is a literal `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(sub, text)


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    refs: Mapping[tuple[RefKind, str], Mapping[str, str]],
) -> dict[str, str]:
    """The container's own environment (envFrom, then env), values resolved."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for key, kind in _ENV_FROM:
            ref = source.get(key)
            if not isinstance(ref, Mapping):
                continue
            data = _ref_data(refs, kind, str(ref.get("name")))
            if data is None:
                if ref.get("optional"):
                    continue
                raise CannotRun("CreateContainerConfigError", f"{kind} {ref.get('name')} not found")
            env.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env") or []:
        name = str(item.get("name"))
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = _field_value(pod, str(source["fieldRef"].get("fieldPath", "")))
            continue
        for key, kind in _ENV_KEY_REFS:
            ref = source.get(key)
            if not isinstance(ref, Mapping):
                continue
            data = _ref_data(refs, kind, str(ref.get("name")))
            value = None if data is None else data.get(str(ref.get("key")))
            if value is None:
                if ref.get("optional"):
                    break
                raise CannotRun(
                    "CreateContainerConfigError",
                    f"env {name}: key {ref.get('key')} of {kind} {ref.get('name')} not found",
                )
            env[name] = value
            break
        else:
            raise CannotRun(
                "CreateContainerConfigError",
                f"env {name}: {', '.join(source)} is not supported in the local mode",
            )
    return env


# -- paths, ports, programs ------------------------------------------------------------------


def mount_map(container: Mapping[str, Any], volumes: Mapping[str, Path]) -> dict[str, str]:
    """Mount path -> host path for each of the container's volume mounts."""
    mounts: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        volume = str(mount.get("name"))
        host = volumes.get(volume)
        if host is None:
            raise CannotRun(
                "CreateContainerConfigError", f"volume {volume} is not available on this machine"
            )
        sub = str(mount.get("subPath") or "")
        mounts[str(mount.get("mountPath")).rstrip("/") or "/"] = str(host / sub if sub else host)
    return mounts


def nested_links(mounts: Mapping[str, str]) -> list[tuple[str, str]]:
    """(link, target) for each mount that lies inside another one (a volume adapter at
    `/mnt/adapter/NAME` inside the adapters directory `/mnt/adapter`): in a container the inner
    volume shows up in the outer one's listing; here a symbolic link at `link` (in the outer
    volume's host directory) to the inner one's host directory does that."""
    links: list[tuple[str, str]] = []
    for inner in sorted(mounts):
        outers = [o for o in mounts if o != inner and inner.startswith(o.rstrip("/") + "/")]
        if not outers:
            continue
        outer = max(outers, key=len)
        relative = inner[len(outer.rstrip("/")) + 1 :]
        link, target = Path(mounts[outer]) / relative, Path(mounts[inner])
        if link == target or target in link.parents or link in target.parents:
            continue  # the same directory (a subPath of the outer volume): nothing to show
        links.append((str(link), str(target)))
    return links


def rewrite_paths(text: str, mounts: Mapping[str, str]) -> str:
    """`text` with every mount path that appears as a path replaced by its host path."""
    for mount in sorted(mounts, key=len, reverse=True):
        pattern = re.compile(r"(?<![\w./-])" + re.escape(mount) + r"(?=/|$|[\s'\"=:;,)])")
        text = pattern.sub(mounts[mount].replace("\\", "\\\\"), text)
    return text


def _program(name: str, python: str, path: str | None) -> str | None:
    if name in PYTHON_NAMES or _PYTHON_VERSIONED.match(name):
        return python
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=path)


def _probe(
    spec: Any,
    ports: Mapping[int, int],
    named: Mapping[str, int],
    rewrite: Callable[[str], str],
) -> Probe | None:
    if not isinstance(spec, Mapping):
        return None

    def probe(kind: Literal["http", "tcp", "exec"], **fields: Any) -> Probe:
        return Probe(
            kind,
            initial_delay=float(spec.get("initialDelaySeconds") or 0),
            period=float(spec.get("periodSeconds") or 10),
            timeout=float(spec.get("timeoutSeconds") or 1),
            failure_threshold=int(spec.get("failureThreshold") or 3),
            success_threshold=int(spec.get("successThreshold") or 1),
            **fields,
        )

    def host_port(value: Any) -> int | None:
        port = _int(value)
        if port is None and isinstance(value, str):
            port = named.get(value)
        return ports.get(port) if port is not None else None

    if isinstance(spec.get("httpGet"), Mapping):
        get = spec["httpGet"]
        return probe(
            "http",
            port=host_port(get.get("port")),
            path=str(get.get("path") or "/"),
            scheme=str(get.get("scheme") or "HTTP").lower(),
        )
    if isinstance(spec.get("tcpSocket"), Mapping):
        return probe("tcp", port=host_port(spec["tcpSocket"].get("port")))
    if isinstance(spec.get("exec"), Mapping):
        return probe(
            "exec", command=tuple(rewrite(str(a)) for a in spec["exec"].get("command") or [])
        )
    return None


def local_process(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    volumes: Mapping[str, Path],
    ports: Mapping[int, int],
    refs: Mapping[tuple[RefKind, str], Mapping[str, str]] | None = None,
    python: str,
    base_env: Mapping[str, str] | None = None,
    default_mounts: Mapping[str, Path] | None = None,
) -> LocalProcess:
    """The process that stands for `container` of `pod` (see the module docstring).

    `volumes` maps the pod's volume names to host directories, `ports` each container port to
    a port on 127.0.0.1, `refs` holds the data of the ConfigMaps and Secrets the environment
    refers to, keyed `("configmap" | "secret", name)`. `base_env` is the environment the
    process starts from (default: this process's). `default_mounts` maps paths the container
    may use without mounting anything there (kaito's adapters directory, which the runtimes
    always name) to host directories. Raises `CannotRun`.
    """
    name = str(container.get("name", ""))
    image = str(container.get("image", "")) or "(none)"
    command = [str(a) for a in container.get("command") or []]
    if not command:
        raise CannotRun(
            "CreateContainerError",
            f"container {name} has no command: the local mode runs commands on this machine "
            f"and cannot run the entrypoint of image {image}",
        )
    mounts = {str(k).rstrip("/"): str(v) for k, v in (default_mounts or {}).items()}
    mounts.update(mount_map(container, volumes))
    own_env = container_env(pod, container, refs or {})

    def rewrite(text: str) -> str:
        return rewrite_paths(text, mounts)

    argv = [rewrite(expand(a, own_env)) for a in [*command, *(container.get("args") or [])]]
    for index, value in _flag_values(argv, PORT_FLAGS):
        port = _int(value)
        if port is not None and port in ports:
            mapped = str(ports[port])
            argv[index] = mapped if argv[index] == value else argv[index][: -len(value)] + mapped
    for index, value in _flag_values(argv, HOST_FLAGS):
        if value in ANY_ADDRESS:
            argv[index] = LOOPBACK if argv[index] == value else argv[index].replace(value, LOOPBACK)
    env = dict(os.environ if base_env is None else base_env)
    for key, value in own_env.items():
        text = rewrite(value)
        port = _int(text)
        if key.endswith("PORT") and port is not None and port in ports:
            text = str(ports[port])
        elif key.endswith("HOST") and text in ANY_ADDRESS - {""}:
            text = LOOPBACK
        env[key] = text
    listening = [p for p in container_ports(container) if p in ports]
    has_port = bool(_flag_values(argv, PORT_FLAGS)) or any(k.endswith("PORT") for k in own_env)
    if listening and not has_port:
        env["PORT"] = env["KAITO_PORT"] = str(ports[listening[0]])
    if not _flag_values(argv, HOST_FLAGS):
        env.setdefault("KAITO_HOST", LOOPBACK)
    env["HOSTNAME"] = str((pod.get("metadata") or {}).get("name", ""))
    program = _program(argv[0], python, env.get("PATH"))
    if program is None:
        raise CannotRun(
            "CreateContainerError",
            f"program {argv[0]!r} of container {name} is not on this machine (the local mode "
            f"runs commands here, not in image {image})",
        )
    argv[0] = program
    named = {
        str(p.get("name")): int(p["containerPort"])
        for p in container.get("ports") or []
        if isinstance(p, Mapping) and p.get("name") and _int(p.get("containerPort")) is not None
    }
    working = container.get("workingDir")
    cwd = rewrite(str(working)) if working and Path(rewrite(str(working))).is_dir() else None
    return LocalProcess(
        name=name,
        argv=tuple(argv),
        env=env,
        cwd=cwd,
        ports=dict(ports),
        startup=_probe(container.get("startupProbe"), ports, named, rewrite),
        readiness=_probe(container.get("readinessProbe"), ports, named, rewrite),
        liveness=_probe(container.get("livenessProbe"), ports, named, rewrite),
    )


def volume_files(
    volume: Mapping[str, Any], refs: Mapping[tuple[RefKind, str], Mapping[str, str]]
) -> dict[str, bytes] | None:
    """The files a configMap or secret volume holds (relative path -> content), {} for an
    emptyDir-like volume, None for a hostPath (used where it is). Raises `CannotRun` when the
    ConfigMap or Secret is missing."""
    if isinstance(volume.get("hostPath"), Mapping):
        return None
    for key, kind, name_key in _VOLUME_SOURCES:
        source = volume.get(key)
        if not isinstance(source, Mapping):
            continue
        name = str(source.get(name_key))
        raw = refs.get((kind, name))
        if raw is None:
            if source.get("optional"):
                return {}
            raise CannotRun(
                "CreateContainerConfigError",
                f"{'ConfigMap' if kind == 'configmap' else 'Secret'} {name} of volume "
                f"{volume.get('name')} not found",
            )
        if kind == "secret":
            data = {k: _decoded(v, name, k) for k, v in raw.items()}
        else:
            data = {k: v.encode("utf-8") for k, v in raw.items()}
        items = source.get("items")
        if items:
            return {
                str(i.get("path")): data[str(i.get("key"))] for i in items if i.get("key") in data
            }
        return data
    return {}
