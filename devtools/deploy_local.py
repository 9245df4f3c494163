"""``make deploy-local STAGE=dev``: the stage deployed to MiniStack on 127.0.0.1, until Ctrl-C.

Starts MiniStack (IAM enforced, every Lambda run with its own role), runs
``make deploy``'s flow against it from a copy of the project (so the real
stage's deploy state in ``.chalice/deployed/`` is never touched), then prints
the stage's ``ws://`` and REST URLs and how to get a token from the emulator's
Cognito. ``make token USER=alice STATE_FILE=.local/deploy-local.json`` reads the
state file this writes. Ctrl-C (or SIGTERM) stops the emulator; nothing stays.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devtools.ministack import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MiniStack
from devtools.state import ROOT, clear_state, write_state

DEFAULT_PORT = 4566  # the port AWS emulators conventionally answer on
DEFAULT_STATE_FILE = ROOT / ".local" / "deploy-local.json"
REGION = "us-east-1"
# What a deploy needs of the project; the copy gets its own .chalice/deployed/.
PROJECT_FILES = ("app.py", "requirements.txt")
PROJECT_DIRS = ("chalicelib", ".chalice")


def _override(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", name):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE with an upper-case NAME")
    return name, value


def copy_project(source: Path, target: Path, stage: str, overrides: dict[str, str]) -> Path:
    """A fresh copy of the app, its code and its config (not the real stages' deploy state), with the
    stage's environment ``overrides`` written into the copy's config (the committed one is never written)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copy2(source / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "deployed", "deployments")
    for name in PROJECT_DIRS:
        shutil.copytree(source / name, target / name, ignore=ignore)
    if overrides:
        path = target / ".chalice" / "config.json"
        config = json.loads(path.read_text())
        if stage not in config.get("stages", {}):
            raise SystemExit(f"error: no stage {stage!r} in .chalice/config.json")
        config["stages"][stage].setdefault("environment_variables", {}).update(overrides)
        path.write_text(json.dumps(config, indent=2) + "\n")
    return target


def emulator_environment(endpoint_url: str) -> dict[str, str]:
    """What points every AWS client of the deploy at the emulator: MiniStack's root credentials, one region."""
    return {"AWS_ENDPOINT_URL": endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}


def guard_env(log: str | None) -> dict[str, str]:
    """What puts a process under the tests' loopback guard (``devtools/loopback_guard``); run under it, this
    command puts MiniStack and its Lambdas under it too."""
    return {"PYTHONPATH": str(ROOT / "devtools" / "loopback_guard"), "LOOPBACK_GUARD_LOG": log} if log else {}


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM ends the run like Ctrl-C: through ``finally``, so MiniStack never outlives it."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make deploy-local", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="MiniStack's port on 127.0.0.1 (0: any)")
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    parser.add_argument("--set", dest="overrides", action="append", default=[], type=_override, metavar="NAME=VALUE",
                        help="a stage environment variable for this run only (e.g. FANOUT_INLINE_MAX=2)")
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell's background job starts with it ignored
        signal.signal(signum, _interrupt)
    ministack = MiniStack(port=args.port, extra_env=guard_env(os.environ.get("LOOPBACK_GUARD_LOG")))
    try:
        print(f"==> starting MiniStack on 127.0.0.1:{ministack.port} (IAM enforced)", flush=True)
        try:
            ministack.start()
        except (RuntimeError, TimeoutError) as error:
            hint = " (make deploy-local MINISTACK_PORT=...)" if "in use" in str(error) else ""
            print(f"error: {error}{hint}", file=sys.stderr, flush=True)
            return 1
        os.environ.update(emulator_environment(ministack.endpoint_url))
        os.environ.pop("AWS_PROFILE", None)
        # Beside the state file (.local/deploy-local/<stage>/): the real stage's deploy state is never touched.
        project = copy_project(ROOT, args.state_file.resolve().with_suffix("") / args.stage, args.stage,
                               dict(args.overrides))
        for name, value in args.overrides:
            print(f"    {name}={value} for this run", flush=True)
        print(f"==> make deploy STAGE={args.stage}, from a copy of the project in {project}", flush=True)
        from devtools.deploy.errors import DeployError
        from devtools.deploy.flow import deploy

        try:
            summary = deploy(project, args.stage, lambda line: print(line, flush=True))
        except DeployError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return 1
        except Exception as error:  # botocore's and the like: say what failed, then stop the emulator
            print(f"error: deploy failed: {type(error).__name__}: {error}\n{ministack.log_tail()}",
                  file=sys.stderr, flush=True)
            return 1
        outputs = summary.outputs
        write_state({"pid": os.getpid(), "stage": args.stage, "endpoint_url": ministack.endpoint_url,
                     "websocket_url": summary.websocket_url, "rest_url": summary.rest_api_url,
                     "project_dir": str(project), "table": outputs.get("ConnectionsTableName", ""),
                     "notify_function": summary.functions.get("notify", "").rsplit(":", 1)[-1],
                     "cognito": {"endpoint_url": ministack.endpoint_url, "region": REGION,
                                 "pool_id": outputs["UserPoolId"], "client_id": outputs["UserPoolClientId"],
                                 "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}},
                    args.state_file)
        _print_next_steps(summary.websocket_url, summary.rest_api_url, summary.functions.get("notify", ""),
                          args.state_file)
        threading.Event().wait()  # until Ctrl-C or SIGTERM
        return 0
    except KeyboardInterrupt:
        print("\n==> stopping MiniStack (the deployed stage goes with it)", flush=True)
        return 0
    finally:
        ministack.stop()
        clear_state(args.state_file)


def _print_next_steps(ws_url: str, rest_url: str, notify_arn: str, state_file: Path) -> None:
    shown = state_file.relative_to(ROOT) if state_file.is_relative_to(ROOT) else state_file
    lines = [
        "",
        f"WebSocket URL  {ws_url}",
        f"REST API URL   {rest_url}",
        f"notify         {notify_arn}  (the Lambda a back-end invokes)",
        "",
        "Get a token from the emulator's Cognito and connect (in another terminal):",
        f"  TOKEN=$(make -s token USER=alice FIELD=access STATE_FILE={shown})",
        f"  npx wscat -c {ws_url} -H \"Authorization: Bearer $TOKEN\"",
        f"  curl -H \"Authorization: Bearer $TOKEN\" {rest_url}me",
        "",
        "Ctrl-C stops MiniStack; nothing of the stage stays.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
