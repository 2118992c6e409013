"""Real helper servers for tests: a Prometheus Pushgateway on loopback, and the Chromium binary.

Each binary comes from Debian (`make test-deps` installs it when missing). A test that needs one fails with
a message saying how to install it, rather than skipping silently.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families


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
            deadline = time.time() + 20
            while True:
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1)
                    break
                except OSError:
                    assert proc.poll() is None, log.read_text()[-2000:]
                    assert time.time() < deadline, "the Pushgateway did not become ready within 20 s"
                    time.sleep(0.2)
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
