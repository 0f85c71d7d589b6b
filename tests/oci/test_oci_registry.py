"""Push and pull against the real CNCF Distribution registry, open and with htpasswd auth.

Covers the adapter round trip (files and the manifest layout as stored by the registry),
credentials (right, wrong, missing), push-access checks, pulls of artifacts other tools pushed
(oras-py's own client) and of images keeping their content in /data, and the failure modes a
pull must not turn into a half-written adapter.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kaito.oci import (
    ARTIFACT_TYPE,
    ArtifactError,
    ArtifactNotFoundError,
    AuthenticationError,
    OCIError,
    RegistryAuth,
    RegistryOptions,
    RegistryUnreachableError,
    check_push_access,
    pull_adapter,
    pull_data,
    push_adapter,
)
from tests.oci.conftest import PASSWORD, USER
from tests.oci.oci_registry import RunningRegistry, get_manifest, push_image

pytestmark = pytest.mark.timeout(60)

GOOD = RegistryAuth(USER, PASSWORD)


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def test_an_adapter_round_trips_through_an_open_registry(
    registry: RunningRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    reference = f"{registry.host}/adapters/phi-3:v1"
    pushed = push_adapter(adapter_dir, reference, annotations={"sh.kaito.adapter.method": "lora"})
    assert pushed.files == ("adapter_config.json", "adapter_model.safetensors")
    assert pushed.size == sum(p.stat().st_size for p in adapter_dir.iterdir())
    stored = get_manifest(registry, "adapters/phi-3", "v1")
    assert stored["artifactType"] == ARTIFACT_TYPE
    assert stored["annotations"]["sh.kaito.adapter.method"] == "lora"  # type: ignore[index]
    assert "org.opencontainers.image.created" in stored["annotations"]  # type: ignore[operator]
    by_tag = pull_adapter(reference, tmp_path / "by-tag")
    assert same_files(by_tag, adapter_dir)
    (tmp_path / "empty-existing").mkdir()
    by_digest = pull_adapter(
        f"{registry.host}/adapters/phi-3@{pushed.digest}", tmp_path / "empty-existing"
    )
    assert same_files(by_digest, adapter_dir)


def test_pushing_again_replaces_the_tag(
    registry: RunningRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    reference = f"{registry.host}/adapters/again:v1"
    first = push_adapter(adapter_dir, reference)
    (adapter_dir / "adapter_model.safetensors").write_bytes(b"retrained")
    second = push_adapter(adapter_dir, reference)
    assert first.digest != second.digest
    pulled = pull_adapter(reference, tmp_path / "out")
    assert (pulled / "adapter_model.safetensors").read_bytes() == b"retrained"


def test_an_adapter_round_trips_with_htpasswd_credentials(
    auth_registry: RunningRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    reference = f"{auth_registry.host}/private/adapter:v1"
    check_push_access(reference, GOOD)
    push_adapter(adapter_dir, reference, GOOD)
    assert same_files(pull_adapter(reference, tmp_path / "out", GOOD), adapter_dir)


def test_wrong_credentials_fail_with_an_authentication_message(
    auth_registry: RunningRegistry, adapter_dir: Path
) -> None:
    reference = f"{auth_registry.host}/private/adapter:wrong"
    with pytest.raises(AuthenticationError, match=f"rejected the credentials of user '{USER}'"):
        push_adapter(adapter_dir, reference, RegistryAuth(USER, "not-the-password"))
    with pytest.raises(AuthenticationError, match="rejected the credentials") as caught:
        check_push_access(reference, RegistryAuth("mallory", "x"))
    assert caught.value.status == 401


def test_missing_credentials_say_which_registry_wants_them(
    auth_registry: RunningRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(AuthenticationError, match="requires credentials to push to private/a"):
        push_adapter(adapter_dir, f"{auth_registry.host}/private/a:v1")
    with pytest.raises(AuthenticationError, match="requires credentials to pull from"):
        pull_adapter(f"{auth_registry.host}/private/a:v1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_tag_is_not_found(registry: RunningRegistry, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="does not exist") as caught:
        pull_adapter(f"{registry.host}/adapters/none:v9", tmp_path / "out")
    assert caught.value.status == 404
    assert list(tmp_path.iterdir()) == []


def test_a_pull_refuses_a_non_empty_destination(
    registry: RunningRegistry, adapter_dir: Path
) -> None:
    with pytest.raises(OCIError, match="not an empty directory"):
        pull_adapter(f"{registry.host}/adapters/phi-3:v1", adapter_dir)


def test_a_push_needs_a_tag_not_a_digest(registry: RunningRegistry, adapter_dir: Path) -> None:
    with pytest.raises(OCIError, match="a push names a tag"):
        push_adapter(adapter_dir, f"{registry.host}/a/b@sha256:" + "1" * 64)


def test_artifacts_pushed_by_oras_pull_as_data_but_not_as_adapters(
    registry: RunningRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oras.provider

    files = tmp_path / "files"
    files.mkdir()
    (files / "train.jsonl").write_text('{"messages": []}\n')
    (files / "notes.txt").write_text("hello")
    monkeypatch.chdir(files)
    client = oras.provider.Registry(hostname=registry.host, insecure=True)
    client.push(target=f"{registry.host}/data/set:v1", files=["train.jsonl", "notes.txt"])
    written = pull_data(f"{registry.host}/data/set:v1", tmp_path / "data")
    assert sorted(p.name for p in written) == ["notes.txt", "train.jsonl"]
    assert (tmp_path / "data" / "notes.txt").read_text() == "hello"
    with pytest.raises(ArtifactError, match=r"is not an adapter: adapter_config\.json"):
        pull_adapter(f"{registry.host}/data/set:v1", tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_images_give_their_data_directory_honouring_whiteouts(
    auth_registry: RunningRegistry, tmp_path: Path
) -> None:
    reference = push_image(
        auth_registry,
        "data/image",
        "v1",
        [
            {
                "data/train.parquet": b"PAR1",
                "data/old/stale.csv": b"a,b",
                "data/gone.json": b"[]",
                "etc/passwd": b"not data",
            },
            {"data/.wh.gone.json": b"", "data/old/.wh..wh..opq": b"", "data/new.jsonl": b"{}"},
        ],
        auth=(USER, PASSWORD),
        index=True,
    )
    written = pull_data(reference, tmp_path / "data", GOOD)
    assert sorted(p.relative_to(tmp_path / "data").as_posix() for p in written) == [
        "new.jsonl",
        "train.parquet",
    ]


def test_upstream_style_adapter_images_pull_as_adapters(
    registry: RunningRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    content = {f"data/{p.name}": p.read_bytes() for p in adapter_dir.iterdir()}
    reference = push_image(registry, "adapters/upstream", "v1", [content])
    assert same_files(pull_adapter(reference, tmp_path / "out"), adapter_dir)
    empty = push_image(registry, "adapters/nodata", "v1", [{"app/main": b"x"}])
    with pytest.raises(ArtifactError, match="an image without a /data directory"):
        pull_adapter(empty, tmp_path / "nodata")


def test_an_unreachable_registry_is_reported_after_the_retries(
    adapter_dir: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = RegistryOptions(attempts=2, backoff_seconds=0.01)
    started = time.monotonic()
    with pytest.raises(RegistryUnreachableError, match="gave up after 2 attempts"):
        push_adapter(adapter_dir, f"127.0.0.1:{port}/a/b:v1", options=options)
    with pytest.raises(
        RegistryUnreachableError, match=f"cannot reach the registry 127.0.0.1:{port}"
    ):
        pull_adapter(f"127.0.0.1:{port}/a/b:v1", tmp_path / "out", options=options)
    assert time.monotonic() - started < 10
