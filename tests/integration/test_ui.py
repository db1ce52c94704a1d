"""`driftgate ui` serves Dagster and MLflow over one home, and Ctrl-C stops both cleanly."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_ui_serves_both_and_stops_on_ctrl_c(tmp_path):
    dagster_port, mlflow_port = free_port(), free_port()
    driftgate = Path(sys.executable).parent / "driftgate"
    process = subprocess.Popen(
        [
            str(driftgate),
            "ui",
            "--home",
            str(tmp_path),
            "--dagster-port",
            str(dagster_port),
            "--mlflow-port",
            str(mlflow_port),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1", "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    try:
        deadline = time.monotonic() + 120
        urls = [
            f"http://127.0.0.1:{dagster_port}/server_info",
            f"http://127.0.0.1:{mlflow_port}/health",
        ]
        while not all(answers(u) for u in urls):
            assert process.poll() is None, "driftgate ui exited before both servers answered"
            assert time.monotonic() < deadline, "servers did not answer within 120 s"
            time.sleep(1)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert port_closed(dagster_port) and port_closed(mlflow_port)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
