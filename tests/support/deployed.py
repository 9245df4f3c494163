"""A stage deployed to MiniStack, as the e2e tests see it: URLs, names, tokens and what is stored.

Two ways in: ``make deploy-local`` (the real ``make deploy``; its state file) and
``make package`` + a CloudFormation create-stack (the stack's outputs). The checks
run the same against both.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from devtools.deploy_local import guard_env
from devtools.ministack import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.support.builders import ROOT
from tests.support.waiting import wait_until

PASSWORD = "Correct-Horse-9!"
REGION = "us-east-1"


@dataclass(frozen=True)
class DeployedStage:
    path: str  # "deploy" or "package": how it got there
    endpoint_url: str
    ws_url: str
    rest_url: str  # ends with "/"
    pool_id: str
    client_id: str
    table: str
    notify_function: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)

    def tokens(self, username: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
        """A new user in the deployed pool (in ``groups`` first), signed in: its access and id tokens."""
        idp = self.client("cognito-idp")
        idp.admin_create_user(UserPoolId=self.pool_id, Username=username, MessageAction="SUPPRESS")
        idp.admin_set_user_password(UserPoolId=self.pool_id, Username=username, Password=PASSWORD, Permanent=True)
        for group in groups:
            idp.admin_add_user_to_group(UserPoolId=self.pool_id, Username=username, GroupName=group)
        answer = idp.initiate_auth(ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                   AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD})["AuthenticationResult"]
        return {"access": str(answer["AccessToken"]), "id": str(answer["IdToken"])}

    def stored_items(self) -> list[dict[str, Any]]:
        """Connection and subscription items (not the per-user counts or tombstones)."""
        items = self.client("dynamodb").scan(TableName=self.table, ConsistentRead=True)["Items"]
        return [i for i in items if i["pk"]["S"].startswith("CONN#") and i["sk"]["S"] != "GONE"]


def guarded_environment(guard_log: Path) -> dict[str, str]:
    """The test's environment for a deploy subprocess, with the loopback guard on: no AWS profile,
    MiniStack's credentials, and ``sitecustomize`` refusing (and logging) any host beyond 127.0.0.1."""
    guard = guard_env(str(guard_log))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
           "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "LOOPBACK_GUARD_LOG": guard["LOOPBACK_GUARD_LOG"],
           "PYTHONPATH": os.pathsep.join([guard["PYTHONPATH"], str(ROOT)])}
    env.pop("AWS_PROFILE", None)
    return env


def guard_lines(guard_log: Path) -> list[str]:
    return guard_log.read_text().splitlines() if guard_log.exists() else []


@contextmanager
def deploy_local(state_file: Path, guard_log: Path, output: Path, overrides: dict[str, str]) -> Iterator[DeployedStage]:
    """``make deploy-local`` on a free port, until the block ends (then SIGINT, as Ctrl-C, and it must stop)."""
    from devtools.ministack import _free_port

    port = _free_port()
    with open(output, "w") as log:
        process = subprocess.Popen(
            ["make", "-s", "deploy-local", f"MINISTACK_PORT={port}", f"STATE_FILE={state_file}",
             "SET=" + " ".join(f"{name}={value}" for name, value in overrides.items())],
            cwd=ROOT, env=guarded_environment(guard_log), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        def ready() -> bool:
            assert process.poll() is None, f"make deploy-local exited {process.returncode}:\n{output.read_text()}"
            return "Ctrl-C stops MiniStack" in output.read_text()

        wait_until(ready, 600.0, lambda: f"make deploy-local to finish:\n{output.read_text()}", interval=1.0)
        state = json.loads(state_file.read_text())
        yield DeployedStage(path="deploy", endpoint_url=state["endpoint_url"], ws_url=state["websocket_url"],
                            rest_url=state["rest_url"], pool_id=state["cognito"]["pool_id"],
                            client_id=state["cognito"]["client_id"], table=state["table"],
                            notify_function=state["notify_function"])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise AssertionError(f"make deploy-local did not stop on SIGINT:\n{output.read_text()}") from None


def run_deploy_command(command: str, stage: str, project: Path, env: dict[str, str]) -> str:
    """``python -m devtools.deploy <command>`` (what ``make <command>`` runs) on ``project``."""
    done = subprocess.run([sys.executable, "-m", "devtools.deploy", command, "--stage", stage, "--project-dir",
                           str(project)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
