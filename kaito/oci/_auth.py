"""Registry credentials, and reading them from a docker config (a dockerconfigjson secret).

A workspace names its push secret (`tuning.output.imagePushSecret`) and pull secrets
(`imagePullSecrets`) as Kubernetes secrets of type `kubernetes.io/dockerconfigjson`; mounted in
a pod, such a secret is a file `.dockerconfigjson` holding `{"auths": {HOST: ENTRY}}`. An entry
carries `auth` (base64 of `user:password`) or `username` and `password`. The older
`kubernetes.io/dockercfg` layout (hosts at the top level, no `auths`) is read too.

Hosts in the file are matched the way docker matches them: the key may carry a scheme and a
path (`https://index.docker.io/v1/`), and Docker Hub has several names. Identity tokens
(`identitytoken`, an OAuth2 refresh token some cloud registries hand out) are not supported:
kaito says so instead of sending nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from kaito.oci._errors import CredentialsError

DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
"""The file name a mounted `kubernetes.io/dockerconfigjson` secret has."""
_DIRECTORY_FILES = (DOCKERCONFIGJSON_KEY, "config.json", ".dockercfg")
_DOCKER_HUB_KEYS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@attrs.frozen
class RegistryAuth:
    """A user name and password (or token used as a password) for one registry."""

    username: str
    password: str = attrs.field(repr=False)

    @classmethod
    def from_docker_config(cls, path: str | Path, registry: str) -> RegistryAuth:
        """The credentials for `registry` (a host, with port if any) in a docker config file.

        `path` is the file, or a directory holding `.dockerconfigjson`, `config.json` or
        `.dockercfg` (a mounted secret). Raises `CredentialsError` when the file is unreadable
        or has no usable entry for the registry, naming the registries it does have.
        """
        return cls.from_docker_configs([path], registry)

    @classmethod
    def from_docker_configs(cls, paths: Sequence[str | Path], registry: str) -> RegistryAuth:
        """The credentials for `registry` in the first of several docker configs that has an
        entry for it (a pod's several pull secrets, tried as a kubelet tries them). A config
        that cannot be read is passed over like one without the registry; when none serves,
        `CredentialsError` says what each one lacked."""
        if not paths:
            raise CredentialsError("no docker config given")
        wanted = _host_key(registry)
        problems: list[str] = []
        for path in paths:
            try:
                file = _config_file(Path(path))
                auths = _read_auths(file)
            except CredentialsError as exc:
                problems.append(str(exc))
                continue
            for key, entry in auths.items():
                if _host_key(key) == wanted:
                    return _entry_credentials(entry, file, key)
            known = ", ".join(sorted(auths)) or "none"
            problems.append(
                f"{file} has no credentials for the registry {registry} "
                f"(it has entries for: {known})"
            )
        raise CredentialsError("; ".join(problems))


def _config_file(path: Path) -> Path:
    if path.is_dir():
        for name in _DIRECTORY_FILES:
            if (path / name).is_file():
                return path / name
        raise CredentialsError(
            f"{path} holds no docker config (looked for {', '.join(_DIRECTORY_FILES)})"
        )
    return path


def _read_auths(file: Path) -> dict[str, Any]:
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CredentialsError(f"cannot read the docker config {file}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"the docker config {file} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CredentialsError(f"the docker config {file} must hold a JSON object")
    auths = raw.get("auths", raw)
    if not isinstance(auths, dict):
        raise CredentialsError(f"'auths' in the docker config {file} must be an object")
    return auths


def _host_key(text: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`; `HOST:5000/` -> `host:5000`."""
    host = text.strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB_KEYS else host


def _entry_credentials(entry: object, file: Path, key: str) -> RegistryAuth:
    where = f"{file} (entry {key!r})"
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where} must be an object")
    username, password = entry.get("username"), entry.get("password")
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise CredentialsError(f"{where}: 'auth' is not base64 of user:password") from exc
        if ":" not in decoded:
            raise CredentialsError(f"{where}: 'auth' must encode user:password")
        username, password = decoded.split(":", 1)
    if isinstance(username, str) and username and isinstance(password, str):
        return RegistryAuth(username, password)
    if entry.get("identitytoken"):
        raise CredentialsError(
            f"{where} holds an identity token, which kaito does not support; "
            "use a user name and password (or an access token as the password)"
        )
    raise CredentialsError(f"{where} has neither 'auth' nor 'username' and 'password'")
