"""The AKS provisioner's settings: operator options first, then the environment.

The operator passes provisioner options as plain strings (`--provisioner-option K=V`); in a
cluster the same values usually come from the Deployment's environment, so every option also
reads `KAITO_AKS_<OPTION>` (upper case, dashes as underscores), and the subscription falls back
to `AZURE_SUBSCRIPTION_ID`, the variable Azure's own tools use. An option given explicitly wins.

Everything is validated here, once, when the provisioner is built: a misspelt option, a
subscription that is not a GUID or an endpoint that would send a bearer token in clear text
fail the operator at start-up with a message naming the option, instead of failing every
reconcile later.

Secrets are not settings. The static access token (`credential=static`, for local ARM
stand-ins and proxies) is read from `KAITO_AKS_ACCESS_TOKEN` by the provisioner and kept only
inside a credential object whose repr hides it, so this frozen, printable object never holds
one.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Final, Literal
from urllib.parse import urlsplit

import attrs

from kaito.provisioners.karpenter import parse_duration
from kaito.provisioners.nodes import check_options

PROVISIONER_NAME: Final = "aks"

DEFAULT_ARM_ENDPOINT: Final = "https://management.azure.com"
DEFAULT_POLL_INTERVAL: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 5
DEFAULT_RETRY_BACKOFF: Final = 0.8
DEFAULT_MAX_RETRY_AFTER: Final = 60.0

ENV_PREFIX: Final = "KAITO_AKS_"
ACCESS_TOKEN_ENV: Final = "KAITO_AKS_ACCESS_TOKEN"
"""Where `credential=static` reads its bearer token (never from an option: options end up in
flags, manifests and logs)."""
AZURE_SUBSCRIPTION_ENV: Final = "AZURE_SUBSCRIPTION_ID"

OPTIONS: Final = (
    "arm-endpoint",
    "cluster-name",
    "credential",
    "location",
    "max-retries",
    "max-retry-after",
    "poll-interval",
    "resource-group",
    "retry-backoff",
    "subscription-id",
    "zones",
)

CredentialKind = Literal["default", "static"]

_Lookup = Callable[[str], "str | None"]
"""An option's value, from the options or the environment (None when neither has it)."""

_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9][-_a-zA-Z0-9]{0,62}$")
_LOOPBACK_NAMES = frozenset({"localhost"})


def env_name(option: str) -> str:
    """The environment variable that supplies an option: `KAITO_AKS_CLUSTER_NAME`."""
    return ENV_PREFIX + option.upper().replace("-", "_")


def normalize_location(location: str) -> str:
    """ARM region names compare without case and spaces: "East US" is "eastus"."""
    return location.replace(" ", "").lower()


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen
class AKSSettings:
    """Where the cluster is and how to talk to Azure Resource Manager.

    `location` None means "read it from the managed cluster". `zones` are the availability
    zones new agent pools are placed in (empty: regional, no zones). `insecure_loopback` is
    True when `arm_endpoint` is plain HTTP on this machine, the one case where a bearer token
    may travel without TLS (a local stand-in or a local proxy).
    """

    subscription_id: str
    resource_group: str
    cluster_name: str
    location: str | None = None
    zones: tuple[str, ...] = ()
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    credential: CredentialKind = "default"
    poll_interval: float = DEFAULT_POLL_INTERVAL
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    @property
    def insecure_loopback(self) -> bool:
        return urlsplit(self.arm_endpoint).scheme == "http"

    @classmethod
    def from_options(
        cls, options: Mapping[str, str], environ: Mapping[str, str] | None = None
    ) -> AKSSettings:
        """Settings from provisioner options, falling back to the environment.

        Raises `ValueError` naming the option (and its variable) that is unknown, missing or
        malformed.
        """
        check_options(PROVISIONER_NAME, options, OPTIONS)
        env = environ if environ is not None else {}

        def value(option: str) -> str | None:
            raw = options.get(option)
            if raw is None:
                raw = env.get(env_name(option))
            if raw is None and option == "subscription-id":
                raw = env.get(AZURE_SUBSCRIPTION_ENV)
            if raw is None:
                return None
            return raw.strip()

        def required(option: str) -> str:
            found = value(option)
            if not found:
                extra = f" or {AZURE_SUBSCRIPTION_ENV}" if option == "subscription-id" else ""
                raise ValueError(
                    f"the aks provisioner needs option {option} "
                    f"(or the environment variable {env_name(option)}{extra})"
                )
            return found

        subscription = required("subscription-id")
        try:
            uuid.UUID(subscription)
        except ValueError:
            raise ValueError(
                f"option subscription-id of the aks provisioner must be a subscription GUID, "
                f"got {subscription!r}"
            ) from None
        group = required("resource-group")
        if not _RESOURCE_GROUP.match(group) or group.endswith("."):
            raise ValueError(f"option resource-group={group!r} is not a resource group name")
        cluster = required("cluster-name")
        if not _CLUSTER_NAME.match(cluster):
            raise ValueError(f"option cluster-name={cluster!r} is not an AKS cluster name")

        location = value("location") or None
        zones = tuple(z.strip() for z in (value("zones") or "").split(",") if z.strip())
        for zone in zones:
            if not zone.isdigit():
                raise ValueError(
                    f"option zones of the aks provisioner takes zone numbers like '1,2,3', "
                    f"got {zone!r}"
                )

        endpoint = (value("arm-endpoint") or DEFAULT_ARM_ENDPOINT).rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"option arm-endpoint={endpoint!r} is not an http(s) URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError(
                f"option arm-endpoint={endpoint!r} would send the Azure access token without "
                "TLS; plain http is accepted only for loopback addresses (a local stand-in)"
            )

        credential = value("credential") or "default"
        if credential not in ("default", "static"):
            raise ValueError(
                f"option credential={credential!r} of the aks provisioner is not one of "
                f"default, static"
            )

        return cls(
            subscription_id=subscription,
            resource_group=group,
            cluster_name=cluster,
            location=normalize_location(location) if location else None,
            zones=zones,
            arm_endpoint=endpoint,
            credential="static" if credential == "static" else "default",
            poll_interval=_duration(value, "poll-interval", DEFAULT_POLL_INTERVAL),
            max_retries=_count(value, "max-retries", DEFAULT_MAX_RETRIES),
            retry_backoff=_seconds(value, "retry-backoff", DEFAULT_RETRY_BACKOFF),
            max_retry_after=_duration(value, "max-retry-after", DEFAULT_MAX_RETRY_AFTER),
        )


def _duration(value: _Lookup, option: str, default: float) -> float:
    raw = value(option)
    if not raw:
        return default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ValueError(f"option {option} of the aks provisioner: {exc}") from None


def _seconds(value: _Lookup, option: str, default: float) -> float:
    """A non-negative number of seconds (0 is allowed: no backoff)."""
    raw = value(option)
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        return _duration(value, option, default)
    if seconds < 0:
        raise ValueError(f"option {option} of the aks provisioner cannot be negative")
    return seconds


def _count(value: _Lookup, option: str, default: int) -> int:
    raw = value(option)
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"option {option} of the aks provisioner must be a whole number")
    return int(raw)
