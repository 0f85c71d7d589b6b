"""The `aws` provisioner: a workspace's GPU nodes as one EKS managed node group.

Every pass starts from what AWS and the cluster say, never from memory, and never waits for
AWS: node group creation takes minutes, so a pass starts it and answers "waiting" with
`requeue_after`, and later passes describe the group until it is ACTIVE.

    no group by its name      look for leftovers tagged for the workspace (delete them), check
                              that the subnets' zones offer the instance type and that the vCPU
                              quota allows the group, then CreateNodegroup -> waiting
    CREATING / DELETING       waiting
    CREATE_FAILED,            failed, with the health issues EKS reports
    DELETE_FAILED
    shape changed             (instance type, AMI, disk: things EKS cannot change in place)
                              delete it -> waiting; once gone it is created anew
    ACTIVE / UPDATING /       size, labels or taints differ: UpdateNodegroupConfig; then the
    DEGRADED                  nodes labelled eks.amazonaws.com/nodegroup=<name> are judged by
                              kaito's shared readiness rule (Ready, right instance type,
                              allocatable GPUs) -> ready, or waiting for them

Failing the capacity checks is `failed` (it will not heal by waiting) but is looked at again
every `RECHECK_INTERVAL` seconds, since a raised quota or another subnet does heal it. An AWS
error that survived botocore's retries is `failed` when it is permanent (access denied, unknown
cluster) and plain waiting when it is transient (throttling, 5xx, unreachable endpoint).

`release` deletes the group (and tagged leftovers) and answers True once DescribeNodegroup says
ResourceNotFound. A group left behind by a crash has the same deterministic name, so it is found
and reused rather than duplicated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from kaito.kube import Client
from kaito.presets import SkuCatalog, builtin_skus
from kaito.provisioners import NodeRequest, ProvisionerContext, ProvisionStatus
from kaito.provisioners.nodes import assess_nodes, list_nodes, name_of, selector_string
from kaito_aws._aws import AwsApi, AwsError
from kaito_aws._config import PROVISIONER_NAME, EKSConfig
from kaito_aws._nodegroup import (
    NAME_PREFIX,
    NODEGROUP_LABEL,
    NodegroupSpec,
    nodegroup_name,
    tagged_for,
)
from kaito_aws._quotas import QuotaSource, quota_for

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_eks.type_defs import NodegroupTypeDef

log = logging.getLogger("kaito_aws")

REASON_READY: Final = "NodesReady"
REASON_WAITING: Final = "WaitingForNodes"
REASON_CREATING: Final = "NodeGroupCreating"
REASON_UPDATING: Final = "NodeGroupUpdating"
REASON_DEGRADED: Final = "NodeGroupDegraded"
REASON_DELETING: Final = "NodeGroupDeleting"
REASON_REPLACING: Final = "NodeGroupReplacing"
REASON_CREATE_FAILED: Final = "NodeGroupCreateFailed"
REASON_DELETE_FAILED: Final = "NodeGroupDeleteFailed"
REASON_NOT_OFFERED: Final = "InstanceTypeNotOffered"
REASON_QUOTA: Final = "QuotaExceeded"
REASON_INVALID: Final = "InvalidNodeRequest"
REASON_AWS_FAILED: Final = "AWSRequestFailed"
REASON_AWS_UNAVAILABLE: Final = "AWSUnavailable"

RECHECK_INTERVAL: Final = 300.0
"""Seconds before a failed capacity check or a rejected AWS call is tried again."""

_FAILED_REASONS: Final[Mapping[str, str]] = {
    "CREATE_FAILED": REASON_CREATE_FAILED,
    "DELETE_FAILED": REASON_DELETE_FAILED,
}


class EKSProvisioner:
    """Provisions each workspace's GPU nodes as an EKS managed node group.

    `ctx.options` (or `KAITO_AWS_*` variables) configure it, see `EKSConfig`. For tests and
    embedding: `session` is the boto3 session to build clients from (default: a new one on
    the default credential chain), `quota_source` replaces the Service Quotas look-up,
    `environ` the process environment, `catalog` the instance types whose vCPUs are known
    without asking EC2.
    """

    name = PROVISIONER_NAME

    def __init__(
        self,
        ctx: ProvisionerContext,
        *,
        session: boto3.session.Session | None = None,
        quota_source: QuotaSource | None = None,
        environ: Mapping[str, str] | None = None,
        catalog: SkuCatalog | None = None,
    ) -> None:
        self.config = EKSConfig.from_options(
            ctx.options, os.environ if environ is None else environ
        )
        self.client: Client = ctx.client
        self.api = AwsApi(self.config, session)
        self._quota: QuotaSource = quota_source or self.api.service_quota
        self._skus = builtin_skus() if catalog is None else catalog

    # -- the protocol ------------------------------------------------------------------------

    async def provision(self, request: NodeRequest) -> ProvisionStatus:
        """Create, check or repair the workspace's node group and report its nodes."""
        try:
            spec = NodegroupSpec.for_request(request, self.config)
        except ValueError as exc:
            return ProvisionStatus(
                ready=False, failed=True, reason=REASON_INVALID, message=str(exc)
            )
        try:
            group = await self.api.describe_nodegroup(spec.name)
            if group is None:
                return await self._create(request, spec)
            return await self._observe(request, spec, group)
        except AwsError as exc:
            return self._aws_failure(exc, f"node group {spec.name}")

    async def release(self, request: NodeRequest) -> bool:
        """Delete the workspace's node group and any tagged leftovers; True once all are gone."""
        namespace, workspace = request.workspace_namespace, request.workspace_name
        name = nodegroup_name(namespace, workspace)
        try:
            names = [name, *[n for n, _ in await self._leftovers(namespace, workspace, name)]]
            gone = [await self._release_one(n) for n in names]
        except AwsError as exc:
            log.warning("releasing EKS node group %s: %s", name, exc)
            return False
        return all(gone)

    # -- provisioning ------------------------------------------------------------------------

    async def _create(self, request: NodeRequest, spec: NodegroupSpec) -> ProvisionStatus:
        for leftover, group in await self._leftovers(
            request.workspace_namespace, request.workspace_name, spec.name
        ):
            if group.get("status") != "DELETING":
                log.info(
                    "deleting EKS node group %s, a leftover of workspace %s/%s",
                    leftover,
                    request.workspace_namespace,
                    request.workspace_name,
                )
                await self.api.delete_nodegroup(leftover)
        zones, subnets = await self._placement(spec)
        if isinstance(subnets, ProvisionStatus):
            return subnets
        problem = await self._quota_problem(spec, zones)
        if problem is not None:
            return problem
        body = spec.create_request(subnets, request.workspace_uid)
        if await self.api.create_nodegroup(body):
            log.info(
                "creating EKS node group %s (%d x %s, %s) in cluster %s, %s",
                spec.name,
                spec.count,
                spec.instance_type,
                spec.ami_type,
                self.config.cluster_name,
                self.config.region,
            )
        else:
            # Made meanwhile by a racing replica or an earlier pass: look at what it is.
            existing = await self.api.describe_nodegroup(spec.name)
            if existing is not None:
                return await self._observe(request, spec, existing)
        return self._waiting(
            REASON_CREATING,
            f"creating EKS node group {spec.name} ({spec.count} x {spec.instance_type}) in "
            f"cluster {self.config.cluster_name} ({self.config.region})",
        )

    async def _observe(
        self, request: NodeRequest, spec: NodegroupSpec, group: NodegroupTypeDef
    ) -> ProvisionStatus:
        status = group.get("status", "")
        described = f"EKS node group {spec.name} is {status}"
        stale = spec.stale_because(group)
        if stale is not None:
            if status not in ("DELETING", "CREATING", "UPDATING"):
                outcome = await self.api.delete_nodegroup(spec.name)
                log.info("deleting EKS node group %s, which %s (%s)", spec.name, stale, outcome)
            return self._waiting(
                REASON_REPLACING,
                f"EKS node group {spec.name} {stale}; it is deleted and then created anew",
            )
        if status in _FAILED_REASONS:
            return ProvisionStatus(
                ready=False,
                failed=True,
                reason=_FAILED_REASONS[status],
                message=f"{described}: {_issues(group)}",
            )
        if status == "DELETING":
            return self._waiting(REASON_DELETING, f"{described}; it is created again once gone")
        if status == "CREATING":
            return self._waiting(REASON_CREATING, described)

        updating = status == "UPDATING"
        update = spec.update_request(group) if status == "ACTIVE" else None
        if update is not None:
            log.info("updating EKS node group %s to %d nodes", spec.name, spec.count)
            await self.api.update_nodegroup_config(update)
            updating = True
        nodes = sorted(
            await list_nodes(self.client, selector_string({NODEGROUP_LABEL: spec.name})),
            key=name_of,
        )
        assessment = assess_nodes(
            nodes,
            count=spec.count,
            instance_type=spec.instance_type,
            gpus_per_node=request.gpus_per_node,
        )
        if assessment.enough:
            return ProvisionStatus(
                ready=True,
                nodes=assessment.ready,
                reason=REASON_READY,
                message=assessment.message,
                requeue_after=self.config.poll_interval if updating else None,
            )
        detail = assessment.message
        if assessment.waiting:
            node, why = assessment.waiting[0]
            detail += f" ({node} {why})"
        if status == "DEGRADED":
            reason, detail = REASON_DEGRADED, f"{detail}; {described}: {_issues(group)}"
        elif updating:
            reason, detail = REASON_UPDATING, f"{detail}; EKS node group {spec.name} is updating"
        else:
            reason = REASON_WAITING
        return ProvisionStatus(
            ready=False,
            nodes=assessment.ready,
            reason=reason,
            message=detail,
            requeue_after=self.config.poll_interval,
        )

    # -- checks before creating --------------------------------------------------------------

    async def _placement(
        self, spec: NodegroupSpec
    ) -> tuple[list[str], list[str] | ProvisionStatus]:
        """The zones of the configured subnets, and the subnets whose zone offers the
        instance type (or the InstanceTypeNotOffered failure)."""
        by_subnet = await self.api.subnet_zones(self.config.subnet_ids)
        zones = sorted(set(by_subnet.values()))
        offered = await self.api.offered_zones(spec.instance_type)
        usable = [s for s in self.config.subnet_ids if by_subnet.get(s) in offered]
        if usable:
            return zones, usable
        region = self.config.region
        where = (
            f"it is offered in {', '.join(sorted(offered))}"
            if offered
            else f"it is not offered in any zone of {region}"
        )
        return zones, self._capacity_failure(
            REASON_NOT_OFFERED,
            f"instance type {spec.instance_type} is not offered in the availability zones of "
            f"the configured subnets ({', '.join(zones) or 'none'}) in region {region}; "
            f"{where}. Choose another instance type or add subnets in a zone that offers it",
        )

    async def _quota_problem(
        self, spec: NodegroupSpec, zones: Sequence[str]
    ) -> ProvisionStatus | None:
        quota = quota_for(spec.instance_type)
        if quota is None:
            return None
        sku = self._skus.get(spec.instance_type)
        vcpus = sku.vcpus if sku is not None and sku.vcpus else None
        if vcpus is None:
            vcpus = await self.api.vcpus(spec.instance_type)
        if vcpus is None:
            log.info("not checking the vCPU quota: the vCPUs of %s are unknown", spec.instance_type)
            return None
        try:
            value = await self._quota(quota)
        except AwsError as exc:
            if exc.transient:
                raise
            log.warning("not checking the vCPU quota %s (%s): %s", quota.code, quota.name, exc)
            return None
        if value is None:
            log.info("not checking the vCPU quota %s: Service Quotas has no value", quota.code)
            return None
        needed = vcpus * spec.count
        if needed <= value:
            return None
        return self._capacity_failure(
            REASON_QUOTA,
            f"{spec.count} x {spec.instance_type} need {needed} vCPUs, but the EC2 quota "
            f'"{quota.name}" ({quota.code}) in region {self.config.region} allows {value:g} '
            f"vCPUs (zones {', '.join(zones) or 'none'}). Request an increase of {quota.code} "
            "in Service Quotas or choose a smaller instance type",
        )

    async def _leftovers(
        self, namespace: str, workspace: str, keep: str
    ) -> list[tuple[str, NodegroupTypeDef]]:
        """Node groups tagged for the workspace under another name than `keep`."""
        found: list[tuple[str, NodegroupTypeDef]] = []
        for name in await self.api.nodegroup_names():
            if not name.startswith(NAME_PREFIX) or name == keep:
                continue
            group = await self.api.describe_nodegroup(name)
            if group is not None and tagged_for(group, namespace, workspace):
                found.append((name, group))
        return found

    # -- release -----------------------------------------------------------------------------

    async def _release_one(self, name: str) -> bool:
        group = await self.api.describe_nodegroup(name)
        if group is None:
            return True
        if group.get("status") == "DELETING":
            return False
        outcome = await self.api.delete_nodegroup(name)
        if outcome == "gone":
            return True
        log.info("deleting EKS node group %s (%s)", name, outcome)
        return await self.api.describe_nodegroup(name) is None

    # -- statuses ----------------------------------------------------------------------------

    def _waiting(self, reason: str, message: str) -> ProvisionStatus:
        return ProvisionStatus(
            ready=False, reason=reason, message=message, requeue_after=self.config.poll_interval
        )

    @staticmethod
    def _capacity_failure(reason: str, message: str) -> ProvisionStatus:
        return ProvisionStatus(
            ready=False,
            failed=True,
            reason=reason,
            message=message,
            requeue_after=RECHECK_INTERVAL,
        )

    def _aws_failure(self, exc: AwsError, subject: str) -> ProvisionStatus:
        log.warning("%s: AWS call failed: %s", subject, exc)
        where = f"cluster {self.config.cluster_name} ({self.config.region})"
        if exc.transient:
            return self._waiting(
                REASON_AWS_UNAVAILABLE, f"AWS did not answer for {subject} in {where}: {exc}"
            )
        return ProvisionStatus(
            ready=False,
            failed=True,
            reason=REASON_AWS_FAILED,
            message=f"AWS rejected a call for {subject} in {where}: {exc}",
            requeue_after=RECHECK_INTERVAL,
        )


def _issues(group: NodegroupTypeDef) -> str:
    """EKS's health issues of a node group, as one sentence."""
    parts = []
    for issue in (group.get("health") or {}).get("issues") or []:
        text = f"{issue.get('code', 'Unknown')}: {issue.get('message', '')}".rstrip(": ")
        ids = issue.get("resourceIds") or []
        if ids:
            text += f" ({', '.join(ids)})"
        parts.append(text)
    return "; ".join(parts) or "EKS reports no health issues"
