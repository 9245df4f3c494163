"""Shared fixtures. Each support module owns one local service or builder."""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Chalice's websocket handlers need a region; Lambda always sets one.
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

pytest_plugins = [
    "tests.support.dynamodb",
    "tests.support.jwt_factory",
    "tests.support.management_api",
    "tests.support.stack",
    "tests.support.moto",
]
