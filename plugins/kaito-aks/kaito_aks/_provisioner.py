"""The `aks` provisioner: one AKS agent pool per workspace.

Each pass starts from what Azure and Kubernetes say now, never from memory, because the
reconciler may have restarted (or another replica may have taken over) since the last one:

1. List the cluster's agent pools (one ARM request). The workspace's pool is the one with its
   deterministic name and its tags; a pool with that name but other tags belongs to someone
   else and is reported, never touched; pools tagged for the workspace under another name are
   leftovers and are deleted first, so the workspace never holds two pools at once.
2. No pool yet: check that the VM size is offered and unrestricted in the cluster's region (and
   zones) and that the vCPU quota has room, then PUT the pool and return at once, "creating",
   with `requeue_after`. The reconciler is not blocked on the long-running operation; the next
   pass reads the pool's `provisioningState` instead.
3. A pool that is Creating, Updating, Scaling, ... is waited for; Failed is reported as failed
   with AKS's provisioning error; Deleting is waited for (a new pool follows once it is gone);
   a pool with the wrong VM size is deleted to be replaced (AKS cannot resize a pool); a
   Succeeded pool of the wrong size is scaled with another PUT (quota-checked when it grows).
4. Succeeded with the right size: readiness is the shared rule (`assess_nodes`) applied to the
   Nodes that carry `kubernetes.azure.com/agentpool: <pool>`.

Failures that waiting will not heal (VM size not offered, quota exhausted, the pool failed,
the identity lacks a role, ARM rejected the request) come back with `failed=True`; throttling
and transient errors come back as "waiting", with ARM's Retry-After as `requeue_after` when it
was too long to sleep through inside the pass.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

from azure.core.credentials_async import AsyncTokenCredential

from kaito.kube import Client
from kaito.provisioners import NodeRequest, ProvisionerContext, ProvisionStatus
from kaito.provisioners.nodes import assess_nodes, list_nodes, name_of
from kaito_aks._arm import ArmSession, AzureError, Throttled, retry_policy
from kaito_aks._capacity import CapacityProblem, check_quota, check_vm_size
from kaito_aks._config import ACCESS_TOKEN_ENV, AKSSettings
from kaito_aks._credential import StaticTokenCredential
from kaito_aks._pool import (
    AGENTPOOL_LABEL,
    PoolSet,
    PoolView,
    agent_pool_body,
    agent_pool_name,
)

_logger = logging.getLogger("kaito_aks")

REASON_READY: Final = "NodesReady"
REASON_WAITING: Final = "WaitingForNodes"
REASON_CREATING: Final = "AgentPoolCreating"
REASON_UPDATING: Final = "AgentPoolUpdating"
REASON_SCALING: Final = "AgentPoolScaling"
REASON_DELETING: Final = "AgentPoolDeleting"
REASON_REPLACING: Final = "AgentPoolReplacing"
REASON_CLEANUP: Final = "AgentPoolCleanup"
REASON_FAILED: Final = "AgentPoolFailed"
REASON_NAME_CONFLICT: Final = "AgentPoolNameConflict"
REASON_INVALID: Final = "InvalidNodeRequest"
REASON_THROTTLED: Final = "AzureThrottled"
REASON_DENIED: Final = "AzureAuthorizationFailed"
REASON_REJECTED: Final = "AzureRequestRejected"
REASON_UNAVAILABLE: Final = "AzureRequestFailed"

_MIN_REQUEUE: Final = 1.0


class AKSProvisioner:
    """Provisions each workspace's GPU nodes as an AKS agent pool.

    Built from a `ProvisionerContext` (the `kaito.provisioners` entry point `aks`); its options
    are described in the package README and validated here (`ValueError` names a bad one).
    `credential` (any async Azure token credential) replaces the configured one and stays
    owned by the caller; `environ` replaces `os.environ` for the settings' fallbacks.

    The credential it creates itself (DefaultAzureCredential) holds an HTTP session: close it
    with `await provisioner.aclose()` or use the provisioner as an async context manager.
    """

    name = "aks"

    def __init__(
        self,
        ctx: ProvisionerContext,
        *,
        credential: AsyncTokenCredential | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.settings = AKSSettings.from_options(ctx.options, env)
        if credential is None and self.settings.credential == "static":
            token = env.get(ACCESS_TOKEN_ENV, "")
            if not token.strip():
                raise ValueError(
                    f"option credential=static of the aks provisioner reads the token from "
                    f"{ACCESS_TOKEN_ENV}, which is not set"
                )
            credential = StaticTokenCredential(token)
        self.client: Client = ctx.client
        self._credential = credential
        self._owns_credential = False
        self._policy = retry_policy(self.settings)
        self._location = self.settings.location

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the credential this provisioner created (not one it was given)."""
        if self._owns_credential and self._credential is not None:
            await self._credential.close()
            self._credential = None
            self._owns_credential = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _session(self) -> ArmSession:
        if self._credential is None:
            # Imported here: azure-identity is only needed when no credential was given.
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
            self._owns_credential = True
        return ArmSession(self.settings, self._credential, self._policy)

    # -- the protocol ------------------------------------------------------------------------

    async def provision(self, request: NodeRequest) -> ProvisionStatus:
        """Create, wait for, scale or report the workspace's agent pool and its nodes."""
        pool_name = agent_pool_name(request.workspace_namespace, request.workspace_name)
        try:
            body = agent_pool_body(request, zones=self.settings.zones)
        except ValueError as exc:
            return _failed(REASON_INVALID, str(exc))
        try:
            async with self._session() as arm:
                early = await self._converge_pool(arm, request, pool_name, body)
        except AzureError as exc:
            return self._azure_failure(exc)
        if early is not None:
            return early

        selector = f"{AGENTPOOL_LABEL}={pool_name}"
        nodes = sorted(await list_nodes(self.client, selector), key=name_of)
        assessment = assess_nodes(
            nodes,
            count=request.count,
            instance_type=request.instance_type,
            gpus_per_node=request.gpus_per_node,
        )
        if assessment.enough:
            return ProvisionStatus(
                ready=True, nodes=assessment.ready, reason=REASON_READY, message=assessment.message
            )
        detail = "".join(f"; {node} {why}" for node, why in assessment.waiting[:3])
        return ProvisionStatus(
            ready=False,
            nodes=assessment.ready,
            reason=REASON_WAITING,
            message=f"agent pool {pool_name} succeeded; {assessment.message}{detail}",
            requeue_after=self._requeue(),
        )

    async def release(self, request: NodeRequest) -> bool:
        """Delete the workspace's agent pool(s), found by name and tags; True once none is
        left. A pool of the workspace's name that is not tagged for it is left alone."""
        try:
            async with self._session() as arm:
                pools = PoolSet.sort(await arm.list_pools(), request)
                owned = [p for p in (pools.mine, *pools.strays) if p is not None]
                for pool in owned:
                    if not pool.deleting:
                        _logger.info(
                            "deleting agent pool %s of workspace %s/%s",
                            pool.name,
                            request.workspace_namespace,
                            request.workspace_name,
                        )
                        await arm.delete_pool(pool.name)
                return not owned
        except Throttled as exc:
            _logger.warning(
                "releasing %s/%s: %s", request.workspace_namespace, request.workspace_name, exc
            )
            return False

    # -- one pass against ARM ----------------------------------------------------------------

    async def _converge_pool(
        self, arm: ArmSession, request: NodeRequest, pool_name: str, body: dict[str, Any]
    ) -> ProvisionStatus | None:
        """Bring the pool towards the request; a status to report now, or None when the pool
        is Succeeded with the right size and the nodes decide."""
        pools = PoolSet.sort(await arm.list_pools(), request)
        if pools.squatter is not None:
            return _failed(
                REASON_NAME_CONFLICT,
                f"agent pool {pool_name} already exists in cluster {self.settings.cluster_name} "
                f"and is not tagged for workspace {request.workspace_namespace}/"
                f"{request.workspace_name}; kaito will not use or delete it",
            )
        if pools.strays:
            for stray in pools.strays:
                if not stray.deleting:
                    _logger.info(
                        "deleting leftover agent pool %s of workspace %s/%s",
                        stray.name,
                        request.workspace_namespace,
                        request.workspace_name,
                    )
                    await arm.delete_pool(stray.name)
            names = ", ".join(p.name for p in pools.strays)
            return self._waiting(
                REASON_CLEANUP,
                f"deleting leftover agent pool(s) {names} of this workspace before creating "
                f"{pool_name}",
            )

        pool = pools.mine
        if pool is None:
            problem = await self._preflight(arm, request, request.count)
            if problem is not None:
                return _failed(problem.reason, problem.message)
            _logger.info(
                "creating agent pool %s (%d x %s) for workspace %s/%s",
                pool_name,
                request.count,
                request.instance_type,
                request.workspace_namespace,
                request.workspace_name,
            )
            return await self._put(
                arm,
                pool_name,
                body,
                REASON_CREATING,
                f"creating agent pool {pool_name} ({request.count} x {request.instance_type})",
            )
        return await self._existing(arm, request, pool, body)

    async def _existing(
        self, arm: ArmSession, request: NodeRequest, pool: PoolView, body: dict[str, Any]
    ) -> ProvisionStatus | None:
        if pool.deleting:
            return self._waiting(
                REASON_DELETING,
                f"agent pool {pool.name} is being deleted; a new one follows once it is gone",
            )
        if pool.vm_size.lower() != request.instance_type.lower():
            _logger.info(
                "replacing agent pool %s: VM size %s, %s wanted",
                pool.name,
                pool.vm_size,
                request.instance_type,
            )
            await arm.delete_pool(pool.name)
            return self._waiting(
                REASON_REPLACING,
                f"agent pool {pool.name} has VM size {pool.vm_size}, not "
                f"{request.instance_type}; deleting it to create it again",
            )
        if pool.state == "Failed":
            return _failed(
                REASON_FAILED,
                f"agent pool {pool.name} ({pool.count} x {pool.vm_size}) failed: "
                f"{pool.failure()}; delete the agent pool or the workspace to try again",
            )
        if pool.busy:
            reason = REASON_CREATING if pool.state == "Creating" else REASON_UPDATING
            return self._waiting(
                reason,
                f"agent pool {pool.name} ({pool.count} x {pool.vm_size}) is {pool.state}",
            )
        if pool.state == "Canceled":
            _logger.info("re-applying agent pool %s after a canceled operation", pool.name)
            return await self._put(
                arm,
                pool.name,
                body,
                REASON_UPDATING,
                f"re-applying agent pool {pool.name} after its last operation was canceled",
            )
        if pool.count != request.count:
            if request.count > pool.count:
                problem = await self._preflight(arm, request, request.count - pool.count)
                if problem is not None:
                    return _failed(problem.reason, problem.message)
            _logger.info(
                "scaling agent pool %s from %d to %d nodes", pool.name, pool.count, request.count
            )
            return await self._put(
                arm,
                pool.name,
                body,
                REASON_SCALING,
                f"scaling agent pool {pool.name} from {pool.count} to {request.count} nodes",
            )
        return None

    async def _put(
        self,
        arm: ArmSession,
        pool_name: str,
        body: dict[str, Any],
        reason: str,
        doing: str,
    ) -> ProvisionStatus:
        try:
            pool = await arm.put_pool(pool_name, body)
        except AzureError as exc:
            if exc.status != 409:
                raise
            # Another operation holds the pool (a retried PUT whose first try did arrive, or a
            # second replica): what is there is read again on the next pass.
            return self._waiting(
                reason, f"agent pool {pool_name}: an operation is in progress ({exc.code})"
            )
        return self._waiting(reason, f"{doing}: {pool.state or 'accepted'}")

    async def _preflight(
        self, arm: ArmSession, request: NodeRequest, nodes: int
    ) -> CapacityProblem | None:
        location = await self._cluster_location(arm)
        size = check_vm_size(
            await arm.vm_skus(location), request.instance_type, location, self.settings.zones
        )
        if isinstance(size, CapacityProblem):
            return size
        return check_quota(await arm.usages(location), size, nodes, location)

    async def _cluster_location(self, arm: ArmSession) -> str:
        if self._location is None:
            location = await arm.cluster_location()
            if not location:
                raise AzureError(
                    f"managed cluster {self.settings.cluster_name} reports no location; set the "
                    "location option",
                    code="NoLocation",
                )
            self._location = location
        return self._location

    # -- statuses ----------------------------------------------------------------------------

    def _requeue(self, after: float | None = None) -> float:
        return max(_MIN_REQUEUE, self.settings.poll_interval if after is None else after)

    def _waiting(self, reason: str, message: str) -> ProvisionStatus:
        return ProvisionStatus(
            ready=False, reason=reason, message=message, requeue_after=self._requeue()
        )

    def _azure_failure(self, exc: AzureError) -> ProvisionStatus:
        if isinstance(exc, Throttled):
            return ProvisionStatus(
                ready=False,
                reason=REASON_THROTTLED,
                message=f"{exc}; retrying after {exc.retry_after:.0f}s",
                requeue_after=self._requeue(exc.retry_after),
            )
        if exc.denied:
            return _failed(REASON_DENIED, str(exc))
        if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 409):
            return _failed(REASON_REJECTED, str(exc))
        return self._waiting(REASON_UNAVAILABLE, str(exc))


def _failed(reason: str, message: str) -> ProvisionStatus:
    return ProvisionStatus(ready=False, reason=reason, message=message, failed=True)
