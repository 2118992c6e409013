"""`dagster dev` with this workspace on 127.0.0.1: the code location loads and GraphQL shows the asset graph."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from batch_assets.local_runs import prepare_dagster_home
from batch_assets.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_dagster_dev_serves_the_asset_graph(tmp_path):
    settings = Settings(home=tmp_path / "home")
    prepare_dagster_home(settings)
    port = free_port()
    env = {**os.environ, "BATCH_ASSETS_HOME": str(settings.home), "DAGSTER_HOME": str(settings.dagster_home)}
    dagster = str(Path(sys.executable).parent / "dagster")
    proc = subprocess.Popen([dagster, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "dagster dev exited"
                assert time.time() < deadline, "dagster dev did not answer within 120 s"
                time.sleep(1)
        while True:  # the code location loads after the webserver answers
            data = graphql(port, "{ assetNodes { assetKey { path } groupName isObservable isPartitioned } }")
            nodes = data.get("data", {}).get("assetNodes") or []
            if nodes or time.time() > deadline:
                break
            time.sleep(1)
        got = {"/".join(n["assetKey"]["path"]): (n["groupName"], n["isObservable"], n["isPartitioned"]) for n in nodes}
        assert got == {
            "raw/transactions": ("raw", False, True),
            "features/customer_daily": ("features", False, True),
            "predictions/risk_scores": ("predictions", False, True),
            "predictions/risk_summary": ("predictions", False, True),
            "models/risk_model": ("models", True, False),
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
