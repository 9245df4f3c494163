"""Where a running local stack tells other commands (``make token``, tests) about itself."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_FILE = ROOT / ".local" / "stack.json"


class StackNotRunning(RuntimeError):
    pass


def write_state(state: dict[str, Any], path: Path = DEFAULT_STATE_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def read_state(path: Path = DEFAULT_STATE_FILE) -> dict[str, Any]:
    """The running stack's state; StackNotRunning if there is none (or it died)."""
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        raise StackNotRunning(f"no local stack found ({path}); start one with `make run`") from None
    pid = state.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise StackNotRunning(f"the local stack (pid {pid}) is not running; start it with `make run`") from None
        except PermissionError:
            pass
    return state


def running_state(path: Path = DEFAULT_STATE_FILE) -> dict[str, Any]:
    """``read_state`` for a command: says why on stderr and exits 2 when no stack runs."""
    try:
        return read_state(path)
    except StackNotRunning as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def clear_state(path: Path = DEFAULT_STATE_FILE) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
