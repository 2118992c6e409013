"""Real servers for the scale-out tests, on 127.0.0.1 and a free port, stopped (by PID) when done.

- :func:`moto_s3` runs moto's S3 API server (``moto_server``) from this venv.
- :func:`postgres15` runs a Postgres 15 cluster (Debian binaries) in a temporary folder as the ``postgres``
  user (``initdb`` refuses root), with trust auth on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def moto_s3(log_dir: Path) -> Iterator[str]:
    """Yields the endpoint URL of a fresh moto S3 server bound to 127.0.0.1."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.skip("moto_server is not installed (moto[server])")
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
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()  # noqa: S310 - loopback
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not start: {(log_dir / 'moto.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        yield endpoint
    finally:
        _stop(proc)
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
        pytest.skip("Postgres 15 server binaries are not installed (apt-get install postgresql-15)")
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
