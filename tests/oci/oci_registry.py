"""A real OCI registry for tests: Debian's `docker-registry` (the CNCF Distribution registry).

Each instance gets its own config, storage directory and port on 127.0.0.1, optionally with
htpasswd authentication (entries made with the `bcrypt` package, cost 4 to stay fast), and is
stopped afterwards. Tests that need it skip, saying how to install it, when the binary is absent.
Also here: pushing a plain container image (file-system tar layers) with bare HTTP, the way
upstream kaito's data and adapter images are built, which kaito.oci does not push itself.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
import pytest
import requests

BINARY_ENV = "KAITO_TEST_REGISTRY_BINARY"
INSTALL_HINT = "apt-get install -y docker-registry"


def registry_binary() -> str | None:
    configured = os.environ.get(BINARY_ENV)
    if configured:
        return configured
    return shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None
    )


def require_registry_binary() -> str:
    binary = registry_binary()
    if binary is None:
        pytest.skip(
            "the CNCF Distribution registry (docker-registry) is not installed; "
            f"install it with: {INSTALL_HINT}"
        )
    return binary


@attrs.frozen
class RunningRegistry:
    host: str
    """`127.0.0.1:PORT`."""
    root: Path
    users: Mapping[str, str]

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def docker_config(self, path: Path, username: str, password: str) -> Path:
        """Write a dockerconfigjson (what a Kubernetes push secret holds) for this registry."""
        import base64

        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}), encoding="utf-8")
        return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _htpasswd(users: Mapping[str, str]) -> str:
    import bcrypt

    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, password in users.items()
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def run_registry(root: Path, users: Mapping[str, str] | None = None) -> Iterator[RunningRegistry]:
    binary = require_registry_binary()
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'storage'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: kaito-test-secret",
    ]
    if users:
        (root / "htpasswd").write_text(_htpasswd(users), encoding="utf-8")
        config += [
            "auth:",
            "  htpasswd:",
            "    realm: kaito-test",
            f"    path: {root / 'htpasswd'}",
        ]
    (root / "config.yml").write_text("\n".join(config) + "\n", encoding="utf-8")
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {process.returncode}: "
                    + (root / "registry.log").read_text(errors="replace")
                )
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                if answer.status_code in (200, 401):
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start within 15 s")
            time.sleep(0.05)
        yield RunningRegistry(host=f"127.0.0.1:{port}", root=root, users=dict(users or {}))
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


# -- pushing a plain image -----------------------------------------------------------------------


def _tar_layer(files: Mapping[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def _digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _put_blob(session: requests.Session, base: str, repository: str, content: bytes) -> str:
    digest = _digest(content)
    start = session.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    if not location.startswith("http"):
        location = base + location
    separator = "&" if "?" in location else "?"
    done = session.put(
        f"{location}{separator}digest={digest}",
        data=content,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert done.status_code == 201, done.text
    return digest


def push_image(
    registry: RunningRegistry,
    repository: str,
    tag: str,
    layers: list[Mapping[str, bytes]],
    *,
    auth: tuple[str, str] | None = None,
    index: bool = False,
) -> str:
    """Push an image whose layers are gzip'd tarballs of `layers` (path -> content), optionally
    behind an image index with a linux/amd64 entry and an attestation entry. Returns the
    reference."""
    base = f"http://{registry.host}"
    session = requests.Session()
    if auth:
        session.auth = auth
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    config_digest = _put_blob(session, base, repository, config)
    descriptors = []
    for files in layers:
        blob = _tar_layer(files)
        descriptors.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": _put_blob(session, base, repository, blob),
                "size": len(blob),
            }
        )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": descriptors,
        }
    ).encode()
    media_type = "application/vnd.oci.image.manifest.v1+json"
    target = _digest(manifest) if index else tag
    answer = session.put(
        f"{base}/v2/{repository}/manifests/{target}",
        data=manifest,
        headers={"Content-Type": media_type},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    if index:
        # The first entry stands for an attestation (platform unknown/unknown), which a
        # reader must skip in favour of the linux/amd64 image.
        entries = [
            {
                "mediaType": media_type,
                "digest": _digest(manifest),
                "size": len(manifest),
                "platform": {"os": "unknown", "architecture": "unknown"},
            },
            {
                "mediaType": media_type,
                "digest": _digest(manifest),
                "size": len(manifest),
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ]
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            }
        ).encode()
        answer = session.put(
            f"{base}/v2/{repository}/manifests/{tag}",
            data=body,
            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    return f"{registry.host}/{repository}:{tag}"


def get_manifest(
    registry: RunningRegistry, repository: str, version: str, auth: tuple[str, str] | None = None
) -> dict[str, object]:
    answer = requests.get(
        f"http://{registry.host}/v2/{repository}/manifests/{version}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        auth=auth,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    manifest: dict[str, object] = answer.json()
    return manifest
