"""Run the Chalice CLI for a project, and read what it recorded in ``.chalice/deployed``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import CommandFailed, DeployError


def chalice_command() -> list[str]:
    """The chalice of this interpreter's environment (the venv), never some other one on PATH."""
    candidate = Path(sys.executable).parent / "chalice"
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())"]


def run_chalice(project_dir: Path, args: Sequence[str]) -> None:
    command = chalice_command() + list(args)
    shown = ["chalice", *args]
    env = dict(os.environ)
    # Chalice's own output goes straight to the user's terminal.
    code = subprocess.call(command, cwd=str(project_dir), env=env)
    if code != 0:
        raise CommandFailed(shown, code)


@dataclass(frozen=True)
class Deployed:
    """The parts of ``.chalice/deployed/<stage>.json`` the wiring needs."""

    websocket_api_id: str
    lambda_arns: dict[str, str]  # chalice resource name -> function ARN
    rest_api_url: str = ""  # "" when the app has no REST routes
    rest_api_id: str = ""

    def lambda_arn(self, name: str) -> str:
        if name not in self.lambda_arns:
            raise DeployError(f"chalice did not deploy a Lambda named {name!r} (have: {sorted(self.lambda_arns)})")
        return self.lambda_arns[name]


def websocket_url(api_id: str, region: str, api_stage: str) -> str:
    """A WebSocket API stage's ``wss://`` URL (Chalice records it with a trailing slash)."""
    return f"wss://{api_id}.execute-api.{region}.amazonaws.com/{api_stage}"


def deployed_path(project_dir: Path, stage: str) -> Path:
    return project_dir / ".chalice" / "deployed" / f"{stage}.json"


def read_deployed(project_dir: Path, stage: str) -> Deployed | None:
    path = deployed_path(project_dir, stage)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    api_id = ""
    rest_api_url = rest_api_id = ""
    arns: dict[str, str] = {}
    for resource in data.get("resources") or []:
        if resource.get("resource_type") == "websocket_api":
            api_id = str(resource.get("websocket_api_id") or "")
        elif resource.get("resource_type") == "rest_api":
            rest_api_url = str(resource.get("rest_api_url") or "")
            rest_api_id = str(resource.get("rest_api_id") or "")
        elif resource.get("resource_type") == "lambda_function":
            arns[str(resource["name"])] = str(resource["lambda_arn"])
    return Deployed(websocket_api_id=api_id, lambda_arns=arns, rest_api_url=rest_api_url, rest_api_id=rest_api_id)
