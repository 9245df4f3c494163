"""Shared helpers: tables, goals, statistics, subprocess hygiene."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.processes import stop_process_group

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


class CheckFailed(AssertionError):
    """A correctness check failed (as opposed to a missed speed goal)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Goal:
    """One speed goal: ``value`` (a ratio or a rate) against ``limit``."""

    label: str
    value: float
    limit: float
    higher_is_better: bool = False
    stretch: float | None = None
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    @property
    def stretch_met(self) -> bool:
        if self.stretch is None:
            return False
        return self.value >= self.stretch if self.higher_is_better else self.value <= self.stretch

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        verdict = "MET" if self.met else "MISSED"
        if self.stretch is not None:
            verdict += f" (stretch {op} {self.stretch:g}{self.unit}: {'met' if self.stretch_met else 'not met'})"
        return f"  goal {self.label}: {self.value:.2f}{self.unit} (goal {op} {self.limit:g}{self.unit}) {verdict}"


@dataclass
class Result:
    """What one benchmark prints and hands to the summary."""

    name: str
    tables: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self) -> str:
        parts = [f"== {self.name} =="]
        parts.extend(self.tables)
        parts.extend(goal.line() for goal in self.goals)
        parts.extend(f"  {note}" for note in self.notes)
        return "\n".join(parts)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table; floats get 1-2 decimals."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  " + "  ".join("-" * w for w in widths))
    for row in body:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def bench_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the project importable, dummy AWS credentials."""
    env = dict(os.environ)
    env.setdefault("AWS_ACCESS_KEY_ID", "bench")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    env.setdefault("AWS_REGION", "us-east-1")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def start_process(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
    """A child in its own process group, text pipes, so ``stop_process`` can end all of it."""
    kwargs.setdefault("stdin", subprocess.PIPE)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("env", bench_env())
    return subprocess.Popen(list(args), text=True, start_new_session=True, cwd=str(ROOT), **kwargs)


def stop_process(process: subprocess.Popen[Any], grace: float = 15.0) -> None:
    stop_process_group(process, grace)


def stop_sink(sink: subprocess.Popen[str] | None, timeout: float = 30.0) -> None:
    """Ask a ``bench.sink`` process to QUIT (it closes its connections cleanly), then stop it."""
    if sink is None:
        return
    if sink.poll() is None and sink.stdin is not None:
        try:
            sink.stdin.write("QUIT\n")
            sink.stdin.flush()
            sink.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 - stop_process below ends it anyway
            pass
    stop_process(sink)


def read_line(process: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The first stdout line starting with ``prefix`` (others are skipped)."""
    import selectors

    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed(f"no {prefix!r} line from {process.args!r} within {timeout:.0f} s")
            if not selector.select(left):
                continue
            line = process.stdout.readline()
            if not line:
                raise CheckFailed(f"{process.args!r} exited (code {process.wait()}) before printing {prefix!r}")
            if line.startswith(prefix):
                return line.rstrip("\n")


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (soft) toward ``wanted``; returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def gateway_command(project_dir: Path | str, *, authorizer: str = "", workers: int = 32,
                    post_latency_ms: float = 0.0, overrides: dict[str, str] | None = None) -> list[str]:
    command = [PYTHON, "-m", "devtools.gateway", "--project-dir", str(project_dir), "--port", "0",
               "--authorizer", authorizer, "--workers", str(workers), "--quiet",
               "--post-latency-ms", str(post_latency_ms)]
    for name, value in (overrides or {}).items():
        command += ["--set", f"{name}={value}"]
    return command


def start_gateway(command: Sequence[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str, str]:
    """Start a gateway subprocess; returns (process, ws url, management url).

    Its stderr (warnings; shutdown noise with thousands of sockets) is shown
    only with ``BENCH_VERBOSE=1``.
    """
    stderr = None if os.environ.get("BENCH_VERBOSE") else subprocess.DEVNULL
    process = start_process(command, env=env or bench_env(), stderr=stderr)
    try:
        line = read_line(process, "Serving ", timeout=60)
    except BaseException:
        stop_process(process)
        raise
    _, ws_url, _, management_url = line.split()
    # The app logs one line per decision and per connection event: keep reading,
    # or a full pipe would stall the gateway mid-benchmark.
    threading.Thread(target=_drain, args=(process,), daemon=True).start()
    return process, ws_url, management_url


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for _ in process.stdout:
        pass


def main(run: Callable[[], "Result"]) -> None:
    """``python -m bench.<name>``: print one benchmark's table; exit 1 on a failed check."""
    try:
        print(run().render())
    except CheckFailed as failure:
        print(f"CHECK FAILED: {failure}")
        raise SystemExit(1)
