"""The adapter artifact layout: what is pushed, and how pulled manifests are read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kaito.oci import ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, FILE_MEDIA_TYPE, ArtifactError
from kaito.oci._layout import (
    LayerKind,
    adapter_files,
    adapter_manifest,
    artifact_type,
    blob_descriptor,
    choose_from_index,
    config_blob,
    file_descriptor,
    read_layers,
)

TITLE = "org.opencontainers.image.title"
DIGEST = "sha256:" + "0" * 64


def layer(media_type: str, title: str | None = None, **annotations: str) -> dict[str, Any]:
    notes = dict(annotations)
    if title is not None:
        notes[TITLE] = title
    out: dict[str, Any] = {"mediaType": media_type, "digest": DIGEST, "size": 1}
    if notes:
        out["annotations"] = notes
    return out


def manifest(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "config": {}, "layers": list(layers)}


def test_the_pushed_manifest_has_the_kaito_types_and_one_titled_layer_per_file(
    adapter_dir: Path,
) -> None:
    (adapter_dir / "README.md").write_text("notes")
    (adapter_dir / ".hidden").write_text("x")
    (adapter_dir / "sub").mkdir()
    files = adapter_files(adapter_dir)
    assert [f.name for f in files] == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    config = blob_descriptor(CONFIG_MEDIA_TYPE, config_blob())
    built = adapter_manifest(config, [file_descriptor(f) for f in files], {"k": "v"})
    assert built["artifactType"] == ARTIFACT_TYPE
    assert built["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert json.loads(config_blob()) == {"format": 1}
    assert [entry["annotations"][TITLE] for entry in built["layers"]] == [f.name for f in files]
    assert {entry["mediaType"] for entry in built["layers"]} == {FILE_MEDIA_TYPE}
    assert built["layers"][2]["size"] == (adapter_dir / "adapter_model.safetensors").stat().st_size
    assert built["annotations"] == {"k": "v"}
    kinds = {entry.kind for entry in read_layers(built, "ref")}
    assert kinds == {LayerKind.FILE}
    assert artifact_type(built) == ARTIFACT_TYPE


def test_a_directory_without_the_adapter_files_is_not_pushed(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"adapter_model\.safetensors missing"):
        adapter_files(tmp_path)
    with pytest.raises(ArtifactError, match="not a directory"):
        adapter_files(tmp_path / "nope")


def test_other_tools_artifacts_and_images_are_read() -> None:
    oras_dir = layer(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "weights",
        **{"io.deis.oras.content.unpack": "true"},
    )
    kinds = read_layers(manifest(layer("application/octet-stream", "a.json"), oras_dir), "r")
    assert [(k.kind, k.gzip) for k in kinds] == [(LayerKind.FILE, False), (LayerKind.ARCHIVE, True)]
    image = read_layers(
        manifest(
            layer("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            layer("application/vnd.oci.image.layer.v1.tar"),
        ),
        "r",
    )
    assert [(k.kind, k.gzip) for k in image] == [
        (LayerKind.IMAGE_LAYER, True),
        (LayerKind.IMAGE_LAYER, False),
    ]
    assert artifact_type({"config": {"mediaType": "x/y"}}) == "x/y"


@pytest.mark.parametrize(
    ("layers", "fragment"),
    [
        ([layer("application/octet-stream")], "no title annotation"),
        ([layer("a/b", "../etc/passwd")], "unsafe file name"),
        ([layer("a/b", "/abs")], "unsafe file name"),
        ([layer("a/b", "x"), layer("a/b", "x")], "two layers are titled"),
        (
            [layer("a/b", "x"), layer("application/vnd.oci.image.layer.v1.tar")],
            "mixes titled files",
        ),
        ([{"mediaType": "a/b", "digest": "md5:1", "size": 1}], "sha256 digest"),
        ([{"mediaType": "a/b", "digest": DIGEST, "size": -1}], "no valid size"),
    ],
)
def test_unreadable_layouts_are_explained(layers: list[dict[str, Any]], fragment: str) -> None:
    with pytest.raises(ArtifactError, match=fragment):
        read_layers(manifest(*layers), "ref")


def test_not_a_manifest_is_refused() -> None:
    with pytest.raises(ArtifactError, match="not an OCI or docker v2 image manifest"):
        read_layers({"schemaVersion": 1}, "ref")


def test_an_index_resolves_to_linux_amd64_else_the_first_real_platform() -> None:
    def entry(os_name: str, arch: str, digest: str) -> dict[str, Any]:
        return {"digest": digest, "platform": {"os": os_name, "architecture": arch}}

    index = {
        "manifests": [
            entry("unknown", "unknown", "sha256:att"),
            entry("linux", "arm64", "sha256:arm"),
            entry("linux", "amd64", "sha256:amd"),
        ]
    }
    assert choose_from_index(index, "r") == "sha256:amd"
    index["manifests"].pop()
    assert choose_from_index(index, "r") == "sha256:arm"
    with pytest.raises(ArtifactError, match="no usable manifest"):
        choose_from_index({"manifests": [entry("unknown", "unknown", "sha256:a")]}, "r")
    with pytest.raises(ArtifactError, match="empty image index"):
        choose_from_index({"manifests": []}, "r")
