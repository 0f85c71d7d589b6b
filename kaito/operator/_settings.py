"""The operator's settings, and the one table that maps each to a flag and a variable.

`kaito operator run` is configured by flags on a workstation and by environment variables in a
Deployment (where a ConfigMap or the downward API fills them in). Both must always offer the
same options, so both are generated from `OPTIONS`: each entry names the `OperatorSettings`
field, the flag (`--lease-name`) and from it the variable (`KAITO_LEASE_NAME`). A flag given on
the command line wins over the variable, which wins over the default.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from kaito.operator._logging import LOG_FORMATS, LogFormat

ENV_PREFIX = "KAITO_"

OptionType = Literal["str", "int", "float", "bool", "flag", "pairs", "choice"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class SettingsError(ValueError):
    """A flag or an environment variable has a value the operator cannot use."""


def _positive_int(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise SettingsError(f"{attribute.name} must be at least 1, not {value}")


def _positive(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise SettingsError(f"{attribute.name} must be greater than 0, not {value}")


def default_identity() -> str:
    """This replica's name in the lease: the host (the pod) name plus a random suffix."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@attrs.frozen(kw_only=True)
class OperatorSettings:
    """Everything `kaito operator run` can be told; see `OPTIONS` for flags and variables."""

    kubeconfig: str | None = None
    context: str | None = None
    provisioner: str = "karpenter"
    provisioner_options: Mapping[str, str] = attrs.field(factory=dict)
    runtime: str = "hf"
    disable_node_auto_provisioning: bool = False
    concurrency: int = attrs.field(default=4, validator=_positive_int)
    leader_election: bool = True
    lease_name: str = "kaito-workspace-controller"
    lease_namespace: str = "kaito-system"
    lease_duration: float = attrs.field(default=15.0, validator=_positive)
    renew_deadline: float = attrs.field(default=10.0, validator=_positive)
    retry_period: float = attrs.field(default=2.0, validator=_positive)
    identity: str | None = None
    metrics_addr: str = "0.0.0.0:8080"
    health_addr: str = "0.0.0.0:8081"
    log_format: LogFormat = "text"
    log_level: str = "info"
    backoff_base: float = attrs.field(default=0.5, validator=_positive)
    backoff_cap: float = attrs.field(default=300.0, validator=_positive)
    shutdown_timeout: float = attrs.field(default=30.0, validator=_positive)
    watch_timeout: int = attrs.field(default=300, validator=_positive_int)

    def __attrs_post_init__(self) -> None:
        if self.leader_election and not (
            self.lease_duration > self.renew_deadline > self.retry_period
        ):
            raise SettingsError("need lease duration > renew deadline > retry period")
        if self.backoff_cap < self.backoff_base:
            raise SettingsError("the backoff cap must not be below the backoff base")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log format must be one of {', '.join(LOG_FORMATS)}")


@attrs.frozen
class Option:
    """One setting as a command-line flag and an environment variable."""

    field: str
    flag: str
    type: OptionType
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        """The environment variable: `KAITO_` plus the flag in upper snake case."""
        return ENV_PREFIX + self.flag.removeprefix("--").upper().replace("-", "_")

    def parse(self, text: str) -> Any:
        """The value of the environment variable's text (raises `SettingsError`)."""
        value = text.strip()
        try:
            if self.type == "int":
                return int(value)
            if self.type == "float":
                return float(value)
        except ValueError:
            raise SettingsError(f"{self.env}={text!r}: expected a {self.type}") from None
        if self.type in ("bool", "flag"):
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise SettingsError(f"{self.env}={text!r}: expected true or false")
        if self.type == "pairs":
            return parse_pairs([p for p in value.split(",") if p.strip()], source=self.env)
        if self.type == "choice" and value not in self.choices:
            raise SettingsError(f"{self.env}={text!r}: expected one of {', '.join(self.choices)}")
        return value


def parse_pairs(items: list[str], *, source: str = "--provisioner-option") -> dict[str, str]:
    """`KEY=VALUE` strings as a mapping (raises `SettingsError` naming `source`)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{source}: {item!r} is not KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


OPTIONS: tuple[Option, ...] = (
    Option(
        "kubeconfig",
        "--kubeconfig",
        "str",
        "kubeconfig file; without it the pod's service "
        "account is used in a cluster, else $KUBECONFIG or ~/.kube/config",
        "PATH",
    ),
    Option("context", "--context", "str", "kubeconfig context (default: the current one)", "NAME"),
    Option(
        "provisioner",
        "--provisioner",
        "str",
        "node provisioner plugin: karpenter, byo, fake, or an installed one",
        "NAME",
    ),
    Option(
        "provisioner_options",
        "--provisioner-option",
        "pairs",
        "an option for the provisioner, repeatable (the variable takes KEY=VALUE,KEY=VALUE)",
        "KEY=VALUE",
    ),
    Option(
        "runtime",
        "--runtime",
        "str",
        "default inference runtime when a workspace names none: hf, vllm, tgi, triton",
        "NAME",
    ),
    Option(
        "disable_node_auto_provisioning",
        "--disable-node-auto-provisioning",
        "flag",
        "never create nodes; workspaces use existing (preferred) nodes only",
    ),
    Option("concurrency", "--concurrency", "int", "workspaces reconciled at the same time", "N"),
    Option(
        "leader_election",
        "--leader-election",
        "bool",
        "elect one active replica through a Lease (--no-leader-election: run alone)",
    ),
    Option("lease_name", "--lease-name", "str", "name of the leader election Lease", "NAME"),
    Option("lease_namespace", "--lease-namespace", "str", "namespace of the Lease", "NAMESPACE"),
    Option(
        "lease_duration",
        "--lease-duration",
        "float",
        "seconds a leader's claim lasts without renewal",
        "SECONDS",
    ),
    Option(
        "renew_deadline",
        "--renew-deadline",
        "float",
        "seconds the leader keeps trying to renew before it stops working",
        "SECONDS",
    ),
    Option(
        "retry_period",
        "--retry-period",
        "float",
        "seconds between attempts to acquire or renew the lease",
        "SECONDS",
    ),
    Option(
        "identity",
        "--identity",
        "str",
        "this replica's name in the Lease (default: host name plus a random suffix)",
        "NAME",
    ),
    Option("metrics_addr", "--metrics-addr", "str", "where /metrics listens", "HOST:PORT"),
    Option("health_addr", "--health-addr", "str", "where /healthz and /readyz listen", "HOST:PORT"),
    Option(
        "log_format",
        "--log-format",
        "choice",
        "log lines as key=value text or JSON",
        None,
        LOG_FORMATS,
    ),
    Option(
        "log_level",
        "--log-level",
        "choice",
        "lowest level logged",
        None,
        ("debug", "info", "warning", "error"),
    ),
    Option(
        "backoff_base",
        "--backoff-base",
        "float",
        "first retry delay of a workspace whose reconcile failed",
        "SECONDS",
    ),
    Option("backoff_cap", "--backoff-cap", "float", "longest retry delay", "SECONDS"),
    Option(
        "shutdown_timeout",
        "--shutdown-timeout",
        "float",
        "seconds to let running reconciles finish on SIGTERM",
        "SECONDS",
    ),
)
"""Every setting of `kaito operator run`, in the order `--help` shows them."""


def settings_from(
    given: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> OperatorSettings:
    """Settings from command-line values (None: not given), then `KAITO_*` variables, then
    the defaults. Raises `SettingsError` for a malformed value."""
    given = given or {}
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = given.get(option.field)
        if value is None and option.env in env:
            value = option.parse(env[option.env])
        if value is not None:
            values[option.field] = value
    try:
        return OperatorSettings(**values)
    except (TypeError, ValueError) as exc:
        raise SettingsError(str(exc)) from exc
