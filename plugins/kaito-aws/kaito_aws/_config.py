"""The aws provisioner's settings: where the node groups go and how the AWS calls behave.

Settings come from `ProvisionerContext.options` (the operator's `--provisioner-option K=V`) and,
for anything not given there, from `KAITO_AWS_<OPTION>` environment variables (`subnet-ids`
becomes `KAITO_AWS_SUBNET_IDS`), so a Helm chart can set them either way. The region falls back
to `AWS_REGION` / `AWS_DEFAULT_REGION`, which the EKS pod identity webhook and IRSA inject into
the operator's pod.

Credentials are deliberately not a setting. boto3's default chain finds them (environment,
shared files, IRSA's web identity token, EKS Pod Identity, instance metadata), which keeps
secrets out of flags, out of this object's repr and out of every log line.

Parsing is pure and strict: every problem is a `ValueError` naming the option, its variable
and what was expected, raised when the operator starts rather than on the first workspace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

import attrs

from kaito.provisioners.karpenter import parse_duration
from kaito.provisioners.nodes import check_options

PROVISIONER_NAME: Final = "aws"
ENV_PREFIX: Final = "KAITO_AWS_"

OPTIONS: Final = (
    "region",
    "cluster-name",
    "subnet-ids",
    "node-role-arn",
    "endpoint-url",
    "ami-type",
    "retry-mode",
    "max-attempts",
    "poll-interval",
)
"""Every option the aws provisioner understands; see the README for their meaning."""

REQUIRED: Final = ("region", "cluster-name", "subnet-ids", "node-role-arn")

GPU_AMI_TYPES: Final = (
    "AL2023_x86_64_NVIDIA",
    "AL2023_ARM_64_NVIDIA",
    "AL2_x86_64_GPU",
    "BOTTLEROCKET_x86_64_NVIDIA",
    "BOTTLEROCKET_ARM_64_NVIDIA",
)
"""EKS AMI types that come with the NVIDIA driver and device plugin prerequisites."""

RetryMode = Literal["standard", "adaptive"]
RETRY_MODES: Final[tuple[RetryMode, ...]] = ("standard", "adaptive")

DEFAULT_RETRY_MODE: Final[RetryMode] = "standard"
DEFAULT_MAX_ATTEMPTS: Final = 5
MAX_MAX_ATTEMPTS: Final = 20
DEFAULT_POLL_INTERVAL: Final = 30.0
"""Seconds between looks at a node group that is being created, updated or deleted."""

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def env_name(option: str) -> str:
    """The environment variable that sets an option: `subnet-ids` -> `KAITO_AWS_SUBNET_IDS`."""
    return ENV_PREFIX + option.upper().replace("-", "_")


@attrs.frozen
class EKSConfig:
    """Validated settings of the aws provisioner. Holds no credentials."""

    region: str
    cluster_name: str
    subnet_ids: tuple[str, ...]
    node_role_arn: str
    endpoint_url: str | None = None
    """Send every AWS call here instead of the regional endpoints (tests, VPC endpoints)."""
    ami_type: str | None = None
    """None picks the NVIDIA AMI of AL2023 for the instance type's architecture."""
    retry_mode: RetryMode = DEFAULT_RETRY_MODE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Tries of one AWS call in all, the first included (botocore's `total_max_attempts`)."""
    poll_interval: float = DEFAULT_POLL_INTERVAL

    @classmethod
    def from_options(
        cls, options: Mapping[str, str], environ: Mapping[str, str] | None = None
    ) -> EKSConfig:
        """Settings from the provisioner options, then `KAITO_AWS_*` variables of `environ`.

        `environ` defaults to no variables at all; the provisioner passes `os.environ`.
        Raises `ValueError` naming every missing or malformed setting.
        """
        check_options(PROVISIONER_NAME, options, OPTIONS)
        env = environ or {}

        def get(option: str) -> str | None:
            value = options.get(option)
            if value is None:
                value = env.get(env_name(option))
            if value is None and option == "region":
                value = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            value = value.strip() if value is not None else None
            return value or None

        missing = [o for o in REQUIRED if get(o) is None]
        if missing:
            where = ", ".join(f"{o} ({env_name(o)})" for o in missing)
            raise ValueError(
                f"the aws provisioner needs the option(s) {where}; set them with "
                "--provisioner-option NAME=VALUE or the environment variables in parentheses"
            )
        region = _checked("region", get("region"), _REGION, "an AWS region such as us-east-1")
        cluster = _checked(
            "cluster-name",
            get("cluster-name"),
            _CLUSTER_NAME,
            "an EKS cluster name (letters, digits, '-' and '_', at most 100 characters)",
        )
        subnets = _subnets(get("subnet-ids") or "")
        role = _checked(
            "node-role-arn",
            get("node-role-arn"),
            _ROLE_ARN,
            "an IAM role ARN such as arn:aws:iam::123456789012:role/eks-gpu-nodes",
        )
        endpoint = get("endpoint-url")
        if endpoint is not None:
            endpoint = _checked("endpoint-url", endpoint, _URL, "an http(s) URL")
        ami = get("ami-type")
        if ami is not None and ami not in GPU_AMI_TYPES:
            raise ValueError(
                f"option ami-type={ami!r} of the aws provisioner is not a GPU AMI type; "
                f"expected one of {', '.join(GPU_AMI_TYPES)}"
            )
        mode = get("retry-mode") or DEFAULT_RETRY_MODE
        if mode not in RETRY_MODES:
            raise ValueError(
                f"option retry-mode={mode!r} of the aws provisioner is not one of "
                f"{', '.join(RETRY_MODES)}"
            )
        return cls(
            region=region,
            cluster_name=cluster,
            subnet_ids=subnets,
            node_role_arn=role,
            endpoint_url=endpoint,
            ami_type=ami,
            retry_mode="adaptive" if mode == "adaptive" else "standard",
            max_attempts=_attempts(get("max-attempts")),
            poll_interval=_interval(get("poll-interval")),
        )


def _checked(option: str, value: str | None, pattern: re.Pattern[str], expected: str) -> str:
    if value is None or not pattern.match(value):
        raise ValueError(
            f"option {option}={value!r} of the aws provisioner is malformed; expected {expected}"
        )
    return value


def _subnets(text: str) -> tuple[str, ...]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    bad = [s for s in items if not _SUBNET_ID.match(s)]
    if bad or not items:
        raise ValueError(
            f"option subnet-ids of the aws provisioner must list subnet IDs separated by commas "
            f"(subnet-0123456789abcdef0,...); not subnet IDs: {', '.join(bad) or '(none given)'}"
        )
    return tuple(dict.fromkeys(items))


def _attempts(text: str | None) -> int:
    if text is None:
        return DEFAULT_MAX_ATTEMPTS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_MAX_ATTEMPTS:
        raise ValueError(
            f"option max-attempts={text!r} of the aws provisioner must be a whole number "
            f"from 1 to {MAX_MAX_ATTEMPTS}"
        )
    return value


def _interval(text: str | None) -> float:
    if text is None:
        return DEFAULT_POLL_INTERVAL
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"option poll-interval of the aws provisioner: {exc}") from None
