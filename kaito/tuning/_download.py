"""Training data from URLs: http(s) only, size-limited, retried, checksummed when asked.

A workspace's `tuning.input.urls` are fetched into the data directory before anything heavy
loads. Each URL becomes one file:

- Only `http` and `https` are fetched; anything else is refused before a connection is made.
- A URL may end in `#sha256=<64 hex digits>`; the fragment never reaches the server, and the
  file's digest must match it.
- A file larger than `max_bytes` is refused: at once when the server announces its length,
  else as soon as the stream passes the limit.
- Connection failures, timeouts, 408, 429 and 5xx answers are retried with exponential backoff
  (`attempts` tries in all); other HTTP errors (404, 403) are not, since retrying cannot fix
  them. Every failure ends in a `DownloadError` that names the URL without its query string,
  which often carries an access token.
- The file is named after the server's `Content-Disposition`, else the URL's last path segment
  (`train-0000.parquet?download=true` gives `train-0000.parquet`). A name without a data
  extension gets one from the content: parquet's `PAR1` magic, JSON's `[`/`{`, a CSV content
  type. It is written under a hidden partial name and renamed when complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import attrs
from yarl import URL

from kaito.tuning._data import FORMATS
from kaito.tuning._errors import DownloadError

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_CHECKSUM = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CHUNK = 1 << 16
GIB = 1 << 30


@attrs.frozen(kw_only=True)
class DownloadPolicy:
    max_bytes: int = attrs.field(default=20 * GIB, validator=attrs.validators.gt(0))
    """Largest file accepted, per URL."""
    attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    backoff_seconds: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    """The first wait between tries; it doubles each time, up to `max_backoff_seconds`."""
    max_backoff_seconds: float = 30.0
    connect_timeout_seconds: float = 30.0
    read_timeout_seconds: float = 300.0
    """Longest silence while reading the body."""


def shown(url: URL) -> str:
    """The URL as put in messages: no credentials, query or fragment."""
    bare = url.with_query(None).with_fragment(None)
    return str(bare.with_user(None) if bare.absolute and bare.host else bare)


def parse_url(text: str) -> tuple[URL, str | None]:
    """The URL to fetch and the sha256 it must have, if the fragment names one."""
    try:
        url = URL(text.strip())
    except ValueError as exc:
        raise DownloadError(f"invalid data URL {text!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise DownloadError(
            f"unsupported data URL {shown(url) or text!r}: only http and https URLs are fetched"
        )
    fragment = url.fragment
    checksum = None
    if fragment.startswith("sha256="):
        match = _CHECKSUM.match(fragment)
        if match is None:
            raise DownloadError(
                f"data URL {shown(url)}: the fragment must be sha256= and 64 hex digits"
            )
        checksum = match.group(1).lower()
    return url.with_fragment(None), checksum


def _name(url: URL, disposition: str | None, index: int) -> str:
    candidate = disposition or (url.path.rstrip("/").rsplit("/", 1)[-1] if url.path else "")
    candidate = _UNSAFE.sub("_", Path(candidate).name).lstrip(".")
    return candidate or f"data-{index}"


def _sniffed_extension(head: bytes, content_type: str) -> str:
    if head.startswith(b"PAR1"):
        return ".parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"[", b"{"):
        return ".json"
    if content_type in ("text/csv", "application/csv"):
        return ".csv"
    return ""


class _Retry(Exception):
    """A failure worth another try."""


async def _fetch(
    session: aiohttp.ClientSession,
    url: URL,
    checksum: str | None,
    directory: Path,
    index: int,
    policy: DownloadPolicy,
) -> Path:
    label = shown(url)
    partial = directory / f".download-{index}.partial"
    try:
        async with session.get(url) as response:
            if response.status in _RETRY_STATUSES:
                raise _Retry(f"HTTP {response.status} {response.reason}")
            if response.status >= 400:
                raise DownloadError(
                    f"cannot download {label}: HTTP {response.status} {response.reason}"
                )
            length = response.content_length
            if length is not None and length > policy.max_bytes:
                raise DownloadError(
                    f"{label} is {length} bytes, more than the limit of {policy.max_bytes}"
                )
            digest = hashlib.sha256()
            size = 0
            head = b""
            with partial.open("wb") as out:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > policy.max_bytes:
                        raise DownloadError(
                            f"{label} is larger than the limit of {policy.max_bytes} bytes"
                        )
                    if len(head) < 8:
                        head += chunk[:8]
                    digest.update(chunk)
                    out.write(chunk)
            disposition = response.content_disposition
            filename = disposition.filename if disposition is not None else None
            name = _name(url, filename, index)
            content_type = response.content_type
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    if checksum is not None and digest.hexdigest() != checksum:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {label}: expected sha256 {checksum}, got {digest.hexdigest()}"
        )
    if Path(name).suffix.lower() not in FORMATS:
        name += _sniffed_extension(head, content_type)
    target = directory / name
    if target.exists():
        target = directory / f"{index}-{name}"
    partial.rename(target)
    log.info("downloaded %s (%d bytes) to %s", label, size, target.name)
    return target


async def download_urls(
    urls: Sequence[str], directory: str | Path, policy: DownloadPolicy | None = None
) -> list[Path]:
    """Download every URL into `directory` (created), one after the other; returns the files.
    Raises `DownloadError` for the first URL that cannot be fetched."""
    policy = policy or DownloadPolicy()
    parsed = [parse_url(text) for text in urls]
    target = Path(directory)
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=policy.connect_timeout_seconds,
        sock_read=policy.read_timeout_seconds,
    )
    files: list[Path] = []
    async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
        for index, (url, checksum) in enumerate(parsed):
            for attempt in range(1, policy.attempts + 1):
                try:
                    files.append(await _fetch(session, url, checksum, target, index, policy))
                    break
                except _Retry as exc:
                    if attempt == policy.attempts:
                        raise DownloadError(
                            f"cannot download {shown(url)}: {exc} "
                            f"(gave up after {attempt} attempts)"
                        ) from exc.__cause__
                    delay = min(
                        policy.backoff_seconds * 2 ** (attempt - 1), policy.max_backoff_seconds
                    )
                    log.warning(
                        "downloading %s failed (%s); retrying in %.1fs", shown(url), exc, delay
                    )
                    await asyncio.sleep(delay)
                finally:
                    with contextlib.suppress(OSError):
                        (target / f".download-{index}.partial").unlink(missing_ok=True)
    return files


def fetch_urls(
    urls: Sequence[str], directory: str | Path, policy: DownloadPolicy | None = None
) -> list[Path]:
    """`download_urls` for callers without an event loop (the tuning command)."""
    return asyncio.run(download_urls(urls, directory, policy))
