"""Pushing and pulling adapters and data with oras, with kaito's own transport policy.

oras-py (`oras.provider.Registry`) knows the registry API: blob upload sessions, manifest and
blob URLs, existence checks. Two of its habits do not suit a job that runs unattended, so the
registry class here keeps the protocol and replaces `do_request`, the one method every call goes
through:

- Retries. oras retries any failure up to five times with sleeps of 3, 5, 11, 29 and 83 seconds,
  wrong credentials included, so an unreachable registry takes two minutes to report. Here
  network errors and 429/5xx answers are retried `attempts` times with a short exponential
  backoff; a 401 or 403 is never retried blindly.
- Authentication. The registry's challenge decides: `Basic` (a plain registry with htpasswd)
  gets the user and password; `Bearer` (token services: Docker Hub, GHCR, ACR, ...) gets a
  token from the realm, with the user and password when there are any, for the scope the
  registry asked for. A second 401 means the credentials are wrong, and says so.

Blobs are verified against their digests as they are downloaded (oras does not), pulls land in a
staging directory that is renamed into place, so a failed pull never leaves half an adapter.

oras, requests and their exceptions are imported when first used: `import kaito.oci` needs
neither.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from kaito.oci._auth import RegistryAuth
from kaito.oci._errors import (
    ArtifactError,
    ArtifactNotFoundError,
    AuthenticationError,
    OCIError,
    RegistryError,
    RegistryUnreachableError,
)
from kaito.oci._layout import (
    ACCEPTED_MEDIA_TYPES,
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    CREATED_ANNOTATION,
    IMAGE_DATA_DIR,
    MANIFEST_MEDIA_TYPE,
    Descriptor,
    Layer,
    LayerKind,
    adapter_files,
    adapter_manifest,
    artifact_type,
    blob_descriptor,
    choose_from_index,
    config_blob,
    file_descriptor,
    is_index,
    missing_adapter_files,
    read_layers,
)
from kaito.oci._reference import Reference

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHUNK = 1 << 20
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@attrs.frozen(kw_only=True)
class RegistryOptions:
    """How to talk to a registry."""

    plain_http: bool | None = None
    """HTTP instead of HTTPS; None: plain HTTP for registries on a loopback address only."""
    attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    """Tries per request on network errors and 429/5xx answers."""
    backoff_seconds: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    """The first wait between tries; it doubles each time, up to `max_backoff_seconds`."""
    max_backoff_seconds: float = 8.0
    timeout_seconds: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    """Connect and read timeout of each request."""

    def use_http(self, reference: Reference) -> bool:
        return reference.is_loopback if self.plain_http is None else self.plain_http


@attrs.frozen
class PushedArtifact:
    """What `push_adapter` pushed."""

    reference: str
    digest: str
    """The manifest digest: `REFERENCE@DIGEST` names exactly this push."""
    files: tuple[str, ...]
    size: int
    """Bytes of all files."""


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"kaito.oci needs the {module.split('.')[0]!r} package; "
            "install it with: pip install 'kaito[tuning]'"
        ) from exc


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: Any = _import("requests.exceptions")
    return (errors.ConnectionError, errors.Timeout, errors.ChunkedEncodingError)


def _registry_message(response: Any) -> str:
    """The registry's own words for an error: `CODE: message` of the first OCI error."""
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError, IndexError):
        error = response.json()["errors"][0]
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return str(getattr(response, "reason", "") or "")


class _Transport:
    """Sends one request with retries and authentication (see the module doc)."""

    def __init__(
        self,
        reference: Reference,
        auth: RegistryAuth | None,
        options: RegistryOptions,
        action: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._reference = reference
        self._auth = auth
        self._options = options
        self._action = action
        self._sleep = sleep
        self._authorization: str | None = None

    @property
    def _host(self) -> str:
        return self._reference.registry

    def _basic(self) -> str | None:
        if self._auth is None:
            return None
        pair = f"{self._auth.username}:{self._auth.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _wait(self, failures: int) -> None:
        delay = self._options.backoff_seconds * 2 ** (failures - 1)
        self._sleep(min(delay, self._options.max_backoff_seconds))

    def send(self, session: Any, method: str, url: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", None) or {})
        network = _network_errors()
        failures = 0
        authenticated = False
        while True:
            if self._authorization is not None:
                headers["Authorization"] = self._authorization
            try:
                response = session.request(
                    method, url, headers=headers, timeout=self._options.timeout_seconds, **kwargs
                )
            except network as exc:
                failures += 1
                if failures >= self._options.attempts:
                    raise RegistryUnreachableError(
                        f"cannot reach the registry {self._host} "
                        f"({type(exc).__name__}: {exc}); gave up after {failures} attempts"
                    ) from exc
                log.warning("registry %s: %s; retrying", self._host, exc)
                self._wait(failures)
                continue
            if response.status_code == 401 and not authenticated:
                authenticated = True
                self._authenticate(session, response)
                continue
            if response.status_code in (401, 403):
                raise self._denied(response)
            if response.status_code in _RETRY_STATUSES and failures + 1 < self._options.attempts:
                failures += 1
                log.warning(
                    "registry %s answered %s to %s; retrying",
                    self._host,
                    response.status_code,
                    method,
                )
                response.close()
                self._wait(failures)
                continue
            return response

    def _denied(self, response: Any) -> AuthenticationError:
        detail = _registry_message(response)
        status = response.status_code
        if status == 403:
            who = f"user {self._auth.username!r}" if self._auth else "an anonymous client"
            message = (
                f"{who} may not {self._action} {self._reference.repository} at {self._host} "
                f"(HTTP 403: {detail or 'denied'})"
            )
        elif self._auth is None:
            message = (
                f"the registry {self._host} requires credentials to {self._action} "
                f"{self._reference.repository} (HTTP 401); give a docker config (a "
                f"dockerconfigjson secret) with an entry for {self._host}"
            )
        else:
            message = (
                f"authentication failed: the registry {self._host} rejected the credentials "
                f"of user {self._auth.username!r} (HTTP 401: {detail or 'unauthorized'})"
            )
        return AuthenticationError(message, status)

    def _authenticate(self, session: Any, response: Any) -> None:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            basic = self._basic()
            if basic is None:
                raise self._denied(response)
            self._authorization = basic
            return
        if scheme != "bearer":
            raise AuthenticationError(
                f"the registry {self._host} asks for {challenge or 'no'} authentication, which "
                "kaito does not speak (it speaks Basic and Bearer)",
                401,
            )
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"the registry {self._host} sent a Bearer challenge without realm")
        query = {key: params[key] for key in ("service", "scope") if key in params}
        headers = {"Accept": "application/json"}
        basic = self._basic()
        if basic is not None:
            headers["Authorization"] = basic
        try:
            answer = session.get(
                realm, params=query, headers=headers, timeout=self._options.timeout_seconds
            )
        except _network_errors() as exc:
            raise RegistryUnreachableError(
                f"cannot reach the token service {realm} of {self._host}: {exc}"
            ) from exc
        if answer.status_code in (401, 403):
            who = f"user {self._auth.username!r}" if self._auth else "anonymous access"
            raise AuthenticationError(
                f"authentication failed: the token service {realm} of {self._host} refused "
                f"{who} (HTTP {answer.status_code}: {_registry_message(answer) or 'denied'})",
                answer.status_code,
            )
        if answer.status_code != 200:
            raise RegistryError(
                f"the token service {realm} of {self._host} answered HTTP {answer.status_code}",
                answer.status_code,
            )
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service {realm} of {self._host} returned no token")
        self._authorization = f"Bearer {token}"


@functools.cache
def _registry_class() -> Any:
    provider: Any = _import("oras.provider")

    class _Registry(provider.Registry):  # type: ignore[misc]
        """oras' registry client with kaito's transport in its single request method."""

        transport: _Transport

        def do_request(
            self,
            url: str,
            method: str = "GET",
            data: Any = None,
            headers: dict[str, str] | None = None,
            json: Any = None,
            stream: bool = False,
        ) -> Any:
            return self.transport.send(
                self.session, method, url, data=data, headers=headers, json=json, stream=stream
            )

    return _Registry


class _Session:
    """One reference, one registry client, one credential."""

    def __init__(
        self,
        reference: Reference,
        auth: RegistryAuth | None,
        options: RegistryOptions,
        action: str,
    ) -> None:
        self.reference = reference
        self.options = options
        http = options.use_http(reference)
        self.registry: Any = _registry_class()(
            hostname=reference.api_host, insecure=http, tls_verify=True
        )
        self.registry.transport = _Transport(reference, auth, options, action)
        self.prefix = "http" if http else "https"
        container_module: Any = _import("oras.container")
        self.container: Any = container_module.Container("kaito", registry=reference.api_host)
        # oras' own name parser treats a first path component with a dot as a host; the
        # reference is already parsed, so its parts are set directly.
        path = reference.repository.split("/")
        self.container.namespace = "/".join(path[:-1]) or None
        self.container.repository = path[-1]
        self.container.tag = reference.tag or "latest"
        self.container.digest = reference.digest

    def close(self) -> None:
        self.registry.session.close()

    def url(self, path: str) -> str:
        return f"{self.prefix}://{path}"

    # -- manifests ----------------------------------------------------------------------------

    def get_manifest(self, version: str | None = None) -> dict[str, Any]:
        version = version or self.reference.version
        response = self.registry.do_request(
            self.url(self.container.manifest_url(version)),
            "GET",
            headers={"Accept": ", ".join(ACCEPTED_MEDIA_TYPES)},
        )
        if response.status_code == 404:
            raise ArtifactNotFoundError(
                f"{self.reference} does not exist in the registry "
                f"(HTTP 404: {_registry_message(response) or 'not found'})",
                404,
            )
        if response.status_code != 200:
            raise RegistryError(
                f"the registry answered HTTP {response.status_code} for the manifest of "
                f"{self.reference}: {_registry_message(response)}",
                response.status_code,
            )
        content = response.content
        if version.startswith("sha256:"):
            actual = "sha256:" + hashlib.sha256(content).hexdigest()
            if actual != version:
                raise ArtifactError(f"{self.reference}: the manifest's digest is {actual}")
        try:
            manifest = json.loads(content)
        except ValueError as exc:
            raise ArtifactError(f"{self.reference}: the manifest is not JSON") from exc
        if not isinstance(manifest, dict):
            raise ArtifactError(f"{self.reference}: the manifest is not a JSON object")
        return manifest

    def resolve_manifest(self) -> dict[str, Any]:
        manifest = self.get_manifest()
        if is_index(manifest):
            manifest = self.get_manifest(choose_from_index(manifest, str(self.reference)))
        return manifest

    def put_manifest(self, manifest: Mapping[str, Any]) -> str:
        body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        response = self.registry.do_request(
            self.url(self.container.manifest_url()),
            "PUT",
            data=body,
            headers={"Content-Type": MANIFEST_MEDIA_TYPE},
        )
        if response.status_code not in (200, 201):
            raise RegistryError(
                f"the registry refused the manifest of {self.reference} "
                f"(HTTP {response.status_code}: {_registry_message(response)})",
                response.status_code,
            )
        return "sha256:" + hashlib.sha256(body).hexdigest()

    # -- blobs --------------------------------------------------------------------------------

    def upload(self, path: Path, descriptor: Descriptor) -> None:
        try:
            response = self.registry.upload_blob(
                str(path), self.container, descriptor.to_json(), do_chunked=False
            )
        except OCIError:
            raise
        except ValueError as exc:  # oras: no upload session URL in the answer
            raise RegistryError(
                f"the registry refused an upload to {self.reference}: {exc}"
            ) from exc
        if response.status_code not in (200, 201, 202):
            raise RegistryError(
                f"the registry refused the blob {descriptor.digest} of {self.reference} "
                f"(HTTP {response.status_code}: {_registry_message(response)})",
                response.status_code,
            )

    def download(self, descriptor: Descriptor, target: Path) -> None:
        """Stream a blob into `target`, checking its size and digest; retried on network
        errors like every request."""
        network = _network_errors()
        for attempt in range(1, self.options.attempts + 1):
            try:
                self._download_once(descriptor, target)
                return
            except network as exc:
                if attempt == self.options.attempts:
                    raise RegistryUnreachableError(
                        f"downloading {descriptor.digest} from {self.reference.registry} failed: "
                        f"{exc}"
                    ) from exc
                log.warning("download of %s broke off (%s); retrying", descriptor.digest, exc)

    def _download_once(self, descriptor: Descriptor, target: Path) -> None:
        response = self.registry.get_blob(self.container, descriptor.digest, stream=True)
        with response:
            if response.status_code != 200:
                raise RegistryError(
                    f"the registry answered HTTP {response.status_code} for the blob "
                    f"{descriptor.digest} of {self.reference}",
                    response.status_code,
                )
            digest = hashlib.sha256()
            size = 0
            with target.open("wb") as out:
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    size += len(chunk)
                    if size > descriptor.size:
                        raise ArtifactError(
                            f"{self.reference}: the blob {descriptor.digest} is larger than the "
                            f"{descriptor.size} bytes its descriptor says"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        actual = "sha256:" + digest.hexdigest()
        if size != descriptor.size or actual != descriptor.digest:
            raise ArtifactError(
                f"{self.reference}: the blob {descriptor.digest} arrived as {actual} "
                f"({size} of {descriptor.size} bytes)"
            )

    def start_upload(self) -> None:
        """Open a blob upload session and cancel it: proves push access without writing."""
        response = self.registry.do_request(
            self.url(self.container.upload_blob_url()), "POST", headers={"Content-Length": "0"}
        )
        if response.status_code != 202:
            raise RegistryError(
                f"the registry answered HTTP {response.status_code} when asked to accept an "
                f"upload to {self.reference}: {_registry_message(response)}",
                response.status_code,
            )
        location = response.headers.get("Location")
        if location:
            if not location.startswith("http"):
                location = f"{self.prefix}://{self.reference.api_host}{location}"
            with contextlib.suppress(OCIError):
                self.registry.do_request(location, "DELETE").close()


@contextlib.contextmanager
def _session(
    reference: Reference, auth: RegistryAuth | None, options: RegistryOptions, action: str
) -> Iterator[_Session]:
    session = _Session(reference, auth, options, action)
    try:
        yield session
    finally:
        session.close()


def _reference(text: str | Reference) -> Reference:
    return text if isinstance(text, Reference) else Reference.parse(text)


# -- push ----------------------------------------------------------------------------------------


def push_adapter(
    directory: str | Path,
    reference: str | Reference,
    auth: RegistryAuth | None = None,
    *,
    annotations: Mapping[str, str] | None = None,
    options: RegistryOptions | None = None,
) -> PushedArtifact:
    """Push the adapter in `directory` (`adapter_config.json`, `adapter_model.safetensors` and
    any other flat files) to `reference` as a kaito adapter artifact (layout: `kaito.oci`)."""
    ref = _reference(reference)
    if ref.digest is not None:
        raise OCIError(f"cannot push to {ref}: a push names a tag, not a digest")
    options = options or RegistryOptions()
    files = adapter_files(Path(directory))
    layers = [file_descriptor(path) for path in files]
    config_bytes = config_blob()
    config = blob_descriptor(CONFIG_MEDIA_TYPE, config_bytes)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = adapter_manifest(
        config, layers, {CREATED_ANNOTATION: created, **(annotations or {})}
    )
    with _session(ref, auth, options, "push to") as session, tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_bytes(config_bytes)
        for path, descriptor in zip(files, layers, strict=True):
            log.info("pushing %s (%d bytes) to %s", path.name, descriptor.size, ref)
            session.upload(path, descriptor)
        session.upload(config_path, config)
        digest = session.put_manifest(manifest)
    log.info("pushed %s@%s", ref, digest)
    return PushedArtifact(
        reference=str(ref),
        digest=digest,
        files=tuple(p.name for p in files),
        size=sum(d.size for d in layers),
    )


def check_push_access(
    reference: str | Reference,
    auth: RegistryAuth | None = None,
    *,
    options: RegistryOptions | None = None,
) -> None:
    """Raise (`AuthenticationError`, `RegistryUnreachableError`, ...) unless `auth` may push to
    `reference`. It opens an upload session and cancels it, so nothing is written; a tuning job
    calls it before training, not after hours of it."""
    ref = _reference(reference)
    with _session(ref, auth, options or RegistryOptions(), "push to") as session:
        session.start_upload()


# -- pull ----------------------------------------------------------------------------------------


def _strip(name: str) -> tuple[str, ...]:
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".")]
    return tuple(parts)


def _unpack(
    archive: Path, layer: Layer, destination: Path, reference: str, subtree: str | None
) -> None:
    """Unpack regular files and directories of a tar layer into `destination` (only those under
    `subtree`, re-rooted, when given); whiteouts of later image layers delete earlier files.
    Links and devices are skipped; a path that would leave `destination` is an error."""
    try:
        with tarfile.open(archive, "r:gz" if layer.gzip else "r:") as tar:
            _extract(tar, destination, reference, subtree)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArtifactError(
            f"{reference}: layer {layer.descriptor.digest} is not a valid tar archive: {exc}"
        ) from exc


def _extract(tar: tarfile.TarFile, destination: Path, reference: str, subtree: str | None) -> None:
    for member in tar:
        parts = _strip(member.name)
        if subtree is not None:
            if not parts or parts[0] != subtree:
                continue
            parts = parts[1:]
        if not parts:
            continue
        if ".." in parts:
            raise ArtifactError(f"{reference}: unsafe path {member.name!r} in a layer")
        parent = destination.joinpath(*parts[:-1])
        leaf = parts[-1]
        if leaf == ".wh..wh..opq":
            if parent.is_dir():
                for child in parent.iterdir():
                    _remove(child)
            continue
        if leaf.startswith(".wh."):
            _remove(parent / leaf[4:])
            continue
        target = parent / leaf
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.isfile():
            parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
        else:
            log.debug("%s: skipping %s (not a regular file)", reference, member.name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _pull_into(session: _Session, staging: Path) -> tuple[dict[str, Any], bool]:
    """Pull the reference's content into `staging`; returns the manifest and whether it was an
    image (content taken from /data) rather than an artifact."""
    reference = str(session.reference)
    manifest = session.resolve_manifest()
    layers = read_layers(manifest, reference)
    image = any(layer.kind is LayerKind.IMAGE_LAYER for layer in layers)
    with tempfile.TemporaryDirectory(dir=staging.parent, prefix=".kaito-blobs-") as blobs:
        for layer in layers:
            descriptor = layer.descriptor
            if layer.kind is LayerKind.FILE:
                assert descriptor.title is not None
                target = staging / descriptor.title
                target.parent.mkdir(parents=True, exist_ok=True)
                session.download(descriptor, target)
                continue
            archive = Path(blobs) / descriptor.digest.replace(":", "-")
            session.download(descriptor, archive)
            subtree = IMAGE_DATA_DIR if layer.kind is LayerKind.IMAGE_LAYER else None
            _unpack(archive, layer, staging, reference, subtree)
            archive.unlink()
    if image and not any(staging.iterdir()):
        raise ArtifactError(
            f"{reference} is an image without a /{IMAGE_DATA_DIR} directory; kaito takes the "
            f"content of an image from /{IMAGE_DATA_DIR}"
        )
    return manifest, image


def _staging_dir(destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))


def pull_adapter(
    reference: str | Reference,
    destination: str | Path,
    auth: RegistryAuth | None = None,
    *,
    options: RegistryOptions | None = None,
) -> Path:
    """Pull the adapter at `reference` into `destination` (created; must be missing or empty)
    and return it. Reads kaito adapter artifacts, other artifacts of titled files, and images
    with the adapter in `/data`; the result must hold `adapter_config.json` and
    `adapter_model.safetensors` or nothing is written."""
    ref = _reference(reference)
    target = Path(destination)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OCIError(f"cannot pull into {target}: it exists and is not an empty directory")
    staging = _staging_dir(target)
    try:
        with _session(ref, auth, options or RegistryOptions(), "pull from") as session:
            manifest, _ = _pull_into(session, staging)
        found = [p.name for p in staging.iterdir() if p.is_file()]
        missing = missing_adapter_files(found)
        if missing:
            kind = artifact_type(manifest)
            raise ArtifactError(
                f"{ref} is not an adapter: {', '.join(missing)} missing (it has: "
                f"{', '.join(sorted(found)) or 'no files'}; artifact type {kind or 'none'})"
            )
        if artifact_type(manifest) != ARTIFACT_TYPE:
            log.info("%s has artifact type %s; read as an adapter", ref, artifact_type(manifest))
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("pulled %s into %s", ref, target)
    return target


def pull_data(
    reference: str | Reference,
    destination: str | Path,
    auth: RegistryAuth | None = None,
    *,
    options: RegistryOptions | None = None,
) -> list[Path]:
    """Pull the files at `reference` (an artifact of titled files, or an image's `/data`
    directory) into `destination`, created if missing; files of the same name are replaced.
    Returns the files written."""
    ref = _reference(reference)
    target = Path(destination)
    # Staged inside the destination: a data volume's parent may not be writable.
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kaito-pull-", dir=target))
    written: list[Path] = []
    try:
        with _session(ref, auth, options or RegistryOptions(), "pull from") as session:
            _pull_into(session, staging)
        for source in sorted(p for p in staging.rglob("*") if p.is_file()):
            relative = source.relative_to(staging)
            final = target / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, final)
            written.append(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("pulled %d files of %s into %s", len(written), ref, target)
    return written
