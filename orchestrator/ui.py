"""`driftgate ui`: Dagster (webserver + daemon) and the MLflow UI over one DRIFTGATE_HOME.

Children run in their own sessions with default signal handlers restored (a background shell
makes them ignore SIGINT, and Dagster maps SIGTERM to SIGINT), so Ctrl-C here stops both.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.adapters.home import HomeLayout

_REPO = Path(__file__).resolve().parents[1]


def _restore_default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def commands(layout: HomeLayout, dagster_port: int, mlflow_port: int) -> list[list[str]]:
    bin_dir = Path(sys.executable).parent
    return [
        [
            str(bin_dir / "dagster"),
            "dev",
            "-w",
            str(_REPO / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(dagster_port),
        ],
        [
            str(bin_dir / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            layout.mlflow_tracking_uri,
            "--default-artifact-root",
            layout.mlflow_artifacts.as_uri(),
        ],
    ]


def environment(layout: HomeLayout) -> dict[str, str]:
    return {
        **os.environ,
        **layout.ensure().environment(),
        # One worker, no job runner: starts in seconds and leaves no orphan processes.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def stop(processes: list[subprocess.Popen], grace_seconds: float = 15.0) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def serve(layout: HomeLayout, dagster_port: int = 3000, mlflow_port: int = 5000) -> int:
    """Run both servers until Ctrl-C (or SIGTERM), or until either exits; then stop both."""
    env = environment(layout)
    processes = [
        subprocess.Popen(
            cmd, env=env, cwd=_REPO, start_new_session=True, preexec_fn=_restore_default_signals
        )
        for cmd in commands(layout, dagster_port, mlflow_port)
    ]
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.5)
    finally:
        stop(processes)
    return 0 if stopping else 1
