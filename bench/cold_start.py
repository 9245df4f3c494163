"""2. Cold start: a fresh process importing ``app`` and making its first decision.

The JWKS is served by a real HTTP server in this (parent) process; each
sample is a new child process (``bench/cold_child.py``), alternating project
and floor so machine drift hits both alike. Two views:

* process: wall time from spawn to exit, as the parent sees it (interpreter
  start-up included - Lambda pays it too, and it is the same for both);
* in-process: from the child's first statement to its decision (imports,
  JWKS fetch, verify) - the part the project controls.

The floor process imports only ``jwt`` and ``cryptography``, fetches the
same JWKS with ``urllib`` and verifies once with ``jwt.decode``. The project
child asserts that ``boto3``/``botocore`` were never imported (a failed check,
not a missed goal). One more run with ``-X importtime`` lists what the
project's path imports, costliest first.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import PYTHON, ROOT, CheckFailed, Goal, Result, bench_env, check, median, table

SAMPLES = 12
CHILD = str(ROOT / "bench" / "cold_child.py")


def _run(mode: str, path: str, env: dict[str, str], importtime: bool = False) -> tuple[float, dict, str]:
    command = [PYTHON] + (["-X", "importtime"] if importtime else []) + [CHILD, mode, path]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    wall = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise CheckFailed(f"cold-start child ({mode}) failed:\n{done.stderr[-3000:]}")
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise CheckFailed(f"cold-start child ({mode}) printed no RESULT:\n{done.stdout[-2000:]}")
    return wall, json.loads(line[len("RESULT "):]), done.stderr


def _importtime_top(stderr: str, count: int = 12) -> list[tuple[str, float, float]]:
    """(module, self ms, cumulative ms) of the costliest imports, by cumulative time of top-level ones."""
    rows = []
    lines = stderr.splitlines()
    if "-- clock started --" in lines:
        lines = lines[lines.index("-- clock started --") + 1:]
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((name.strip(), float(self_us) / 1000, float(cumulative_us) / 1000, depth))
    top_level = [r for r in rows if r[3] <= 1]
    top_level.sort(key=lambda r: -r[2])
    return [(name, self_ms, cumulative_ms) for name, self_ms, cumulative_ms, _ in top_level[:count]]


def run(samples: int = SAMPLES) -> Result:
    from devtools.gateway.events import Api, ClientInfo, authorizer_event
    from tests.support.jwt_factory import CLIENT_ID, ISSUER, POOL_ID, JwksServer, KeyPair, TokenFactory

    key = KeyPair.generate("k1")
    token = TokenFactory(ISSUER, CLIENT_ID, key).access_token(sub="cold-user", username="cold")
    event = authorizer_event(Api(stage="dev"), ClientInfo(headers={"Authorization": f"Bearer {token}"}))
    with JwksServer([key]) as server, tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        path = str(Path(tmp) / "input.json")
        Path(path).write_text(json.dumps({"event": event, "token": token, "jwks_url": server.url,
                                          "issuer": ISSUER, "client_id": CLIENT_ID}))
        env = bench_env(COGNITO_USER_POOL_ID=POOL_ID, COGNITO_APP_CLIENT_IDS=CLIENT_ID,
                        COGNITO_JWKS_URL=server.url, CONNECTIONS_TABLE="bench-connections",
                        ALLOWED_ORIGINS="http://localhost:8000", PYTHONDONTWRITEBYTECODE="1")
        for mode in ("project", "floor"):  # warm the OS page cache and .pyc files
            _run(mode, path, env)
        walls: dict[str, list[float]] = {"project": [], "floor": []}
        inner: dict[str, list[dict]] = {"project": [], "floor": []}
        for _ in range(samples):
            for mode in ("project", "floor"):
                wall, result, _ = _run(mode, path, env)
                check(result["ok"], f"{mode} child did not verify the token")
                if mode == "project":
                    check(not result["aws"], f"the authorizer path imported {result['aws']}")
                walls[mode].append(wall)
                inner[mode].append(result)
        _, traced, stderr = _run("project", path, env, importtime=True)
        check(not traced["aws"], f"the authorizer path imported {traced['aws']}")
        hits = server.hits

    def stat(mode: str, field: str) -> float:
        return median([r[field] for r in inner[mode]])

    rows = []
    for mode, label in (("project", "project: import app + decision"), ("floor", "floor: jwt+urllib+decode")):
        rows.append((label, median(walls[mode]), stat(mode, "import_ms"), stat(mode, "decision_ms"),
                     stat(mode, "total_ms"), int(median([r["modules"] for r in inner[mode]]))))
    process_ratio = median([p / f for p, f in zip(walls["project"], walls["floor"])])
    inner_ratio = median([p["total_ms"] / f["total_ms"] for p, f in zip(inner["project"], inner["floor"])])
    result = Result("2. cold start")
    result.tables.append(f"  {samples} alternating samples per side, medians; JWKS over local HTTP "
                         f"({hits} fetches served)")
    result.tables.append(table(["process", "wall ms", "import ms", "1st decision ms", "in-process ms",
                                "modules"], rows))
    result.tables.append("  project path, costliest top-level imports on the clock (-X importtime, one run):")
    result.tables.append(table(["module", "self ms", "cumulative ms"], _importtime_top(stderr)))
    result.goals.append(Goal("cold start, process wall / floor", process_ratio, 1.5))
    result.goals.append(Goal("cold start, in-process / floor", inner_ratio, 1.5))
    result.notes.append("boto3/botocore on the authorizer path: none (checked in every sample); requests: "
                        + ("imported" if traced["requests"] else "not imported"))
    return result


if __name__ == "__main__":
    print(run().render())
