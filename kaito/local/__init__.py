"""kaito's local mode: a workspace served on this machine, end to end (`kaito up`).

`kaito up -f workspace.yaml` runs, in one process, the pieces a cluster would have: kaito's
API-server emulator, the operator with the unchanged `WorkspaceReconciler`, the `local`
provisioner that offers this machine as the node (its GPUs, or its CPU and memory), a local
kubelet that runs the workload's containers as processes, and a port on 127.0.0.1 for the
workspace's Service. Each run lives in `$KAITO_HOME/local/<workspace>/` (default `~/.kaito`);
its `state.json` is how `kaito get`, `chat`, `logs` and `down` find it.

    from pathlib import Path

    import yaml
    from kaito.local import LocalCluster, prepare_workspace
    from kaito.plugins import default_registry

    async def main() -> None:
        registry = default_registry()
        ws = prepare_workspace(yaml.safe_load(open("examples/quickstart.yaml")), registry)
        async with LocalCluster(ws, Path("/tmp/run"), registry=registry) as cluster:
            ...  # cluster.url serves the model once WorkspaceReady is True

The pieces are usable on their own: `LocalKubelet` runs pods bound to local nodes on any
cluster client, `ServiceForwarder`/`TcpForwarder` map Services to local ports, and
`local_process` shows how a container becomes a process.
"""

from kaito.local._cluster import LocalCluster, LocalSettings
from kaito.local._containers import CannotRun, LocalProcess, Probe, local_process
from kaito.local._control import (
    StopReport,
    endpoint_of,
    find_session,
    running_sessions,
    spawn_detached,
    stop_session,
    wait_until_up,
)
from kaito.local._forwarder import ServiceForwarder, TcpForwarder, bind_listener
from kaito.local._kubelet import Endpoint, KubeletSettings, LocalKubelet, node_matches
from kaito.local._models import generate_model, model_sources
from kaito.local._paths import HOME_ENV, kaito_home, local_root, session_dir
from kaito.local._process import is_running, process_start_time, stop_process
from kaito.local._state import PodProcess, SessionState, list_sessions, read_state
from kaito.local._up import ConditionReporter, curl_line, endpoint_lines, serve
from kaito.local._workspace import (
    IGNORED_INSTANCE_TYPE_ANNOTATION,
    LocalModeError,
    LocalWorkspace,
    prepare_documents,
    prepare_workspace,
)

__all__ = [
    "HOME_ENV",
    "IGNORED_INSTANCE_TYPE_ANNOTATION",
    "CannotRun",
    "ConditionReporter",
    "Endpoint",
    "KubeletSettings",
    "LocalCluster",
    "LocalKubelet",
    "LocalModeError",
    "LocalProcess",
    "LocalSettings",
    "LocalWorkspace",
    "PodProcess",
    "Probe",
    "ServiceForwarder",
    "SessionState",
    "StopReport",
    "TcpForwarder",
    "bind_listener",
    "curl_line",
    "endpoint_lines",
    "endpoint_of",
    "find_session",
    "generate_model",
    "is_running",
    "kaito_home",
    "list_sessions",
    "local_process",
    "local_root",
    "model_sources",
    "node_matches",
    "prepare_documents",
    "prepare_workspace",
    "process_start_time",
    "read_state",
    "running_sessions",
    "serve",
    "session_dir",
    "spawn_detached",
    "stop_process",
    "stop_session",
    "wait_until_up",
]
