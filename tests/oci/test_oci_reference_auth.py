"""Image references and docker-config credentials: parsing without I/O."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import kaito.oci
from kaito.oci import CredentialsError, InvalidReferenceError, Reference, RegistryAuth

EXPORTED = {
    "ADAPTER_FILES",
    "ARTIFACT_TYPE",
    "BASE_MODEL_ANNOTATION",
    "CONFIG_MEDIA_TYPE",
    "DOCKERCONFIGJSON_KEY",
    "FILE_MEDIA_TYPE",
    "METHOD_ANNOTATION",
    "ArtifactError",
    "ArtifactNotFoundError",
    "AuthenticationError",
    "CredentialsError",
    "InvalidReferenceError",
    "OCIError",
    "PushedArtifact",
    "Reference",
    "RegistryAuth",
    "RegistryError",
    "RegistryOptions",
    "RegistryUnreachableError",
    "check_push_access",
    "pull_adapter",
    "pull_data",
    "push_adapter",
}


def test_the_facade_exports_exactly_the_intended_names() -> None:
    assert set(kaito.oci.__all__) == EXPORTED
    assert len(kaito.oci.__all__) == len(EXPORTED)


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/adapters/phi-3:v1", "127.0.0.1:5000", "adapters/phi-3", "v1", None),
        ("myacr.azurecr.io/team/adapter", "myacr.azurecr.io", "team/adapter", "latest", None),
        ("localhost/x:1.0", "localhost", "x", "1.0", None),
        ("ubuntu", "docker.io", "library/ubuntu", "latest", None),
        ("index.docker.io/org/img:t", "docker.io", "org/img", "t", None),
        ("[::1]:5000/a/b", "[::1]:5000", "a/b", "latest", None),
        ("ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io", "o/r", None, "sha256:" + "a" * 64),
        ("ghcr.io/o/r:t@sha256:" + "b" * 64, "ghcr.io", "o/r", "t", "sha256:" + "b" * 64),
    ],
)
def test_references_parse_like_container_tools(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = Reference.parse(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert Reference.parse(str(reference)) == reference


def test_docker_hub_is_served_by_its_api_host_and_loopback_is_detected() -> None:
    assert Reference.parse("ubuntu").api_host == "registry-1.docker.io"
    assert Reference.parse("ghcr.io/a/b").api_host == "ghcr.io"
    assert Reference.parse("127.0.0.1:5000/a").is_loopback
    assert Reference.parse("localhost:5000/a").is_loopback
    assert Reference.parse("[::1]:5000/a").is_loopback
    assert not Reference.parse("ghcr.io/a").is_loopback
    assert Reference.parse("ghcr.io/a@sha256:" + "c" * 64).version == "sha256:" + "c" * 64


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("ghcr.io/Upper/case", "lowercase"),
        ("ghcr.io/a:-bad", "tag"),
        ("ghcr.io/a@sha256:short", "digest"),
        ("bad_host.io:x/a", "registry host"),
        ("ghcr.io//a", "repository component"),
    ],
)
def test_invalid_references_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError, match=fragment):
        Reference.parse(text)


def _write(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_credentials_come_from_auth_or_username_and_password(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"alice:pa:ss").decode()
    config = _write(
        tmp_path / "config.json",
        {
            "auths": {
                "https://myacr.azurecr.io/": {"auth": encoded},
                "ghcr.io": {"username": "bob", "password": "token"},
                "https://index.docker.io/v1/": {"auth": base64.b64encode(b"c:d").decode()},
            }
        },
    )
    assert RegistryAuth.from_docker_config(config, "myacr.azurecr.io") == RegistryAuth(
        "alice", "pa:ss"
    )
    assert RegistryAuth.from_docker_config(config, "ghcr.io") == RegistryAuth("bob", "token")
    assert RegistryAuth.from_docker_config(config, "docker.io").username == "c"
    assert "pa:ss" not in repr(RegistryAuth("alice", "pa:ss"))


def test_a_mounted_secret_directory_and_the_legacy_layout_are_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    _write(secret / ".dockerconfigjson", {"auths": {"reg.io": {"username": "u", "password": "p"}}})
    assert RegistryAuth.from_docker_config(secret, "reg.io") == RegistryAuth("u", "p")
    legacy = _write(tmp_path / "dockercfg", {"reg.io": {"auth": base64.b64encode(b"x:y").decode()}})
    assert RegistryAuth.from_docker_config(legacy, "reg.io") == RegistryAuth("x", "y")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"auths": {"other.io": {"auth": "eDp5"}}}, r"no credentials for the registry reg\.io"),
        ({"auths": {"reg.io": {"identitytoken": "abc"}}}, "identity token"),
        ({"auths": {"reg.io": {"auth": "%%%"}}}, "not base64"),
        ({"auths": {"reg.io": {"auth": base64.b64encode(b"nocolon").decode()}}}, "user:password"),
        ({"auths": {"reg.io": {}}}, "neither"),
        ({"auths": []}, "must be an object"),
        ([], "JSON object"),
    ],
)
def test_unusable_docker_configs_are_explained(
    tmp_path: Path, content: object, fragment: str
) -> None:
    config = _write(tmp_path / "config.json", content)
    with pytest.raises(CredentialsError, match=fragment):
        RegistryAuth.from_docker_config(config, "reg.io")


def test_unreadable_docker_configs_are_explained(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        RegistryAuth.from_docker_config(tmp_path / "bad.json", "reg.io")
    with pytest.raises(CredentialsError, match="cannot read"):
        RegistryAuth.from_docker_config(tmp_path / "missing.json", "reg.io")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CredentialsError, match="holds no docker config"):
        RegistryAuth.from_docker_config(tmp_path / "empty", "reg.io")


def test_of_several_docker_configs_the_first_with_the_registry_is_used(tmp_path: Path) -> None:
    other = _write(
        tmp_path / "other.json", {"auths": {"other.io": {"username": "o", "password": "p"}}}
    )
    first = _write(
        tmp_path / "first.json", {"auths": {"reg.io": {"username": "a", "password": "1"}}}
    )
    second = _write(
        tmp_path / "second.json", {"auths": {"reg.io": {"username": "b", "password": "2"}}}
    )
    configs = [other, first, second]
    assert RegistryAuth.from_docker_configs(configs, "reg.io") == RegistryAuth("a", "1")
    missing = tmp_path / "missing.json"
    assert RegistryAuth.from_docker_configs([missing, first], "reg.io") == RegistryAuth("a", "1")
    with pytest.raises(CredentialsError) as raised:
        RegistryAuth.from_docker_configs([other, missing], "reg.io")
    assert str(raised.value).startswith(
        f"{other} has no credentials for the registry reg.io (it has entries for: other.io); "
        f"cannot read the docker config {missing}"
    )
    with pytest.raises(CredentialsError, match="no docker config given"):
        RegistryAuth.from_docker_configs([], "reg.io")
