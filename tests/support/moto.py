"""Fixtures: a moto server for the session, and an isolated AWS environment pointing at it.

Register in tests/conftest.py's ``pytest_plugins`` as ``"tests.support.moto"``.

- ``moto_server`` (session): one ``MotoServer`` (SQS, Cognito, EventBridge: the
  parts of the local stack moto serves; the deploy tests use MiniStack).
- ``moto_env`` (function): resets moto, returns env vars for a subprocess
  (``AWS_ENDPOINT_URL``, dummy credentials, a region, no profile/config
  files), so nothing a test starts can reach a real account.
- ``moto_session`` (function): a boto3 Session for the same environment.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from devtools.moto_server import MotoServer

REGION = "us-east-1"


def moto_environment(endpoint_url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(variable, None)
    env.update({
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    with MotoServer(log_path=log) as server:
        yield server


@pytest.fixture
def moto_env(moto_server: MotoServer) -> dict[str, str]:
    moto_server.reset()
    return moto_environment(moto_server.endpoint_url)


@pytest.fixture
def moto_session(moto_env: dict[str, str]) -> Any:
    import boto3

    class _Session(boto3.session.Session):
        def client(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("endpoint_url", moto_env["AWS_ENDPOINT_URL"])
            kwargs.setdefault("region_name", REGION)
            return super().client(*args, **kwargs)

    return _Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
