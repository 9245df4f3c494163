"""Load a Chalice app and its stage configuration the way Chalice would.

The app runs in the gateway's own process, so its environment is this
process's ``os.environ``: per-function ``environment_variables`` cannot
differ between handlers here (global + stage values apply to all), unlike on
Lambda. Memory size and timeout *are* per function (they only feed the
``LambdaContext``).
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from chalice import Chalice
from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_MEMORY_SIZE, DEFAULT_LAMBDA_TIMEOUT
from chalice.local import LambdaContext

_load_counter = itertools.count(1)


class GatewayConfigError(Exception):
    """The gateway cannot serve this project as configured (bad path, missing handler...)."""


@dataclass(frozen=True)
class FunctionSettings:
    memory_size: int
    timeout_seconds: int

    def context(self, app_name: str, stage: str, function: str) -> LambdaContext:
        """A fresh Lambda context for one invocation: the deployed name, memory and timeout."""
        return LambdaContext(f"{app_name}-{stage}-{function}", memory_size=self.memory_size,
                             max_runtime_ms=self.timeout_seconds * 1000)


class ProjectConfig:
    """``.chalice/config.json`` for one stage; an absent file means Chalice defaults."""

    def __init__(self, project_dir: str, stage: str) -> None:
        self.project_dir = project_dir
        self.stage = stage
        path = os.path.join(project_dir, ".chalice", "config.json")
        self.path = path if os.path.isfile(path) else None
        self._disk: dict[str, Any] = {}
        if self.path is not None:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    self._disk = json.load(handle)
            except ValueError as error:
                raise GatewayConfigError(f"{self.path} is not valid JSON: {error}") from error
            stages = self._disk.get("stages") or {}
            if stages and stage not in stages:
                raise GatewayConfigError(
                    f"stage {stage!r} is not defined in {self.path} (stages: {sorted(stages)})"
                )

    def _config(self, function_name: str | None = None) -> Config:
        if function_name is None:
            return Config(chalice_stage=self.stage, config_from_disk=self._disk)
        return Config(
            chalice_stage=self.stage, function_name=function_name, config_from_disk=self._disk
        )

    @property
    def app_name(self) -> str | None:
        return self._disk.get("app_name")

    def environment_variables(self) -> dict[str, str]:
        """Global then stage ``environment_variables``, merged as Chalice does."""
        return {str(k): str(v) for k, v in self._config().environment_variables.items()}

    def function_settings(self, function_name: str) -> FunctionSettings:
        config = self._config(function_name)
        memory = config.lambda_memory_size or DEFAULT_LAMBDA_MEMORY_SIZE
        timeout = config.lambda_timeout or DEFAULT_LAMBDA_TIMEOUT
        return FunctionSettings(memory_size=int(memory), timeout_seconds=int(timeout))


def load_app(project_dir: str, module_name: str = "app") -> tuple[ModuleType, Chalice]:
    """Import ``<project_dir>/<module>.py`` and return it with its ``app`` object.

    The module is loaded as a fresh copy under a private name rather than as
    ``app``: another ``app`` module (the test suite's, another project's) may
    already be in ``sys.modules``, and each gateway should own its module-level
    state. ``project_dir`` goes on ``sys.path`` so the app's own imports
    (``chalicelib``...) resolve as they do under ``chalice local``.
    """
    project_dir = os.path.abspath(project_dir)
    path = os.path.join(project_dir, *module_name.split(".")) + ".py"
    if not os.path.isfile(path):
        raise GatewayConfigError(f"app module not found: {path}")
    if project_dir not in sys.path:
        sys.path.insert(0, project_dir)
    private_name = f"_gateway_app_{next(_load_counter)}_{module_name.replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(private_name, path)
    if spec is None or spec.loader is None:
        raise GatewayConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[private_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(private_name, None)
        raise
    app = getattr(module, "app", None)
    if not isinstance(app, Chalice):
        raise GatewayConfigError(f"{path} defines no Chalice object named 'app'")
    return module, app
