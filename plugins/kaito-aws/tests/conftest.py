"""Fixtures of the aws provisioner tests: moto's server (one per session, reset per test), a
fault proxy in front of it, a fake AWS account with an EKS cluster, and an emulated Kubernetes
cluster for the nodes.

The process environment is made hermetic for boto3: dummy credentials (which tests check never
reach a log), no shared config files, and no instance metadata look-ups (which would wait for
timeouts on a machine outside AWS).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import boto3
import pytest
from aws_support import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, AwsWorld, FaultProxy
from moto.server import ThreadedMotoServer

from kaito.kube import KubeClient
from kaito.testing import kaito_cluster


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    patch = pytest.MonkeyPatch()
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_ENDPOINT_URL",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
    ):
        patch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("aws-home")
    patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    patch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    patch.setenv("NO_PROXY", "127.0.0.1")
    yield
    patch.undo()


@pytest.fixture(scope="session")
def account(aws_env: None) -> Iterator[AwsWorld]:
    """moto's server with the EKS cluster, VPC and role, made once for the session (moto takes
    seconds to set up an EC2 region); each test gets it with no node groups."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    proxy = FaultProxy(url).start()
    try:
        yield AwsWorld.create(url, proxy, boto3.session.Session(region_name=REGION))
    finally:
        proxy.stop()
        server.stop()


@pytest.fixture
def world(account: AwsWorld) -> AwsWorld:
    account.remove_all_nodegroups()
    account.proxy.clear()
    return account


@pytest.fixture
async def kube() -> AsyncIterator[KubeClient]:
    async with kaito_cluster(simulate=False) as cluster:
        yield cluster.client
