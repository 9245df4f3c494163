"""``python -m bench [names...]``: run the benchmarks (all by default), print tables and a summary.

Names: authorizer, cold_start, channel_rules, history, fanout, gateway_load, fanout_queued, fairness. Exit status 1 if a
correctness check failed (lost messages, boto3 on the authorizer path...);
a missed speed goal is printed as MISSED and does not fail the run.
"""
from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
import traceback

from bench.common import CheckFailed, Result

ORDER = ("authorizer", "cold_start", "channel_rules", "history", "fanout", "gateway_load", "fanout_queued", "fairness")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(ORDER)})")
    args = parser.parse_args(argv)
    names = args.names or list(ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(ORDER)}")
    import os

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"command: python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(), flush=True)
    results: list[Result] = []
    failures: list[str] = []
    began = time.perf_counter()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        try:
            result = module.run()
        except CheckFailed as failure:
            failures.append(f"{name}: {failure}")
            print(f"== {name} ==\n  CHECK FAILED: {failure}\n", flush=True)
            continue
        except Exception:  # noqa: BLE001 - report, keep running the others
            failures.append(f"{name}: crashed")
            print(f"== {name} ==\n  CRASHED:\n{traceback.format_exc()}", flush=True)
            continue
        result.seconds = time.perf_counter() - started
        results.append(result)
        print(result.render() + f"\n  ({result.seconds:.1f} s)\n", flush=True)
    print("== summary ==")
    for result in results:
        for goal in result.goals:
            print(goal.line())
    for failure in failures:
        print(f"  CHECK FAILED {failure}")
    print(f"  total {time.perf_counter() - began:.1f} s; "
          f"{'all correctness checks passed' if not failures else f'{len(failures)} check(s) failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
