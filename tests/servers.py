"""Real servers for tests: `dagster dev`, a Prometheus Pushgateway, moto's S3 API and Postgres 15 on loopback,
and headless Chromium.

Each binary comes from Debian (`make test-deps` installs it when missing). A test that needs one fails with
a message saying how to install it, rather than skipping silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        pytest.fail(
            f"{name} not found: run `make test-deps` (or `apt-get install -y {package}`)", pytrace=False
        )
    return path


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group ``proc`` leads, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until_ready(url: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 30) -> None:
    """Poll ``url`` until it answers; fail with the server's log if it exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} did not start: {log.read_text(errors='replace')[-2000:]}"
                ) from None
            time.sleep(0.2)


@contextmanager
def pushgateway(log: Path) -> Iterator[str]:
    """A Pushgateway on 127.0.0.1 and a free port, without persistence; yields its URL."""
    binary = require_binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(f"{url}/-/ready", proc, log, "the Pushgateway", timeout=20)
            yield url
        finally:
            stop(proc)


def scrape(url: str, prefix: str = "batch_assets_") -> list[tuple[str, dict[str, str], float]]:
    """Samples of the metrics named ``prefix*`` that the Pushgateway at ``url`` exposes.

    The Pushgateway adds an empty ``instance`` label to groups pushed without one; it is left out here.
    """
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return [
        (s.name, {k: v for k, v in s.labels.items() if (k, v) != ("instance", "")}, s.value)
        for family in text_string_to_metric_families(text)
        if family.name.startswith(prefix)
        for s in family.samples
    ]


def chromium(url: str, *, screenshot: Path | None = None, budget_ms: int = 15000, size=(1400, 900)) -> str:
    """Render ``url`` in headless Chromium; return the DOM after ``budget_ms`` of virtual time.

    With ``screenshot`` it also saves a PNG of the window. Chromium exits by itself; a run that hangs is
    killed with its process group.
    """
    binary = require_binary("chromium", "chromium")
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    base = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}",
    ]
    try:
        dom = _run_browser([*base, "--dump-dom", url])
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            _run_browser([*base, f"--screenshot={screenshot}", url])
            assert screenshot.exists(), f"chromium wrote no screenshot of {url}"
        return dom
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _run_browser(argv: list[str], timeout: float = 90) -> str:
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        try:  # helpers (zygote, GPU process) share the group; none may outlive the browser
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return out


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        data = json.loads(resp.read())
    assert "errors" not in data, data["errors"]
    return data["data"]


@contextmanager
def dagster_dev(
    home: Path,
    dagster_home: Path,
    *,
    env: dict[str, str] | None = None,
    backfill_interval_s: float | None = None,
) -> Iterator[int]:
    """`dagster dev` (webserver and daemon) on 127.0.0.1 and a free port, in its own process group.

    It loads this repository through workspace.yaml, waits until the code location answers, and marks the
    instance's first-visit dialog as seen (``setNuxSeen``) so screenshots show the page. Yields the port;
    stops the whole process group on exit.

    ``backfill_interval_s`` shortens the backfill daemon's fixed 30 s sleep between iterations (see
    tests/daemon_interval/sitecustomize.py), so tests don't wait on it; benchmarks leave it unset.
    """
    port = free_port()
    full_env = {
        **os.environ,
        "BATCH_ASSETS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        **(env or {}),
    }
    if backfill_interval_s is not None:
        full_env["BATCH_ASSETS_TEST_DAEMON_INTERVAL_S"] = str(backfill_interval_s)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "tests" / "daemon_interval"), full_env.get("PYTHONPATH")) if p
        )
    log_path = home / "dagster-dev.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)]
            + ["-w", "workspace.yaml"],
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.time() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                    if graphql(port, "{ assetNodes { id } }")["assetNodes"]:
                        break  # the code location has loaded
                except OSError:
                    pass
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline, "dagster dev did not serve the code location within 120 s"
                time.sleep(1)
            graphql(port, "mutation { setNuxSeen }")
            yield port
        finally:
            stop(proc, timeout=30)


def browse_ui(port: int, shots: Path, day: str) -> dict[str, str]:
    """The asset graph, a partition's metadata and a check result as Chromium renders them.

    Returns each page's DOM by name and saves ``<name>.png`` under ``shots``.
    """
    base = f"http://127.0.0.1:{port}/assets/predictions/risk_scores"
    pages = {
        "asset-graph": (f"{base}?view=lineage&lineageScope=neighbors&lineageDepth=2", (1400, 900)),
        "partition-metadata": (f"{base}?view=partitions&partition={day}", (1400, 1550)),
        "check-result": (f"{base}?view=checks&checkDetail=score_drift", (1400, 1100)),
    }
    return {
        name: chromium(url, screenshot=shots / f"{name}.png", size=size)
        for name, (url, size) in pages.items()
    }


# -- scale-out servers: moto S3 and Postgres 15 --------------------------------------------------------


@contextlib.contextmanager
def moto_s3(log_dir: Path) -> Iterator[str]:
    """Yields the endpoint URL of a fresh moto S3 server bound to 127.0.0.1."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.fail("moto_server is not installed: run `make install` (moto[server] is a dev dependency)")
    port = free_port()
    log = open(log_dir / "moto.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{endpoint}/moto-api/", proc, log_dir / "moto.log", "moto_server")
        yield endpoint
    finally:
        stop(proc, timeout=10)
        log.close()


def _as_postgres(args: list[str]) -> subprocess.CompletedProcess:
    cmd = args if os.geteuid() != 0 else ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def postgres15(db_name: str = "dagster") -> Iterator[dict[str, str]]:
    """Yields host, port, user and db of a fresh Postgres 15 server; stops it and removes its files after.

    Its folder is a fresh one under the system temp dir (pytest's tmp_path is private to root, and the
    server runs as ``postgres``).
    """
    if not (PG_BIN / "initdb").exists():
        pytest.fail(
            "Postgres 15 server binaries are not installed: run `make test-deps` (apt-get install postgresql-15)"
        )
    root = Path(tempfile.mkdtemp(prefix="batch-assets-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    r = _as_postgres(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]
    )
    assert r.returncode == 0, r.stderr
    opts = f"'-h 127.0.0.1 -p {port} -k {root} -c fsync=off'"
    r = _as_postgres(
        [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", opts, "-w", "start"]
    )
    assert r.returncode == 0, r.stderr + r.stdout
    try:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db_name}"')
        con.close()
        yield {"host": "127.0.0.1", "port": str(port), "user": "postgres", "db": db_name}
    finally:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
