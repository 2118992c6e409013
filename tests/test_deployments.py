"""The deployments under deployments/: the same Definitions with each dagster.yaml, Postgres storage on a
real Postgres 15 server, and the Kubernetes Jobs dagster-k8s builds for a scoring run and step.

Every table is a Delta table in the lake (``BATCH_ASSETS_LAKE_URI``, on S3 at scale) and writers of different
partitions commit concurrently, so no deployment serialises writers: the only pool is ``scoring``, which
sizes parallel scoring, and none is limited to 1."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster._config import process_config
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.launcher import LaunchRunContext
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from batch_assets.datasets import demo_spec
from batch_assets.definitions import build_definitions
from batch_assets.k8s import K8S_CONFIG_TAG, SCORING_K8S_CONFIG, executor_config
from batch_assets.predictions import MODEL_VERSION_TAG, SCORING_POOL, build_scored_asset
from batch_assets.settings import Settings
from batch_assets.storage.lake import Lake
from tests.servers import postgres15

risk_scores = build_scored_asset(demo_spec())

REPO = Path(__file__).resolve().parent.parent
DEPLOYMENTS = REPO / "deployments"
IMAGE = "registry.example.com/batch-assets:0.1.0"
PG_SECRET = "pg-password-not-to-be-seen"
DAGSTER_YAMLS = sorted(DEPLOYMENTS.glob("*/dagster.yaml"))


def instance_dir(tmp_path: Path, name: str) -> Path:
    home = tmp_path / f"dagster-{name}"
    home.mkdir()
    shutil.copyfile(DEPLOYMENTS / name / "dagster.yaml", home / "dagster.yaml")
    return home


def definitions_shape(defs: dg.Definitions):
    repo = defs.get_repository_def()
    return (
        sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
        sorted(j.name for j in repo.get_all_jobs()),
        sorted(s.name for s in repo.sensor_defs),
        sorted(s.name for s in repo.schedule_defs),
        sorted(repo.get_top_level_resources()),
    )


K8S_ENV = {
    "BATCH_ASSETS_EXECUTOR": "k8s",
    "BATCH_ASSETS_REGISTRY_URI": "s3://batch-assets/registry",
    "BATCH_ASSETS_LANDING_URI": "s3://batch-assets/landing",
    "BATCH_ASSETS_LAKE_URI": "s3://batch-assets/lake",
    "BATCH_ASSETS_S3_ENDPOINT": "http://127.0.0.1:9",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "s3-secret-not-to-be-seen",
}


def test_same_definitions_in_local_docker_and_k8s(monkeypatch):
    local_settings = Settings.from_env()
    local = build_definitions(local_settings)
    for var, value in K8S_ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("BATCH_ASSETS_EXECUTOR", "in_process")
    docker = build_definitions(Settings.from_env())
    monkeypatch.setenv("BATCH_ASSETS_EXECUTOR", "k8s")
    k8s = build_definitions(Settings.from_env())
    assert definitions_shape(local) == definitions_shape(docker) == definitions_shape(k8s)
    executors = [
        d.get_repository_def().get_job("score_daily").executor_def.name for d in (local, docker, k8s)
    ]
    assert executors == ["in_process", "in_process", "k8s"]
    assert local.resources["model_registry"].root.endswith("/registry")
    assert k8s.resources["model_registry"].root == "s3://batch-assets/registry"
    # every table lives in the lake: a folder under BATCH_ASSETS_HOME by default, S3 at scale
    assert local.resources["warehouse"].lake_uri == str(local_settings.home / "lake")
    for defs in (docker, k8s):
        assert defs.resources["warehouse"].lake_uri == "s3://batch-assets/lake"
    config = executor_config(risk_scores.op.name, gpu=True)
    assert process_config(k8s_job_executor.config_schema.config_type, config).success
    # docs/deployment.md: `max_concurrent` caps the step pods of one run
    assert process_config(k8s_job_executor.config_schema.config_type, {**config, "max_concurrent": 4}).success
    # secrets are bound as EnvVar: the definitions hold the variable's name, not its value
    assert "s3-secret-not-to-be-seen" not in repr(k8s.resources)


def test_local_dagster_yaml_loads(tmp_path):
    instance = dg.DagsterInstance.from_config(str(instance_dir(tmp_path, "local")))
    try:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.nux_enabled is False  # no "Join the community" pop-up over the first UI page
    finally:
        instance.dispose()


def test_the_only_pool_is_scoring_on_the_predictions_assets(monkeypatch):
    """Checks and the other assets are in no pool; every scored dataset's predictions are in `scoring`."""
    monkeypatch.setenv("BATCH_ASSETS_SPECS", str(REPO / "batch_assets" / "specs" / "examples"))
    repo = build_definitions(Settings.from_env()).get_repository_def()
    pools: dict[str | None, set[str]] = {}
    for job in repo.get_all_jobs():
        for op in job.graph.iterate_op_defs():
            pools.setdefault(op.pool, set()).add(op.name)
    assert set(pools) <= {None, SCORING_POOL}
    assert risk_scores.op.pool == SCORING_POOL
    assert pools[SCORING_POOL] == {"predictions__risk_scores", "predictions__failure_scores"}
    assert not any("check" in name or "summary" in name for name in pools[SCORING_POOL])


def pool_and_run_limits(path: Path) -> tuple[int, int]:
    concurrency = yaml.safe_load(path.read_text())["concurrency"]
    assert set(concurrency["pools"]) == {"default_limit"}, f"{path}: only the default limit is set"
    return concurrency["pools"]["default_limit"], concurrency["runs"]["max_concurrent_runs"]


@pytest.mark.parametrize("path", DAGSTER_YAMLS, ids=lambda p: p.parent.name)
def test_no_deployment_limits_a_pool_to_one_writer(path):
    """The pool limit is how many partitions are scored at once, never a single-writer lock."""
    pools, runs = pool_and_run_limits(path)
    assert pools > 1 and runs > 1, f"{path}: pool limit {pools}, run limit {runs}"
    text = path.read_text()
    assert not re.search(r"limit:\s*1\b", text), f"{path} still limits something to 1"
    assert "dagster instance concurrency set scoring" in text, f"{path}: say how to override the limit"


def test_deployment_files_name_no_single_writer_storage():
    """The DuckDB file, its writer pool and the home-made Parquet export are gone from every deployment."""
    stale = ("duckdb_warehouse", "warehouse.duckdb", "_current.json", "batch-assets-lake/v1", "ReadWriteMany")
    for path in sorted(p for p in DEPLOYMENTS.rglob("*") if p.is_file()):
        text = path.read_text()
        for word in stale:
            assert word not in text, f"{path.relative_to(REPO)} mentions {word}"
    assert [p.parent.name for p in DAGSTER_YAMLS] == ["docker", "k8s", "local"]


@pytest.fixture(scope="module")
def postgres():
    with postgres15() as pg:
        yield pg


@pytest.fixture
def pg_env(postgres, monkeypatch):
    for var, key in {
        "DAGSTER_PG_HOST": "host",
        "DAGSTER_PG_PORT": "port",
        "DAGSTER_PG_USER": "user",
        "DAGSTER_PG_DB": "db",
    }.items():
        monkeypatch.setenv(var, postgres[key])
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", PG_SECRET)  # trust auth ignores it; it must still not leak
    monkeypatch.setenv("DAGSTER_K8S_JOB_NAMESPACE", "batch")
    return postgres


@pytest.mark.slow
def test_postgres_storage_materializes_a_partition_and_ticks_the_sensor(
    pg_env, tmp_path, landing, registered_model
):
    home = instance_dir(tmp_path, "docker")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        defs = build_definitions(landing)
        day = "2026-09-01"
        result = defs.resolve_job_def("daily_pipeline").execute_in_process(
            instance=instance,
            partition_key=day,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        assert result.success
        mat = instance.get_latest_materialization_event(risk_scores.key).asset_materialization
        assert mat.partition == day
        # the partition is one Delta commit of the lake, with the run's provenance in its metadata
        (write,) = Lake(landing.lake_location).history("predictions.risk_scores", day)
        assert write.metadata["run_id"] == result.run_id and write.metadata["model_version"] == "1"
        # the scoring step took its slot from the `scoring` pool, sized by dagster.yaml's default limit;
        # `dagster instance concurrency set scoring N` (as the deployment docs say) overrides it
        pool = instance.event_log_storage.get_concurrency_info(SCORING_POOL)
        assert (pool.limit, pool.using_default_limit, pool.claimed_slots) == (4, True, [])
        subprocess.run(
            [
                str(Path(sys.executable).parent / "dagster"),
                "instance",
                "concurrency",
                "set",
                SCORING_POOL,
                "6",
            ],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            check=True,
            capture_output=True,
        )
        pool = instance.event_log_storage.get_concurrency_info(SCORING_POOL)
        assert (pool.limit, pool.using_default_limit) == (6, False)
        # ticks of the rollout sensor, reading the run history from Postgres: a new champion gets a canary
        sensor = defs.resolve_sensor_def("risk_model_champion_rollout")

        def tick(cursor):
            resources = {"model_registry": defs.resources["model_registry"]}
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, definitions=defs, resources=resources
            ) as context:
                return sensor(context)

        first = tick(None)
        assert not first.run_requests and "already scored by version 1" in first.skip_reason.skip_message
        v2 = registered_model.register("risk_model", registered_model.get("risk_model", "1").artifact_path)
        registered_model.promote("risk_model", v2.version)
        canary = tick(first.cursor)
        assert [(r.run_key, r.partition_key) for r in canary.run_requests] == [(f"2:{day}", day)]
        assert canary.run_requests[0].tags[MODEL_VERSION_TAG] == "2"
        # the password is read from the environment, never stored
        runs = instance.get_run_records()
        blob = json.dumps([[r.dagster_run.run_config, r.dagster_run.tags] for r in runs], default=str)
        blob += "".join(str(e) for r in runs for e in instance.all_logs(r.dagster_run.run_id))
        assert PG_SECRET not in blob
    finally:
        instance.dispose()


@pytest.mark.slow
def test_k8s_dagster_yaml_loads_and_configures_the_run_launcher(pg_env, tmp_path):
    home = instance_dir(tmp_path, "k8s")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        launcher_data = yaml.safe_load((home / "dagster.yaml").read_text())["run_launcher"]
        assert launcher_data["class"] == "K8sRunLauncher"
        result = process_config(K8sRunLauncher.config_type(), launcher_data["config"])
        assert result.success, result.errors
        assert result.value["job_namespace"] == "batch"
    finally:
        instance.dispose()


class CaptureBatchApi:
    """Stands in for kubernetes' BatchV1Api: records the Jobs instead of creating them."""

    def __init__(self):
        self.jobs = []

    def create_namespaced_job(self, body, namespace, **_):
        self.jobs.append((namespace, body))


def offline_launcher(tmp_path: Path) -> tuple[K8sRunLauncher, CaptureBatchApi]:
    """The K8sRunLauncher of deployments/k8s/dagster.yaml, with a kubeconfig that is parsed, never used."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config = yaml.safe_load((DEPLOYMENTS / "k8s" / "dagster.yaml").read_text())["run_launcher"]["config"]
    config = {**config, "job_namespace": "batch", "load_incluster_config": False}
    api = CaptureBatchApi()
    launcher = K8sRunLauncher(
        **config,
        job_image=IMAGE,
        kubeconfig_file=str(kubeconfig),
        k8s_client_batch_api=api,
    )
    return launcher, api


def to_manifest(job) -> dict:
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    kubernetes_validate.validate(manifest, "1.33", strict=True)
    return manifest


def claims(job_manifest: dict) -> list[str]:
    """The PersistentVolumeClaims a Job's pod mounts (dagster-k8s itself mounts only ConfigMaps)."""
    volumes = job_manifest["spec"]["template"]["spec"].get("volumes", [])
    return [v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v]


def env_from(container: dict) -> set[str]:
    return {e.get("secretRef", e.get("configMapRef", {})).get("name") for e in container.get("envFrom", [])}


@pytest.mark.parametrize("gpu", [True, False], ids=["gpu", "cpu"])
def test_scoring_step_and_run_jobs_are_valid_kubernetes_manifests(tmp_path, monkeypatch, gpu):
    monkeypatch.setenv("BATCH_ASSETS_EXECUTOR", "k8s")
    monkeypatch.setenv("BATCH_ASSETS_K8S_SCORING_GPU", "1" if gpu else "0")
    settings = Settings.from_env()
    assert settings.k8s_scoring_gpu is gpu
    defs = build_definitions(settings)
    launcher, api = offline_launcher(tmp_path)
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    try:
        launcher.register_instance(instance)
        # the run: K8sRunLauncher.launch_run, as the daemon would call it
        job_def = defs.resolve_job_def("score_daily")
        origin = (
            ReconstructableRepository.for_module(
                "batch_assets.definitions", "defs", working_directory=str(REPO)
            )
            .get_reconstructable_job("score_daily")
            .get_python_origin()
        )
        run = instance.create_run_for_job(
            job_def=job_def, job_code_origin=origin, tags={"dagster/partition": "2026-09-14"}
        )
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        namespace, run_job = api.jobs[-1]
        assert namespace == "batch"
        run_manifest = to_manifest(run_job)
        run_container = run_manifest["spec"]["template"]["spec"]["containers"][0]
        assert run_container["image"] == IMAGE
        assert env_from(run_container) == {"batch-assets-env", "batch-assets-s3", "batch-assets-postgres"}
        assert run_container["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
        assert run_manifest["spec"]["backoffLimit"] == 0
        # no shared state volume: every pod reaches the lake on S3 through the batch-assets-env settings
        assert claims(run_manifest) == []

        # the scoring step: what k8s_job_executor's step handler merges (launcher, executor config, the
        # asset's dagster-k8s/config op tag, the per-step override) and builds with construct_dagster_k8s_job
        assert json.loads(risk_scores.op.tags[K8S_CONFIG_TAG]) == SCORING_K8S_CONFIG
        assert risk_scores.op.pool == SCORING_POOL  # the pool sizes how many of these pods run at once
        exec_cfg = executor_config(risk_scores.op.name, gpu=settings.k8s_scoring_gpu)
        assert ("per_step_k8s_config" in exec_cfg) is gpu
        context = (
            K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
            .merge(
                K8sContainerContext(
                    run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(exec_cfg["step_k8s_config"])
                )
            )
            .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(risk_scores.op.tags)))
        )
        for op_name, override in exec_cfg.get("per_step_k8s_config", {}).items():
            assert op_name == risk_scores.op.name
            context = context.merge(
                K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(override))
            )
        step_job = construct_dagster_k8s_job(
            job_config=context.get_k8s_job_config(IMAGE, launcher),
            args=["dagster", "api", "execute_step"],
            job_name="dagster-step-scoring",
            pod_name="dagster-step-scoring",
            component="step_worker",
            user_defined_k8s_config=context.run_k8s_config,
            labels={"dagster/job": "score_daily", "dagster/op": "predictions__risk_scores"},
            env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": "predictions__risk_scores"}],
        )
        step = to_manifest(step_job)
        pod = step["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == IMAGE
        assert env_from(container) == {"batch-assets-env", "batch-assets-s3", "batch-assets-postgres"}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["BATCH_ASSETS_TORCH_THREADS"] == "4"
        assert step["spec"]["template"]["metadata"]["labels"]["batch-assets/step"] == "scoring"
        assert step["spec"]["backoffLimit"] == 0
        assert claims(step) == []
        if gpu:
            assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
            assert pod["nodeSelector"] == {"batch-assets/pool": "gpu"}
            assert pod["tolerations"] == [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ]
            assert env["BATCH_ASSETS_DEVICE"] == "auto"
        else:
            assert container["resources"] == {
                "requests": {"cpu": "2", "memory": "4Gi"},
                "limits": {"cpu": "4", "memory": "8Gi"},
            }
            assert "nodeSelector" not in pod and "tolerations" not in pod
            assert "BATCH_ASSETS_DEVICE" not in env
    finally:
        instance.dispose()


# The keys of the official chart's values that deployments/k8s/values.yaml uses, from the chart's
# pydantic schema (helm/dagster/schema/schema/charts/dagster/{values.py,subschema/*.py} and
# dagster_user_deployments/subschema/user_deployments.py in dagster-io/dagster). Sections the schema
# declares with extra="forbid" are listed in full; "*" marks a free-form Kubernetes object.
CHART = {
    "global": {
        "postgresqlSecretName",
        "dagsterHome",
        "serviceAccountName",
        "celeryConfigSecretName",
        "dagsterInstanceConfigMap",
    },
    "dagster-user-deployments": {
        "enabled": None,
        "enableSubchart": None,
        "imagePullSecrets": None,
        "deployments": {
            "name",
            "image",
            "port",
            "dagsterApiGrpcArgs",
            "codeServerArgs",
            "includeConfigInLaunchedRuns",
            "env",
            "envConfigMaps",
            "envSecrets",
            "annotations",
            "nodeSelector",
            "affinity",
            "tolerations",
            "podSecurityContext",
            "securityContext",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "labels",
            "volumeMounts",
            "volumes",
            "schedulerName",
        },
    },
    "runLauncher": {
        "type": None,
        "config": {
            "k8sRunLauncher": {
                "image",
                "imagePullPolicy",
                "jobNamespace",
                "loadInclusterConfig",
                "kubeconfigFile",
                "envConfigMaps",
                "envSecrets",
                "envVars",
                "volumeMounts",
                "volumes",
                "labels",
                "failPodOnRunFailure",
                "resources",
                "schedulerName",
                "securityContext",
                "runK8sConfig",
            }
        },
    },
    "postgresql": {
        "postgresqlScheme",
        "image",
        "enabled",
        "postgresqlHost",
        "postgresqlUsername",
        "postgresqlPassword",
        "postgresqlDatabase",
        "postgresqlParams",
        "service",
    },
    "generatePostgresqlPasswordSecret": None,
    "computeLogManager": {
        "type": None,
        "config": {
            "s3ComputeLogManager": {
                "localDir",
                "prefix",
                "useSsl",
                "verify",
                "verifyCertPath",
                "endpointUrl",
                "skipEmptyFiles",
                "uploadInterval",
                "uploadExtraArgs",
                "showUrlOnly",
                "region",
                "bucket",
            }
        },
    },
    "concurrency": {
        "enabled": None,
        "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
        "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
    },
    "telemetry": {"enabled"},
}
RUN_K8S_CONFIG_KEYS = {
    "containerConfig",
    "podSpecConfig",
    "podTemplateSpecMetadata",
    "jobSpecConfig",
    "jobMetadata",
}


def unknown_keys(values, schema, path=""):
    if schema is None:
        return []
    if isinstance(values, list):
        return [k for v in values for k in unknown_keys(v, schema, path + "[]")]
    if not isinstance(values, dict):
        return []
    keys = set(schema) if isinstance(schema, (set, dict)) else set()
    bad = [f"{path}.{k}" for k in values if k not in keys]
    if isinstance(schema, dict):
        bad += [
            k
            for key, sub in schema.items()
            if key in values
            for k in unknown_keys(values[key], sub, f"{path}.{key}")
        ]
    return bad


def test_helm_values_use_only_documented_chart_keys():
    values = yaml.safe_load((DEPLOYMENTS / "k8s" / "values.yaml").read_text())
    assert unknown_keys(values, CHART) == []
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert set(launcher["config"]["k8sRunLauncher"]["runK8sConfig"]) <= RUN_K8S_CONFIG_KEYS
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "batch_assets.definitions"]
    assert {s["name"] for s in deployment["envSecrets"]} == {"batch-assets-s3"}
    # the ConfigMap the pods read their settings from is valid Kubernetes
    for doc in yaml.safe_load_all((DEPLOYMENTS / "k8s" / "config.yaml").read_text()):
        kubernetes_validate.validate(doc, "1.33", strict=True)
    cm = next(
        d
        for d in yaml.safe_load_all((DEPLOYMENTS / "k8s" / "config.yaml").read_text())
        if d["kind"] == "ConfigMap"
    )
    assert cm["data"]["BATCH_ASSETS_EXECUTOR"] == "k8s" and not any("SECRET" in k for k in cm["data"])


def test_k8s_values_put_the_lake_on_s3_and_size_parallel_scoring():
    values = yaml.safe_load((DEPLOYMENTS / "k8s" / "values.yaml").read_text())
    config_maps = {
        d["metadata"]["name"]: d["data"]
        for d in yaml.safe_load_all((DEPLOYMENTS / "k8s" / "config.yaml").read_text())
        if d["kind"] == "ConfigMap"
    }
    assert set(config_maps) == {"batch-assets-env"}  # no PersistentVolumeClaim: pods share no volume
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    k8s_yaml = yaml.safe_load((DEPLOYMENTS / "k8s" / "dagster.yaml").read_text())
    # the code server, the run pods (chart and dagster.yaml form) and so the step pods read the settings
    # from that ConfigMap; in it the lake, the registry and the landing zone are on S3
    sources = [
        [c["name"] for c in deployment["envConfigMaps"]],
        [c["name"] for c in launcher["envConfigMaps"]],
        k8s_yaml["run_launcher"]["config"]["env_config_maps"],
    ]
    for names in sources:
        env = {k: v for name in names for k, v in config_maps[name].items()}
        assert env["BATCH_ASSETS_LAKE_URI"].startswith("s3://"), names
        assert env["BATCH_ASSETS_REGISTRY_URI"].startswith("s3://")
        assert env["BATCH_ASSETS_LANDING_URI"].startswith("s3://")
        assert int(env["BATCH_ASSETS_LAKE_RETENTION_HOURS"]) > 0
    for section in (deployment, launcher):
        assert "volumes" not in section and "volumeMounts" not in section
    # the chart's concurrency settings: the scoring pool's default limit is the number of parallel scoring
    # pods (not 1), the run queue holds a backfill's runs; the same in the dagster.yaml form
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert set(concurrency["pools"]) == {"defaultLimit"} and concurrency["pools"]["defaultLimit"] > 1
    assert concurrency["pools"]["defaultLimit"] == k8s_yaml["concurrency"]["pools"]["default_limit"]
    assert concurrency["runs"]["maxConcurrentRuns"] == k8s_yaml["concurrency"]["runs"]["max_concurrent_runs"]


# a value that looks like a credential: an AWS key id, a PEM key, or a password/secret/key field holding a
# literal rather than a reference (`env:`, `${VAR:?...}`, an empty placeholder)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_FIELD = re.compile(
    r"(?i)^\s*-?\s*\"?([A-Za-z_]*(password|secret_access_key|secret_key|session_token|access_key_id|token))\"?"
    r"\s*[:=]\s*(.*)$"
)


def test_deployments_hold_no_literal_credentials():
    """Credentials reach the services through env/secret references only, never as values in a file."""
    allowed = re.compile(r"^(\$\{[A-Z_]+:\?[^}]*\}|\"\"|''|~|\[\]|\{\}|)(\s*#.*)?$")
    literal = SECRET_FIELD.match("  AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI")  # what the search must catch
    assert literal and not allowed.match(literal.group(3))
    for path in sorted(p for p in DEPLOYMENTS.rglob("*") if p.is_file()):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{n}"
            assert not AWS_KEY_ID.search(line), where
            assert "BEGIN" not in line or "PRIVATE KEY" not in line, where
            if line.lstrip().startswith("#"):
                continue
            m = SECRET_FIELD.match(line)
            if m:
                value = m.group(3).strip()
                assert allowed.match(value) or value.startswith(("env", "{env")), f"{where}: {line.strip()}"
    # the dagster.yaml files take the Postgres password from the environment
    for path in DAGSTER_YAMLS:
        storage = yaml.safe_load(path.read_text()).get("storage")
        if storage:
            assert storage["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


# -- the documentation of the deployments: every setting, no stale storage, links that resolve ------------

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SETTING = re.compile(r"\bBATCH_ASSETS_[A-Z0-9_]*[A-Z0-9]\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def settings_read_by_the_code() -> set[str]:
    sources = [*(REPO / "batch_assets").rglob("*.py"), *(REPO / "resources").rglob("*.py")]
    return {name for path in sources for name in SETTING.findall(path.read_text())}


def test_every_setting_is_documented_and_linked_from_the_readme():
    names = settings_read_by_the_code()
    assert {"BATCH_ASSETS_LAKE_URI", "BATCH_ASSETS_LAKE_RETENTION_HOURS", "BATCH_ASSETS_HOME"} <= names
    reference = (REPO / "docs" / "reference.md").read_text()
    table = reference[
        reference.index("## Settings") : reference.index("\n## ", reference.index("## Settings"))
    ]
    assert sorted(n for n in names if f"`{n}`" not in table) == []
    assert "docs/reference.md" in (REPO / "README.md").read_text()


def test_docs_name_no_removed_storage():
    gone = ("duckdb_warehouse", "scoring/lake.py", "LakeResource", "batch-assets-lake/v1")
    for path in DOCS:
        text = path.read_text()
        for word in gone:
            assert word not in text, f"{path.relative_to(REPO)} mentions {word}"
    readme = (REPO / "README.md").read_text()
    assert "batch_assets/storage/lake.py" in readme and "make demo" in readme and "make test" in readme
    assert not (REPO / "batch_assets" / "scoring" / "lake.py").exists()
    assert (REPO / "batch_assets" / "storage" / "lake.py").exists()


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return out


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_links_and_images_resolve(path):
    """Relative links (docs, screenshots, files of the repository) and their #anchors exist."""
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.relative_to(REPO)}: {target} does not exist"
        if anchor:
            assert anchor in anchors(dest.read_text()), f"{path.relative_to(REPO)}: no heading #{anchor}"


def test_runs_bind_the_same_s3_variables_as_the_shell(tmp_path, monkeypatch):
    """Temporary STS credentials and the fallback region reach the runs (as EnvVar names) exactly as they
    reach the CLI (as values): one list of variables, read in the settings module."""
    from resources import build_resources, shell_resources

    for var, value in {
        "BATCH_ASSETS_HOME": str(tmp_path),
        "BATCH_ASSETS_LAKE_URI": "s3://bucket/lake",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret-not-to-be-seen",
        "AWS_SESSION_TOKEN": "token-not-to-be-seen",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    settings = Settings.from_env()
    runs, shell = build_resources(settings), shell_resources(settings)
    for name in ("warehouse", "model_registry", "landing"):
        bound = runs[name]
        assert bound.aws_session_token == dg.EnvVar("AWS_SESSION_TOKEN"), name
        assert bound.region_name == dg.EnvVar("AWS_DEFAULT_REGION"), name
        assert (shell[name].aws_session_token, shell[name].region_name) == (
            "token-not-to-be-seen",
            "eu-west-1",
        )
    assert shell["warehouse"].storage_options()["token"] == "token-not-to-be-seen"  # delta-rs gets it
    assert "not-to-be-seen" not in repr(runs)
