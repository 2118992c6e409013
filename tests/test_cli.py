"""The ``batch-assets`` command through its installed entry point, against a tmp registry."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batch_assets.core.registry import ModelRegistry
from tests.conftest import make_model, write_artifact

CLI = str(Path(sys.executable).parent / "batch-assets")


def cli(*args, home: Path, check=True):
    env = {**os.environ, "BATCH_ASSETS_HOME": str(home)}
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_register_list_show_promote(home, tmp_path):
    a1 = write_artifact(tmp_path / "a1" / "model.safetensors")
    a2 = write_artifact(tmp_path / "a2" / "model.safetensors", make_model(seed=3))
    out = cli("models", "register", "risk_model", str(a1), home=home).stdout
    assert "registered risk_model version 1 sha256" in out
    assert (
        "version 2024.1"
        in cli("models", "register", "risk_model", str(a2), "--version", "2024.1", home=home).stdout
    )
    assert (
        cli("models", "promote", "risk_model", "1", "--alias", "champion", home=home).stdout.strip()
        == "risk_model@champion -> version 1"
    )
    assert "(was 1)" in cli("models", "promote", "risk_model", "2024.1", home=home).stdout

    lines = cli("models", "list", home=home).stdout.strip().splitlines()
    assert [ln.split("\t")[1] for ln in lines] == ["1", "2024.1"]
    assert lines[1].split("\t")[-1] == "champion"

    champion = json.loads(cli("models", "show", "risk_model", home=home).stdout)
    assert champion["version"] == "2024.1" and champion["aliases"] == ["champion"]
    by_alias = json.loads(cli("models", "show", "risk_model@champion", home=home).stdout)
    assert by_alias["sha256"] == champion["sha256"]
    v1 = json.loads(cli("models", "show", "risk_model/1", "--json", home=home).stdout)
    assert v1["version"] == "1" and "reference" in v1 and len(v1["inputs"]) == 15

    # the CLI wrote the registry that Dagster reads: $BATCH_ASSETS_HOME/registry
    assert ModelRegistry(home / "registry").resolve("risk_model", "champion").version == "2024.1"


def test_errors_are_one_clear_line_and_exit_2(home, tmp_path):
    a1 = write_artifact(tmp_path / "a1" / "model.safetensors")
    cli("models", "register", "risk_model", str(a1), "--version", "1", home=home)
    again = cli("models", "register", "risk_model", str(a1), "--version", "1", home=home, check=False)
    assert again.returncode == 2 and "immutable" in again.stderr and "Traceback" not in again.stderr
    missing = cli("models", "show", "risk_model@challenger", home=home, check=False)
    assert missing.returncode == 2 and "no alias or version 'challenger'" in missing.stderr
    hostile = cli("models", "register", "../evil", str(a1), home=home, check=False)
    assert hostile.returncode == 2 and "invalid model name" in hostile.stderr
    not_a_model = tmp_path / "x.safetensors"
    not_a_model.write_bytes(b"not a model")
    bad = cli("models", "register", "risk_model", str(not_a_model), home=home, check=False)
    assert bad.returncode == 2 and "not a safetensors model artifact" in bad.stderr


def test_where_prints_the_state_folder(home):
    out = cli("where", home=home).stdout
    assert str(home) in out and f"lake (Delta):    {home / 'lake'}" in out and "warehouse" not in out


def test_init_creates_the_state_folder_with_its_dagster_yaml(home):
    out = cli("init", home=home).stdout
    shipped = Path(__file__).resolve().parent.parent / "deployments" / "local" / "dagster.yaml"
    assert (home / "dagster_home" / "dagster.yaml").read_text() == shipped.read_text()
    assert all((home / d).is_dir() for d in ("registry", "landing", "dagster_home")) and str(home) in out


def test_a_failed_blocking_check_says_which_and_why(home):
    """Scoring a day that has no features stops at the blocking contract check; the command says so with the
    check's own reason and figures, not only that a check failed."""
    proc = cli("materialize", "2026-10-01", "--job", "score_daily", home=home, check=False)
    assert proc.returncode == 2
    error = proc.stderr[proc.stderr.index("error: ") :]
    assert "features/customer_daily 2026-10-01: contract failed: the feature partition is empty" in error
    assert "rows=0" in error
