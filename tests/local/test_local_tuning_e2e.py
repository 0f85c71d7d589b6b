"""Fine-tuning in local mode, end to end, as a user runs it: separate `kaito` processes, the
real tuning program, a real registry (Debian's docker-registry with htpasswd auth), the real
HF server.

1. `kaito up -d` a tuning workspace on the tiny preset whose data is a parquet file of a few
   hundred chat rows served over HTTP, with its push secret and tuning config in the same
   file -> the Job succeeds -> the adapter artifact is in the registry.
2. Inference workspaces with that image as adapter (pulled by the init container with the pull
   secret): at strength 1.0 the greedy answer differs from the base model's, at strength 0 it
   is the base model's, token for token; the same adapter as a directory of this machine
   (a hostPath volume adapter) answers as the image did.
3. A wrong push secret fails the workspace with the registry's authentication message, and an
   unreachable data URL with the download error; `kaito up -d` exits 1 saying so.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_support import kaito, post

from kaito.oci import RegistryAuth, RegistryOptions, pull_adapter
from tests.oci.oci_registry import RunningRegistry, require_registry_binary, run_registry
from tests.tuning.tuning_data import chat_rows, serve_directory, write_rows

USER = "tuner"
PASSWORD = "local-tuning"
PRESET = "tiny-phi-3-random"
ROWS = 300
QUESTION = "What is 7 plus 7?"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    require_registry_binary()
    with run_registry(tmp_path_factory.mktemp("local-registry"), {USER: PASSWORD}) as running:
        yield running


@pytest.fixture(scope="module")
def data_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A few hundred chat rows as parquet, served over HTTP on 127.0.0.1."""
    directory = tmp_path_factory.mktemp("local-tuning-data")
    write_rows(directory / "chat.parquet", chat_rows(ROWS), "parquet")
    with serve_directory(directory) as base:
        yield f"{base}/chat.parquet"


def secret(name: str, registry: RunningRegistry, password: str = PASSWORD) -> str:
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    config = json.dumps({"auths": {registry.host: {"auth": auth}}})
    return f"""apiVersion: v1
kind: Secret
metadata:
  name: {name}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{config}'
"""


def tuning_file(
    path: Path, name: str, *, url: str, image: str, push_secret: str, max_steps: int = 30
) -> Path:
    """A tuning workspace with its push secret and a tuning config (a high learning rate, so
    that a few steps move the adapter far enough to change greedy answers)."""
    path.write_text(
        push_secret
        + f"""---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-config
data:
  training_config.yaml: |
    training_config:
      TrainingArguments:
        max_steps: {max_steps}
        learning_rate: 0.01
        logging_steps: 5
---
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: {name}
resource:
  instanceType: Standard_NC6s_v3
  labelSelector:
    matchLabels:
      apps: {name}
tuning:
  preset:
    name: {PRESET}
  method: lora
  config: {name}-config
  input:
    urls:
      - "{url}"
  output:
    image: "{image}"
    imagePushSecret: push-secret
"""
    )
    return path


def serving_file(
    path: Path,
    name: str,
    *,
    pull_secret: str,
    image: str | None = None,
    directory: Path | None = None,
    strength: str = "1.0",
) -> Path:
    """An inference workspace on the tiny preset; with `image`, that adapter image (pulled with
    the pull secret), with `directory`, that adapter directory as a hostPath volume."""
    adapters = ""
    if image is not None:
        adapters = f"""  adapters:
    - source:
        name: tuned
        image: "{image}"
        imagePullSecrets: [pull-secret]
      strength: "{strength}"
"""
    elif directory is not None:
        adapters = f"""  adapters:
    - source:
        name: tuned
        volumeSource:
          hostPath:
            path: "{directory}"
      strength: "{strength}"
"""
    path.write_text(
        pull_secret
        + f"""---
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: {name}
resource:
  labelSelector:
    matchLabels:
      apps: {name}
inference:
  preset:
    name: {PRESET}
{adapters}"""
    )
    return path


def greedy_answer(env: dict[str, str], name: str) -> str:
    from kaito.local import find_session

    state = find_session(name, Path(env["KAITO_HOME"]))
    answer = post(
        f"{state.url}/v1/chat/completions",
        {
            "model": PRESET,
            "messages": [{"role": "user", "content": QUESTION}],
            "temperature": 0,
            "max_tokens": 24,
        },
    )
    text = answer["choices"][0]["message"]["content"]
    assert isinstance(text, str)
    return text


@pytest.mark.timeout(400)
def test_a_tuned_adapter_goes_through_the_registry_and_changes_greedy_answers(
    tmp_path: Path, env: dict[str, str], registry: RunningRegistry, data_url: str, tiny_phi3: Path
) -> None:
    image = f"{registry.host}/adapters/{PRESET}:v1"
    tune = tuning_file(
        tmp_path / "tune.yaml",
        "tune-tiny",
        url=data_url,
        image=image,
        push_secret=secret("push-secret", registry),
    )
    up = kaito(env, "up", "-f", str(tune), "--detach", "--cpu", timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "tune-tiny: JobStarted=True (JobStarted)" in up.stdout
    assert "tune-tiny: WorkspaceSucceeded=True (TuningSucceeded)" in up.stdout
    assert f"workspace tune-tiny finished tuning: the adapter is in {image}" in up.stdout
    assert "endpoint (once ready)" not in up.stdout  # a tuning workspace serves nothing

    table = kaito(env, "get", "workspaces", "-o", "wide")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[5:8] == ["JOBSTARTED", "WORKSPACESUCCEEDED", "STATE"]
    # INFERENCEREADY is empty for a tuning workspace, so the row has one word fewer.
    assert row.split()[:7] == [
        "tune-tiny", "local-cpu", "True", "True", "True", "True", "Succeeded",
    ]  # fmt: skip
    logs = kaito(env, "logs", "tune-tiny")
    assert "loss" in logs.stdout, logs.stdout[-2000:]
    assert f"pushed the adapter to {image}" in logs.stdout
    assert kaito(env, "down", "tune-tiny").returncode == 0

    # The artifact is in the registry, behind its credentials, in the layout servers pull.
    pulled = pull_adapter(
        image,
        tmp_path / "pulled",
        RegistryAuth(username=USER, password=PASSWORD),
        options=RegistryOptions(plain_http=True),
    )
    assert (Path(pulled) / "adapter_config.json").is_file()
    assert (Path(pulled) / "adapter_model.safetensors").stat().st_size > 0

    pull_secret = secret("pull-secret", registry)
    runs: dict[str, dict[str, Any]] = {
        "base": {},
        "strength-1": {"image": image, "strength": "1.0"},
        "strength-0": {"image": image, "strength": "0.0"},
        # The local mode mounts a volume adapter from a directory of this machine.
        "from-directory": {"directory": pulled, "strength": "1.0"},
    }
    answers: dict[str, str] = {}
    try:
        for name, adapter in runs.items():
            served = serving_file(
                tmp_path / f"{name}.yaml", name, pull_secret=pull_secret, **adapter
            )
            up = kaito(env, "up", "-f", str(served), "--detach", "--cpu", timeout=120)
            assert up.returncode == 0, up.stdout + up.stderr
            answers[name] = greedy_answer(env, name)
            kaito(env, "down", name)  # two cores: one model server at a time
        full_log = kaito(env, "logs", "strength-1").stdout
        assert f"pulled {image}" in full_log
        assert "adapter tuned from" in full_log
        assert "at strength 1" in full_log
    finally:
        kaito(env, "down")
    assert answers["strength-1"] != answers["base"], answers
    assert answers["strength-0"] == answers["base"], answers
    assert answers["from-directory"] == answers["strength-1"], answers


def failed_tuning(
    env: dict[str, str], tmp_path: Path, name: str, *, url: str, image: str, push_secret: str
) -> str:
    """`kaito up -d` of a tuning workspace that must fail: the line of its output that says
    why."""
    tune = tuning_file(tmp_path / "tune.yaml", name, url=url, image=image, push_secret=push_secret)
    up = kaito(env, "up", "-f", str(tune), "--detach", "--cpu", timeout=200)
    assert up.returncode == 1, up.stdout + up.stderr
    failure = next(line for line in up.stdout.splitlines() if f"{name} failed:" in line)
    assert f"the tuning Job {name}-tuning failed: Job has reached the specified backoff limit" in (
        failure
    )
    assert f"{name}: WorkspaceSucceeded=False (BackoffLimitExceeded)" in up.stdout
    return failure


@pytest.mark.timeout(240)
def test_a_wrong_push_secret_fails_the_workspace_with_an_authentication_message(
    tmp_path: Path, env: dict[str, str], registry: RunningRegistry, data_url: str, tiny_phi3: Path
) -> None:
    image = f"{registry.host}/adapters/never:v1"
    wrong = secret("push-secret", registry, password="wrong")
    failure = failed_tuning(
        env, tmp_path, "tune-denied", url=data_url, image=image, push_secret=wrong
    )
    assert "container tuning exited with code 5 (Error)" in failure
    assert f"cannot push to {image}: authentication failed" in failure
    assert f"rejected the credentials of user '{USER}'" in failure


@pytest.mark.timeout(240)
def test_an_unreachable_data_url_fails_the_workspace_with_the_download_error(
    tmp_path: Path, env: dict[str, str], registry: RunningRegistry, tiny_phi3: Path
) -> None:
    from kaito.local._kubelet import free_port

    url = f"http://127.0.0.1:{free_port()}/chat.parquet"
    # The pods' processes start from kaito up's environment: one try per URL keeps this short.
    failure = failed_tuning(
        {**env, "KAITO_TUNING_DOWNLOAD_ATTEMPTS": "1"},
        tmp_path,
        "tune-nodata",
        url=url,
        image=f"{registry.host}/adapters/nodata:v1",
        push_secret=secret("push-secret", registry),
    )
    assert "container tuning exited with code 3 (Error)" in failure
    assert f"cannot download {url}" in failure
