"""The ``batch-assets`` command: the model registry from the shell, and the demo.

    batch-assets models register NAME ARTIFACT [--version V] [--metadata FILE]
        [--architecture package.module:Class --reference PARQUET [--init-kwargs JSON] [--spec FILE]
         [--features a,b,...] [--exclude key,...] [--output-range LOW HIGH]]
    batch-assets models list [NAME]
    batch-assets models show NAME[@ALIAS|/VERSION] [--json]
    batch-assets models promote NAME VERSION [--alias champion]
    batch-assets demo [--days N] [--customers N] [--seed N]
    batch-assets materialize START [END] [--job daily_pipeline|ingest_daily|score_daily|check_daily|...]
    batch-assets rescore status | plan [--dataset NAME]
    batch-assets specs check [PATH ...]
    batch-assets init | where

The registry is the one Dagster reads: ``$BATCH_ASSETS_HOME/registry`` unless ``--registry`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from batch_assets.scoring import byo
from batch_assets.scoring.model_format import ArtifactError
from batch_assets.scoring.names import InvalidName, parse_partition_date
from batch_assets.scoring.registry import ModelRegistry, ModelVersion, RegistryError
from batch_assets.scoring.spec_file import SpecError
from batch_assets.settings import Settings, s3_options_from_env


def _registry(args: argparse.Namespace) -> ModelRegistry:
    """``--registry`` or ``BATCH_ASSETS_REGISTRY_URI`` (a folder or s3:// URI; S3 settings from AWS_* and
    BATCH_ASSETS_S3_ENDPOINT), else the embedded default's folder."""
    return ModelRegistry(args.registry or Settings.from_env().registry_location, s3_options_from_env())


def _parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION``."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, alias, None
    if "/" in ref:
        name, version = ref.split("/", 1)
        return name, None, version
    return ref, None, None


def _summary(info: ModelVersion, aliases: dict[str, str]) -> dict[str, Any]:
    m = info.manifest
    return {
        "name": info.name,
        "version": info.version,
        "aliases": sorted(a for a, v in aliases.items() if v == info.version),
        "sha256": info.sha256,
        "created_at": m["created_at"],
        "format": m["format"],
        "architecture": m["architecture"],
        "inputs": [f"{f['name']}:{f['dtype']}" for f in m["inputs"]],
        "output": m["output"],
        "training": m.get("training", {}),
        "reference_rows": m.get("reference", {}).get("rows"),
        "description": m.get("description", ""),
        "path": str(info.path),
    }


def cmd_register(args: argparse.Namespace) -> int:
    metadata = json.loads(Path(args.metadata).read_text()) if args.metadata else None
    artifact = Path(args.artifact)
    if not artifact.is_file():
        raise FileNotFoundError(f"artifact {artifact} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        if args.architecture or byo.detect_format(artifact) != "artifact":
            artifact = _user_artifact(args, artifact, Path(tmp) / "model.safetensors")
        info = _registry(args).register(args.name, artifact, version=args.version, metadata=metadata)
    print(f"registered {info.name} version {info.version} sha256 {info.sha256}")
    print(f"  inputs: {', '.join(info.feature_names)}")
    return 0


def _user_artifact(args: argparse.Namespace, weights: Path, out: Path) -> Path:
    """A user's state dict (+ architecture reference) checked against a reference dataset, as an artifact."""
    fmt = byo.detect_format(weights)
    if fmt in byo.REFUSED:
        raise byo.ModelImportError(f"{weights} {byo.REFUSED[fmt]}")
    if fmt == "unknown":
        raise byo.ModelImportError(f"{weights}: {byo.UNKNOWN}")
    if not args.architecture or not args.reference:
        raise byo.ModelImportError(
            f"{weights} is a {fmt.replace('_', ' ')} file, not a batch-assets artifact: pass --architecture "
            "package.module:ClassName (the nn.Module it was saved from) and --reference PARQUET (rows of the "
            "features it scores)"
        )
    features = args.features.split(",") if args.features else None
    exclude = args.exclude.split(",") if args.exclude else []
    if args.spec:
        from batch_assets.scoring.spec_file import load_spec_file

        spec = load_spec_file(Path(args.spec))
        if spec.model.name != args.name:
            raise byo.ModelImportError(
                f"--spec {args.spec} scores model {spec.model.name!r}, not {args.name!r}"
            )
        features = features or list(spec.features.columns)
        exclude = [*exclude, spec.features.key]
    try:
        init_kwargs = json.loads(args.init_kwargs) if args.init_kwargs else {}
    except json.JSONDecodeError as exc:
        raise byo.ModelImportError(f"--init-kwargs is not JSON: {exc}") from exc
    if not isinstance(init_kwargs, dict):
        raise byo.ModelImportError("--init-kwargs must be a JSON object of keyword arguments")
    return byo.build_artifact(
        weights,
        out,
        architecture=args.architecture,
        init_kwargs=init_kwargs,
        reference=Path(args.reference),
        features=features,
        exclude=exclude,
        output_range=tuple(args.output_range) if args.output_range else None,
        description=args.description or "",
    )


def cmd_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    names = [args.name] if args.name else reg.models()
    if not names:
        print(f"no models registered under {reg.root}")
    for name in names:
        aliases = reg.aliases(name)
        for version in reg.versions(name):
            info = reg.get(name, version)
            tags = ",".join(sorted(a for a, v in aliases.items() if v == version))
            print(f"{name}\t{version}\t{info.manifest['created_at']}\t{info.sha256[:12]}\t{tags}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    reg = _registry(args)
    name, alias, version = _parse_ref(args.ref)
    if version:
        info = reg.get(name, version)
    else:
        info = reg.resolve(name, alias or "champion")
    payload = info.manifest if args.json else _summary(info, reg.aliases(name))
    print(json.dumps(payload, indent=2, sort_keys=not args.json))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    previous = _registry(args).promote(args.name, args.version, args.alias)
    moved = f" (was {previous})" if previous else ""
    print(f"{args.name}@{args.alias} -> version {args.version}{moved}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from batch_assets.demo import run_demo
    from batch_assets.scoring.demo_data import DemoConfig

    settings = Settings.from_env()
    cfg = DemoConfig(seed=args.seed, customers=args.customers, days=args.days)
    result = run_demo(settings, cfg)
    print()
    print(
        f"done: {len(result.days)} days ({result.days[0]}..{result.days[-1]}) scored by risk_model "
        f"version {result.model_version}: {result.predictions:,} predictions, {result.dead_letters} dead letters"
    )
    _print_where(settings)
    print("open the UI:       make ui   (dagster dev on http://127.0.0.1:3000)")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from batch_assets.definitions import build_definitions
    from batch_assets.local_runs import open_instance, run_partitions
    from partitions import daily_partitions

    settings = Settings.from_env()
    defs = build_definitions(settings)
    jobs = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
    if args.job not in jobs:
        print(f"error: no job {args.job!r}; jobs: {', '.join(jobs)}", file=sys.stderr)
        return 2
    partitions_def = defs.resolve_job_def(args.job).partitions_def or daily_partitions
    if partitions_def is daily_partitions:
        start = parse_partition_date(args.start).isoformat()
        end = parse_partition_date(args.end or args.start).isoformat()
    else:
        start, end = args.start, args.end or args.start
        for key in {start, end}:
            if not partitions_def.has_partition_key(key):
                print(f"error: {key!r} is not a partition of {args.job}", file=sys.stderr)
                return 2
    keys = [k for k in partitions_def.get_partition_keys() if start <= k <= end]
    if not keys:
        print(
            f"error: no partitions between {start} and {end} (partitions start at "
            f"{partitions_def.get_first_partition_key()} and end at the last closed one)",
            file=sys.stderr,
        )
        return 2
    with open_instance(settings) as instance:
        run_partitions(defs, instance, args.job, keys, say=print)
    return 0


def cmd_specs_check(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from batch_assets.datasets import build_dataset, load_datasets

    settings = Settings.from_env()
    locations = [Path(p).resolve() for p in args.paths] or list(settings.spec_locations)
    if not locations:
        print("error: name spec files or folders, or set BATCH_ASSETS_SPECS", file=sys.stderr)
        return 2
    for dataset in load_datasets(locations):
        built = build_dataset(dataset, window=None, max_per_tick=1)
        spec = dataset.spec
        print(f"{dataset.path}: ok")
        print(
            f"  partitions: {dataset.file.partitioning.type} from {spec.partitions_def.get_first_partition_key()}"
        )
        print(f"  assets:     {', '.join(a.key.to_user_string() for a in built['assets'])}")
        checks = sorted(f"{c.check_key.asset_key.path[-1]}:{c.check_key.name}" for c in built["asset_checks"])
        print(f"  checks:     {', '.join(checks)}")
        print(f"  jobs:       {', '.join(j.name for j in built['jobs'])}")
        print(f"  sensor:     {built['sensors'][0].name}")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from batch_assets import rescore
    from batch_assets.local_runs import open_instance

    settings = Settings.from_env()
    spec = rescore.dataset_spec(settings, args.dataset)
    with open_instance(settings) as instance:
        if args.rescore_command == "status":
            rescore.status(settings, instance, say=print, spec=spec)
        else:
            rescore.plan(settings, instance, say=print, spec=spec)
    return 0


def _print_where(settings: Settings) -> None:
    print(f"state folder:      {settings.home}   (BATCH_ASSETS_HOME)")
    print(f"  warehouse:       {settings.warehouse}")
    print(f"  model registry:  {settings.registry_location}")
    print(f"  landing files:   {settings.landing_location}")
    if settings.lake_uri:
        print(f"  lake (Parquet):  {settings.lake_uri}")
    print(f"  dagster home:    {settings.dagster_home}")


def cmd_where(args: argparse.Namespace) -> int:
    _print_where(Settings.from_env())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from batch_assets.local_runs import prepare_dagster_home

    settings = Settings.from_env()
    prepare_dagster_home(settings)
    _print_where(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-assets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="the model registry")
    models.add_argument(
        "--registry",
        help="registry root, a folder or s3://bucket/prefix (default: $BATCH_ASSETS_REGISTRY_URI, else $BATCH_ASSETS_HOME/registry)",
    )
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("register", help="register an artifact as a new immutable version")
    p.add_argument("name")
    p.add_argument(
        "artifact",
        help="a batch-assets artifact, or your model's weights: a weights_only state dict (.pt) or .safetensors",
    )
    p.add_argument("--version", help="version id (default: the next integer)")
    p.add_argument("--metadata", help="JSON file of extra manifest fields (reference, training, description)")
    p.add_argument("--architecture", help="your nn.Module class, package.module:ClassName (importable)")
    p.add_argument("--init-kwargs", help="JSON object of the class's constructor arguments")
    p.add_argument(
        "--reference", help="Parquet file or folder of reference feature rows (inputs, drift reference)"
    )
    p.add_argument(
        "--spec", help="a scored-dataset spec: its feature columns are the inputs, its key is excluded"
    )
    p.add_argument("--features", help="comma-separated input features in the model's order")
    p.add_argument("--exclude", help="comma-separated reference columns that are not features (keys)")
    p.add_argument("--output-range", nargs=2, type=float, metavar=("LOW", "HIGH"), help="valid score range")
    p.add_argument("--description", help="a line about this version")
    p.set_defaults(func=cmd_register)
    p = msub.add_parser("list", help="versions, checksums and aliases")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("show", help="one version: NAME (champion), NAME@ALIAS or NAME/VERSION")
    p.add_argument("ref")
    p.add_argument("--json", action="store_true", help="the whole manifest, reference statistics included")
    p.set_defaults(func=cmd_show)
    p = msub.add_parser("promote", help="point an alias at a version")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--alias", default="champion")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("demo", help="generate demo data, train and register a model, score every day")
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("materialize", help="run a job for one day or a range of days, one run per day")
    p.add_argument("start", help="first day, YYYY-MM-DD")
    p.add_argument("end", nargs="?", help="last day (default: the first)")
    p.add_argument(
        "--job",
        default="daily_pipeline",
        help="daily_pipeline, ingest_daily, score_daily, check_daily, or a spec's <name>_pipeline / score_<name>",
    )
    p.set_defaults(func=cmd_materialize)
    rescore = sub.add_parser("rescore", help="re-scoring after a model promotion")
    rescore.add_argument("--dataset", help="a scored dataset of BATCH_ASSETS_SPECS (default: the demo's)")
    rsub = rescore.add_subparsers(dest="rescore_command", required=True)
    rsub.add_parser("status", help="partitions by the model version that scored them").set_defaults(
        func=cmd_rescore
    )
    rsub.add_parser(
        "plan", help="what the rollout sensor would request now (run keys), launching nothing"
    ).set_defaults(func=cmd_rescore)
    specs = sub.add_parser("specs", help="scored-dataset spec files")
    ssub = specs.add_subparsers(dest="specs_command", required=True)
    p = ssub.add_parser("check", help="load spec files and list what each builds")
    p.add_argument("paths", nargs="*", help="spec files or folders (default: BATCH_ASSETS_SPECS)")
    p.set_defaults(func=cmd_specs_check)
    p = sub.add_parser("where", help="print where the state lives")
    p.set_defaults(func=cmd_where)
    p = sub.add_parser("init", help="create the state folder and its dagster.yaml")
    p.set_defaults(func=cmd_init)
    return parser


def _quiet_dagster() -> None:
    """Beta/preview notices are for the code author, not for someone running the demo."""
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        RegistryError,
        ArtifactError,
        InvalidName,
        SpecError,
        FileNotFoundError,
        json.JSONDecodeError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from batch_assets.local_runs import RunFailed

        if not isinstance(exc, RunFailed):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
