"""The registry, the landing zone and the lake on a real S3 API (moto's server on 127.0.0.1)."""

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from deltalake import DeltaTable

from batch_assets.core.registry import ChecksumMismatch, ModelRegistry, VersionExists
from batch_assets.definitions import build_definitions
from batch_assets.demo.data import DemoConfig, write_landing
from batch_assets.settings import Settings
from batch_assets.storage.store import S3Options, Store
from tests.conftest import lake_connection, write_artifact
from tests.servers import moto_s3

pytestmark = pytest.mark.slow

REGION = "us-east-1"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
DEMO = DemoConfig(customers=200, days=3, start=dt.date(2026, 9, 1))
DAY1, DAY2, DAY3 = (d.isoformat() for d in DEMO.dates)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with moto_s3(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def creds():
    # moto accepts any keys; unique values let the test search for them everywhere afterwards
    return {"key": f"AKIA{uuid.uuid4().hex[:16].upper()}", "secret": f"secret-{uuid.uuid4().hex}"}


@pytest.fixture
def bucket(endpoint, creds):
    name = f"ba-{uuid.uuid4().hex[:12]}"
    client = S3Resource(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds["key"],
        aws_secret_access_key=creds["secret"],
    ).get_client()
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(endpoint, creds) -> S3Options:
    return S3Options(
        endpoint_url=endpoint, region=REGION, access_key_id=creds["key"], secret_access_key=creds["secret"]
    )


def test_registry_on_s3_is_immutable_checksummed_and_logged(bucket, s3, tmp_path):
    registry = ModelRegistry(f"s3://{bucket}/models", s3)
    artifact = write_artifact(tmp_path / "a" / "model.safetensors")
    v1 = registry.register("risk_model", artifact)
    v2 = registry.register("risk_model", artifact)
    assert (v1.version, v2.version) == ("1", "2") and registry.versions("risk_model") == ["1", "2"]
    with pytest.raises(VersionExists):
        registry.register("risk_model", artifact, version="1")
    assert registry.promote("risk_model", "2") is None and registry.promote("risk_model", "1") == "2"
    assert registry.aliases("risk_model") == {"champion": "1"}
    loaded = registry.load("risk_model", registry.resolve("risk_model", "champion").version)
    assert loaded.info.sha256 == v1.sha256 and loaded.module is not None
    events = ModelRegistry(f"s3://{bucket}/models", s3).events("risk_model")  # a fresh reader
    assert [e["event"] for e in events] == ["register", "register", "promote", "promote"]
    assert events[-1]["previous"] == "2"
    store = Store(f"s3://{bucket}/models", s3)
    assert store.list_files("risk_model") == ["aliases.json"]  # events are one object each, no appends
    # an upload without its manifest (the commit marker) is not a version
    store.write_bytes("risk_model/3/model.safetensors", artifact.read_bytes())
    assert registry.versions("risk_model") == ["1", "2"]
    # a tampered artifact is refused on load
    store.write_bytes("risk_model/2/model.safetensors", artifact.read_bytes() + b"\0")
    with pytest.raises(ChecksumMismatch, match="risk_model/2"):
        registry.load("risk_model", "2")


def upload_landing(tmp_path: Path, store: Store) -> None:
    local = tmp_path / "landing-local"
    write_landing(DEMO, local)
    for f in sorted(local.rglob("*.parquet")):
        store.upload(f, f.relative_to(local).as_posix())


def test_pipeline_reads_landing_and_model_from_s3_and_writes_the_lake_on_s3(
    bucket, s3, endpoint, creds, tmp_path, monkeypatch
):
    for var, value in {
        "BATCH_ASSETS_S3_ENDPOINT": endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": creds["key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret"],
        "BATCH_ASSETS_REGISTRY_URI": f"s3://{bucket}/registry",
        "BATCH_ASSETS_LANDING_URI": f"s3://{bucket}/landing",
        "BATCH_ASSETS_LAKE_URI": f"s3://{bucket}/lake",
    }.items():
        monkeypatch.setenv(var, value)
    settings = Settings.from_env().ensure()
    landing = Store(f"s3://{bucket}/landing", s3)
    upload_landing(tmp_path, landing)
    # day 3 arrives truncated: its partition fails, naming the S3 object; days 1 and 2 are unaffected
    bad = f"transactions/event_date={DAY3}/part-0.parquet"
    landing.write_bytes(bad, landing.read_bytes(bad)[:200])
    registry = ModelRegistry(settings.registry_location, s3)
    registry.register("risk_model", write_artifact(tmp_path / "a" / "model.safetensors"))
    registry.promote("risk_model", "1")
    assert not any(settings.registry.iterdir()), "the registry must be on S3, not local"

    defs = build_definitions(settings)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:

        def run(job, key):
            return defs.resolve_job_def(job).execute_in_process(
                instance=instance, partition_key=key, run_config=QUIET, raise_on_error=False
            )

        assert run("ingest_daily", DAY1).success
        first = run("daily_pipeline", DAY2)
        assert first.success
        bad_run = run("ingest_daily", DAY3)
        assert not bad_run.success
        failure = next(e for e in bad_run.all_events if e.is_step_failure)
        assert f"s3://{bucket}/landing/{bad}" in failure.step_failure_data.error.message
        assert "not readable Parquet" in failure.step_failure_data.error.message

        # the lake itself is on S3: the tables are Delta tables that deltalake (or Spark, Trino, ...) reads
        opts = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": creds["key"],
            "AWS_SECRET_ACCESS_KEY": creds["secret"],
        }
        uri = f"s3://{bucket}/lake/predictions/risk_scores"
        day2 = dt.date.fromisoformat(DAY2)
        assert not (settings.lake / "predictions").exists(), "the lake must be on S3, not local"
        with lake_connection(settings) as con:
            stored = con.execute(
                "SELECT entity_id, score, run_id FROM predictions.risk_scores WHERE partition_date = ? "
                "ORDER BY entity_id",
                [day2],
            ).fetchall()
        table = DeltaTable(uri, storage_options=opts).to_pyarrow_table(
            filters=[("partition_date", "=", day2)]
        )
        got = sorted(
            zip(*(table.column(c).to_pylist() for c in ("entity_id", "score", "run_id")), strict=True)
        )
        assert len(stored) > 100 and got == stored and {r[2] for r in got} == {first.run_id}

        # a re-run replaces the partition in one new commit: the new run's rows only, no duplicates
        before = DeltaTable(uri, storage_options=opts).version()
        second = run("score_daily", DAY2)
        assert second.success
        t = DeltaTable(uri, storage_options=opts)
        assert t.version() == before + 1
        again = t.to_pyarrow_table(filters=[("partition_date", "=", day2)])
        assert again.num_rows == len(stored) and set(again.column("run_id").to_pylist()) == {second.run_id}
        assert t.history(1)[0]["run_id"] == second.run_id  # provenance in the commit

        # no secret in the Delta log either
        log = Store(f"s3://{bucket}/lake", s3)
        for rel in ("predictions/risk_scores/_delta_log", "predictions/dead_letters/_delta_log"):
            for name in log.list_files(rel):
                text = log.read_bytes(f"{rel}/{name}").decode("utf-8", "replace")
                assert creds["secret"] not in text and creds["key"] not in text

        assert_secret_nowhere(instance, tmp_path / "dagster", defs, creds["secret"], creds["key"])


def assert_secret_nowhere(instance, dagster_dir: Path, defs, *secrets: str) -> None:
    """No secret in run config, tags, the event log (incl. metadata and logs) or any file of the instance."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    records = instance.get_run_records()
    assert records
    texts = []
    for rec in records:
        texts.append(json.dumps(rec.dagster_run.run_config, default=str))
        texts.append(json.dumps(rec.dagster_run.tags, default=str))
        for entry in instance.all_logs(rec.dagster_run.run_id):
            texts.append(serialize_value(entry))
    # what the UI shows about the code location: resources and their config
    texts.append(serialize_value(RepositorySnap.from_def(defs.get_repository_def())))
    for path in dagster_dir.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret not in blob


def test_demo_registers_its_model_where_the_runs_read_it(bucket, s3, endpoint, creds, tmp_path):
    """With the registry on S3, ``batch-assets demo`` and ``models show`` reach it through the same resource
    the runs use: the model lands on S3 (not in the local folder) and every score names its version."""
    home = tmp_path / "state"
    env = {
        **os.environ,
        "BATCH_ASSETS_HOME": str(home),
        "BATCH_ASSETS_S3_ENDPOINT": endpoint,
        "AWS_DEFAULT_REGION": REGION,  # the fallback name, read by runs and the CLI alike
        "AWS_ACCESS_KEY_ID": creds["key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret"],
        "BATCH_ASSETS_REGISTRY_URI": f"s3://{bucket}/registry",
    }
    env.pop("DAGSTER_HOME", None)
    cli = str(Path(sys.executable).parent / "batch-assets")

    def run(*args):
        proc = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    out = run("demo", "--days", "3", "--customers", "200")
    assert "registered risk_model version 1" in out
    assert not list((home / "registry").iterdir()), "the demo registered locally, where the runs don't read"
    info = ModelRegistry(f"s3://{bucket}/registry", s3).resolve("risk_model", "champion")
    assert info.version == "1"
    assert json.loads(run("models", "show", "risk_model@champion"))["sha256"] == info.sha256
    with lake_connection(Settings(home=home)) as con:
        versions = con.execute(
            "SELECT DISTINCT model_name, model_version FROM predictions.risk_scores"
        ).fetchall()
    assert versions == [("risk_model", "1")]
