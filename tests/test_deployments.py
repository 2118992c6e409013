"""The deployments under deployments/: the same Definitions with each dagster.yaml, Postgres storage on a
real Postgres 15 server, and the Kubernetes Jobs dagster-k8s builds for a scoring run and step."""

import json
import shutil
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

from batch_assets.definitions import build_definitions
from batch_assets.k8s import K8S_CONFIG_TAG, SCORING_K8S_CONFIG, executor_config
from batch_assets.predictions import MODEL_VERSION_TAG, risk_scores
from batch_assets.settings import Settings
from tests.servers import postgres15

REPO = Path(__file__).resolve().parent.parent
DEPLOYMENTS = REPO / "deployments"
IMAGE = "registry.example.com/batch-assets:0.1.0"
PG_SECRET = "pg-password-not-to-be-seen"


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
    local = build_definitions(Settings.from_env())
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
    assert docker.resources["lake"].uri == "s3://batch-assets/lake" and local.resources["lake"].uri == ""
    config = executor_config(risk_scores.op.name, gpu=True)
    assert process_config(k8s_job_executor.config_schema.config_type, config).success
    # secrets are bound as EnvVar: the definitions hold the variable's name, not its value
    assert "s3-secret-not-to-be-seen" not in repr(k8s.resources)


def test_local_dagster_yaml_loads(tmp_path):
    instance = dg.DagsterInstance.from_config(str(instance_dir(tmp_path, "local")))
    try:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    finally:
        instance.dispose()


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
    instance = dg.DagsterInstance.from_config(str(instance_dir(tmp_path, "docker")))
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


def env_from(container: dict) -> set[str]:
    return {e.get("secretRef", e.get("configMapRef", {})).get("name") for e in container.get("envFrom", [])}


def test_scoring_step_and_run_jobs_are_valid_kubernetes_manifests(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_ASSETS_EXECUTOR", "k8s")
    monkeypatch.setenv("BATCH_ASSETS_K8S_SCORING_GPU", "1")
    settings = Settings.from_env()
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

        # the scoring step: what k8s_job_executor's step handler merges (launcher, executor config, the
        # asset's dagster-k8s/config op tag, the per-step override) and builds with construct_dagster_k8s_job
        assert json.loads(risk_scores.op.tags[K8S_CONFIG_TAG]) == SCORING_K8S_CONFIG
        exec_cfg = executor_config(risk_scores.op.name, gpu=True)
        context = (
            K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
            .merge(
                K8sContainerContext(
                    run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(exec_cfg["step_k8s_config"])
                )
            )
            .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(risk_scores.op.tags)))
            .merge(
                K8sContainerContext(
                    run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                        exec_cfg["per_step_k8s_config"][risk_scores.op.name]
                    )
                )
            )
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
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
        assert pod["nodeSelector"] == {"batch-assets/pool": "gpu"}
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert step["spec"]["template"]["metadata"]["labels"]["batch-assets/step"] == "scoring"
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
