"""What can go wrong between kaito and an OCI registry, as one small tree.

    OCIError
    ├── InvalidReferenceError   the text is not an image reference       (also a ValueError)
    ├── CredentialsError        the dockerconfigjson cannot be used
    ├── RegistryUnreachableError  no answer after the retries
    ├── RegistryError           the registry answered with an error; `.status` holds the code
    │   ├── AuthenticationError     401/403: missing, wrong or insufficient credentials
    │   └── ArtifactNotFoundError   404 for the reference
    └── ArtifactError           the content is not what was asked for (layout, digest, file names)

Callers that only want "did it work" catch `OCIError`; the command line maps the branches to
messages and exit codes. The transport's exception is chained as `__cause__` where there is one.
"""

from __future__ import annotations


class OCIError(Exception):
    """Base of every error of `kaito.oci`."""


class InvalidReferenceError(OCIError, ValueError):
    """The text is not a valid image reference (`registry/repository[:tag][@digest]`)."""


class CredentialsError(OCIError):
    """A docker config (a Kubernetes dockerconfigjson secret) is unreadable, malformed, or has no
    usable entry for the registry."""


class RegistryUnreachableError(OCIError):
    """The registry could not be reached (connection refused, DNS, timeout) after the retries."""


class RegistryError(OCIError):
    """The registry answered with an error status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AuthenticationError(RegistryError):
    """The registry refused the credentials, wanted some that were not given, or does not let
    this user do the operation."""


class ArtifactNotFoundError(RegistryError):
    """The reference does not exist in the registry."""


class ArtifactError(OCIError):
    """The artifact's content is not usable: an unknown layout, a digest mismatch, an unsafe file
    name, or an adapter without its files."""
