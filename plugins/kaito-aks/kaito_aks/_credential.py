"""Credentials: Azure's default chain in a cluster, a fixed bearer token for stand-ins.

In a cluster the provisioner authenticates with azure-identity's `DefaultAzureCredential`,
which picks up workload identity (the federated token file and client id that the AKS
workload-identity webhook injects), a managed identity, or a developer's Azure CLI login,
without kaito knowing which. Its async variant is created lazily, inside the running event loop,
because it owns an HTTP session bound to that loop.

`StaticTokenCredential` serves a token that something else obtained: a local ARM stand-in in
tests, or a proxy that authenticates on the caller's behalf. It never prints the token: its
repr shows only the token's length, so a credential that ends up in a log line or a traceback
leaks nothing.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Final, Self

from azure.core.credentials import AccessToken

TOKEN_LIFETIME: Final = 3600
"""Seconds a static token is declared valid for; azure-core refreshes tokens that are about to
expire, so each call declares a fresh lifetime and the same token is served again."""


class StaticTokenCredential:
    """An async token credential that always answers the same bearer token."""

    def __init__(self, token: str) -> None:
        if not token or not token.strip():
            raise ValueError("a static access token cannot be empty")
        self._token = token.strip()
        self.requests = 0
        """How many tokens were handed out (tests check that the credential was used)."""

    def __repr__(self) -> str:
        return f"StaticTokenCredential(<{len(self._token)} characters hidden>)"

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.requests += 1
        return AccessToken(self._token, int(time.time()) + TOKEN_LIFETIME)

    async def close(self) -> None:
        """Nothing to release; present because async credentials are closable."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.close()
