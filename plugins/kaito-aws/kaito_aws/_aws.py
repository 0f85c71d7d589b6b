"""The thin layer that calls AWS: EKS, EC2 and Service Quotas through boto3.

boto3 is synchronous, and the reconciler is not: every call runs in a worker thread
(`asyncio.to_thread`), so a slow AWS answer never stalls the event loop that also serves
watches and other workspaces. The clients are made on first use, inside the worker thread and
under a lock (a boto3 session is not safe to share while it builds clients), so constructing the
provisioner costs nothing and an unused client is never built.

Retries are botocore's: the `standard` mode (exponential backoff with jitter, retrying
throttling errors, 5xx answers and dropped connections, `max_attempts` tries in all) or the
`adaptive` mode (the same plus a client-side rate limiter that slows down after throttling).
What still fails after those attempts becomes an `AwsError`, which says whether waiting could
help (`transient`: throttling, 5xx, timeouts, unreachable endpoint) or not (access denied,
invalid parameters, no credentials). Its text is AWS's error code and message, never a request
or a credential.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast, overload

import boto3
import botocore.config
import botocore.exceptions

from kaito_aws._config import EKSConfig
from kaito_aws._quotas import Quota

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_eks.type_defs import (
        CreateNodegroupRequestTypeDef,
        NodegroupTypeDef,
        UpdateNodegroupConfigRequestTypeDef,
    )
    from mypy_boto3_service_quotas import ServiceQuotasClient

T = TypeVar("T")

USER_AGENT: Final = "kaito-aws"

THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "EC2ThrottledException",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
TRANSIENT_CODES: Final = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServerException",
    }
)
_TRANSIENT_BOTOCORE: Final = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)

Service = Literal["eks", "ec2", "service-quotas"]
DeleteOutcome = Literal["deleting", "gone", "busy"]


class AwsError(Exception):
    """An AWS call that failed after botocore's retries."""

    def __init__(self, operation: str, code: str, message: str, *, transient: bool) -> None:
        self.operation = operation
        self.code = code
        self.message = message
        self.transient = transient
        super().__init__(f"{operation}: {code}: {message}" if message else f"{operation}: {code}")


def retry_config(config: EKSConfig) -> botocore.config.Config:
    """The botocore client configuration: retry mode and attempts, bounded timeouts."""
    return botocore.config.Config(
        region_name=config.region,
        retries={"mode": config.retry_mode, "total_max_attempts": config.max_attempts},
        connect_timeout=10,
        read_timeout=30,
        user_agent_extra=USER_AGENT,
    )


class AwsApi:
    """The AWS calls the aws provisioner makes, each awaitable and each raising `AwsError`."""

    def __init__(self, config: EKSConfig, session: boto3.session.Session | None = None) -> None:
        self.config = config
        self.botocore_config = retry_config(config)
        self._lock = threading.Lock()
        self._session = session
        self._clients: dict[str, Any] = {}

    # -- clients -----------------------------------------------------------------------------

    @overload
    def _client(self, service: Literal["eks"]) -> EKSClient: ...
    @overload
    def _client(self, service: Literal["ec2"]) -> EC2Client: ...
    @overload
    def _client(self, service: Literal["service-quotas"]) -> ServiceQuotasClient: ...

    def _client(self, service: Service) -> Any:
        """A client of the service, built once; called from worker threads only."""
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                if self._session is None:
                    self._session = boto3.session.Session(region_name=self.config.region)
                client = self._session.client(
                    service,
                    endpoint_url=self.config.endpoint_url,
                    config=self.botocore_config,
                )
                self._clients[service] = client
            return client

    async def _run(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except botocore.exceptions.ClientError as exc:
            raise _client_error(operation, exc) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise AwsError(
                operation,
                "NoCredentials",
                "no AWS credentials found by boto3's default chain (environment, shared "
                "files, IRSA web identity, EKS Pod Identity, instance metadata)",
                transient=False,
            ) from exc
        except _TRANSIENT_BOTOCORE as exc:
            raise AwsError(operation, type(exc).__name__, str(exc), transient=True) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsError(operation, type(exc).__name__, str(exc), transient=False) from exc

    # -- EKS ---------------------------------------------------------------------------------

    async def describe_nodegroup(self, name: str) -> NodegroupTypeDef | None:
        """The node group, or None when it (or the cluster) does not exist."""

        def call() -> NodegroupTypeDef | None:
            eks = self._client("eks")
            try:
                return eks.describe_nodegroup(
                    clusterName=self.config.cluster_name, nodegroupName=name
                )["nodegroup"]
            except eks.exceptions.ResourceNotFoundException:
                return None

        return await self._run("DescribeNodegroup", call)

    async def create_nodegroup(self, body: CreateNodegroupRequestTypeDef) -> bool:
        """Create a node group; False when one of that name exists already."""

        def call() -> bool:
            eks = self._client("eks")
            try:
                eks.create_nodegroup(**body)
            except eks.exceptions.ResourceInUseException:
                return False
            return True

        return await self._run("CreateNodegroup", call)

    async def update_nodegroup_config(self, body: UpdateNodegroupConfigRequestTypeDef) -> bool:
        """Start a configuration update; False when the group is busy with another one."""

        def call() -> bool:
            eks = self._client("eks")
            try:
                eks.update_nodegroup_config(**body)
            except eks.exceptions.ResourceInUseException:
                return False
            return True

        return await self._run("UpdateNodegroupConfig", call)

    async def delete_nodegroup(self, name: str) -> DeleteOutcome:
        """Start deleting a node group: "deleting", "gone" (there was none), or "busy" (EKS
        refuses while the group is being created or updated; try again later)."""

        def call() -> DeleteOutcome:
            eks = self._client("eks")
            try:
                eks.delete_nodegroup(clusterName=self.config.cluster_name, nodegroupName=name)
            except eks.exceptions.ResourceNotFoundException:
                return "gone"
            except eks.exceptions.ResourceInUseException:
                return "busy"
            return "deleting"

        return await self._run("DeleteNodegroup", call)

    async def nodegroup_names(self) -> list[str]:
        """The names of all node groups of the cluster (none when the cluster is gone)."""

        def call() -> list[str]:
            eks = self._client("eks")
            names: list[str] = []
            try:
                for page in eks.get_paginator("list_nodegroups").paginate(
                    clusterName=self.config.cluster_name
                ):
                    names.extend(page.get("nodegroups") or [])
            except eks.exceptions.ResourceNotFoundException:
                return []
            return names

        return await self._run("ListNodegroups", call)

    # -- EC2 ---------------------------------------------------------------------------------

    async def subnet_zones(self, subnet_ids: Sequence[str]) -> dict[str, str]:
        """The availability zone of each subnet, by subnet ID."""

        def call() -> dict[str, str]:
            subnets = self._client("ec2").describe_subnets(SubnetIds=list(subnet_ids))
            return {
                s["SubnetId"]: s["AvailabilityZone"]
                for s in subnets.get("Subnets") or []
                if "SubnetId" in s and "AvailabilityZone" in s
            }

        return await self._run("DescribeSubnets", call)

    async def offered_zones(self, instance_type: str) -> set[str]:
        """The availability zones of the region that offer the instance type."""

        def call() -> set[str]:
            zones: set[str] = set()
            paginator = self._client("ec2").get_paginator("describe_instance_type_offerings")
            for page in paginator.paginate(
                LocationType="availability-zone",
                Filters=[{"Name": "instance-type", "Values": [instance_type]}],
            ):
                for offer in page.get("InstanceTypeOfferings") or []:
                    if offer.get("InstanceType") == instance_type and "Location" in offer:
                        zones.add(offer["Location"])
            return zones

        return await self._run("DescribeInstanceTypeOfferings", call)

    async def vcpus(self, instance_type: str) -> int | None:
        """The instance type's default vCPU count, or None when EC2 does not know the type."""

        def call() -> int | None:
            try:
                found = self._client("ec2").describe_instance_types(
                    InstanceTypes=[cast("InstanceTypeType", instance_type)]
                )
            except botocore.exceptions.ClientError as exc:
                if _client_error("DescribeInstanceTypes", exc).code == "InvalidInstanceType":
                    return None
                raise
            for info in found.get("InstanceTypes") or []:
                count = (info.get("VCpuInfo") or {}).get("DefaultVCpus")
                if count:
                    return count
            return None

        return await self._run("DescribeInstanceTypes", call)

    # -- Service Quotas ----------------------------------------------------------------------

    async def service_quota(self, quota: Quota) -> float | None:
        """The value of an EC2 quota in this region, or None when Service Quotas has none."""

        def call() -> float | None:
            client = self._client("service-quotas")
            try:
                found = client.get_service_quota(ServiceCode="ec2", QuotaCode=quota.code)
            except client.exceptions.NoSuchResourceException:
                return None
            return found.get("Quota", {}).get("Value")

        return await self._run("GetServiceQuota", call)


def _client_error(operation: str, exc: botocore.exceptions.ClientError) -> AwsError:
    error = exc.response.get("Error")
    code = str((error.get("Code") if error else None) or "Unknown")
    message = str((error.get("Message") if error else None) or "")
    meta = exc.response.get("ResponseMetadata")
    status = int((meta.get("HTTPStatusCode") if meta else None) or 0)
    transient = (
        code in THROTTLING_CODES or code in TRANSIENT_CODES or status >= 500 or status == 429
    )
    return AwsError(operation, code, message, transient=transient)
