"""``make token USER=alice``: sign a user up and in against the local Cognito.

Prints ``{"id_token": ..., "access_token": ...}`` as one JSON line. For a shell:
``FIELD=access`` (or ``id``) prints that token alone, so
``TOKEN=$(make -s token USER=alice FIELD=access)`` works as it is, and
``FIELD=export`` prints ``export TOKEN=...`` and ``export ID_TOKEN=...`` lines
for ``eval "$(make -s token USER=alice FIELD=export)"``. ``GROUPS=publishers``
(comma-separated) puts the user in those pool groups first (created if
missing), so the tokens carry ``cognito:groups``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from devtools import cognito_local
from devtools.state import DEFAULT_STATE_FILE, running_state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="demo", help="user name (signed up on first use)")
    parser.add_argument("--password", default=cognito_local.DEFAULT_PASSWORD)
    parser.add_argument("--groups", default="", help="comma-separated pool groups to put the user in first")
    parser.add_argument("--field", choices=FIELDS, default="json",
                        help="json (both tokens), access or id (that token alone), export (shell lines)")
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    args = parser.parse_args(argv)
    state = running_state(args.state_file)
    pool = cognito_local.LocalPool(**state["cognito"])
    groups = [group.strip() for group in args.groups.split(",") if group.strip()]
    try:
        cognito_local.sign_up(pool, args.user, args.password)
        for group in groups:  # before signing in: the groups are claims of the token
            cognito_local.ensure_group(pool, group, args.user)
        tokens = cognito_local.sign_in(pool, args.user, args.password)
    except Exception as error:  # the CLI's last line of defence: say what failed
        print(f"error: could not get a token for {args.user!r}: {error}", file=sys.stderr)
        return 1
    print(render(tokens, args.field))
    return 0


FIELDS = ("json", "access", "id", "export")


def render(tokens: dict[str, str], field: str) -> str:
    """What ``make token`` prints for ``FIELD=``: the JSON, one token, or ``export`` lines."""
    if field == "access":
        return tokens["access_token"]
    if field == "id":
        return tokens["id_token"]
    if field == "export":
        return "\n".join(f"export {name}={shlex.quote(tokens[key])}"
                         for name, key in (("TOKEN", "access_token"), ("ID_TOKEN", "id_token")))
    return json.dumps(tokens)


if __name__ == "__main__":
    sys.exit(main())
