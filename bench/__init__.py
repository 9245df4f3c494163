"""Benchmarks: ``python -m bench`` (or ``make bench``) runs them all.

Each module measures one cost against its floor, side by side in the same run
(absolute times on a shared 2-core machine are noise; ratios are not), prints
a table and the ratios, and reports correctness failures (lost messages,
boto3 on the authorizer path) as ``CheckFailed``. A missed speed goal is
printed as ``MISSED`` but does not fail the run. Figures and the command that
made them are kept in ``bench/README.md``.
"""
