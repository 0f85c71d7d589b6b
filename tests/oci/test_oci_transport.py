"""The transport policy against a scripted registry: Bearer tokens, retries, digest checks.

The Distribution registry of the other tests speaks Basic auth and never fails; cloud
registries hand out Bearer tokens from a separate service and do answer 503 now and then. This
small aiohttp registry (on 127.0.0.1) does both on request, and can serve a blob whose bytes do
not match its digest.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kaito.oci import (
    ArtifactError,
    AuthenticationError,
    RegistryAuth,
    RegistryError,
    RegistryOptions,
    pull_adapter,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = "secret-token"
FAST = RegistryOptions(attempts=3, backoff_seconds=0.01)


def _digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


@attrs.define
class FakeRegistry:
    user: str = "robot"
    password: str = "pw"
    anonymous: bool = False
    """Whether the token service hands out tokens without credentials."""
    unavailable: int = 0
    """Answer this many requests with 503 first."""
    corrupt: bool = False
    blobs: dict[str, bytes] = attrs.Factory(dict)
    manifests: dict[str, bytes] = attrs.Factory(dict)
    scopes: list[str] = attrs.Factory(list)
    host: str = ""

    def add_adapter(self, name: str, tag: str) -> None:
        files = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"weights" * 10}
        layers = []
        for title, content in files.items():
            digest = _digest(content)
            self.blobs[digest] = content
            layers.append(
                {
                    "mediaType": "application/vnd.kaito.adapter.file.v1",
                    "digest": digest,
                    "size": len(content),
                    "annotations": {"org.opencontainers.image.title": title},
                }
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "a/b", "digest": _digest(b"{}"), "size": 2},
            "layers": layers,
        }
        self.manifests[f"{name}:{tag}"] = json.dumps(manifest).encode()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_get(r"/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", self.blob)
        return app

    async def token(self, request: web.Request) -> web.Response:
        self.scopes.append(request.query.get("scope", ""))
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if header != expected and not (self.anonymous and not header):
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}, status=401
            )
        return web.json_response({"token": TOKEN})

    def _gate(self, request: web.Request, name: str) -> web.Response | None:
        if self.unavailable:
            self.unavailable -= 1
            return web.Response(status=503)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = (
                f'Bearer realm="http://{self.host}/token",service="fake",'
                f'scope="repository:{name}:pull"'
            )
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "token needed"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        return None

    async def manifest(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        denied = self._gate(request, name)
        if denied is not None:
            return denied
        body = self.manifests.get(f"{name}:{request.match_info['ref']}")
        if body is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        return web.Response(body=body, content_type="application/vnd.oci.image.manifest.v1+json")

    async def blob(self, request: web.Request) -> web.Response:
        denied = self._gate(request, request.match_info["name"])
        if denied is not None:
            return denied
        content = self.blobs[request.match_info["digest"]]
        if self.corrupt:
            content = content[:-1] + b"!"
        return web.Response(body=content)


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    registry = FakeRegistry()
    server = TestServer(registry.app(), host="127.0.0.1")
    await server.start_server()
    registry.host = f"127.0.0.1:{server.port}"
    registry.add_adapter("team/adapter", "v1")
    yield registry
    await server.close()


async def test_bearer_tokens_are_fetched_with_the_credentials_for_the_asked_scope(
    fake: FakeRegistry, tmp_path: Path
) -> None:
    auth = RegistryAuth(fake.user, fake.password)
    out = await asyncio.to_thread(
        pull_adapter, f"{fake.host}/team/adapter:v1", tmp_path / "out", auth, options=FAST
    )
    assert (out / "adapter_model.safetensors").read_bytes() == b"weights" * 10
    assert fake.scopes[0] == "repository:team/adapter:pull"


async def test_anonymous_tokens_work_for_public_pulls(fake: FakeRegistry, tmp_path: Path) -> None:
    fake.anonymous = True
    out = await asyncio.to_thread(
        pull_adapter, f"{fake.host}/team/adapter:v1", tmp_path / "out", options=FAST
    )
    assert (out / "adapter_config.json").read_bytes() == b"{}"


async def test_a_token_service_refusing_the_credentials_is_an_authentication_error(
    fake: FakeRegistry, tmp_path: Path
) -> None:
    with pytest.raises(AuthenticationError, match=r"token service .* refused user 'robot'"):
        await asyncio.to_thread(
            pull_adapter,
            f"{fake.host}/team/adapter:v1",
            tmp_path / "out",
            RegistryAuth("robot", "wrong"),
            options=FAST,
        )


async def test_unavailable_answers_are_retried_then_reported(
    fake: FakeRegistry, tmp_path: Path
) -> None:
    auth = RegistryAuth(fake.user, fake.password)
    fake.unavailable = 2
    await asyncio.to_thread(
        pull_adapter, f"{fake.host}/team/adapter:v1", tmp_path / "a", auth, options=FAST
    )
    fake.unavailable = 5
    with pytest.raises(RegistryError, match="HTTP 503") as caught:
        await asyncio.to_thread(
            pull_adapter, f"{fake.host}/team/adapter:v1", tmp_path / "b", auth, options=FAST
        )
    assert caught.value.status == 503


async def test_a_blob_that_does_not_match_its_digest_is_rejected(
    fake: FakeRegistry, tmp_path: Path
) -> None:
    fake.corrupt = True
    with pytest.raises(ArtifactError, match="arrived as sha256:"):
        await asyncio.to_thread(
            pull_adapter,
            f"{fake.host}/team/adapter:v1",
            tmp_path / "out",
            RegistryAuth(fake.user, fake.password),
            options=FAST,
        )
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []
