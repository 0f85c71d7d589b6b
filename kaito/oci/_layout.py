"""The layout of a kaito adapter artifact, and how pulled manifests are read. No I/O but hashing.

An adapter is pushed as an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`):

- `artifactType`: `application/vnd.kaito.adapter.v1` (OCI 1.1). Registries that predate 1.1
  keep the field in the stored manifest, and the config's media type says the same for tools
  that only look there (the OCI 1.0 convention for artifacts).
- `config`: media type `application/vnd.kaito.adapter.config.v1+json`, the JSON
  `{"format": 1}`; the format number changes if the layout ever does.
- `layers`: one per file of the adapter directory, in name order, media type
  `application/vnd.kaito.adapter.file.v1`, with the file name in the standard title annotation
  `org.opencontainers.image.title`. Files are stored as they are, not archived, so the registry
  de-duplicates identical weights and any OCI tool can fetch one file.
- `annotations`: `org.opencontainers.image.created` and whatever the pusher adds (kaito's tuning
  job adds `sh.kaito.adapter.base-model` and `sh.kaito.adapter.method`).

An adapter directory holds `adapter_config.json` and `adapter_model.safetensors` (what peft
writes and what the inference server loads) and optionally other flat files; sub-directories
and hidden files are not part of it.

Reading is more lenient than writing, so that adapters pushed by other tools load too: any
manifest whose layers are titled files (what `oras push` makes, whatever the types), titled
directories archived as tar+gzip (`oras push DIR`), or an image whose layers are file-system
tarballs with the content under `/data` (upstream kaito's adapter and data images).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import attrs

from kaito.oci._errors import ArtifactError

ARTIFACT_TYPE = "application/vnd.kaito.adapter.v1"
CONFIG_MEDIA_TYPE = "application/vnd.kaito.adapter.config.v1+json"
FILE_MEDIA_TYPE = "application/vnd.kaito.adapter.file.v1"
FORMAT_VERSION = 1
TITLE_ANNOTATION = "org.opencontainers.image.title"
CREATED_ANNOTATION = "org.opencontainers.image.created"
BASE_MODEL_ANNOTATION = "sh.kaito.adapter.base-model"
METHOD_ANNOTATION = "sh.kaito.adapter.method"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
"""The files every adapter has; a pull that lacks one fails."""
IMAGE_DATA_DIR = "data"
"""Where an image (rather than an artifact) keeps its content: `/data`, as upstream builds it."""

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPTED_MEDIA_TYPES = (
    MANIFEST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    DOCKER_LIST_MEDIA_TYPE,
)
_TAR_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar",
    }
)
_TAR_GZIP_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    }
)
_UNPACK_ANNOTATION = "io.deis.oras.content.unpack"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20


class LayerKind(Enum):
    FILE = "file"
    """A titled blob: written as the file named by its title."""
    ARCHIVE = "archive"
    """A titled tar(+gzip) of a directory: unpacked into the directory named by its title."""
    IMAGE_LAYER = "image-layer"
    """An untitled file-system layer of an image: its `/data` subtree is unpacked."""


@attrs.frozen
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def title(self) -> str | None:
        return self.annotations.get(TITLE_ANNOTATION)


@attrs.frozen
class Layer:
    """A layer of a pulled manifest and what to do with it."""

    descriptor: Descriptor
    kind: LayerKind
    gzip: bool = False


def file_digest(path: Path) -> tuple[str, int]:
    """`sha256:<hex>` and the size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return "sha256:" + digest.hexdigest(), size


def adapter_files(directory: Path) -> list[Path]:
    """The files of an adapter directory, in name order; raises `ArtifactError` when it is not
    one (missing, or without the adapter's files)."""
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory")
    files = sorted(
        (p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    names = {p.name for p in files}
    missing = [name for name in ADAPTER_FILES if name not in names]
    if missing:
        raise ArtifactError(
            f"{directory} is not an adapter directory: {', '.join(missing)} missing"
        )
    return files


def config_blob() -> bytes:
    return json.dumps({"format": FORMAT_VERSION}, separators=(",", ":")).encode()


def blob_descriptor(media_type: str, content: bytes) -> Descriptor:
    return Descriptor(media_type, "sha256:" + hashlib.sha256(content).hexdigest(), len(content))


def file_descriptor(path: Path) -> Descriptor:
    digest, size = file_digest(path)
    return Descriptor(FILE_MEDIA_TYPE, digest, size, {TITLE_ANNOTATION: path.name})


def adapter_manifest(
    config: Descriptor, layers: Sequence[Descriptor], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """The manifest of an adapter artifact (see the module doc)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return manifest


def is_index(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("mediaType") in (INDEX_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE) or (
        "manifests" in manifest and "layers" not in manifest
    )


def choose_from_index(manifest: Mapping[str, Any], reference: str) -> str:
    """The digest of the manifest to use from an image index: the linux/amd64 one, else the first
    that is not an attestation (`unknown/unknown`)."""
    entries = manifest.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise ArtifactError(f"{reference} is an empty image index")
    usable: list[tuple[str, str]] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            raise ArtifactError(f"{reference}: malformed image index entry {entry!r}")
        platform = entry.get("platform") or {}
        name = f"{platform.get('os', '')}/{platform.get('architecture', '')}"
        if name != "unknown/unknown":
            usable.append((name, entry["digest"]))
    if not usable:
        raise ArtifactError(f"{reference}: the image index lists no usable manifest")
    for name, digest in usable:
        if name == "linux/amd64":
            return digest
    return usable[0][1]


def _descriptor(raw: object, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ArtifactError(f"{where} is not a descriptor object")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ArtifactError(f"{where} needs a mediaType and a sha256 digest")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ArtifactError(f"{where} has no valid size")
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ArtifactError(f"{where}: annotations must be an object")
    return Descriptor(media_type, digest, size, {str(k): str(v) for k, v in annotations.items()})


def safe_name(title: str, reference: str) -> str:
    """A layer title as a file name in the destination: a plain name, or a relative path
    without `..`, absolute parts or hidden components."""
    parts = title.split("/")
    if (
        not title
        or title.startswith("/")
        or "\\" in title
        or "\x00" in title
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ArtifactError(f"{reference}: unsafe file name {title!r} in a layer title")
    return title


def read_layers(manifest: Mapping[str, Any], reference: str) -> list[Layer]:
    """How to unpack each layer of an image manifest; raises `ArtifactError` for an unknown
    layout (see the module doc for the three that are understood)."""
    if manifest.get("schemaVersion") != 2 or not isinstance(manifest.get("layers"), list):
        raise ArtifactError(f"{reference} is not an OCI or docker v2 image manifest")
    layers: list[Layer] = []
    titles: set[str] = set()
    for index, raw in enumerate(manifest["layers"]):
        descriptor = _descriptor(raw, f"{reference} layer {index}")
        title = descriptor.title
        compressed = descriptor.media_type in _TAR_GZIP_TYPES
        archive = compressed or descriptor.media_type in _TAR_TYPES
        if title is None:
            if not archive:
                raise ArtifactError(
                    f"{reference} layer {index} ({descriptor.media_type}) has no title "
                    f"annotation ({TITLE_ANNOTATION}) and is not a file-system layer"
                )
            layers.append(Layer(descriptor, LayerKind.IMAGE_LAYER, gzip=compressed))
            continue
        name = safe_name(title, reference)
        if name in titles:
            raise ArtifactError(f"{reference}: two layers are titled {name!r}")
        titles.add(name)
        unpack = descriptor.annotations.get(_UNPACK_ANNOTATION) == "true"
        if archive and unpack:
            layers.append(Layer(descriptor, LayerKind.ARCHIVE, gzip=compressed))
        else:
            layers.append(Layer(descriptor, LayerKind.FILE))
    kinds = {layer.kind for layer in layers}
    if LayerKind.IMAGE_LAYER in kinds and len(kinds) > 1:
        raise ArtifactError(
            f"{reference} mixes titled files with untitled file-system layers; "
            "kaito reads either an artifact or an image, not both"
        )
    return layers


def artifact_type(manifest: Mapping[str, Any]) -> str | None:
    """The artifact type: `artifactType`, else the config's media type."""
    declared = manifest.get("artifactType")
    if isinstance(declared, str):
        return declared
    config = manifest.get("config")
    if isinstance(config, dict) and isinstance(config.get("mediaType"), str):
        media_type: str = config["mediaType"]
        return media_type
    return None


def missing_adapter_files(names: Iterable[str]) -> list[str]:
    present = set(names)
    return [name for name in ADAPTER_FILES if name not in present]
