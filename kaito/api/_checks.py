"""Pure syntax checks shared by the models, the validator and the CRD schema.

Each check returns `None` when the value is fine and otherwise a sentence that says what a
valid value looks like, so callers can attach it to a field path. The regular expressions are
module constants because the CRD generator puts the same patterns into the OpenAPI schema: the
admission webhook and a cluster without it then agree on what a name is.

Data URLs get the most care. A workspace makes the cluster fetch whatever URL it names, so a
URL pointing at the node itself, the pod network or a cloud metadata service would turn kaito
into a request forwarder (server-side request forgery). The check is deliberately pure: it looks
at literal addresses (including the numeric spellings that resolvers accept, such as
`http://2130706433/` or `http://0x7f.1/`) and at well-known internal host names, and never
resolves DNS, so validation gives the same answer on every machine.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from datetime import datetime
from urllib.parse import urlsplit

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253

DNS1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Adapter strength: a plain decimal, optionally signed and with an exponent; no 'nan'/'inf',
# no digit separators or spaces. The CEL rule in the CRD uses the same expression.
STRENGTH_PATTERN = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
# RFC 3339 as the API server writes it (seconds precision, optional fraction, Z or offset).
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"

_LABEL_RE = re.compile(DNS1123_LABEL_PATTERN)
_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN_PATTERN)
_STRENGTH_RE = re.compile(STRENGTH_PATTERN)
_RFC3339_RE = re.compile(RFC3339_PATTERN)

# OCI image reference grammar (domain, path components, tag, digest). Matching is
# case-insensitive on purpose: registries are reached through their lowercase name in practice,
# but the project's own quickstart uses upper-case placeholders
# ("ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1") and those documents must validate.
_DOMAIN_COMPONENT = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-f:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z][a-z0-9]*(?:[-_+.][a-z][a-z0-9]*)*:[0-9a-f]{32,}"
_IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$",
    re.IGNORECASE,
)
IMAGE_NAME_MAX = 255

# Host names that always mean "this machine" or "the cloud's metadata service".
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.google",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# Addresses of cloud metadata services outside the link-local range (AWS over IPv6, Alibaba
# Cloud): refused even where private addresses are allowed.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)
# Host names made only of numbers (decimal, octal or hex parts): resolvers treat these as IPv4.
_NUMERIC_HOST_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")


def check_dns1123_label(value: str) -> str | None:
    """A DNS-1123 label: what `metadata.name` of a Workspace must be (it names Services)."""
    if not value:
        return "must not be empty; use a DNS-1123 label such as 'workspace-phi-3'"
    if len(value) > DNS1123_LABEL_MAX:
        return f"must be at most {DNS1123_LABEL_MAX} characters (is {len(value)})"
    if not _LABEL_RE.match(value):
        return (
            f"{value!r} is not a DNS-1123 label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'workspace-phi-3')"
        )
    return None


def check_dns1123_subdomain(value: str) -> str | None:
    """A DNS-1123 subdomain: the syntax of Secret, ConfigMap and container names."""
    if not value:
        return "must not be empty; use a DNS-1123 subdomain such as 'my-name' or 'my.name'"
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be at most {DNS1123_SUBDOMAIN_MAX} characters (is {len(value)})"
    if not _SUBDOMAIN_RE.match(value):
        return (
            f"{value!r} is not a DNS-1123 subdomain: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (e.g. 'my-name' or 'my.name')"
        )
    return None


def check_image_reference(value: str) -> str | None:
    """An OCI image reference such as `registry.example/team/model:1.0` or `name@sha256:...`."""
    if not value:
        return "must not be empty; use an image reference such as 'registry.example/repo:tag'"
    if len(value) > IMAGE_NAME_MAX:
        return f"must be at most {IMAGE_NAME_MAX} characters (is {len(value)})"
    if not _IMAGE_RE.match(value):
        return (
            f"{value!r} is not an image reference: expected [registry[:port]/]repository[:tag]"
            "[@digest], e.g. 'myregistry.azurecr.io/adapters/phi-3:0.0.1'"
        )
    return None


def check_secret_reference(value: str) -> str | None:
    """A name that refers to a Secret, checked leniently (see `imagePushSecret` in `_validation`).

    Only the shape is checked (non-empty, no whitespace or '/', not too long); whether the
    Secret exists is a question for the cluster, not for pure validation.
    """
    if not value:
        return "must not be empty; give the name of a Secret in the workspace's namespace"
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"must be at most {DNS1123_SUBDOMAIN_MAX} characters (is {len(value)})"
    if any(c.isspace() or c == "/" for c in value):
        return f"{value!r} is not a Secret name: it must not contain whitespace or '/'"
    return None


def parse_strength(value: str) -> float | None:
    """The adapter strength as a number, or None when the string is not a plain decimal."""
    if not _STRENGTH_RE.match(value):
        return None
    return float(value)


def check_strength(value: str) -> str | None:
    """Adapter strength: a decimal string in [0, 1], as upstream stores it (e.g. "1.0")."""
    number = parse_strength(value)
    if number is None:
        return f'{value!r} is not a number; use a decimal string between 0 and 1, e.g. "0.5"'
    if not 0.0 <= number <= 1.0:
        return f"must be between 0 and 1 (inclusive), got {value}"
    return None


def check_rfc3339(value: str) -> str | None:
    """A timestamp in RFC 3339 form, e.g. `2024-05-01T12:00:00Z`."""
    if not _RFC3339_RE.match(value):
        return f"{value!r} is not an RFC 3339 timestamp; expected e.g. '2024-05-01T12:00:00Z'"
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:
        return f"{value!r} is not a valid date and time"
    return None


def check_data_url(value: str, *, allow_private: bool = False) -> str | None:
    """An http(s) URL that does not target this node, the private network or a metadata service.
    `allow_private` lets it target this machine and private networks (the local mode, where the
    node is the user's own machine); metadata services and link-local addresses stay refused."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for an out-of-range or non-numeric port
    except ValueError as exc:
        return (
            f"{value!r} is not a valid URL ({exc}); expected e.g. 'https://host/path/data.parquet'"
        )
    del port
    if parts.scheme.lower() not in ("http", "https"):
        return f"{value!r} must use http or https, e.g. 'https://host/path/data.parquet'"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return f"{value!r} has no host; expected e.g. 'https://host/path/data.parquet'"
    if (host == "localhost" or host.endswith(".localhost")) and not allow_private:
        return f"{value!r} must not target localhost; use a publicly reachable host"
    if host in METADATA_HOSTNAMES:
        return f"{value!r} must not target a cloud metadata service; use a publicly reachable host"
    address = _literal_address(host)
    if address is not None:
        problem = _non_public_reason(address)
        if allow_private and problem in _PRIVATE_REASONS:
            problem = None
        if _unmapped(address) in METADATA_ADDRESSES:
            problem = "a cloud metadata service"
        if problem:
            return f"{value!r} must not target {problem}; use a publicly reachable host"
    return None


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host name spells literally, if it spells one."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_HOST_RE.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


_PRIVATE_REASONS = frozenset({"a loopback address", "a private or reserved address"})


def _unmapped(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _non_public_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    address = _unmapped(address)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (this includes cloud metadata at 169.254.169.254)"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private or not address.is_global:
        return "a private or reserved address"
    return None


_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_PATTERN)


def check_label_key(key: str) -> str | None:
    """A label key: an optional DNS subdomain prefix and '/', then a name of up to 63 chars."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or check_dns1123_subdomain(prefix)):
        return f"label key {key!r} has an invalid prefix; the prefix must be a DNS subdomain"
    if not name or len(name) > DNS1123_LABEL_MAX or not _LABEL_NAME_RE.match(name):
        return (
            f"label key {key!r} is invalid: the name part must be 1-63 letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit (e.g. 'apps' or 'kaito.sh/apps')"
        )
    return None


def check_label_value(value: str) -> str | None:
    """A label value: empty, or up to 63 letters, digits, '-', '_', '.' (alphanumeric ends)."""
    if len(value) > DNS1123_LABEL_MAX or not _LABEL_VALUE_RE.match(value):
        return (
            f"label value {value!r} is invalid: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None
