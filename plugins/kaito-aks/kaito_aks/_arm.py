"""The thin executor: the Azure SDKs' async clients, configured once, used for one pass.

Everything the provisioner decides is decided on ARM JSON (`_pool`, `_capacity`); this module
only fetches and sends it with the real SDKs (`azure.mgmt.containerservice.aio`,
`azure.mgmt.compute.aio`) and turns their exceptions into two of kaito's: `AzureError` (with
the HTTP status and ARM's error code) and its subclass `Throttled` (with the server's
Retry-After).

Retries are the SDK's own retry policy, configured rather than replaced: throttling (429) and
transient failures (408, 500, 502, 503, 504, dropped connections) are retried with exponential
backoff, and a Retry-After header is honoured by sleeping exactly that long. Every request kaito
sends is safe to repeat: agent pools are written with PUT (create-or-update), removed with
DELETE, and the rest are reads. One refinement: a Retry-After longer than `max-retry-after` is
not slept inside the reconciler (that would hold a worker for minutes); the call fails with
`Throttled` and the provisioner asks the reconciler to come back after that many seconds.

A pass opens the container-service client, and the compute client only if it needs one (before
creating or growing a pool), and closes both at the end, so no HTTP session outlives the pass
and a converged workspace costs one ARM request. The credential outlives passes (it caches the
token) and is not closed here.

Bearer tokens are refused over plain HTTP by azure-core. For a loopback `arm-endpoint` (a local
stand-in; the settings reject any other http URL) each call passes azure-core's per-request
`enforce_https=False`. The SDK's HTTP logging policy redacts the Authorization header, and
nothing here logs a token or a credential.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError as SdkAzureError,
)
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import AsyncRetryPolicy
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.containerservice.aio import ContainerServiceClient
from azure.mgmt.containerservice.models import AgentPool

from kaito_aks._config import AKSSettings, normalize_location
from kaito_aks._pool import PoolView

_logger = logging.getLogger("kaito_aks")

THROTTLED: Final = 429


class AzureError(Exception):
    """An Azure Resource Manager request failed after its retries.

    `status` is the HTTP status (None when no response came: connection or authentication
    failures) and `code` ARM's error code ("OperationNotAllowed", "AuthorizationFailed", ...).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def denied(self) -> bool:
        """The identity may not do this (401/403): waiting will not help, a role will."""
        return self.status in (401, 403) or self.code == "AuthenticationFailed"


class Throttled(AzureError):
    """ARM answered 429 with a Retry-After longer than kaito waits inside a pass."""

    def __init__(self, message: str, *, retry_after: float, code: str = "") -> None:
        super().__init__(message, status=THROTTLED, code=code)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


class ArmRetryPolicy(AsyncRetryPolicy[Any, Any]):
    """azure-core's retry policy that declines to sleep through a long Retry-After."""

    def __init__(self, *, max_retry_after: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_retry_after = max_retry_after

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        header = response.http_response.headers.get("Retry-After")
        retry_after = parse_retry_after(header)
        if retry_after is not None and retry_after > self.max_retry_after:
            return False
        return bool(super().is_retry(settings, response))


def retry_policy(settings: AKSSettings) -> ArmRetryPolicy:
    """The retry policy the provisioner's clients use."""
    return ArmRetryPolicy(
        max_retry_after=settings.max_retry_after,
        retry_total=settings.max_retries,
        retry_status=settings.max_retries,
        retry_connect=settings.max_retries,
        retry_read=settings.max_retries,
        retry_backoff_factor=settings.retry_backoff,
        retry_backoff_max=max(settings.max_retry_after, settings.retry_backoff),
    )


def _error(action: str, exc: SdkAzureError) -> AzureError:
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        code = (exc.error.code if exc.error is not None else None) or ""
        detail = _one_line(
            (exc.error.message if exc.error is not None else None) or exc.reason or ""
        )
        text = f"{action} failed: HTTP {status}" + (f" {code}" if code else "")
        text += f": {detail}" if detail else ""
        if status == THROTTLED:
            headers = getattr(exc.response, "headers", None) or {}
            after = parse_retry_after(headers.get("Retry-After"))
            return Throttled(text, retry_after=after if after is not None else 0.0, code=code)
        return AzureError(text, status=status, code=code)
    if isinstance(exc, ClientAuthenticationError):
        return AzureError(
            f"{action} failed: could not obtain an Azure access token ({_one_line(exc.message)})",
            code="AuthenticationFailed",
        )
    return AzureError(f"{action} failed: {_one_line(exc.message)}", code="ConnectionFailed")


def _one_line(text: object) -> str:
    """SDK messages span lines (credential chains list every attempt); conditions want one."""
    return " ".join(str(text).split())


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except SdkAzureError as exc:
        raise _error(action, exc) from exc


class ArmSession:
    """One pass's clients: `async with ArmSession(settings, credential, policy) as arm`."""

    def __init__(
        self,
        settings: AKSSettings,
        credential: AsyncTokenCredential,
        policy: ArmRetryPolicy,
    ) -> None:
        self._settings = settings
        self._credential = credential
        self._policy = policy
        self._stack = AsyncExitStack()
        self._aks: ContainerServiceClient | None = None
        self._compute: ComputeManagementClient | None = None
        self._call: dict[str, Any] = {"enforce_https": False} if settings.insecure_loopback else {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _aks_client(self) -> ContainerServiceClient:
        if self._aks is None:
            client = ContainerServiceClient(
                self._credential,
                self._settings.subscription_id,
                base_url=self._settings.arm_endpoint,
                retry_policy=self._policy,
            )
            self._aks = await self._stack.enter_async_context(client)
        return self._aks

    async def _compute_client(self) -> ComputeManagementClient:
        if self._compute is None:
            client = ComputeManagementClient(
                self._credential,
                self._settings.subscription_id,
                base_url=self._settings.arm_endpoint,
                retry_policy=self._policy,
            )
            self._compute = await self._stack.enter_async_context(client)
        return self._compute

    # -- Microsoft.ContainerService ----------------------------------------------------------

    async def list_pools(self) -> list[PoolView]:
        s = self._settings
        aks = await self._aks_client()
        with _translated(f"listing the agent pools of cluster {s.cluster_name}"):
            return [
                PoolView.from_wire(pool.as_dict())
                async for pool in aks.agent_pools.list(
                    s.resource_group, s.cluster_name, **self._call
                )
            ]

    async def put_pool(self, name: str, body: dict[str, Any]) -> PoolView:
        """Start creating (or updating) a pool; returns its state from the first response,
        without waiting for the long-running operation."""
        s = self._settings
        aks = await self._aks_client()
        started = time.monotonic()
        with _translated(f"writing agent pool {name}"):
            poller = await aks.agent_pools.begin_create_or_update(
                s.resource_group, s.cluster_name, name, AgentPool(body), polling=False, **self._call
            )
            pool = await poller.result()
        _logger.debug("agent pool %s written in %.2fs", name, time.monotonic() - started)
        return PoolView.from_wire(pool.as_dict())

    async def delete_pool(self, name: str) -> None:
        """Start deleting a pool (a pool that is already gone is fine)."""
        s = self._settings
        aks = await self._aks_client()
        try:
            with _translated(f"deleting agent pool {name}"):
                poller = await aks.agent_pools.begin_delete(
                    s.resource_group, s.cluster_name, name, polling=False, **self._call
                )
                await poller.result()
        except AzureError as exc:
            if exc.status == 404:
                return
            raise

    async def cluster_location(self) -> str:
        s = self._settings
        aks = await self._aks_client()
        with _translated(f"reading managed cluster {s.cluster_name}"):
            cluster = await aks.managed_clusters.get(s.resource_group, s.cluster_name, **self._call)
        return normalize_location(str(cluster.location or ""))

    # -- Microsoft.Compute --------------------------------------------------------------------

    async def vm_skus(self, location: str) -> list[dict[str, Any]]:
        compute = await self._compute_client()
        with _translated(f"listing the VM sizes of region {location}"):
            return [
                sku.as_dict()
                async for sku in compute.resource_skus.list(
                    filter=f"location eq '{location}'", **self._call
                )
            ]

    async def usages(self, location: str) -> list[dict[str, Any]]:
        compute = await self._compute_client()
        with _translated(f"reading the compute quota of region {location}"):
            return [usage.as_dict() async for usage in compute.usage.list(location, **self._call)]
