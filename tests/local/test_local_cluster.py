"""The local cluster in one process: a workspace file adapted to this machine (instanceType
dropped and said so), then emulator + operator + local provisioner + kubelet + forwarder
bringing a workspace to WorkspaceReady with its Service on a port of 127.0.0.1, the state file
saying where, and `serve` printing each condition change and the endpoint, then stopping
everything it started."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from local_support import port_is_free, stub_workspace, wait_for

from kaito.api import Workspace, validate_create
from kaito.kube import NODE, WORKSPACE
from kaito.local import (
    IGNORED_INSTANCE_TYPE_ANNOTATION,
    ConditionReporter,
    KubeletSettings,
    LocalCluster,
    LocalModeError,
    LocalSettings,
    curl_line,
    is_running,
    prepare_documents,
    prepare_workspace,
    read_state,
    serve,
    session_dir,
)
from kaito.local._up import tuning_lines
from kaito.plugins import Registry
from kaito.provisioners.local import Machine

pytestmark = pytest.mark.timeout(30)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MACHINE = Machine(hostname="test-host", cpus=2, memory_bytes=8 * 2**30)
SETTINGS = LocalSettings(
    machine=MACHINE,
    kubelet=KubeletSettings(restart_base=0.2, start_probe_interval=0.05, stop_timeout=2),
    connect_wait=2.0,
)


def seed_workspace(preset: str = "tiny-phi-3-random") -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": "workspace-phi-3-mini"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": "phi-3"}},
        },
        "inference": {"preset": {"name": preset}},
    }


def test_a_seed_workspace_is_adapted_to_this_machine(registry: Registry) -> None:
    local = prepare_workspace(seed_workspace(), registry)
    assert local.name == "workspace-phi-3-mini"
    assert local.namespace == "default"
    assert local.document["apiVersion"] == "kaito.sh/v1beta1"
    assert "instanceType" not in local.document["resource"]
    annotations = local.document["metadata"]["annotations"]
    assert annotations[IGNORED_INSTANCE_TYPE_ANNOTATION] == "Standard_NC6s_v3"
    assert local.ignored_instance_type == "Standard_NC6s_v3"
    assert local.notes[0].startswith("resource.instanceType Standard_NC6s_v3 is ignored")
    assert "meaningless" in local.notes[1]
    assert local.preset is not None
    assert local.preset.generated
    assert local.runtime == "hf"
    real = prepare_workspace(seed_workspace("phi-3-mini-4k-instruct"), registry)
    assert len(real.notes) == 1
    assert real.preset is not None
    assert not real.preset.generated


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inference": {"preset": {"name": "no-such-model"}}}, "cannot run locally"),
        ({"metadata": {}}, "metadata.name"),
        ({"resource": {"instanceType": "Standard_NC6s_v3"}}, "labelSelector"),
        (
            {
                "inference": None,
                "tuning": {
                    "preset": {"name": "tiny-phi-3-random"},
                    "method": "lora",
                    "input": {"urls": ["http://169.254.169.254/latest/data.parquet"]},
                    "output": {"image": "registry.example/out:1", "imagePushSecret": "s"},
                },
            },
            "link-local",
        ),
        ({"resource": "not a mapping"}, "invalid"),
    ],
)
def test_workspaces_the_local_mode_cannot_run(
    registry: Registry, change: dict[str, Any], message: str
) -> None:
    document = seed_workspace()
    for key, value in change.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    with pytest.raises(LocalModeError, match=message):
        prepare_workspace(document, registry)


def tuning_document(url: str = "http://127.0.0.1:8000/chat.parquet") -> dict[str, Any]:
    document = seed_workspace()
    del document["inference"]
    document["tuning"] = {
        "preset": {"name": "tiny-phi-3-random"},
        "method": "lora",
        "input": {"urls": [url]},
        "output": {"image": "127.0.0.1:5000/adapters/tiny:v1", "imagePushSecret": "push"},
    }
    return document


def test_a_tuning_workspace_runs_locally_with_data_on_this_machine(registry: Registry) -> None:
    # A cluster refuses loopback and private data URLs (they would reach the node's own
    # services); here the machine that downloads is the user's own.
    document = tuning_document()
    assert any("loopback" in str(e) for e in validate_create(Workspace.from_dict(document)))
    local = prepare_workspace(document, registry)
    assert local.tuning
    assert local.output == "127.0.0.1:5000/adapters/tiny:v1"
    assert local.preset is not None
    assert local.preset.name == "tiny-phi-3-random"
    assert "adapter is real" in local.notes[1]
    private = prepare_workspace(tuning_document("http://10.1.2.3/chat.parquet"), registry)
    assert private.tuning


@pytest.mark.parametrize(
    ("name", "output"),
    [
        ("tiny-tuning-local.yaml", "/tmp/kaito-adapters/tiny-phi-3"),
        ("tiny-adapter-local.yaml", None),
    ],
)
def test_the_local_tuning_examples_run_here(
    registry: Registry, name: str, output: str | None
) -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / name).read_text()))
    local = prepare_documents(documents, registry)
    assert local.output == output
    assert local.tuning == (output is not None)
    assert [o["kind"] for o in local.objects] == (["ConfigMap"] if output else [])


def test_what_kaito_up_says_about_a_finished_tuning_workspace() -> None:
    image, directory, volume = (
        tuning_lines("t", where, "/k")[0]
        for where in ("127.0.0.1:5000/a:v1", "/data/adapter", None)
    )
    assert image.endswith("lists source.image: 127.0.0.1:5000/a:v1")
    assert directory.endswith("lists source.volumeSource.hostPath.path: /data/adapter")
    assert (
        volume
        == "workspace t finished tuning: the adapter is in the workspace's tuning.output volume"
    )


def secret_document(name: str = "push", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, **extra},
        "stringData": {".dockerconfigjson": "{}"},
    }


def test_volumes_kaito_mounts_must_be_directories_of_this_machine(registry: Registry) -> None:
    document = tuning_document()
    document["tuning"]["output"] = {"volumeSource": {"persistentVolumeClaim": {"claimName": "o"}}}
    document["tuning"]["input"] = {"volumeSource": {"hostPath": {"path": "relative/dir"}}}
    with pytest.raises(LocalModeError) as raised:
        prepare_workspace(document, registry)
    message = str(raised.value)
    assert "tuning.input.volumeSource: the local mode mounts hostPath volumes only" in message
    assert "tuning.output.volumeSource: the local mode mounts hostPath volumes only" in message
    served = seed_workspace()
    served["inference"]["adapters"] = [
        {"source": {"name": "a", "volumeSource": {"emptyDir": {}}}, "strength": "1.0"}
    ]
    with pytest.raises(LocalModeError, match=r"inference\.adapters\[0\]\.source\.volumeSource"):
        prepare_workspace(served, registry)


def test_secrets_and_config_maps_come_with_the_workspace(registry: Registry) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    local = prepare_documents([secret_document(), tuning_document(), config], registry)
    assert local.name == "workspace-phi-3-mini"
    assert [(o["kind"], o["metadata"]["name"]) for o in local.objects] == [
        ("Secret", "push"),
        ("ConfigMap", "c"),
    ]
    assert all(o["metadata"]["namespace"] == "default" for o in local.objects)


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([secret_document()], "exactly one Workspace, it holds no Workspace"),
        ([seed_workspace(), seed_workspace()], "it holds 2 Workspaces"),
        (
            [seed_workspace(), {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}],
            r"document 2: kind 'Deployment' \(apps/v1\) cannot go with the workspace",
        ),
        ([seed_workspace(), {**secret_document(), "metadata": {}}], "document 2: Secret needs"),
        (
            [seed_workspace(), secret_document(namespace="other")],
            "document 2: Secret push is in namespace other; the workspace, which refers to it, "
            "is in default",
        ),
        ([seed_workspace(), secret_document(), secret_document()], "Secret push more than once"),
        (
            [seed_workspace(), {**secret_document(), "stringData": {"k": 1}}],
            "stringData must map keys to strings",
        ),
        (
            [seed_workspace(), {**secret_document(), "data": {".dockerconfigjson": "{}"}}],
            r"Secret push: data.\.dockerconfigjson is not base64; put plain text under stringData",
        ),
        ([seed_workspace(), {**secret_document(), "metadata": "push"}], "metadata must be a"),
        ([seed_workspace(), {**secret_document(), "metadata": {"name": ["x"]}}], "a string"),
        (
            [seed_workspace(), {**secret_document(), "binaryData": {"k": "AA=="}}],
            "binaryData is not supported here; use data or stringData",
        ),
        (
            [
                seed_workspace(),
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "c"},
                    "stringData": {"k": "v"},
                },
            ],
            "ConfigMap c: stringData is not supported here; use data",
        ),
    ],
)
def test_what_cannot_go_with_the_workspace(
    registry: Registry, documents: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(LocalModeError, match=message):
        prepare_documents(documents, registry)


def test_condition_reporter_prints_changes_once() -> None:
    lines: list[str] = []
    ready: list[str] = []
    failed: list[tuple[str, str]] = []
    reporter = ConditionReporter(
        lines.append,
        on_ready=ready.append,
        on_failed=lambda n, m: failed.append((n, m)),
        clock=lambda: datetime(2025, 1, 1, 12, 0, 5),
    )

    def ws(*conds: tuple[str, str, str, str], state: str = "Pending") -> dict[str, Any]:
        return {
            "metadata": {"name": "w"},
            "status": {
                "state": state,
                "conditions": [
                    {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conds
                ],
            },
        }

    waiting = ("InferenceReady", "False", "WaitingForPods", "waiting for 1 of 1 pods")
    reporter(None, "ADDED", ws(("WorkspaceReady", "False", "X", "no"), waiting))
    assert lines == [
        "12:00:05 w: InferenceReady=False (WaitingForPods) waiting for 1 of 1 pods",
        "12:00:05 w: WorkspaceReady=False (X) no",
    ]
    moved = ("InferenceReady", "False", "WaitingForPods", "waiting (revision 2)")
    reporter(None, "MODIFIED", ws(("WorkspaceReady", "False", "X", "no"), moved))
    assert len(lines) == 2  # only the message moved: not a change worth a line
    reporter(None, "MODIFIED", ws(("WorkspaceReady", "True", "WorkspaceReady", "ok"), moved))
    assert lines[-1] == "12:00:05 w: WorkspaceReady=True (WorkspaceReady) ok"
    assert ready == ["w"]
    broken = ("ResourceReady", "False", "PlanFailed", "does not fit")
    reporter(None, "MODIFIED", ws(broken, state="Failed"))
    assert failed == [("w", "does not fit")]
    crashing = ("InferenceReady", "False", "CrashLoopBackOff", "keeps crashing")
    reporter(None, "MODIFIED", ws(("ResourceReady", "True", "R", "ok"), crashing, state="NotReady"))
    assert failed[-1] == ("w", "keeps crashing")
    reporter(None, "DELETED", ws())
    assert lines[-1] == "12:00:05 w: deleted"


async def _post(url: str, body: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_a_workspace_runs_here_end_to_end(tmp_path: Path, registry: Registry) -> None:
    document = stub_workspace()
    document["metadata"]["namespace"] = "team"  # created for it
    workspace = prepare_workspace(document, registry)
    async with LocalCluster(
        workspace, tmp_path / "run", registry=registry, settings=SETTINGS
    ) as local:
        client = local.client

        async def workspace_ready() -> bool:
            ws = await client.get(WORKSPACE, "stub", namespace="team")
            conds = {c["type"]: c["status"] for c in ws.get("status", {}).get("conditions", [])}
            return conds.get("WorkspaceReady") == "True"

        await wait_for(workspace_ready, limit=20, what="WorkspaceReady")
        assert await _post(f"{local.url}/chat", {"prompt": "hi"}) == {"Result": "echo: hi"}
        (node,) = (await client.list(NODE)).items
        assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "local-cpu"
        state = await wait_for(
            lambda: (s := read_state(local.directory)) and s.pods and s, what="pods in the state"
        )
        assert state.port == local.port
        assert state.url == local.url
        assert state.endpoints == {"team/stub": local.port}
        assert state.api_url == local.api_url
        assert await asyncio.to_thread(Path(state.kubeconfig).is_file)
        (process,) = state.pods
        assert process.workspace == "stub"
        assert is_running(process.pid, process.start)
    assert not is_running(process.pid, process.start)
    assert port_is_free(local.port)


async def test_a_port_in_use_fails_at_once(tmp_path: Path, registry: Registry) -> None:
    from kaito.local import bind_listener

    held = bind_listener()
    try:
        port = int(held.getsockname()[1])
        settings = LocalSettings(port=port, machine=MACHINE)
        workspace = prepare_workspace(stub_workspace(), registry)
        with pytest.raises(LocalModeError, match=f"cannot listen on 127.0.0.1:{port}"):
            await LocalCluster(workspace, tmp_path, registry=registry, settings=settings).start()
    finally:
        held.close()


async def test_serve_reports_conditions_and_the_endpoint(
    kaito_home: Path, registry: Registry
) -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    workspace = prepare_workspace(stub_workspace(), registry)
    task = asyncio.create_task(
        serve(workspace, registry=registry, stop=stop, settings=SETTINGS, out=out)
    )
    directory = session_dir("stub")
    state = await wait_for(
        lambda: (s := read_state(directory)) is not None and s.phase == "ready" and s,
        limit=20,
        what="the ready state",
    )
    assert state.message == f"workspace stub is ready at {state.url}"
    stop.set()
    await asyncio.wait_for(task, 15)
    text = out.getvalue()
    assert "note: resource.instanceType Standard_NC6s_v3 is ignored in local mode" in text
    assert "this machine: local-cpu (2 CPUs, 8.0 GiB memory, no GPU)" in text
    assert "stub: ResourceReady=True (ResourcesReady)" in text
    assert "stub: WorkspaceReady=True (WorkspaceReady)" in text
    assert f"workspace stub is ready: {state.url}" in text
    assert curl_line(state.url) in text
    assert f"KUBECONFIG={directory / 'kubeconfig'} kubectl get workspaces" in text
    assert text.rstrip().endswith("stopped")
    assert read_state(directory) is None
    assert port_is_free(state.port)
