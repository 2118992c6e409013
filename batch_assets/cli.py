"""The ``batch-assets`` command: the model registry from the shell, and the demo.

    batch-assets models register NAME ARTIFACT [--version V] [--metadata FILE]
    batch-assets models list [NAME]
    batch-assets models show NAME[@ALIAS|/VERSION] [--json]
    batch-assets models promote NAME VERSION [--alias champion]
    batch-assets demo [--days N] [--customers N] [--seed N]
    batch-assets materialize START [END] [--job daily_pipeline|ingest_daily|score_daily|check_daily]
    batch-assets rescore status | plan
    batch-assets init | where

The registry is the one Dagster reads: ``$BATCH_ASSETS_HOME/registry`` unless ``--registry`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from batch_assets.scoring.model_format import ArtifactError
from batch_assets.scoring.names import InvalidName, parse_partition_date
from batch_assets.scoring.registry import ModelRegistry, ModelVersion, RegistryError
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
    info = _registry(args).register(args.name, args.artifact, version=args.version, metadata=metadata)
    print(f"registered {info.name} version {info.version} sha256 {info.sha256}")
    return 0


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

    start = parse_partition_date(args.start).isoformat()
    end = parse_partition_date(args.end or args.start).isoformat()
    keys = [k for k in daily_partitions.get_partition_keys() if start <= k <= end]
    if not keys:
        print(
            f"error: no partitions between {start} and {end} (partitions start at "
            f"{daily_partitions.get_first_partition_key()} and end yesterday)",
            file=sys.stderr,
        )
        return 2
    settings = Settings.from_env()
    with open_instance(settings) as instance:
        run_partitions(build_definitions(settings), instance, args.job, keys, say=print)
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from batch_assets import rescore
    from batch_assets.local_runs import open_instance

    settings = Settings.from_env()
    with open_instance(settings) as instance:
        if args.rescore_command == "status":
            rescore.status(settings, instance, say=print)
        else:
            rescore.plan(settings, instance, say=print)
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
    p.add_argument("artifact", help="a safetensors artifact written by batch_assets.scoring.model_format")
    p.add_argument("--version", help="version id (default: the next integer)")
    p.add_argument("--metadata", help="JSON file of extra manifest fields (reference, training, description)")
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
        choices=["daily_pipeline", "ingest_daily", "score_daily", "check_daily"],
    )
    p.set_defaults(func=cmd_materialize)
    rescore = sub.add_parser("rescore", help="re-scoring after a model promotion")
    rsub = rescore.add_subparsers(dest="rescore_command", required=True)
    rsub.add_parser("status", help="partitions by the model version that scored them").set_defaults(
        func=cmd_rescore
    )
    rsub.add_parser(
        "plan", help="what the rollout sensor would request now (run keys), launching nothing"
    ).set_defaults(func=cmd_rescore)
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
    except (RegistryError, ArtifactError, InvalidName, FileNotFoundError, json.JSONDecodeError) as exc:
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
