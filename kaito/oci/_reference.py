"""Image references (`registry/repository[:tag][@digest]`), parsed without I/O.

The grammar is the one container tools share (the distribution project's reference package):
the first path component is a registry host when it contains a dot or a colon or is
`localhost`; otherwise the reference is on Docker Hub, where a one-component repository lives
under `library/`. Repository components are lowercase. A tag is up to 128 word characters, dots
and dashes; a digest is `sha256:` and 64 hex digits. Without tag and digest the tag is `latest`.

Docker Hub is the one registry whose API host differs from its name (`docker.io` is served by
`registry-1.docker.io`); `api_host` carries that. Registries on the loopback interface are
spoken to over plain HTTP by default, as container engines do.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

from kaito.oci._errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_DOCKER_HUB_API = "registry-1.docker.io"

_HOST_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(
    rf"^(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@attrs.frozen
class Reference:
    """A parsed image reference."""

    registry: str
    """The registry's name as written (`docker.io` for Docker Hub)."""
    repository: str
    """The repository path, e.g. `adapters/phi-3`."""
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse `text`; raises `InvalidReferenceError` naming what is wrong."""
        if not text or text != text.strip():
            raise InvalidReferenceError(f"invalid image reference {text!r}: empty or padded")
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST.match(digest):
                raise InvalidReferenceError(
                    f"invalid image reference {text!r}: the digest must be sha256: and 64 "
                    "lowercase hex digits"
                )
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG.match(tag):
                raise InvalidReferenceError(
                    f"invalid image reference {text!r}: the tag {tag!r} must be up to 128 "
                    "letters, digits, '_', '.' or '-', not starting with '.' or '-'"
                )
        parts = rest.split("/")
        first = parts[0]
        if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, parts[1:]
            if not _HOST.match(registry):
                raise InvalidReferenceError(
                    f"invalid image reference {text!r}: {registry!r} is not a registry host"
                )
        else:
            registry, path = DOCKER_HUB, parts
        for component in path:
            if not _PATH_COMPONENT.match(component):
                raise InvalidReferenceError(
                    f"invalid image reference {text!r}: the repository component "
                    f"{component!r} must be lowercase letters and digits, separated by '.', "
                    "'_', '__' or dashes"
                )
        if registry in _DOCKER_HUB_NAMES:
            registry = DOCKER_HUB
            if len(path) == 1:
                path = ["library", *path]
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry=registry, repository="/".join(path), tag=tag, digest=digest)

    @property
    def api_host(self) -> str:
        """The host (and port) the registry API is served on."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def version(self) -> str:
        """What the manifest URL names: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def is_loopback(self) -> bool:
        """Whether the registry is on this machine (localhost or a loopback address)."""
        host = self.registry
        if host.startswith("["):
            host = host[1 : host.index("]")]
        elif ":" in host:
            host = host.rsplit(":", 1)[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text
