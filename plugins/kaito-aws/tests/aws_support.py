"""Test support for the aws provisioner: a fake AWS account in moto's server, a fault-injecting
proxy in front of it, and the Kubernetes side of a node group (its Nodes joining the cluster).

The provisioner under test talks HTTP to the proxy exactly as to AWS: the proxy forwards every
request to moto, records which AWS operation it was (so tests count CreateNodegroup calls), and
on request answers with an AWS error instead (throttling, 5xx, access denied), before or after
moto has acted, to exercise botocore's retries and the idempotency token.

moto makes node groups ACTIVE at once and deletes them at once, and does not model health
issues. Its server runs in this process, so `AwsWorld.set_status` edits the node group in
moto's backend directly to give it the states a real EKS passes through (CREATING, DELETING,
CREATE_FAILED with issues, DEGRADED); the provisioner still only sees them over HTTP.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import boto3
from kaito_aws import NODEGROUP_LABEL, EKSProvisioner, Quota, QuotaSource
from moto.core import DEFAULT_ACCOUNT_ID
from moto.eks.models import eks_backends

from kaito.kube import NODE, Client, RawObject
from kaito.presets import builtin_skus
from kaito.provisioners import (
    WORKSPACE_LABEL,
    WORKSPACE_NAMESPACE_LABEL,
    NodeRequest,
    ProvisionerContext,
)
from kaito.provisioners.nodes import node_base_name

REGION = "eu-west-1"
CLUSTER = "gpu-cluster"
ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
ACCESS_KEY_ID = "AKIAKAITOTESTKEY0001"
SECRET_ACCESS_KEY = "kaito-test-secret/DoNotLogMe+0123456789abcdefgh"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


# -- the fault-injecting proxy ---------------------------------------------------------------


@attrs.frozen
class Call:
    """One request that reached the proxy."""

    service: str
    operation: str
    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@attrs.define
class Fault:
    operation: str
    status: int
    code: str
    message: str
    times: int
    forward: bool


def _service(headers: Mapping[str, str]) -> str:
    """The service a SigV4-signed request is for, from its credential scope."""
    auth = headers.get("Authorization", "")
    marker = "Credential="
    if marker not in auth:
        return ""
    scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
    return scope[3] if len(scope) > 3 else ""


def _operation(
    service: str, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> str:
    if service == "ec2":
        return urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]
    if service == "servicequotas":
        return headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
    if service == "eks":
        parts = [p for p in urllib.parse.urlsplit(path).path.split("/") if p]
        if len(parts) == 3 and parts[2] == "node-groups":
            return {"POST": "CreateNodegroup", "GET": "ListNodegroups"}.get(method, method)
        if len(parts) == 4 and parts[2] == "node-groups":
            return {"GET": "DescribeNodegroup", "DELETE": "DeleteNodegroup"}.get(method, method)
        if len(parts) == 5 and parts[4] == "update-config":
            return "UpdateNodegroupConfig"
    return f"{method} {path}"


def _error(service: str, status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    if service == "ec2":
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        ).encode()
        return status, {"Content-Type": "text/xml"}, body
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}
    return status, headers, json.dumps({"__type": code, "message": message}).encode()


class FaultProxy:
    """An HTTP proxy to moto that records AWS operations and injects AWS errors."""

    def __init__(self, upstream: str) -> None:
        target = urllib.parse.urlsplit(upstream)
        self._upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self._faults: list[Fault] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                service = _service(headers)
                operation = _operation(service, self.command, self.path, headers, body)
                fault = proxy._record(Call(service, operation, self.command, self.path, body))
                if fault is not None and not fault.forward:
                    self._reply(*_error(service, fault.status, fault.code, fault.message))
                    return
                reply = proxy._forward(self.command, self.path, headers, body)
                if fault is not None:
                    reply = _error(service, fault.status, fault.code, fault.message)
                self._reply(*reply)

            def _reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail(
        self,
        operation: str,
        *,
        status: int,
        code: str,
        message: str = "injected by the test",
        times: int = 1,
        forward: bool = False,
    ) -> None:
        """Answer the next `times` requests of `operation` with an AWS error; with `forward`,
        moto acts on the request first and only its answer is lost."""
        with self._lock:
            self._faults.append(Fault(operation, status, code, message, times, forward))

    def ops(self, operation: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.operation == operation]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self._faults.clear()

    def _record(self, call: Call) -> Fault | None:
        with self._lock:
            self.calls.append(call)
            for fault in self._faults:
                if fault.operation == call.operation and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _forward(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=dict(headers))
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()


# -- the fake AWS account ---------------------------------------------------------------------


@attrs.define
class AwsWorld:
    """An EKS cluster with a VPC, one subnet per zone and a node role, in moto."""

    moto_url: str
    proxy: FaultProxy
    subnets: dict[str, str]
    """Subnet ID by availability zone."""
    role_arn: str
    eks: Any
    ec2: Any
    session: boto3.session.Session
    """Shared by the provisioners of the tests: building clients anew each time is slow."""

    @classmethod
    def create(cls, moto_url: str, proxy: FaultProxy, session: boto3.session.Session) -> AwsWorld:
        def client(service: str) -> Any:
            return session.client(service, endpoint_url=moto_url)

        ec2, iam, eks = client("ec2"), client("iam"), client("eks")
        vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
        subnets = {
            zone: ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=zone)[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate(ZONES)
        }
        role = iam.create_role(
            RoleName="kaito-gpu-nodes",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        eks.create_cluster(
            name=CLUSTER,
            roleArn=role,
            resourcesVpcConfig={"subnetIds": list(subnets.values())},
        )
        return cls(moto_url, proxy, subnets, role, eks, ec2, session)

    def options(self, zones: Sequence[str] = ZONES, **extra: str) -> dict[str, str]:
        """Provisioner options for this account, through the proxy."""
        return {
            "region": REGION,
            "cluster-name": CLUSTER,
            "subnet-ids": ",".join(self.subnets[z] for z in zones),
            "node-role-arn": self.role_arn,
            "endpoint-url": self.proxy.url,
            **extra,
        }

    def nodegroup(self, name: str) -> dict[str, Any]:
        return dict(
            self.eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=name)["nodegroup"]
        )

    def nodegroup_names(self) -> list[str]:
        return list(self.eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"])

    def add_nodegroup(self, name: str, *, instance_type: str = "g5.xlarge", **extra: Any) -> None:
        """A node group made outside the provisioner (a leftover, or someone else's)."""
        self.eks.create_nodegroup(
            clusterName=CLUSTER,
            nodegroupName=name,
            nodeRole=self.role_arn,
            subnets=list(self.subnets.values()),
            instanceTypes=[instance_type],
            scalingConfig={"minSize": 1, "maxSize": 1, "desiredSize": 1},
            **extra,
        )

    def set_status(self, name: str, status: str, issues: Sequence[Mapping[str, Any]] = ()) -> None:
        """Put a node group in a state moto does not produce by itself."""
        group = eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[CLUSTER].nodegroups[name]
        group.status = status
        group.health = {"issues": [dict(i) for i in issues]}

    def remove_all_nodegroups(self) -> None:
        cluster = eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[CLUSTER]
        cluster.nodegroups.clear()
        cluster.nodegroup_count = 0

    def vanish(self, name: str) -> None:
        """A deletion EKS has finished."""
        cluster = eks_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[CLUSTER]
        cluster.nodegroups.pop(name)
        cluster.nodegroup_count -= 1


# -- the Kubernetes side ----------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_EFFECTS = {
    "NO_SCHEDULE": "NoSchedule",
    "NO_EXECUTE": "NoExecute",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
}


def node_for(group: Mapping[str, Any], index: int, *, ready: bool = True) -> RawObject:
    """The Node a kubelet of the node group registers: EKS's labels plus the group's labels
    and taints, and the GPUs of the instance type as the NVIDIA device plugin reports them."""
    name = group["nodegroupName"]
    instance_type = group["instanceTypes"][0]
    sku = builtin_skus().get(instance_type)
    gpus = str(sku.gpu_count if sku is not None else 1)
    resources = {"cpu": "4", "memory": "16Gi", "pods": "110", "nvidia.com/gpu": gpus}
    host = f"ip-10-40-{sum(name.encode()) % 250}-{index + 10}.{REGION}.compute.internal"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": host,
            "labels": {
                **group.get("labels", {}),
                NODEGROUP_LABEL: name,
                INSTANCE_TYPE_LABEL: instance_type,
                "eks.amazonaws.com/capacityType": "ON_DEMAND",
                "kubernetes.io/hostname": host,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {
            "taints": [
                {"key": t["key"], "value": t["value"], "effect": _EFFECTS[t["effect"]]}
                for t in group.get("taints", [])
            ]
        },
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "lastHeartbeatTime": _now(),
                    "lastTransitionTime": _now(),
                }
            ],
        },
    }


async def join_nodes(
    client: Client, world: AwsWorld, name: str, *, count: int | None = None, ready: bool = True
) -> list[str]:
    """Register the node group's instances as Nodes (its desired size, or `count`)."""
    group = world.nodegroup(name)
    size = group["scalingConfig"]["desiredSize"] if count is None else count
    created = []
    for index in range(size):
        node = await client.create(NODE, node_for(group, index, ready=ready))
        created.append(str(node["metadata"]["name"]))
    return created


# -- requests and provisioners ----------------------------------------------------------------


def request(
    *,
    name: str = "phi",
    namespace: str = "default",
    uid: str = "uid-1",
    instance_type: str = "g5.xlarge",
    count: int = 1,
    gpus_per_node: int = 1,
    disk_gib: int = 120,
    labels: Mapping[str, str] | None = None,
    expressions: Sequence[Mapping[str, object]] = (),
) -> NodeRequest:
    """A request the way kaito's reconciler builds it: user labels plus kaito's own."""
    return NodeRequest(
        workspace_namespace=namespace,
        workspace_name=name,
        workspace_uid=uid,
        name=node_base_name(namespace, name),
        instance_type=instance_type,
        count=count,
        gpus_per_node=gpus_per_node,
        disk_gib=disk_gib,
        labels={**(labels or {}), WORKSPACE_LABEL: name, WORKSPACE_NAMESPACE_LABEL: namespace},
        match_expressions=tuple(expressions),
    )


def provisioner(
    client: Any, world: AwsWorld, *, quota: QuotaSource | None = None, **options: str
) -> EKSProvisioner:
    """An aws provisioner for the fake account, configured through its options only."""
    zones = options.pop("zones", None)
    opts = world.options(**options) if zones is None else world.options(zones.split(","), **options)
    return EKSProvisioner(
        ProvisionerContext(client, opts), session=world.session, quota_source=quota, environ={}
    )


def fixed_quota(value: float | None) -> tuple[QuotaSource, list[Quota]]:
    """A quota source answering `value` for every quota, and the quotas it was asked for."""
    asked: list[Quota] = []

    async def source(quota: Quota) -> float | None:
        asked.append(quota)
        return value

    return source, asked
