"""Data URLs against a local HTTP server: names, checksums, size limits, retries, refusals."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kaito.tuning import DownloadError, DownloadPolicy, download_urls, fetch_urls

pytestmark = pytest.mark.timeout(30)

BODY = b'{"messages": [{"role": "user", "content": "hi"}]}\n'
FAST = DownloadPolicy(attempts=3, backoff_seconds=0.01, max_bytes=1000)


class Files:
    def __init__(self) -> None:
        self.flaky = 0
        self.hits: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/{name}", self.file)
        app.router.add_get("/disposition", self.disposition)
        app.router.add_get("/noext", self.parquet)
        app.router.add_get("/big", self.big)
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/flaky", self.flaky_file)
        return app

    async def file(self, request: web.Request) -> web.Response:
        if request.match_info["name"] == "missing.jsonl":
            return web.Response(status=404)
        return web.Response(body=BODY)

    async def disposition(self, request: web.Request) -> web.Response:
        headers = {"Content-Disposition": 'attachment; filename="named.csv"'}
        return web.Response(body=b"a,b\n1,2\n", headers=headers)

    async def parquet(self, request: web.Request) -> web.Response:
        return web.Response(body=b"PAR1" + b"\0" * 8 + b"PAR1")

    async def big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2000)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"y" * 300)
        await response.write_eof()
        return response

    async def flaky_file(self, request: web.Request) -> web.Response:
        self.hits["flaky"] = self.hits.get("flaky", 0) + 1
        if self.flaky:
            self.flaky -= 1
            return web.Response(status=503)
        return web.Response(body=BODY)


@pytest.fixture
async def files() -> AsyncIterator[tuple[Files, str]]:
    served = Files()
    server = TestServer(served.app(), host="127.0.0.1")
    await server.start_server()
    yield served, f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_files_are_named_from_the_url_the_header_or_the_content(
    files: tuple[Files, str], tmp_path: Path
) -> None:
    _, base = files
    digest = hashlib.sha256(BODY).hexdigest()
    got = await download_urls(
        [
            f"{base}/files/train-0000.jsonl?download=true#sha256={digest}",
            f"{base}/disposition",
            f"{base}/noext",
            f"{base}/files/train-0000.jsonl",
        ],
        tmp_path,
        FAST,
    )
    assert [p.name for p in got] == [
        "train-0000.jsonl",
        "named.csv",
        "noext.parquet",
        "3-train-0000.jsonl",
    ]
    assert got[0].read_bytes() == BODY
    assert await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir())) == sorted(
        p.name for p in got
    )


async def test_a_checksum_mismatch_is_an_error(files: tuple[Files, str], tmp_path: Path) -> None:
    _, base = files
    with pytest.raises(DownloadError, match=r"checksum mismatch for .*/files/t\.jsonl: expected"):
        await download_urls([f"{base}/files/t.jsonl#sha256={'0' * 64}"], tmp_path, FAST)
    with pytest.raises(DownloadError, match="must be sha256= and 64 hex digits"):
        await download_urls([f"{base}/files/t.jsonl#sha256=abc"], tmp_path, FAST)


async def test_the_size_limit_holds_with_and_without_a_content_length(
    files: tuple[Files, str], tmp_path: Path
) -> None:
    _, base = files
    with pytest.raises(DownloadError, match="is 2000 bytes, more than the limit of 1000"):
        await download_urls([f"{base}/big"], tmp_path, FAST)
    with pytest.raises(DownloadError, match="larger than the limit of 1000 bytes"):
        await download_urls([f"{base}/stream"], tmp_path, FAST)
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


async def test_unavailable_answers_are_retried_and_client_errors_are_not(
    files: tuple[Files, str], tmp_path: Path
) -> None:
    served, base = files
    served.flaky = 2
    assert [p.name for p in await download_urls([f"{base}/flaky"], tmp_path, FAST)] == [
        "flaky.json"
    ]
    assert served.hits["flaky"] == 3
    served.flaky = 9
    with pytest.raises(DownloadError, match=r"HTTP 503 .*gave up after 3 attempts"):
        await download_urls([f"{base}/flaky?token=s3cret"], tmp_path, FAST)
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        await download_urls([f"{base}/files/missing.jsonl?sig=s3cret"], tmp_path, FAST)
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_url_is_reported_after_the_retries(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as caught:
        fetch_urls([f"http://127.0.0.1:{port}/data.parquet"], tmp_path, FAST)
    message = str(caught.value)
    assert f"cannot download http://127.0.0.1:{port}/data.parquet" in message
    assert "gave up after 3 attempts" in message


@pytest.mark.parametrize("url", ["ftp://host/data.csv", "file:///etc/passwd", "data.csv"])
def test_only_http_urls_are_fetched(tmp_path: Path, url: str) -> None:
    with pytest.raises(DownloadError, match="only http and https URLs are fetched"):
        fetch_urls([url], tmp_path, FAST)
