"""Regenerate the screenshots of README.md and docs/operations.md from the project as it is.

    PYTHONPATH=. .venv/bin/python docs/screenshots.py [STATE_FOLDER]

Runs the demo (57 days, 2,000 customers: enough for the drift day 2026-10-25) into STATE_FOLDER (a temporary
folder by default; a folder that holds a demo already is reused), re-scores the drift day so it is the latest materialization and check result, serves
the project with `dagster dev` and saves what headless Chromium renders under docs/screenshots/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import browse_ui, dagster_dev  # noqa: E402

DAY = "2026-10-25"


def main() -> None:
    home = Path(
        sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="batch-assets-shots-")
    ).resolve()
    env = {**os.environ, "BATCH_ASSETS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    cli = str(Path(sys.executable).parent / "batch-assets")
    scores = home / "lake" / "predictions" / "risk_scores" / "_delta_log"
    if not scores.exists():  # an existing demo state folder is reused as it is
        subprocess.run([cli, "demo", "--days", "57", "--customers", "2000"], env=env, check=True)
    subprocess.run([cli, "materialize", DAY, "--job", "score_daily"], env=env, check=True)
    out = REPO / "docs" / "screenshots"
    with dagster_dev(home, home / "dagster_home") as port:
        browse_ui(port, out, DAY)
    print(f"screenshots in {out} (state in {home})")


if __name__ == "__main__":
    main()
