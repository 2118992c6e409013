"""Hostile strings through every way a name reaches a path or SQL: the CLI, the registry API, run tags,
partition keys and dataset specs. Each is refused with a clear message before it touches either, and
afterwards the registry, the warehouse and the folder around them are exactly as before."""

import datetime as dt
import os
import re
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import cli
from batch_assets.core.names import InvalidName
from batch_assets.core.registry import ModelRegistry
from batch_assets.core.spec_file import SpecError, parse_spec
from batch_assets.datasets import demo_spec
from batch_assets.predictions import MODEL_VERSION_TAG, build_scored_asset
from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import predictions_schema
from resources import build_resources
from tests.conftest import write_artifact

risk_scores = build_scored_asset(demo_spec())

HOSTILE = [
    "../pwned",
    "../../pwned",
    "/tmp/pwned",
    "x; DROP TABLE predictions.risk_scores; --",
    "x' OR '1'='1",
    'x" OR "1"="1',
    "x\nDROP",
    "x\x00y",
    "..",
    "a/b",
    "$(touch pwned)",
    "`touch pwned`",
    "risk_model%2F..%2Fpwned",
    "ｒｉｓｋ",  # fullwidth letters: not in the ASCII pattern
    "a" * 300,
    "",
]


def snapshot(root: Path) -> list[str]:
    """Every path under ``root`` with its size, to compare before and after."""
    return sorted(
        f"{p.relative_to(root)}:{p.stat().st_size if p.is_file() else '-'}" for p in root.rglob("*")
    )


def tables(settings) -> list[tuple]:
    """Every lake table with its version: a hostile string that wrote anything would add a version."""
    lake = Lake(str(settings.lake))
    return [(t, lake.table(t).version()) for t in lake.tables()]


@pytest.fixture
def world(settings, tmp_path):
    registry = ModelRegistry(settings.registry)
    artifact = write_artifact(tmp_path / "artifact" / "model.safetensors")
    registry.promote("risk_model", registry.register("risk_model", artifact).version, "champion")
    Lake(str(settings.lake)).replace_partition(  # a table in the lake that hostile input must not touch
        "predictions.risk_scores",
        predictions_schema(),
        dt.date(2026, 9, 1),
        predictions_schema().empty_table(),
    )
    return settings, registry, artifact


def unchanged(settings, tmp_path, before) -> None:
    assert snapshot(tmp_path) == before
    assert not any(p.name == "pwned" for p in Path("/tmp").iterdir())


@pytest.mark.parametrize("hostile", HOSTILE)
def test_registry_api_refuses_hostile_names_versions_and_aliases(world, tmp_path, hostile):
    settings, registry, artifact = world
    before = snapshot(tmp_path)
    calls = [
        lambda: registry.register(hostile, artifact),
        lambda: registry.register("risk_model", artifact, version=hostile),
        lambda: registry.promote("risk_model", hostile),
        lambda: registry.promote("risk_model", "1", hostile),
        lambda: registry.promote(hostile, "1"),
        lambda: registry.resolve("risk_model", hostile),
        lambda: registry.resolve(hostile, "champion"),
        lambda: registry.get("risk_model", hostile),
        lambda: registry.load("risk_model", hostile),
        lambda: registry.versions(hostile),
        lambda: registry.events(hostile),
    ]
    for call in calls:
        with pytest.raises(InvalidName):
            call()
    unchanged(settings, tmp_path, before)


@pytest.mark.parametrize("hostile", HOSTILE[:6])
def test_cli_refuses_hostile_input_in_one_line(world, tmp_path, hostile, capsys, monkeypatch):
    settings, _, artifact = world
    monkeypatch.setenv("BATCH_ASSETS_HOME", str(settings.home))
    before = snapshot(tmp_path)
    commands = [
        ["models", "register", hostile, str(artifact)],
        ["models", "register", "risk_model", str(artifact), "--version", hostile],
        ["models", "promote", "risk_model", hostile],
        ["models", "promote", "risk_model", "1", "--alias", hostile],
        ["models", "show", f"risk_model@{hostile}"],
        ["materialize", hostile],
    ]
    for argv in commands:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    unchanged(settings, tmp_path, before)


@pytest.mark.parametrize("hostile", ["../../1", "1; DROP TABLE predictions.risk_scores", "1' --", "1\n2"])
def test_a_hostile_pinned_version_tag_fails_the_run_before_any_read(world, tmp_path, instance, hostile):
    settings, _, _ = world
    before_tables = tables(settings)
    result = dg.materialize(
        [risk_scores],
        partition_key="2026-09-01",
        instance=instance,
        resources=build_resources(settings),
        tags={MODEL_VERSION_TAG: hostile},
        raise_on_error=False,
        selection=dg.AssetSelection.assets(risk_scores.key).without_checks(),
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "invalid model version" in failure.message
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)  # permanent
    assert tables(settings) == before_tables


@pytest.mark.parametrize("hostile", ["2026-09-01'; DROP TABLE x; --", "../2026-09-01", "2026-09-01\n", "*"])
def test_hostile_partition_keys_never_start_a_run(world, instance, hostile):
    settings, _, _ = world
    with pytest.raises(Exception, match="(?i)partition"):
        dg.materialize(
            [risk_scores],
            partition_key=hostile,
            instance=instance,
            resources=build_resources(settings),
            selection=dg.AssetSelection.assets(risk_scores.key).without_checks(),
        )
    assert instance.get_runs_count() == 0 or all(
        r.status != dg.DagsterRunStatus.SUCCESS for r in instance.get_runs()
    )


@pytest.mark.parametrize(
    "field",
    [
        ("name",),
        ("features", "table"),
        ("model", "name"),
        ("output", "table"),
        ("features", "key"),
        ("model", "alias"),
    ],
)
@pytest.mark.parametrize("hostile", ["x; DROP TABLE t", 'p."x"', "../x", "a b"])
def test_spec_fields_refuse_hostile_values_naming_the_field(field, hostile):
    values = {
        "name": "scores",
        "features": {
            "asset": "features/f",
            "table": "features.f",
            "key": "entity_id",
            "columns": {"x": None},
        },
        "model": {"name": "m"},
        "output": {"table": "predictions.p"},
    }
    parse_spec(values)  # valid as it is
    target = values
    for part in field[:-1]:
        target = target[part]
    target[field[-1]] = hostile
    with pytest.raises(SpecError, match=re.escape(".".join(field))):
        parse_spec(values)


def test_no_environment_leaks_into_names(monkeypatch):
    # names come from arguments and specs only; an environment variable is never interpolated
    monkeypatch.setenv("EVIL", "../pwned")
    with pytest.raises(InvalidName):
        ModelRegistry(os.devnull).get("risk_model", "$EVIL")
