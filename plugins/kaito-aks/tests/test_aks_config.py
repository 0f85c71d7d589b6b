"""Settings of the AKS provisioner: options, their environment fallbacks, and the errors that
name a missing or malformed one; the static token credential and where its token comes from."""

from __future__ import annotations

import pytest
from aks_support import SUBSCRIPTION
from kaito_aks import ACCESS_TOKEN_ENV, OPTIONS, AKSSettings, StaticTokenCredential, env_name

REQUIRED = {
    "subscription-id": SUBSCRIPTION,
    "resource-group": "rg-kaito",
    "cluster-name": "aks-kaito",
}

pytestmark = pytest.mark.timeout(30)


def test_minimal_options_and_defaults() -> None:
    settings = AKSSettings.from_options(REQUIRED, {})
    assert settings == AKSSettings(
        subscription_id=SUBSCRIPTION, resource_group="rg-kaito", cluster_name="aks-kaito"
    )
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.credential == "default"
    assert settings.location is None
    assert settings.zones == ()
    assert settings.poll_interval == 30.0
    assert settings.max_retries == 5
    assert not settings.insecure_loopback


def test_every_option_has_an_environment_variable_and_options_win() -> None:
    env = {
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "KAITO_AKS_RESOURCE_GROUP": "rg-env",
        "KAITO_AKS_CLUSTER_NAME": "from-env",
        "KAITO_AKS_LOCATION": "West Europe",
        "KAITO_AKS_ZONES": "1, 2",
        "KAITO_AKS_POLL_INTERVAL": "1m",
        "KAITO_AKS_MAX_RETRIES": "2",
        "KAITO_AKS_RETRY_BACKOFF": "0",
        "KAITO_AKS_MAX_RETRY_AFTER": "90s",
    }
    settings = AKSSettings.from_options({"cluster-name": "from-option"}, env)
    assert settings.subscription_id == SUBSCRIPTION
    assert settings.resource_group == "rg-env"
    assert settings.cluster_name == "from-option"
    assert settings.location == "westeurope"
    assert settings.zones == ("1", "2")
    assert settings.poll_interval == 60.0
    assert settings.max_retries == 2
    assert settings.retry_backoff == 0.0
    assert settings.max_retry_after == 90.0
    assert {env_name(o) for o in OPTIONS} >= {k for k in env if k.startswith("KAITO_AKS_")}
    # the kaito-specific variable wins over Azure's
    other = "11111111-2222-3333-4444-555555555555"
    both = AKSSettings.from_options({}, {**env, "KAITO_AKS_SUBSCRIPTION_ID": other})
    assert both.subscription_id == other


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"cluster-name": None},
            r"needs option cluster-name \(or the environment variable "
            r"KAITO_AKS_CLUSTER_NAME\)",
        ),
        ({"subscription-id": None}, r"KAITO_AKS_SUBSCRIPTION_ID or AZURE_SUBSCRIPTION_ID"),
        ({"subscription-id": "my-subscription"}, "must be a subscription GUID"),
        ({"resource-group": "bad/group"}, "not a resource group name"),
        ({"cluster-name": "-bad"}, "not an AKS cluster name"),
        ({"zones": "1,b"}, "zone numbers"),
        ({"arm-endpoint": "ftp://x"}, "not an http"),
        ({"arm-endpoint": "http://arm.example.internal"}, "only for loopback"),
        ({"credential": "cli"}, "not one of default, static"),
        ({"poll-interval": "soon"}, "option poll-interval of the aks provisioner"),
        ({"max-retries": "-1"}, "whole number"),
        ({"retry-backoff": "-2"}, "cannot be negative"),
        ({"node-class": "x"}, r"unknown option\(s\) for the aks provisioner: node-class"),
    ],
)
def test_bad_settings_name_the_option(options: dict[str, str | None], message: str) -> None:
    merged = {k: v for k, v in {**REQUIRED, **options}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        AKSSettings.from_options(merged, {})


def test_plain_http_only_to_loopback() -> None:
    for endpoint in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        settings = AKSSettings.from_options({**REQUIRED, "arm-endpoint": endpoint + "/"}, {})
        assert settings.insecure_loopback
        assert not settings.arm_endpoint.endswith("/")
    secure = AKSSettings.from_options({**REQUIRED, "arm-endpoint": "https://arm.local"}, {})
    assert not secure.insecure_loopback


async def test_static_credential_serves_its_token_and_hides_it() -> None:
    credential = StaticTokenCredential("  secret-token  ")
    async with credential:
        token = await credential.get_token("https://management.azure.com/.default")
    assert token.token == "secret-token"
    assert token.expires_on > 0
    assert "secret" not in repr(credential)
    with pytest.raises(ValueError, match="cannot be empty"):
        StaticTokenCredential(" ")
    assert ACCESS_TOKEN_ENV == "KAITO_AKS_ACCESS_TOKEN"
