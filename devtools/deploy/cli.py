"""``python -m devtools.deploy {deploy,delete,package} --stage S [--project-dir DIR]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .errors import DeployError

ROOT = Path(__file__).resolve().parent.parent.parent


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.deploy",
                                     description="Deploy, delete or package one stage of the app.")
    parser.add_argument("command", choices=("deploy", "delete", "package"))
    parser.add_argument("--stage", required=True)
    parser.add_argument("--project-dir", type=Path, default=ROOT,
                        help="the Chalice project (default: this repository)")
    args = parser.parse_args(argv)
    project_dir = args.project_dir.resolve()
    try:
        if args.command == "deploy":
            from .flow import deploy
            deploy(project_dir, args.stage, _say)
        elif args.command == "delete":
            from .flow import delete
            delete(project_dir, args.stage, _say)
        else:
            from .package import package
            package(project_dir, args.stage, _say)
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except Exception as error:  # botocore errors and the like: say which step's call failed
        name = type(error).__name__
        print(f"error: {args.command} failed: {name}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0
