"""The Makefile's targets install what they need on a fresh clone, and no more (``make -n`` on a copy)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.builders import ROOT

SERVICES = ("npm install", "ensure_java.sh", "ensure_chromium.sh")


def _dry_run(tmp_path: Path, *target: str) -> str:
    """What ``make -n TARGET`` would run in a fresh clone: no .venv, no node_modules, no stamps."""
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "package.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    done = subprocess.run(["make", "-n", *target], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("target", [("deploy", "STAGE=dev"), ("deploy-local",), ("delete", "STAGE=dev"), ("package", "STAGE=prod"),
                                    ("token", "USER=alice"), ("local",), ("web", "STAGE=dev")])
def test_deploy_and_client_targets_install_the_virtualenv_only(tmp_path: Path, target: tuple[str, ...]) -> None:
    planned = _dry_run(tmp_path, *target)
    assert "pip install" in planned and "-r requirements-dev.txt" in planned
    assert not [step for step in SERVICES if step in planned], planned


@pytest.mark.parametrize("target, needed", [("run", SERVICES[:2]), ("test", SERVICES), ("bench", SERVICES[:2])])
def test_targets_that_run_local_services_install_them(tmp_path: Path, target: str,
                                                      needed: tuple[str, ...]) -> None:
    planned = _dry_run(tmp_path, target)
    assert all(step in planned for step in needed), planned


def test_token_field_prints_what_a_shell_can_use() -> None:
    from devtools.token import render

    tokens = {"access_token": "a.b.c", "id_token": "d.e'f"}
    assert render(tokens, "access") == "a.b.c" and render(tokens, "id") == "d.e'f"
    assert render(tokens, "export") == "export TOKEN=a.b.c\nexport ID_TOKEN='d.e'\"'\"'f'"
    assert render(tokens, "json") == '{"access_token": "a.b.c", "id_token": "d.e\'f"}'
