"""The ``batch-assets`` command: the model registry from the shell, and the demo.

    batch-assets models register NAME ARTIFACT [--version V] [--metadata FILE]
        [--architecture package.module:Class --reference PARQUET [--init-kwargs JSON] [--spec FILE]
         [--features a,b,...] [--exclude key,...] [--output-range LOW HIGH]]
    batch-assets models list [NAME]
    batch-assets models show NAME[@ALIAS|/VERSION] [--json]
    batch-assets models promote NAME VERSION [--alias champion]
    batch-assets demo [--days N] [--customers N] [--seed N]
    batch-assets materialize START [END] [--job daily_pipeline|ingest_daily|score_daily|check_daily|...]
    batch-assets rescore status | plan | cancel | resume [--dataset NAME]
    batch-assets specs check [PATH ...]
    batch-assets history DATASET [PARTITION] [--json]
    batch-assets query "SQL" [--as-of VERSION|TIMESTAMP] [--table schema.table ...] [--format table|csv|json]
    batch-assets vacuum [--retention-hours N] [--apply]
    batch-assets init | where

The registry is the one Dagster reads: ``$BATCH_ASSETS_HOME/registry`` unless ``--registry`` says otherwise.
The lake is the one the runs write: ``$BATCH_ASSETS_HOME/lake`` unless ``BATCH_ASSETS_LAKE_URI`` says
otherwise (S3 credentials from the shell's AWS_* variables and BATCH_ASSETS_S3_ENDPOINT). A DATASET is a
table ``schema.table`` or a scored dataset's name (``risk_scores``: its predictions and its dead letters).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import decimal
import json
import math
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_assets.core import byo
from batch_assets.core.model_format import ArtifactError
from batch_assets.core.names import InvalidName, check_table, parse_partition_date
from batch_assets.core.registry import ModelRegistry, ModelVersion, RegistryError
from batch_assets.core.spec_file import SpecError
from batch_assets.keys import partition_value, partitions_of
from batch_assets.settings import Settings

if TYPE_CHECKING:
    import duckdb

    from batch_assets.core.spec_file import SpecFile
    from batch_assets.storage.lake import Lake, Write
    from resources.warehouse import WarehouseResource


class CommandError(Exception):
    """A command cannot do what was asked; the message says why in one line (exit code 2)."""


def _registry(args: argparse.Namespace) -> ModelRegistry:
    """``--registry`` or ``BATCH_ASSETS_REGISTRY_URI`` (a folder or s3:// URI; S3 settings from AWS_* and
    BATCH_ASSETS_S3_ENDPOINT), else the embedded default's folder: through the resource the runs use."""
    from resources import shell_resources

    settings = Settings.from_env()
    if args.registry:
        settings = dataclasses.replace(settings, registry_uri=args.registry)
    if not settings.registry_location.startswith("s3://"):
        Path(settings.registry_location).mkdir(parents=True, exist_ok=True)
    return shell_resources(settings)["model_registry"].get_registry()


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
        from batch_assets.core.spec_file import load_spec_file

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
    from batch_assets.demo.data import DemoConfig
    from batch_assets.demo.run import run_demo

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
    jobs = sorted(  # the partitioned jobs; models are observed by `batch-assets models observe`
        j.name
        for j in defs.resolve_all_job_defs()
        if not j.name.startswith("__") and j.name != "observe_models"
    )
    if args.job not in jobs:
        print(
            f"error: no job {args.job!r}; jobs: {', '.join(jobs)} (a spec file's jobs appear when "
            "BATCH_ASSETS_SPECS names it)",
            file=sys.stderr,
        )
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


def cmd_observe(args: argparse.Namespace) -> int:
    _quiet_dagster()
    import dagster as dg

    from batch_assets.definitions import build_definitions
    from batch_assets.local_runs import QUIET, failure_detail, open_instance

    settings = Settings.from_env()
    defs = build_definitions(settings)
    with open_instance(settings) as instance:
        result = defs.resolve_job_def("observe_models").execute_in_process(
            instance=instance, run_config=QUIET, raise_on_error=False
        )
        if not result.success:
            raise CommandError(f"observing the models failed: {failure_detail(result)}")
        for event in result.all_events:
            if event.event_type == dg.DagsterEventType.ASSET_OBSERVATION:
                observation = event.asset_observation_data.asset_observation
                md = observation.metadata
                print(
                    f"{observation.asset_key.to_user_string()}: version {md['model_version'].value} "
                    f"(sha256 {md['model_sha256'].value[:12]}), {md['partitions_behind'].value} partitions behind"
                )
    return 0


def cmd_specs_check(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from batch_assets.datasets import build_dataset, load_datasets

    settings = Settings.from_env()
    locations = [Path(p).resolve() for p in args.paths] or list(settings.spec_locations)
    if not locations:
        print("error: name spec files or folders, or set BATCH_ASSETS_SPECS", file=sys.stderr)
        return 2
    for spec in load_datasets(locations):
        built = build_dataset(spec, window=None, max_per_tick=1)
        print(f"{spec.source}: ok")
        print(f"  partitions: {spec.partitioning.type} from {partitions_of(spec).get_first_partition_key()}")
        print(f"  assets:     {', '.join(a.key.to_user_string() for a in built.assets or [])}")
        checks = sorted(
            f"{k.asset_key.path[-1]}:{k.name}" for c in built.asset_checks or [] for k in c.check_keys
        )
        print(f"  checks:     {', '.join(checks)}")
        print(f"  jobs:       {', '.join(j.name for j in built.jobs or [])}")
        print(f"  sensor:     {next(iter(built.sensors or [])).name}")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    _quiet_dagster()
    from batch_assets import rescore
    from batch_assets.local_runs import open_instance

    settings = Settings.from_env()
    spec = rescore.dataset_spec(settings, args.dataset)
    with open_instance(settings) as instance:
        command = {
            "status": rescore.status,
            "plan": rescore.plan,
            "cancel": rescore.cancel,
            "resume": rescore.resume,
        }[args.rescore_command]
        try:
            command(settings, instance, say=print, spec=spec)
        except rescore.RescoreError as exc:
            raise CommandError(str(exc)) from exc
    return 0


def _print_where(settings: Settings) -> None:
    print(f"state folder:      {settings.home}   (BATCH_ASSETS_HOME)")
    lake_from = "   (BATCH_ASSETS_LAKE_URI)" if settings.lake_uri else ""
    print(f"  lake (Delta):    {settings.lake_location}{lake_from}")
    print(f"  model registry:  {settings.registry_location}")
    print(f"  landing files:   {settings.landing_location}")
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


# -- the lake: history, query, vacuum ----------------------------------------------------------------


def _warehouse(settings: Settings) -> WarehouseResource:
    """The warehouse resource the runs use, with S3 credentials from this shell's environment."""
    _quiet_dagster()
    from resources import shell_resources

    return shell_resources(settings)["warehouse"]


def _when(ts: dt.datetime) -> str:
    """A commit time as ISO 8601 UTC to the millisecond (the log's precision), usable as ``--as-of``."""
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _partition_literal(text: str, spec: SpecFile | None = None) -> str:
    """The partition a Delta commit records (``2026-10-12``, ``2026-10-02 03:00:00``) for a partition
    argument: a dataset's partition key, a day ``YYYY-MM-DD`` or an ISO timestamp (naive UTC)."""
    from batch_assets.storage.lake import partition_literal

    first: Exception | None = None
    if spec is not None:
        try:
            return partition_literal(partition_value(spec, text))
        except (InvalidName, ValueError) as exc:
            first = exc
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return partition_literal(parse_partition_date(text))
    try:
        return partition_literal(dt.datetime.fromisoformat(text))
    except ValueError:
        pass
    if first is not None:
        raise first
    raise InvalidName(f"invalid partition {text!r}: expected YYYY-MM-DD or an ISO timestamp")


def _require_table(lake: Lake, table: str, what: str | None = None) -> None:
    if not lake.exists(table):
        raise CommandError(
            f"{what or table} was never written: no Delta table at {lake.uri(table)}"
            + (f" ({table})" if what else "")
        )


def _write_record(w: Write) -> dict[str, Any]:
    """One commit of one table, with its recorded provenance (None where the commit recorded none)."""
    meta = w.metadata
    return {
        "table": w.table,
        "version": w.version,
        "time": _when(w.timestamp),
        "operation": w.operation,
        "partition": w.partition,
        "run_id": meta.get("run_id"),
        "model_name": meta.get("model_name"),
        "model_version": meta.get("model_version"),
        "model_sha256": meta.get("model_sha256") or None,
        "rows_added": w.rows_added,
        "rows_removed": w.rows_removed,
        "dead_letters": _int_or_none(meta.get("dead_letters")),
        "rows_read": _int_or_none(meta.get("rows_read")),
        "rows_scored": _int_or_none(meta.get("rows_scored")),
        "input_sha256": meta.get("input_sha256") or None,
        "metadata": dict(meta),
    }


def table_history(lake: Lake, table: str, partition: str | None = None) -> list[dict[str, Any]]:
    """Every partition write of ``table`` (of ``partition`` only, if given), newest first."""
    _require_table(lake, table)
    writes = [w for w in lake.history(table, partition) if w.partition is not None]
    writes.sort(key=lambda w: (w.timestamp, w.version), reverse=True)
    return [_write_record(w) for w in writes]


def dataset_history(lake: Lake, spec: SpecFile, partition: str | None = None) -> list[dict[str, Any]]:
    """Every write of a scored dataset's partitions, newest first: each predictions commit joined with the
    dead-letters commit that closed it (same run, same partition, the first one after it).

    A predictions commit that no dead-letters commit closed (a crash between the two, or a write still in
    progress) is listed with ``complete: false``; so is a dead-letters commit whose predictions commit the
    log no longer holds.
    """
    _require_table(lake, spec.output.table, f"dataset {spec.name}")
    preds = [w for w in lake.history(spec.output.table, partition) if w.partition is not None]
    deads = []
    if lake.exists(spec.output.dead_letter_table):
        deads = [
            w
            for w in lake.history(spec.output.dead_letter_table, partition)
            if w.partition is not None and w.metadata.get("closes") == spec.output.table
        ]
    # oldest first, a predictions commit before a dead-letters commit of the same millisecond
    events = sorted(
        [(w.timestamp, 0, w) for w in preds] + [(w.timestamp, 1, w) for w in deads], key=lambda e: e[:2]
    )
    pending: dict[tuple[str | None, str | None], list[Write]] = {}
    pairs: list[tuple[Write | None, Write | None]] = []
    for _, kind, w in events:
        key = (w.metadata.get("run_id"), w.partition)
        if kind == 0:
            pending.setdefault(key, []).append(w)
            continue
        waiting = pending.get(key)
        pairs.append((waiting.pop() if waiting else None, w))
    pairs.extend((w, None) for waiting in pending.values() for w in waiting)

    def commit(w: Write | None) -> dict[str, Any] | None:
        if w is None:
            return None
        return {
            "table": w.table,
            "version": w.version,
            "time": _when(w.timestamp),
            "rows_added": w.rows_added,
        }

    out = []
    for pred, dead in pairs:
        last = dead or pred
        assert last is not None
        meta = {**(pred.metadata if pred else {}), **(dead.metadata if dead else {})}
        dead_letters = None
        if dead is not None:
            recorded = _int_or_none(meta.get("dead_letters"))
            dead_letters = dead.rows_added if recorded is None else recorded
        out.append(
            {
                "dataset": spec.name,
                "partition": last.partition,
                "time": _when(last.timestamp),
                "run_id": meta.get("run_id"),
                "model_name": meta.get("model_name"),
                "model_version": meta.get("model_version"),
                "model_sha256": meta.get("model_sha256") or None,
                "rows_written": pred.rows_added if pred else None,
                "dead_letters": dead_letters,
                "rows_read": _int_or_none(meta.get("rows_read")),
                "input_sha256": meta.get("input_sha256") or None,
                "complete": pred is not None and dead is not None,
                "commits": {"predictions": commit(pred), "dead_letters": commit(dead)},
                "_sort": (last.timestamp, 1 if dead else 0),
            }
        )
    out.sort(key=lambda r: r.pop("_sort"), reverse=True)
    return out


def _short(value: str | None, n: int = 12) -> str:
    return value[:n] if value else "-"


def _model(r: dict[str, Any]) -> str:
    if not r["model_name"]:
        return "-"
    sha = f" ({r['model_sha256'][:12]})" if r["model_sha256"] else ""
    return f"{r['model_name']}/{r['model_version']}{sha}"


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def cmd_history(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    lake = _warehouse(settings).lake()
    name = args.dataset
    if "." in name:
        check_table(name)
        partition = _partition_literal(args.partition) if args.partition else None
        rows = table_history(lake, name, partition)
        title = f"history of {name}"
        headers = ["WHEN (UTC)", "VERSION", "PARTITION", "RUN", "MODEL", "ROWS", "DEAD", "INPUT SHA256"]
        table = [
            [
                r["time"],
                r["version"],
                r["partition"],
                _short(r["run_id"], 8),
                _model(r),
                _text(r["rows_added"]),
                _text(r["dead_letters"]),
                _short(r["input_sha256"]),
            ]
            for r in rows
        ]
        legend = ["ROWS: rows the commit added; DEAD and INPUT SHA256 where the commit recorded them"]
    else:
        from batch_assets.rescore import dataset_spec

        spec = dataset_spec(settings, name)
        partition = _partition_literal(args.partition, spec) if args.partition else None
        rows = dataset_history(lake, spec, partition)
        title = f"history of {spec.name} ({spec.output.table} + {spec.output.dead_letter_table})"
        headers = ["WHEN (UTC)", "VERSIONS", "PARTITION", "RUN", "MODEL", "ROWS", "DEAD", "INPUT SHA256", ""]
        table = [
            [
                r["time"],
                "/".join(_text(c and c["version"]) for c in r["commits"].values()),
                r["partition"],
                _short(r["run_id"], 8),
                _model(r),
                _text(r["rows_written"]),
                _text(r["dead_letters"]),
                _short(r["input_sha256"]),
                ""
                if r["complete"]
                else (
                    "INCOMPLETE: no dead-letters commit"
                    if r["commits"]["dead_letters"] is None
                    else "predictions commit not in the log"
                ),
            ]
            for r in rows
        ]
        legend = [
            f"VERSIONS: the version of {spec.output.table} / of {spec.output.dead_letter_table} each write committed",
            "ROWS: predictions written; DEAD: dead letters; WHEN: the write's last commit (use it as query --as-of)",
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    where = f", partition {partition}" if partition else ""
    if not rows:
        print(f"{title}{where}: no writes")
        return 0
    print(f"{title}{where}, newest first:")
    _print_columns(headers, table, right={1, 5, 6})
    for line in legend:
        print(line)
    print("RUN: the Dagster run id's first 8 characters (--json: full ids and checksums)")
    return 0


def _print_columns(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: Iterable[int] = ()
) -> None:
    """``rows`` under ``headers`` in aligned columns (those in ``right`` right-aligned), a rule between."""
    cells = [[str(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    right = set(right)

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))


# -- query --------------------------------------------------------------------------------------


QUERY_HELP = """\
Run SQL over every lake table (registered in DuckDB as views schema.table, read-only) and print the result.

--as-of reads tables as they were:
  TIMESTAMP  ISO 8601 (2026-10-13T08:00:00Z, 2026-10-13; no zone = UTC): the latest version of each table
             committed at or before that time. A time printed by `batch-assets history` reads the table as
             that write left it.
  VERSION    an integer: that version of the table (`batch-assets history` lists each write's version).
             Versions are counted per table, so a version applies to exactly the tables named by --table,
             or, without --table, to the one lake table the SQL reads (more than one is an error).
--as-of applies to the tables named by --table, else to every lake table the SQL reads (DuckDB's parser
finds them); every other table is read at its latest version. A table with no such version (written only
later, a version it never had, or a time older than its retained log, see `vacuum`) is an error.

Example, what was published for 2026-10-12 before its re-score:
  batch-assets history risk_scores 2026-10-12
  batch-assets query "SELECT model_version, count(*) FROM predictions.risk_scores
      WHERE partition_date = DATE '2026-10-12' GROUP BY ALL" --as-of 2026-10-13T02:00:00Z
"""


def _as_of_arg(text: str) -> int | dt.datetime:
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a table version (an integer) nor an ISO timestamp (2026-10-13T08:00:00Z)"
        ) from None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def _table_arg(text: str) -> str:
    try:
        schema, table = check_table(text)
    except InvalidName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{schema}.{table}"


def _as_of_text(as_of: int | dt.datetime) -> str:
    return "" if isinstance(as_of, int) else f" (the latest committed at or before {_when(as_of)})"


def tables_read(con: duckdb.DuckDBPyConnection, sql: str, known: Iterable[str]) -> list[str]:
    """The tables of ``known`` that ``sql`` reads, from DuckDB's own parse tree (``json_serialize_sql``,
    which takes SELECT statements only; the SQL travels as a parameter)."""
    ((tree,),) = con.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchall()
    parsed = json.loads(tree)
    if parsed.get("error"):
        raise CommandError(
            f"cannot tell which tables --as-of applies to ({_one_line(parsed.get('error_message', ''))}): "
            "name them with --table"
        )
    by_name = {t.lower(): t for t in known}
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and node.get("schema_name"):
                name = f"{node['schema_name']}.{node.get('table_name', '')}".lower()
                if name in by_name:
                    found.add(by_name[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(parsed.get("statements"))
    return sorted(found)


def _version_as_of(lake: Lake, table: str, as_of: int | dt.datetime) -> int:
    """The version of ``table`` that ``as_of`` names: the version itself, or the latest version whose commit
    time (as the log records it, the time `history` prints) is at or before the timestamp.

    A version the log does not hold is refused with what it does hold.
    """
    _require_table(lake, table)
    if isinstance(as_of, dt.datetime):
        return lake.version_at(table, as_of)
    commits = sorted(lake.history(table), key=lambda w: w.version)
    oldest, newest = commits[0], commits[-1]
    if not oldest.version <= as_of <= newest.version:
        raise CommandError(
            f"{table} has no version {as_of}: its log holds versions {oldest.version}..{newest.version}"
        )
    return as_of


def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from batch_assets.storage.warehouse import CONTRACT_TABLES

    if args.table and args.as_of is None:
        raise CommandError("--table names the tables --as-of applies to: give --as-of too")
    settings = Settings.from_env()
    warehouse = _warehouse(settings)
    lake = warehouse.lake()
    versions: dict[str, int] = {}
    with warehouse.connect() as con:
        try:
            if args.as_of is not None:
                known = {t.lower(): t for t in {*lake.tables(), *CONTRACT_TABLES}}
                named = {known.get(t.lower(), t) for t in args.table}
                targets = sorted(named) or tables_read(con, args.sql, known.values())
                if not targets:
                    raise CommandError(
                        "--as-of: the SQL reads no lake table (schema.table); name the tables with --table"
                    )
                if isinstance(args.as_of, int) and len(targets) > 1 and not args.table:
                    raise CommandError(
                        f"--as-of {args.as_of} is a version of one table, and the SQL reads {len(targets)} "
                        f"({', '.join(targets)}): name the table(s) it applies to with --table"
                    )
                for table in targets:
                    versions[table] = version = _version_as_of(lake, table, args.as_of)
                    lake.register(con, [table], as_of=version)
                    print(f"{table}: version {version}{_as_of_text(args.as_of)}", file=sys.stderr)
            rel = con.sql(args.sql)
            if rel is not None:
                _print_result(rel, args.format)
        except duckdb.Error as exc:
            message = _one_line(exc)
            gone = [t for t in versions if f"{lake.uri(t)}/" in message and "not found" in message]
            if gone:
                missing = re.search(r"location (\S+) not found", message)
                raise CommandError(
                    f"{', '.join(f'{t} version {versions[t]}' for t in gone)} can no longer be read: "
                    f"`batch-assets vacuum` deleted its data files (it keeps {settings.lake_retention_hours} h "
                    f"by default); read a later version"
                    + (f" ({missing.group(1)} not found)" if missing else f" ({message})")
                ) from exc
            raise CommandError(message) from exc
    return 0


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, without terminal colour codes."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())


def _json_value(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _print_result(rel: duckdb.DuckDBPyRelation, fmt: str) -> None:
    columns = list(rel.columns)
    if fmt in ("csv", "json"):  # streamed, a batch at a time
        reader = rel.to_arrow_reader(10_000)
        rows = (tuple(r.values()) for batch in reader for r in batch.to_pylist())
        if fmt == "csv":
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(["" if v is None else v for v in row] for row in rows)
            return
        sep = "\n  "
        sys.stdout.write("[")
        for row in rows:
            sys.stdout.write(sep + json.dumps(dict(zip(columns, map(_json_value, row), strict=True))))
            sep = ",\n  "
        sys.stdout.write("]\n" if sep == "\n  " else "\n]\n")
        return
    table = rel.fetchall()
    numeric = {
        i
        for i in range(len(columns))
        if any(isinstance(r[i], int | float | decimal.Decimal) and not isinstance(r[i], bool) for r in table)
    }
    _print_columns(columns, [["NULL" if v is None else v for v in row] for row in table], right=numeric)
    print(f"({len(table)} row{'' if len(table) == 1 else 's'})")


# -- vacuum -------------------------------------------------------------------------------------


def _hours_arg(text: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of hours (0 or more)")
    return int(text)


def cmd_vacuum(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    hours = settings.lake_retention_hours if args.retention_hours is None else args.retention_hours
    lake = _warehouse(settings).lake()
    # what a vacuum would delete, less the files an earlier vacuum deleted (delta-rs lists those again)
    files = {t: lake.existing_files(t, paths) for t, paths in lake.vacuum(hours, dry_run=True).items()}
    if not files:
        print(f"no tables under {lake.root}")
        return 0
    if args.apply and any(files.values()):
        lake.vacuum(hours, dry_run=False)
    mode = "deleted" if args.apply else "dry run, nothing deleted"
    print(f"lake {lake.root}: files no longer in any table's latest version, older than {hours} h ({mode})")
    width = max(len(t) for t in files)
    for table, paths in files.items():
        n = len(paths)
        print(
            f"  {table.ljust(width)}  {n:6d} file{'' if n == 1 else 's'}{' deleted' if args.apply and n else ''}"
        )
    total = sum(len(p) for p in files.values())
    touched = sum(1 for p in files.values() if p)
    counted = f"{total} file{'' if total == 1 else 's'} in {touched} table{'' if touched == 1 else 's'}"
    if args.apply:
        print(f"deleted {counted}; versions older than {hours} h can no longer be read with query --as-of")
    else:
        print(f"would delete {counted}; run with --apply to delete them")
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

    p = msub.add_parser(
        "observe", help="record the version behind each dataset's alias on its model asset (the UI's page)"
    )
    p.set_defaults(func=cmd_observe)

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
        "plan", help="what the rollout sensor would request now (run keys, backfills), launching nothing"
    ).set_defaults(func=cmd_rescore)
    rsub.add_parser(
        "cancel", help="stop the current rollout: cancel its backfills and canary; re-scored partitions stay"
    ).set_defaults(func=cmd_rescore)
    rsub.add_parser(
        "resume", help="go on with a cancelled rollout: only the partitions still behind are re-scored"
    ).set_defaults(func=cmd_rescore)
    specs = sub.add_parser("specs", help="scored-dataset spec files")
    ssub = specs.add_subparsers(dest="specs_command", required=True)
    p = ssub.add_parser("check", help="load spec files and list what each builds")
    p.add_argument("paths", nargs="*", help="spec files or folders (default: BATCH_ASSETS_SPECS)")
    p.set_defaults(func=cmd_specs_check)
    p = sub.add_parser(
        "history",
        help="every write of a table or a dataset's partitions, newest first, from the Delta log",
        description="Every write of PARTITION (default: every partition) from the Delta log, newest first: "
        "when (UTC), the table version, the run, the model version (sha256 prefix), the rows written, and the "
        "dead letters and input checksum where the commit recorded them. For a dataset name, each write's "
        "predictions commit and the dead-letters commit that closed it are one line.",
    )
    p.add_argument(
        "dataset",
        metavar="DATASET",
        help="a table schema.table, or a scored dataset's name (risk_scores: its predictions with its dead letters)",
    )
    p.add_argument("partition", nargs="?", metavar="PARTITION", help="a partition key, e.g. 2026-10-12")
    p.add_argument("--json", action="store_true", help="a JSON list, full run ids and checksums included")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser(
        "query",
        help="run SQL over the lake's tables, optionally as they were (--as-of)",
        description=QUERY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sql", metavar="SQL", help="DuckDB SQL; tables are schema.table (predictions.risk_scores)")
    p.add_argument(
        "--as-of",
        type=_as_of_arg,
        metavar="VERSION|TIMESTAMP",
        help="read tables as they were: a table version (an integer) or an ISO timestamp (no zone: UTC)",
    )
    p.add_argument(
        "--table",
        action="append",
        default=[],
        type=_table_arg,
        metavar="schema.table",
        help="a table --as-of applies to (repeatable; default: every lake table the SQL reads)",
    )
    p.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output (default: table)"
    )
    p.set_defaults(func=cmd_query)
    p = sub.add_parser(
        "vacuum",
        help="delete files of old table versions (a dry run unless --apply)",
        description="Delete data files that no table's latest version uses and that are older than the "
        "retention, which bounds how far back query --as-of can read. A dry run lists per table how many "
        "files would go; --apply deletes them. Keep the retention above the longest write: a file of a "
        "write still in progress is not yet in the log.",
    )
    p.add_argument(
        "--retention-hours",
        type=_hours_arg,
        metavar="N",
        help="keep files of versions from the last N hours (default: BATCH_ASSETS_LAKE_RETENTION_HOURS, 168)",
    )
    p.add_argument("--apply", action="store_true", help="delete the files (default: list them only)")
    p.set_defaults(func=cmd_vacuum)
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
    # a pipeline job mixes the scoring assets' multi-run BackfillPolicy with assets that have none; the
    # CLI runs one partition per run, so the notice (8 lines on every materialize) says nothing to a user
    warnings.filterwarnings(
        "ignore", message=r"Asset job .* materializes assets with varying BackfillPolicies"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `batch-assets history ... | head`: the reader left; stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not raise again
        return 1
    except (
        RegistryError,
        ArtifactError,
        InvalidName,
        SpecError,
        FileNotFoundError,
        json.JSONDecodeError,
        CommandError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from batch_assets.local_runs import RunFailed
        from batch_assets.storage.lake import LakeError

        if not isinstance(exc, RunFailed | LakeError):
            raise
        print(f"error: {_one_line(exc) if isinstance(exc, LakeError) else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
