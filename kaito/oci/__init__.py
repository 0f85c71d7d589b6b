"""LoRA adapters (and training data) in OCI registries: the transport between tuning and serving.

A tuning job pushes the adapter it trained (`push_adapter`); a workspace that serves it pulls it
in an init container (`python -m kaito.oci pull REF /mnt/adapter/NAME`, i.e. `pull_adapter`).
The artifact layout both sides agree on is defined in `kaito.oci._layout` and summed up here:

    manifest  application/vnd.oci.image.manifest.v1+json, artifactType ARTIFACT_TYPE
    config    CONFIG_MEDIA_TYPE, the JSON {"format": 1}
    layers    one per adapter file, FILE_MEDIA_TYPE, file name in org.opencontainers.image.title

Pulls also accept other artifacts of titled files (what `oras push` makes) and images whose
`/data` directory holds the files (upstream kaito's adapter and data images). Credentials come
from a docker config file (`RegistryAuth.from_docker_config`), which is what a mounted
dockerconfigjson secret is. The registry is spoken to with oras; importing this package does
not import oras.
"""

from kaito.oci._auth import DOCKERCONFIGJSON_KEY, RegistryAuth
from kaito.oci._client import (
    PushedArtifact,
    RegistryOptions,
    check_push_access,
    pull_adapter,
    pull_data,
    push_adapter,
)
from kaito.oci._errors import (
    ArtifactError,
    ArtifactNotFoundError,
    AuthenticationError,
    CredentialsError,
    InvalidReferenceError,
    OCIError,
    RegistryError,
    RegistryUnreachableError,
)
from kaito.oci._layout import (
    ADAPTER_FILES,
    ARTIFACT_TYPE,
    BASE_MODEL_ANNOTATION,
    CONFIG_MEDIA_TYPE,
    FILE_MEDIA_TYPE,
    METHOD_ANNOTATION,
)
from kaito.oci._reference import Reference

__all__ = [
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
]
