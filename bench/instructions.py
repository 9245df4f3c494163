"""CPU instructions per authorizer decision, by part, counted with valgrind.

``python -m bench.instructions [--against OTHER_CHECKOUT]`` (not part of
``make bench``: it needs valgrind, ``apt-get install valgrind``, and takes
about a minute per checkout).

Why: on a shared VM the timed benchmark moves by up to 0.1x between runs of
the same build, so a change worth 0.2 us (0.01x) cannot be seen in it. An
instruction count repeats to within 0.05 % and shows such a change at once.
It is a guide, not the goal: it ignores cache misses, and the RSA step is
replaced by a stub (under valgrind OpenSSL runs without its assembly, so
that step alone would swamp everything else). What is counted is exactly
the Python-side work of a warm decision: each part runs over the same 300
distinct tokens as ``bench.authorizer``, inside ``functools.reduce``, the one
C function callgrind is told to collect in.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import table

TOKENS = 300
PARTS = ("ws_authorizer", "find_token", "verifier.verify", "build_context", "log line", "policy", "loop alone")


Item = tuple[dict[str, Any], str, dict[str, Any]]  # (authorizer event, token, its claims)
Step = Callable[[Any, Item], Any]


def _steps() -> tuple[dict[str, Step], list[Item]]:
    """Each part as a reduce step over (event, token, claims), after the same set-up as bench.authorizer."""
    from devtools.gateway.events import Api, ClientInfo, authorizer_event
    from tests.support.jwt_factory import CLIENT_ID, ISSUER, POOL_ID, JwksServer, KeyPair, TokenFactory

    key = KeyPair.generate("k1")
    server = JwksServer([key])
    os.environ.update(COGNITO_USER_POOL_ID=POOL_ID, COGNITO_APP_CLIENT_IDS=CLIENT_ID,
                      COGNITO_JWKS_URL=server.url, CONNECTIONS_TABLE="bench-connections",
                      ALLOWED_ORIGINS="http://localhost:8000", TOKEN_SOURCES="header,query,protocol,cookie")
    import app
    from chalicelib import authorizer, runtime, tokens, verifier

    verifier.rsa_sha256_verify = lambda key, signature, message: True  # see the module docstring
    factory = TokenFactory(ISSUER, CLIENT_ID, key)
    values = [factory.access_token(sub=f"user-{i}", username=f"user{i}", groups=["members"])
              if i % 2 else factory.id_token(sub=f"user-{i}", username=f"user{i}", email=f"u{i}@example.com")
              for i in range(TOKENS)]
    api = Api(stage="dev")
    events = [authorizer_event(api, ClientInfo(headers={"Authorization": f"Bearer {t}"})) for t in values]
    settings = runtime.settings()
    checker = runtime.verifier()
    claims = [checker.verify(value) for value in values]  # also fetches the JWKS: warm from here on
    server.stop()
    handler = app.ws_authorizer
    return {
        "ws_authorizer": lambda _, item: handler(item[0], None),
        "find_token": lambda _, item: tokens.find_token(item[0], settings),
        "verifier.verify": lambda _, item: checker.verify(item[1]),
        "build_context": (lambda _, item: authorizer.build_context(item[2], "header", item[0], settings, len(item[1])))
        if "token_length" in inspect.signature(authorizer.build_context).parameters  # older checkouts: without
        else (lambda _, item: authorizer.build_context(item[2], "header", item[0], settings)),
        "log line": lambda _, item: authorizer._log_allow(item[0], "header", item[2]["sub"], item[2]["token_use"]),
        "policy": lambda _, item: authorizer.policy("sub", "Allow", "arn", {}),
        "loop alone": lambda _, item: None,
    }, list(zip(events, values, claims))


def _child(part: str) -> None:
    steps, items = _steps()
    step = steps[part]
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            for item in items:  # warm: code paths specialised, caches filled
                step(None, item)
            functools.reduce(step, items, None)  # the only part callgrind collects
        finally:
            sys.stdout = stdout


def _count(part: str, checkout: str) -> int:
    """Instructions collected inside the child's functools.reduce (one pass over the tokens)."""
    # This file runs as a script, so the checkout measured need not have it.
    command = ["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce",
               "--callgrind-out-file=/dev/null", sys.executable, os.path.abspath(__file__), "--child", part]
    done = subprocess.run(command, capture_output=True, text=True, cwd=checkout, check=False,
                          env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": checkout})
    found = re.search(r"Collected : ([\d,]+)", done.stderr)
    if done.returncode != 0 or not found or found.group(1) == "0":
        raise SystemExit(f"valgrind run of {part!r} in {checkout} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def _counts(checkout: str) -> dict[str, float]:
    """Per part, instructions per decision beyond the bare reduce loop."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = dict(zip(PARTS, pool.map(lambda part: _count(part, checkout) / TOKENS, PARTS)))
    loop = totals.pop("loop alone")
    return {part: total - loop for part, total in totals.items()}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", metavar="CHECKOUT",
                        help="another checkout of this project (say a git worktree of main) to count side by side")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"instructions per warm decision over {TOKENS} tokens, RSA step stubbed, counted by callgrind", flush=True)
    counts = _counts(here)
    whole = counts["ws_authorizer"]
    if args.against is None:
        rows = [(part, f"{n:,.0f}", f"{n / whole:.0%}") for part, n in counts.items()]
        print(table(["part", "instructions", "of ws_authorizer"], rows))
        return 0
    other = _counts(os.path.abspath(args.against))
    rows = [(part, f"{other[part]:,.0f}", f"{n:,.0f}", f"{n - other[part]:+,.0f}", f"{n / other[part] - 1:+.1%}")
            for part, n in counts.items()]
    print(table(["part", args.against, "this checkout", "change", "change %"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
