"""Test servers only: a shorter loop for Dagster's backfill daemon.

Dagster's backfill daemon sleeps a fixed 30 s between iterations (``DEFAULT_DAEMON_INTERVAL_SECONDS``, not
configurable in dagster.yaml), so a test that launches, cancels or re-executes a backfill under `dagster dev`
waits up to 30 s at each step. `tests.servers.dagster_dev(daemon_interval_s=...)` puts this folder on
PYTHONPATH with ``BATCH_ASSETS_TEST_DAEMON_INTERVAL_S`` set; Python imports this module at start-up, and in the
daemon process only (``python -m dagster._daemon run``) it sets that constant, which the backfill loop reads
on each iteration. Nothing else changes: the same daemons run the same code, only their polling is faster.
Benchmarks never set it, so their figures carry Dagster's own 30 s.
"""

import os
import sys

_interval = os.environ.get("BATCH_ASSETS_TEST_DAEMON_INTERVAL_S")
_argv = getattr(sys, "orig_argv", [])
if _interval and "dagster._daemon" in _argv:
    import dagster._daemon.controller as _controller

    _controller.DEFAULT_DAEMON_INTERVAL_SECONDS = float(_interval)
