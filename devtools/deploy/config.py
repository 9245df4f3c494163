"""A project's ``.chalice/config.json``, read for one stage; a deploy's workspace copy is updated with stack outputs.

Stage-level deploy settings live under each stage's ``"stage_resources"`` key
(Chalice ignores keys it does not know):

- ``callback_urls`` / ``logout_urls``: the hosted UI's allowed redirect URLs.
- ``hosted_ui_domain_prefix``: the Cognito domain prefix (default
  ``wsauth-<stage>-<account id>``; Cognito forbids "cognito", "aws" and
  "amazon" in a prefix, so the app name cannot be used as is).
- ``groups``: user pool groups to create.
- ``point_in_time_recovery``: PITR on the table (on for ``prod``).
- ``route_throttling``: ``{"burst_limit": N, "rate_limit": N}``, the WebSocket
  stage's ``DefaultRouteSettings`` (every route: messages a second, and the
  burst above it); API Gateway answers a client over it with a 429 error frame.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_TIMEOUT

from .errors import DeployError, UnknownStage

CONFIG_RELATIVE = Path(".chalice") / "config.json"
# A stage without ``route_throttling``: a tenth of an account's default WebSocket quota
# (10,000 requests a second, bursts of 5,000), so one stage cannot take the account's.
DEFAULT_ROUTE_THROTTLING = (500, 1000.0)

# Stack output -> the runtime env var it feeds.
OUTPUT_TO_ENV = {
    "UserPoolId": "COGNITO_USER_POOL_ID",
    "UserPoolClientId": "COGNITO_APP_CLIENT_IDS",
    "ConnectionsTableName": "CONNECTIONS_TABLE",
    "FanoutQueueUrl": "FANOUT_QUEUE_URL",
}


@dataclass(frozen=True)
class StageResources:
    """What the stage's resources template is built from."""

    app_name: str
    stage: str
    callback_urls: tuple[str, ...]
    logout_urls: tuple[str, ...]
    hosted_ui_domain_prefix: str | None
    groups: tuple[str, ...]
    point_in_time_recovery: bool
    # The fan-out worker's Lambda timeout: the queue's visibility timeout is a multiple of it.
    worker_timeout: int = 60
    # The WebSocket stage's route throttling: (burst limit, rate limit in requests a second).
    route_throttling: tuple[int, float] = DEFAULT_ROUTE_THROTTLING

    def route_settings(self) -> dict[str, int | float]:
        """``DefaultRouteSettings`` for the stage (UpdateStage, and the template's Stage resource)."""
        burst, rate = self.route_throttling
        return {"ThrottlingBurstLimit": burst, "ThrottlingRateLimit": rate}

    @property
    def fanout_queue_name(self) -> str:
        return f"{self.app_name}-{self.stage}-fanout"

    @property
    def fanout_dlq_name(self) -> str:
        return f"{self.app_name}-{self.stage}-fanout-dlq"

    @property
    def stack_name(self) -> str:
        return f"{self.app_name}-{self.stage}-resources"

    @property
    def table_name(self) -> str:
        return f"{self.app_name}-{self.stage}-connections"

    @property
    def user_pool_name(self) -> str:
        return f"{self.app_name}-{self.stage}"

    def domain_prefix(self, account_id: str) -> str:
        return self.hosted_ui_domain_prefix or f"wsauth-{self.stage}-{account_id}"


@dataclass
class ProjectConfig:
    """``.chalice/config.json`` of one project directory."""

    project_dir: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, project_dir: Path) -> "ProjectConfig":
        path = project_dir / CONFIG_RELATIVE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeployError(f"{path} not found: run from the project directory") from None
        except ValueError as error:
            raise DeployError(f"{path} is not valid JSON: {error}") from None
        return cls(project_dir=project_dir, data=data)

    @property
    def path(self) -> Path:
        return self.project_dir / CONFIG_RELATIVE

    @property
    def app_name(self) -> str:
        return str(self.data["app_name"])

    def stage_names(self) -> list[str]:
        return sorted((self.data.get("stages") or {}).keys())

    def stage(self, stage: str) -> dict[str, Any]:
        stages = self.data.get("stages") or {}
        if stage not in stages:
            raise UnknownStage(stage, self.stage_names())
        return stages[stage]

    def environment(self, stage: str) -> dict[str, str]:
        """The stage's runtime env vars as Chalice merges them (stage over top level)."""
        env = dict(self.data.get("environment_variables") or {})
        env.update(self.stage(stage).get("environment_variables") or {})
        return {key: str(value) for key, value in env.items()}

    def api_gateway_stage(self, stage: str) -> str:
        return str(self.stage(stage).get("api_gateway_stage") or self.data.get("api_gateway_stage") or "api")

    def policy_file(self, stage: str) -> Path:
        name = self.stage(stage).get("iam_policy_file")
        if not name or self.stage(stage).get("autogen_policy", True):
            raise DeployError(f"stage {stage!r} must set \"autogen_policy\": false and \"iam_policy_file\"")
        return self.project_dir / ".chalice" / str(name)

    def function_policy_name(self, stage: str, function: str) -> str | None:
        """The ``iam_policy_file`` ``lambda_functions.<function>`` names, if any."""
        functions = self.stage(stage).get("lambda_functions") or {}
        name = (functions.get(function) or {}).get("iam_policy_file")
        return str(name) if name else None

    def kind_policy_name(self, stage: str, kind: str, first_function: str | None) -> str:
        """One kind's policy file: the one ``first_function`` names, else ``policy-<stage>-<kind>.json``.

        One file per kind (``authorizer``, ``push``, ``schedule``...): a file named
        by hand for the kind's first (or usual) function is kept for the whole kind.
        """
        named = self.function_policy_name(stage, first_function) if first_function else None
        return named or f"policy-{stage}-{kind}.json"

    def function_timeout(self, stage: str, function: str) -> int:
        """A function's ``lambda_timeout`` as Chalice deploys it (Chalice's own lookup), else its default.

        The same ``chalice.config.Config`` lookup as ``devtools.gateway.appload``,
        so the queue's visibility timeout follows the timeout Chalice gives the worker.
        """
        self.stage(stage)  # an unknown stage is an error, not Chalice's defaults
        config = Config(chalice_stage=stage, function_name=function, config_from_disk=self.data)
        return int(config.lambda_timeout or DEFAULT_LAMBDA_TIMEOUT)

    def assign_policy_files(self, stage: str, files: Mapping[str, str]) -> bool:
        """Point ``lambda_functions.<name>.iam_policy_file`` at ``files[name]``; True if the file changed.

        Other settings of each function (memory, timeout...) are kept.
        """
        functions = self.stage(stage).setdefault("lambda_functions", {})
        changed = False
        for function, filename in files.items():
            entry = functions.setdefault(function, {})
            if entry.get("iam_policy_file") != filename:
                entry["iam_policy_file"] = filename
                changed = True
        if changed:
            self.save()
        return changed

    def resources(self, stage: str) -> StageResources:
        settings = self.stage(stage).get("stage_resources") or {}
        return StageResources(
            app_name=self.app_name,
            stage=stage,
            callback_urls=tuple(settings.get("callback_urls") or ()),
            logout_urls=tuple(settings.get("logout_urls") or ()),
            hosted_ui_domain_prefix=settings.get("hosted_ui_domain_prefix"),
            groups=tuple(settings.get("groups") or ()),
            point_in_time_recovery=bool(settings.get("point_in_time_recovery", stage == "prod")),
            worker_timeout=self.function_timeout(stage, "fanout_worker"),
            route_throttling=_route_throttling(stage, settings.get("route_throttling")),
        )

    def record_outputs(self, stage: str, outputs: Mapping[str, str]) -> bool:
        """Write the stack outputs into the stage's env vars; True if the file changed.

        The pattern of Chalice's WebSocket tutorial (``recordresources.py``):
        the Lambdas read the ids from their environment, set per stage.
        """
        return self.record_environment(stage, {variable: outputs[output] for output, variable in OUTPUT_TO_ENV.items()
                                               if output in outputs})

    def record_environment(self, stage: str, values: Mapping[str, str]) -> bool:
        """Set these env vars of the stage; True if the file changed."""
        env = self.stage(stage).setdefault("environment_variables", {})
        changed = False
        for variable, value in values.items():
            if env.get(variable) != value:
                env[variable] = value
                changed = True
        if changed:
            self.save()
        return changed

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


def _route_throttling(stage: str, value: object) -> tuple[int, float]:
    """``stage_resources.route_throttling`` as (burst, rate); an error naming the stage when malformed."""
    if value is None:
        return DEFAULT_ROUTE_THROTTLING
    if not isinstance(value, dict) or set(value) != {"burst_limit", "rate_limit"}:
        raise DeployError(f'stage {stage!r}: route_throttling must be {{"burst_limit": N, "rate_limit": N}}')
    burst, rate = value["burst_limit"], value["rate_limit"]
    if not (isinstance(burst, int) and not isinstance(burst, bool) and 0 <= burst <= 5000):
        raise DeployError(f"stage {stage!r}: route_throttling.burst_limit must be an integer from 0 to 5000")
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate <= 10000):
        raise DeployError(f"stage {stage!r}: route_throttling.rate_limit must be a number from 0 to 10000")
    return burst, float(rate)
