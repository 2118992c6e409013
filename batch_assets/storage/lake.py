"""The lake: every table is a Delta Lake table under one root, and DuckDB reads them as Arrow datasets.

Layout under the root (a local folder or ``s3://bucket/prefix``)::

    <schema>/<table>/_delta_log/...             the Delta log: one JSON commit per write, checkpoints
    <schema>/<table>/<partition column>=<value>/part-*.parquet

A table named ``schema.table`` in SQL lives at ``<root>/<schema>/<table>``. Every table is partitioned by
its partition column (``partition_date``, or ``event_date`` for raw transactions), and a partition is
written by :meth:`Lake.replace_partition`: one Delta commit that replaces exactly that partition (an
overwrite with a predicate), streamed from record batches, with the write's provenance in the commit's
metadata. Writers of different partitions commit concurrently; delta-rs resolves commits with atomic
renames locally and conditional PUTs on S3, so no lock service is needed. Two writers of one partition
never leave a mix: one commit wins, and the other fails with :class:`CommitConflict`.

Readers see a partition wholly old or wholly new. DuckDB is the SQL engine, not the store:
:meth:`Lake.register` puts every table on a connection as a view over ``DeltaTable.to_pyarrow_dataset()``,
so filters on the partition column prune files, and ``as_of`` reads the tables as they were. Nothing here
needs DuckDB's ``delta`` extension, and nothing here imports Dagster.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from batch_assets.core.names import check_identifier, check_table

DELTA_LOG = "_delta_log"
PARTITION_COLUMN = "partition_date"
# The partition values a predicate may hold: a day or a window start, printed by this module from typed
# values (never from a caller's string), so the predicate text cannot carry anything else.
_PREDICATE_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d{6})?)?$")


class LakeError(Exception):
    """A table or folder under the lake root cannot be used; the message names its path."""


class CommitConflict(LakeError):
    """Another writer committed the same partition first; this write changed nothing."""


def partition_literal(value: dt.date | dt.datetime) -> str:
    """The SQL literal of a partition value in a Delta predicate: ``2026-10-02`` or ``2026-10-02 03:00:00``."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        text = value.isoformat(sep=" ")
    elif isinstance(value, dt.date):
        text = value.isoformat()
    else:
        raise TypeError(f"partition value {value!r}: expected a date or a datetime")
    if not _PREDICATE_VALUE.match(text):  # defence in depth: the isoformat of a date is always this shape
        raise ValueError(f"partition value {text!r} is not a date or timestamp")
    return text


@dataclass(frozen=True)
class Write:
    """One commit of a table, as the Delta log records it."""

    table: str
    version: int
    timestamp: dt.datetime
    operation: str
    partition: str | None
    rows_added: int | None
    rows_removed: int | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class Lake:
    """The tables under ``root``. ``storage_options`` are delta-rs's (``AWS_ENDPOINT_URL``, ...)."""

    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The tables this Lake has opened, brought up to date by reading only the commits since (a fresh open
    # replays the log from its last checkpoint: tens of ms a table, several times a partition otherwise).
    _open: dict[str, DeltaTable] = field(default_factory=dict, init=False, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", str(self.root).rstrip("/"))

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, table: str) -> str:
        schema, name = check_table(table)
        return f"{self.root}/{schema}/{name}"

    def _options(self) -> dict[str, str] | None:
        return dict(self.storage_options) or None

    # -- tables -------------------------------------------------------------------------------------

    def exists(self, table: str) -> bool:
        uri = self.uri(table)
        return uri in self._open or DeltaTable.is_deltatable(uri, storage_options=self._options())

    def table(self, table: str, as_of: int | dt.datetime | None = None) -> DeltaTable:
        """The Delta table ``table``, at its latest version or ``as_of``: a version, or a time (the latest
        version committed at or before it, see :meth:`version_at`).

        The latest version is this Lake's open table brought up to date (only the new commits are read);
        the object is shared, so a caller that needs a fixed version passes ``as_of``, which opens its own.
        """
        if isinstance(as_of, dt.datetime):
            as_of = self.version_at(table, as_of)
        uri = self.uri(table)
        if as_of is None:
            with self._lock:
                t = self._open.get(uri)
                if t is not None:
                    try:
                        t.update_incremental()
                        return t
                    except (DeltaError, OSError):  # gone or rewritten under us: open it afresh
                        del self._open[uri]
                t = self._open[uri] = self._load(table)
                return t
        t = self._load(table)
        try:
            t.load_as_version(as_of)
        except (DeltaError, ValueError, OSError) as exc:
            raise LakeError(f"{table} has no version as of {as_of}: {exc}") from exc
        return t

    def _load(self, table: str) -> DeltaTable:
        uri = self.uri(table)
        try:
            return DeltaTable(uri, storage_options=self._options())
        except TableNotFoundError as exc:
            raise LakeError(f"{uri} is not a Delta table ({table} was never written): {exc}") from exc
        except (DeltaError, OSError) as exc:
            raise LakeError(f"{uri}: the Delta log cannot be read: {exc}") from exc

    def ensure(self, table: str, schema: pa.Schema, partition_by: str = PARTITION_COLUMN) -> None:
        """Create ``table`` empty with ``schema`` if it does not exist (safe when writers race to create)."""
        if self.exists(table):
            return
        try:
            DeltaTable.create(
                self.uri(table),
                schema=schema,
                partition_by=[partition_by],
                mode="ignore",
                storage_options=self._options(),
            )
        except (CommitFailedError, DeltaError):
            if not self.exists(table):  # another process created it between the check and our commit
                raise

    def tables(self) -> list[str]:
        """Every table under the root, as ``schema.table``.

        A folder two levels down that is not a Delta table (no ``_delta_log``), or a folder whose name is
        not a valid identifier, is refused with its path: the root belongs to the lake alone.
        """
        fs, base = self._filesystem()
        found = []
        for schema_info in _dirs(fs, base):
            schema = schema_info.base_name
            if schema.startswith((".", "_")):
                continue
            for table_info in _dirs(fs, schema_info.path):
                name = table_info.base_name
                where = f"{self.root}/{schema}/{name}"
                try:
                    check_identifier(schema)
                    check_identifier(name)
                except ValueError as exc:
                    raise LakeError(f"{where}: not a lake table name ({exc})") from exc
                if fs.get_file_info(f"{table_info.path}/{DELTA_LOG}").type != pafs.FileType.Directory:
                    raise LakeError(
                        f"{where} is not a Delta table (no {DELTA_LOG}): only tables belong there"
                    )
                found.append(f"{schema}.{name}")
        return sorted(found)

    def _filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self.is_s3:
            opts = {k.lower().removeprefix("aws_"): v for k, v in self.storage_options.items()}
            endpoint = opts.get("endpoint") or opts.get("endpoint_url") or ""
            kwargs: dict[str, Any] = {}
            if endpoint:
                scheme, _, host = endpoint.partition("://")
                kwargs |= {"endpoint_override": host, "scheme": scheme}
            if opts.get("region"):
                kwargs["region"] = opts["region"]
            if opts.get("access_key_id"):
                kwargs |= {
                    "access_key": opts["access_key_id"],
                    "secret_key": opts.get("secret_access_key"),
                    "session_token": opts.get("token") or opts.get("session_token"),
                }
            return pafs.S3FileSystem(**kwargs), self.root.removeprefix("s3://")
        return pafs.LocalFileSystem(), self.root

    # -- writes -------------------------------------------------------------------------------------

    def replace_partition(
        self,
        table: str,
        schema: pa.Schema,
        value: dt.date | dt.datetime,
        data: pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch],
        metadata: Mapping[str, Any] | None = None,
        partition_by: str = PARTITION_COLUMN,
    ) -> int:
        """Replace partition ``value`` of ``table`` with ``data`` in one commit; returns the new version.

        ``data`` is streamed (a reader or an iterable of batches is never materialised here) and conformed
        to ``schema`` batch by batch. Every row must belong to the partition: Delta refuses the commit
        otherwise. ``metadata`` lands in the commit's ``commitInfo`` (``DeltaTable.history()``); its values
        are written as strings. If another writer commits the same partition while this one writes,
        :class:`CommitConflict` says which and nothing changes.
        """
        check_identifier(partition_by)
        self.ensure(table, schema, partition_by)
        literal = partition_literal(value)
        reader = conform(data, schema)
        props = CommitProperties(
            custom_metadata={"partition": literal, **{k: str(v) for k, v in (metadata or {}).items()}}
        )
        target = self.table(table)  # brought up to date: the commit's read version is the latest
        try:
            write_deltalake(
                target,
                reader,
                mode="overwrite",
                partition_by=[partition_by],
                predicate=f"{partition_by} = '{literal}'",
                commit_properties=props,  # the table object carries the storage options
            )
        except CommitFailedError as exc:
            raise CommitConflict(
                f"partition {literal} of {table} ({self.uri(table)}) was committed by another writer while "
                f"this one wrote it; this write changed nothing ({exc})"
            ) from exc
        return target.version()  # delta-rs moves the table object to the version it committed

    # -- reads --------------------------------------------------------------------------------------

    def register(
        self,
        con: duckdb.DuckDBPyConnection,
        tables: Iterable[str] | None = None,
        *,
        schemas: Mapping[str, pa.Schema] | None = None,
        as_of: int | dt.datetime | None = None,
    ) -> list[str]:
        """Put ``tables`` (default: every table under the root) on ``con`` as views ``schema.table``.

        A table named in ``schemas`` that does not exist yet is registered empty with that schema, so SQL
        over it runs before its first write. Registering again replaces the view with the table's latest
        version (call it after a write that later reads on the same connection must see).
        """
        names = list(self.tables() if tables is None else tables)
        for name in (schemas or {}).keys() - set(names):
            names.append(name)
        for name in names:
            schema, short = check_table(name)
            if self.exists(name):
                source: Any = self.table(name, as_of).to_pyarrow_dataset()
            elif schemas and name in schemas:
                source = schemas[name].empty_table()
            else:
                raise LakeError(f"{self.uri(name)} is not a Delta table ({name} was never written)")
            hidden = f"_delta__{schema}__{short}"
            con.register(hidden, source)
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{short}" AS SELECT * FROM "{hidden}"')  # noqa: S608
        return names

    def read_partition(
        self,
        table: str,
        value: dt.date | dt.datetime,
        columns: list[str] | None = None,
        partition_by: str = PARTITION_COLUMN,
    ) -> pa.Table:
        """Partition ``value`` of ``table``'s latest version, read from that partition's files alone.

        A view over the whole table costs one file entry per partition to build (tens of ms at a year of
        days); this builds the dataset of one partition only, e.g. to read back what a write committed.
        """
        check_identifier(partition_by)
        literal = partition_literal(value)
        dataset = self.table(table).to_pyarrow_dataset(file_pruning_predicate=[(partition_by, "=", literal)])
        return dataset.to_table(columns=columns)

    def version_at(self, table: str, at: dt.datetime) -> int:
        """The latest version of ``table`` whose commit time, as its log records it (the time
        :meth:`history` shows), is at or before ``at`` (naive times are UTC).

        Resolved from the log rather than by delta-rs's own timestamp lookup, which goes by the log files'
        modification times (those change when a lake is copied or restored) and falls back to the oldest
        version for a time before it.
        """
        at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at
        commits = self.history(table)
        before = [w.version for w in commits if w.timestamp <= at]
        if not before:
            oldest = min(commits, key=lambda w: w.version)
            first = "its first commit" if oldest.version == 0 else "its oldest retained commit"
            raise LakeError(
                f"{table} has no version as of {_iso(at)}: {first}, version {oldest.version}, is at "
                f"{_iso(oldest.timestamp)}"
            )
        return max(before)

    def history(self, table: str, partition: str | None = None) -> list[Write]:
        """Every commit of ``table`` (newest first), or those that wrote ``partition`` (``2026-10-02``)."""
        writes = []
        for entry in self.table(table).history():
            params = entry.get("operationParameters") or {}
            metrics = entry.get("operationMetrics") or {}
            meta = {
                k: str(v)
                for k, v in entry.items()
                if k not in {"timestamp", "operation", "operationParameters", "operationMetrics", "version"}
                and k not in {"clientVersion", "readVersion", "isBlindAppend", "engineInfo"}
            }
            written = meta.get("partition") or _partition_of(params.get("predicate"))
            if partition is not None and written != partition:
                continue
            writes.append(
                Write(
                    table=table,
                    version=int(entry["version"]),
                    timestamp=dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.UTC),
                    operation=str(entry.get("operation")),
                    partition=written,
                    rows_added=_int(metrics.get("num_added_rows")),
                    rows_removed=_int(metrics.get("num_removed_rows", metrics.get("num_deleted_rows"))),
                    metadata=meta,
                )
            )
        return writes

    def vacuum(self, retention_hours: int, *, dry_run: bool = True) -> dict[str, list[str]]:
        """Files of old versions older than ``retention_hours``, per table; deleted unless ``dry_run``.

        After a real vacuum the log is checkpointed, and delta-rs removes log entries older than the table's
        ``delta.logRetentionDuration`` (30 days by default). Versions older than ``retention_hours`` stay in
        the log (and in `history`) but can no longer be read: their data files are gone.
        """
        out = {}
        for name in self.tables():
            t = self.table(name)
            out[name] = t.vacuum(
                retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False
            )
            if not dry_run:
                t.create_checkpoint()
                t.cleanup_metadata()
        return out

    def existing_files(self, table: str, paths: Iterable[str]) -> list[str]:
        """Those of ``paths`` (relative to ``table``'s folder, as a dry-run :meth:`vacuum` lists them) that are
        still there: delta-rs lists a removed file until its tombstone leaves the log, deleted or not."""
        paths = list(paths)
        if not paths:
            return []
        fs, base = self._filesystem()
        schema, name = check_table(table)
        infos = fs.get_file_info([f"{base}/{schema}/{name}/{p}" for p in paths])
        return [p for p, info in zip(paths, infos, strict=True) if info.type != pafs.FileType.NotFound]


def _iso(ts: dt.datetime) -> str:
    """A commit time as ISO 8601 UTC to the millisecond (the log's precision)."""
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def conform(
    data: pa.RecordBatchReader | pa.Table | Iterable[pa.RecordBatch], schema: pa.Schema
) -> pa.RecordBatchReader:
    """A reader of ``data`` with exactly ``schema``'s columns and types, cast batch by batch."""
    if isinstance(data, pa.Table):
        data = data.to_reader()

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in data:
            if batch.schema.equals(schema):
                yield batch
                continue
            missing = [f.name for f in schema if f.name not in batch.schema.names]
            if missing:
                raise LakeError(f"rows to write have no column(s) {missing} (have: {batch.schema.names})")
            yield pa.RecordBatch.from_arrays(
                [batch.column(f.name).cast(f.type) for f in schema], schema=schema
            )

    return pa.RecordBatchReader.from_batches(schema, batches())


def _dirs(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as exc:
        raise LakeError(f"lake root {path} cannot be listed: {exc}") from exc
    return [i for i in infos if i.type == pafs.FileType.Directory]


def _partition_of(predicate: object) -> str | None:
    """``2026-10-02`` from a predicate ``partition_date = '2026-10-02'::date``, else None."""
    if not isinstance(predicate, str):
        return None
    m = re.search(r"= '([^']+)'", predicate)
    return m.group(1) if m else None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
