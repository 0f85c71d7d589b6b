"""Kubernetes Events for the workspace's condition transitions.

`kubectl describe workspace` shows Events, and they are how most users notice that something
happened ("NodeClaimLaunchFailed: no capacity for Standard_NC6s_v3") without reading
conditions. One core/v1 Event is recorded per condition that appears or changes status or
reason; its reason is the condition's, its type Warning for failures and Normal otherwise.

Events are best effort, as in every Kubernetes controller: they are recorded after the status
write, and a failure to record one never fails the pass (the conditions hold the truth).
"""

from __future__ import annotations

import logging
from typing import Any

from kaito.api import Workspace
from kaito.kube import EVENT, Client, KubeError, RawObject
from kaito.reconcile._constants import EVENT_COMPONENT, name_of, namespace_of, workspace_labels
from kaito.reconcile._status import Cond

_log = logging.getLogger(__name__)

MAX_MESSAGE = 1024
"""Event messages are cut to this length (the API server rejects very long ones)."""


def condition_event(workspace: Workspace, cond: Cond, *, now: str) -> RawObject:
    """The Event recording one condition transition on the workspace."""
    namespace, name = namespace_of(workspace), name_of(workspace)
    message = f"{cond.type} is {cond.status}: {cond.message}"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    involved: dict[str, Any] = {
        "apiVersion": workspace.api_version,
        "kind": workspace.kind,
        "name": name,
        "namespace": namespace,
    }
    if workspace.metadata.uid:
        involved["uid"] = workspace.metadata.uid
    if workspace.metadata.resource_version:
        involved["resourceVersion"] = workspace.metadata.resource_version
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{name}.",
            "namespace": namespace,
            "labels": workspace_labels(namespace, name),
        },
        "involvedObject": involved,
        "reason": cond.reason,
        "message": message,
        "type": "Warning" if cond.warning else "Normal",
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_COMPONENT,
        "reportingInstance": EVENT_COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def record(client: Client, events: list[RawObject]) -> int:
    """Create the Events; returns how many were recorded. Failures are logged, not raised."""
    recorded = 0
    for event in events:
        try:
            await client.create(EVENT, event, namespace=event["metadata"]["namespace"])
        except KubeError as exc:
            _log.warning("could not record event %s: %s", event.get("reason"), exc)
            continue
        recorded += 1
    return recorded
