"""docs/your-own-model.md's "Score your own model", run as a new user would: its files written and its
commands run, in order, by one shell in an empty folder (only the clone's path is filled in)."""

import os
import re
import subprocess
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "your-own-model.md"
SECTION = "## Score your own model"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def walkthrough_script(readme: str) -> str:
    """The section's bash blocks verbatim and its `# file: NAME` blocks as heredocs, in document order."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else None]
    lines = ["set -euo pipefail"]
    for lang, body in BLOCK.findall(section):
        first, _, rest = body.partition("\n")
        if lang == "bash":
            lines.append(body.replace("/path/to/batch-assets", str(REPO)))
        elif first.startswith("# file: "):
            name = first.removeprefix("# file: ").strip()
            lines += [
                f"mkdir -p $(dirname {name})",
                f"cat > {name} <<'WALKTHROUGH_EOF'",
                rest.rstrip("\n"),
                "WALKTHROUGH_EOF",
            ]
    return "\n".join(lines) + "\n"


def test_every_command_of_the_section_is_in_the_script():
    script = walkthrough_script(DOC.read_text())
    for command in (
        "batch-assets specs check",
        "models register pump_model",
        "rescore --dataset",
        "definitions validate",
    ):
        assert command in script
    assert "cat > specs/pumps.yaml" in script and "cat > my_model.py" in script


@pytest.mark.slow
def test_score_your_own_model_walkthrough(tmp_path):
    script = walkthrough_script(DOC.read_text())
    home = tmp_path / "home"
    env = {
        **os.environ,
        "BATCH_ASSETS_HOME": str(home),
        "PYTHONPATH": str(REPO),
    }
    for unset in ("BATCH_ASSETS_SPECS", "DAGSTER_HOME"):  # a new user's shell has neither
        env.pop(unset, None)
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "specs/pumps.yaml: ok" in out
    assert "registered pump_model version 1" in out and "registered pump_model version 2" in out
    assert "pump_scores_pipeline 2026-11-01-05:00: ok" in out
    assert "2:2026-11-01-05:00\tpartition 2026-11-01-05:00\tcanary" in out
    assert "Validation successful" in out
    with duckdb.connect() as con:
        con.register(
            "pump_scores", DeltaTable(str(home / "lake" / "predictions" / "pump_scores")).to_pyarrow_dataset()
        )
        rows = con.execute(
            "SELECT count(DISTINCT partition_date), count(*), string_agg(DISTINCT model_version) "
            "FROM pump_scores"
        ).fetchall()
    assert rows == [(6, 1800, "1")]
