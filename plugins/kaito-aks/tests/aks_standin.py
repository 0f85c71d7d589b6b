"""A local stand-in for the Azure Resource Manager endpoints the AKS provisioner calls.

An aiohttp server on 127.0.0.1 that answers the real SDKs (the tests point
`azure.mgmt.containerservice.aio` and `azure.mgmt.compute.aio` at it with `base_url`) the way
ARM does, for the few resources kaito touches:

- managedClusters GET; agentPools list, GET, PUT, DELETE
- long-running operations as ARM runs them: a PUT answers 201 (create) or 200 (update), a
  DELETE 202, each with `Azure-AsyncOperation` and `Location` headers; the operation status
  (`.../locations/<loc>/operations/<id>`) goes InProgress -> Succeeded or Failed (with an
  `error`), the operation result (`.../operationresults/<id>`) answers 202 until then; the
  pool's `provisioningState` follows the operation (Creating/Updating/Deleting, then
  Succeeded or Failed with `status.provisioningError`), and a second write while an operation
  runs is refused with 409 OperationNotAllowed
- Microsoft.Compute resource SKUs (location filter, paging with nextLink) and usages

Operations advance when observed: each read of the pool or of its operation is one step, and
an operation completes after `steps` of them (unless `hold` is set, when only `finish`
completes it). That keeps tests free of sleeps and still lets a test look at a pool mid-flight.
`on_succeeded` / `on_deleted` hooks let the test play AKS's Kubernetes side (nodes joining or
leaving the cluster).

Every request is logged (method, path, status, monotonic time) and must carry the expected
bearer token; `inject` answers chosen requests with an error (429 with Retry-After, 5xx), before
or after the request took effect. Requests must carry `api-version`, as ARM requires. Tag names
are checked like Azure does (no `<>%&\\?/`).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import attrs
from aiohttp import web

JSON = dict[str, Any]
Hook = Callable[[JSON], Awaitable[None]]
DeleteHook = Callable[[str], Awaitable[None]]

_TAG_FORBIDDEN = re.compile(r"[<>%&\\?/]")
_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_API = "2017-08-31"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=dict(headers or {})
    )


@attrs.define
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float
    body: JSON | None = None


@attrs.define
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    code: str
    message: str
    after: bool


@attrs.define
class Operation:
    id: str
    pool: str
    kind: str
    status: str = "InProgress"
    steps: int = 0
    error: JSON | None = None
    started: str = attrs.field(factory=_now)
    ended: str | None = None


def vm_sku(
    name: str,
    *,
    family: str,
    vcpus: int,
    location: str = "eastus",
    zones: Sequence[str] = ("1", "2", "3"),
    restrictions: Sequence[JSON] = (),
) -> JSON:
    """A Microsoft.Compute resource SKU entry for a VM size, as ARM lists it."""
    return {
        "resourceType": "virtualMachines",
        "name": name,
        "tier": "Standard",
        "size": name.removeprefix("Standard_"),
        "family": family,
        "locations": [location],
        "locationInfo": [{"location": location, "zones": list(zones), "zoneDetails": []}],
        "capabilities": [
            {"name": "vCPUs", "value": str(vcpus)},
            {"name": "GPUs", "value": "1"},
        ],
        "restrictions": list(restrictions),
    }


def location_restriction(location: str, reason: str = "NotAvailableForSubscription") -> JSON:
    return {
        "type": "Location",
        "values": [location],
        "restrictionInfo": {"locations": [location]},
        "reasonCode": reason,
    }


def zone_restriction(
    location: str, zones: Sequence[str], reason: str = "NotAvailableForSubscription"
) -> JSON:
    return {
        "type": "Zone",
        "values": [location],
        "restrictionInfo": {"locations": [location], "zones": list(zones)},
        "reasonCode": reason,
    }


def usage(name: str, current: int, limit: int) -> JSON:
    """A Microsoft.Compute usage entry (a quota family or `cores`)."""
    return {
        "unit": "Count",
        "currentValue": current,
        "limit": limit,
        "name": {"value": name, "localizedValue": name},
    }


class ArmStandIn:
    """`async with ArmStandIn(subscription=..., ...) as arm:` serves ARM on `arm.url`."""

    def __init__(
        self,
        *,
        subscription: str,
        resource_group: str,
        cluster: str,
        location: str = "eastus",
        token: str = "test-token",
        skus: Sequence[JSON] = (),
        usages: Sequence[JSON] = (),
        steps: int = 1,
        sku_page_size: int | None = None,
        lro_retry_after: int | None = None,
        on_succeeded: Hook | None = None,
        on_deleted: DeleteHook | None = None,
    ) -> None:
        self.subscription = subscription
        self.resource_group = resource_group
        self.cluster = cluster
        self.location = location
        self.token = token
        self.skus = list(skus)
        self.usages = list(usages)
        self.steps = steps
        self.sku_page_size = sku_page_size
        self.lro_retry_after = lro_retry_after
        self.on_succeeded = on_succeeded
        self.on_deleted = on_deleted
        self.hold = False
        self.pools: dict[str, JSON] = {}
        self.operations: dict[str, Operation] = {}
        self.log: list[LoggedRequest] = []
        self._faults: list[Fault] = []
        self._failures: dict[str, list[JSON]] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> ArmStandIn:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._route)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test controls ------------------------------------------------------------------------

    @property
    def cluster_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerService/managedClusters/{self.cluster}"
        )

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        code: str = "",
        message: str = "injected failure",
        after: bool = False,
    ) -> None:
        """Answer the next `times` matching requests with `status`; with `after`, the request
        takes effect first and only its answer is replaced (a response lost on the way)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        default_code = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(
            status, "InternalServerError"
        )
        self._faults.append(
            Fault(
                method=method.upper(),
                pattern=re.compile(path_regex),
                status=status,
                times=times,
                headers=headers,
                code=code or default_code,
                message=message,
                after=after,
            )
        )

    def fail_next(self, kind: str, code: str, message: str) -> None:
        """The next operation of `kind` (create, update, delete) ends Failed with this error."""
        self._failures.setdefault(kind, []).append({"code": code, "message": message})

    def seed_pool(self, name: str, properties: JSON, state: str = "Succeeded") -> JSON:
        """Put a pool in place as if someone else had created it."""
        pool = self._pool_wire(name, {**properties, "provisioningState": state})
        self.pools[name] = pool
        return pool

    async def finish(self, name: str) -> None:
        """Complete the in-flight operation on pool `name` (even when `hold` is set)."""
        for op in self.operations.values():
            if op.pool == name and op.status == "InProgress":
                await self._complete(op)

    def calls(self, method: str, path_suffix: str = "") -> list[LoggedRequest]:
        """Logged requests of a method whose path ends with `path_suffix`."""
        return [
            r
            for r in self.log
            if r.method == method.upper() and r.path.lower().endswith(path_suffix.lower())
        ]

    def pool_calls(self, method: str) -> list[LoggedRequest]:
        """Logged requests of a method on single agent pools (not the list)."""
        return [
            r for r in self.log if r.method == method.upper() and "/agentpools/" in r.path.lower()
        ]

    # -- plumbing -------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body: JSON | None = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        query = {k: v for k, v in request.query.items()}
        response = await self._answer(request, handler)
        self.log.append(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query=query,
                status=response.status,
                at=time.monotonic(),
                body=body,
            )
        )
        return response

    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "AuthenticationFailed", "missing or wrong bearer token")
        if "api-version" not in request.query:
            return _error(400, "MissingApiVersionParameter", "the api-version query is required")
        fault = self._fault_for(request)
        if fault is not None and not fault.after:
            return _error(fault.status, fault.code, fault.message, fault.headers)
        response = await handler(request)
        if fault is not None:
            return _error(fault.status, fault.code, fault.message, fault.headers)
        return response

    def _fault_for(self, request: web.Request) -> Fault | None:
        for fault in self._faults:
            if (
                fault.times > 0
                and fault.method == request.method
                and fault.pattern.search(request.path)
            ):
                fault.times -= 1
                return fault
        return None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        sub = f"/subscriptions/{self.subscription}"
        cluster = self.cluster_path
        method = request.method
        if path == cluster and method == "GET":
            return web.json_response(self._cluster_wire())
        if path == f"{cluster}/agentPools" and method == "GET":
            return await self._list_pools()
        match = re.fullmatch(re.escape(cluster) + r"/agentPools/([^/]+)", path)
        if match:
            name = match.group(1)
            if method == "GET":
                return await self._get_pool(name)
            if method == "PUT":
                return await self._put_pool(request, name)
            if method == "DELETE":
                return await self._delete_pool(name)
        ops = f"{sub}/providers/Microsoft.ContainerService/locations/{self.location}"
        match = re.fullmatch(re.escape(ops) + r"/(operations|operationresults)/([^/]+)", path)
        if match and method == "GET":
            return await self._operation(match.group(1), match.group(2))
        if path == f"{sub}/providers/Microsoft.Compute/skus" and method == "GET":
            return self._list_skus(request)
        compute = f"{sub}/providers/Microsoft.Compute/locations/([^/]+)/usages"
        match = re.fullmatch(compute, path)
        if match and method == "GET":
            return web.json_response(
                {"value": self._usages() if match.group(1) == self.location else []}
            )
        return _error(404, "ResourceNotFound", f"no route for {method} {path}")

    # -- Microsoft.ContainerService -------------------------------------------------------------

    def _cluster_wire(self) -> JSON:
        return {
            "id": self.cluster_path,
            "name": self.cluster,
            "type": "Microsoft.ContainerService/ManagedClusters",
            "location": self.location,
            "properties": {
                "provisioningState": "Succeeded",
                "kubernetesVersion": "1.30.0",
                "dnsPrefix": self.cluster,
            },
        }

    def _pool_wire(self, name: str, properties: JSON) -> JSON:
        return {
            "id": f"{self.cluster_path}/agentPools/{name}",
            "name": name,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": {
                "orchestratorVersion": "1.30.0",
                "powerState": {"code": "Running"},
                **properties,
            },
        }

    def _active(self, name: str) -> Operation | None:
        for op in self.operations.values():
            if op.pool == name and op.status == "InProgress":
                return op
        return None

    async def _observe(self, name: str) -> None:
        """One step of the pool's running operation."""
        op = self._active(name)
        if op is None or self.hold:
            return
        op.steps += 1
        if op.steps >= self.steps:
            await self._complete(op)

    async def _complete(self, op: Operation) -> None:
        failures = self._failures.get(op.kind) or []
        op.ended = _now()
        pool = self.pools.get(op.pool)
        if failures:
            op.status = "Failed"
            op.error = failures.pop(0)
            if pool is not None:
                pool["properties"]["provisioningState"] = "Failed"
                pool["properties"]["status"] = {"provisioningError": dict(op.error)}
            return
        op.status = "Succeeded"
        if op.kind == "delete":
            self.pools.pop(op.pool, None)
            if self.on_deleted is not None:
                await self.on_deleted(op.pool)
            return
        if pool is not None:
            pool["properties"]["provisioningState"] = "Succeeded"
            pool["properties"].pop("status", None)
            if self.on_succeeded is not None:
                await self.on_succeeded(pool)

    def _start(self, name: str, kind: str) -> tuple[Operation, dict[str, str]]:
        op = Operation(id=f"op-{next(self._ids):04d}", pool=name, kind=kind)
        self.operations[op.id] = op
        headers = {
            "Azure-AsyncOperation": (
                f"{self._operations_base()}/operations/{op.id}?api-version={_API}"
            ),
            "Location": self._result_url(op),
        }
        if self.lro_retry_after is not None:
            headers["Retry-After"] = str(self.lro_retry_after)
        return op, headers

    async def _list_pools(self) -> web.Response:
        for name in list(self.pools):
            await self._observe(name)
        return web.json_response({"value": list(self.pools.values())})

    async def _get_pool(self, name: str) -> web.Response:
        await self._observe(name)
        pool = self.pools.get(name)
        if pool is None:
            return _error(404, "NotFound", f"agent pool {name} not found")
        return web.json_response(pool)

    def _invalid(self, name: str, body: JSON | None) -> str | None:
        if not _POOL_NAME.match(name):
            return f"agent pool name {name!r} must be 1-12 lowercase alphanumerics"
        props = (body or {}).get("properties")
        if not isinstance(props, dict):
            return "the request body needs properties"
        if not props.get("vmSize"):
            return "properties.vmSize is required"
        if not isinstance(props.get("count"), int) or props["count"] < 0:
            return "properties.count must be a non-negative integer"
        if props.get("mode") not in (None, "System", "User"):
            return f"mode {props.get('mode')!r} is not System or User"
        disk = props.get("osDiskSizeGB")
        if disk is not None and not 30 <= disk <= 2048:
            return f"osDiskSizeGB {disk} is outside 30..2048"
        for key in props.get("tags") or {}:
            if _TAG_FORBIDDEN.search(key):
                return f"tag name {key!r} has a character Azure does not allow"
        for key in props.get("nodeLabels") or {}:
            if key.startswith("kubernetes.azure.com/"):
                return f"node label {key!r} uses a reserved prefix"
        for taint in props.get("nodeTaints") or []:
            if not re.fullmatch(r"[^=:]+=[^=:]*:(NoSchedule|PreferNoSchedule|NoExecute)", taint):
                return f"node taint {taint!r} is not key=value:Effect"
        return None

    async def _put_pool(self, request: web.Request, name: str) -> web.Response:
        body = await request.json()
        problem = self._invalid(name, body)
        if problem is not None:
            return _error(400, "InvalidParameter", problem)
        props = dict(body["properties"])
        existing = self.pools.get(name)
        if existing is not None:
            if self._active(name) is not None:
                return _error(
                    409,
                    "OperationNotAllowed",
                    f"an operation on agent pool {name} is in progress; retry when it is done",
                )
            if existing["properties"].get("vmSize") != props["vmSize"]:
                return _error(
                    400, "PropertyChangeNotAllowed", "Changing property 'vmSize' is not allowed"
                )
            existing["properties"].update(props)
            existing["properties"]["provisioningState"] = "Updating"
            existing["properties"].pop("status", None)
            _, headers = self._start(name, "update")
            return web.json_response(existing, status=200, headers=headers)
        pool = self._pool_wire(name, {**props, "provisioningState": "Creating"})
        self.pools[name] = pool
        _, headers = self._start(name, "create")
        return web.json_response(pool, status=201, headers=headers)

    async def _delete_pool(self, name: str) -> web.Response:
        pool = self.pools.get(name)
        if pool is None:
            return web.Response(status=204)
        running = self._active(name)
        if running is not None and running.kind == "delete":
            return _error(409, "OperationNotAllowed", f"agent pool {name} is being deleted")
        if running is not None:
            running.status = "Canceled"
            running.ended = _now()
        pool["properties"]["provisioningState"] = "Deleting"
        _, headers = self._start(name, "delete")
        return web.Response(status=202, headers=headers)

    async def _operation(self, which: str, op_id: str) -> web.Response:
        op = self.operations.get(op_id)
        if op is None:
            return _error(404, "NotFound", f"operation {op_id} not found")
        await self._observe(op.pool)
        if which == "operations":
            out: JSON = {
                "id": op_id,
                "name": op_id,
                "status": op.status,
                "startTime": op.started,
            }
            if op.ended:
                out["endTime"] = op.ended
            if op.error:
                out["error"] = op.error
            return web.json_response(out)
        if op.status == "InProgress":
            return web.Response(status=202, headers={"Location": self._result_url(op)})
        if op.status == "Failed":
            return _error(
                400, str((op.error or {}).get("code")), str((op.error or {}).get("message"))
            )
        pool = self.pools.get(op.pool)
        if op.kind == "delete" or pool is None:
            return web.Response(status=204)
        return web.json_response(pool)

    def _operations_base(self) -> str:
        return (
            f"{self.url}/subscriptions/{self.subscription}/providers/"
            f"Microsoft.ContainerService/locations/{self.location}"
        )

    def _result_url(self, op: Operation) -> str:
        return f"{self._operations_base()}/operationresults/{op.id}?api-version={_API}"

    # -- Microsoft.Compute ----------------------------------------------------------------------

    def _usages(self) -> list[JSON]:
        """The configured usages plus the vCPUs of the stand-in's own pools, per family and
        in the regional total, as ARM counts VMs that exist."""
        sizes = {str(s["name"]).lower(): s for s in self.skus}
        used: dict[str, int] = {}
        for pool in self.pools.values():
            props = pool["properties"]
            sku = sizes.get(str(props.get("vmSize", "")).lower())
            if sku is None:
                continue
            vcpus = next((int(c["value"]) for c in sku["capabilities"] if c["name"] == "vCPUs"), 0)
            total = vcpus * int(props.get("count") or 0)
            family = str(sku.get("family", "")).lower()
            used[family] = used.get(family, 0) + total
            used["cores"] = used.get("cores", 0) + total
        out = []
        for entry in self.usages:
            name = str(entry["name"]["value"]).lower()
            out.append({**entry, "currentValue": entry["currentValue"] + used.get(name, 0)})
        return out

    def _list_skus(self, request: web.Request) -> web.Response:
        wanted = None
        match = re.fullmatch(r"\s*location\s+eq\s+'([^']*)'\s*", request.query.get("$filter", ""))
        if match:
            wanted = match.group(1).replace(" ", "").lower()
        items = [
            s
            for s in self.skus
            if wanted is None or wanted in [loc.lower() for loc in s.get("locations") or []]
        ]
        start = int(request.query.get("$skiptoken", "0") or 0)
        out: JSON = {}
        if self.sku_page_size is not None:
            end = start + self.sku_page_size
            out["value"] = items[start:end]
            if end < len(items):
                query = {k: v for k, v in parse_qs(request.query_string).items()}
                flat = {k: v[0] for k, v in query.items()}
                flat["$skiptoken"] = str(end)
                out["nextLink"] = f"{self.url}{request.path}?{urlencode(flat)}"
        else:
            out["value"] = items
        return web.json_response(out)
