"""Scored-dataset spec files: YAML validated by pydantic, every error naming the field it is about.

One file describes one scored dataset: its partitioning, the feature table (key, feature columns with
their hard limits, optionally the Parquet folders it is loaded from), the registry model and alias, the
output tables, and the thresholds of its checks. ``batch_assets.datasets`` builds the Dagster assets,
checks, jobs and rollout sensor from it. No dagster import here: the file format is tested directly.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from batch_assets.core.contracts import ColumnRule, FeatureContract
from batch_assets.core.drift import DriftThresholds
from batch_assets.core.names import InvalidName, check_identifier, check_name, check_table
from batch_assets.storage.feature_files import template_fields

SPEC_SUFFIXES = (".yaml", ".yml")
PARTITION_FORMATS = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%d-%H:%M"}


class SpecError(ValueError):
    """A spec file that cannot be loaded; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _valid(check: Any, *args: Any) -> Any:
    """Run a names validator, turning its error into the ValueError pydantic attaches to the field."""
    try:
        return check(*args)
    except InvalidName as exc:
        raise ValueError(str(exc)) from None


class Partitioning(_Strict):
    type: Literal["daily", "hourly"] = "daily"
    start: str | None = Field(
        default=None, description="first partition: YYYY-MM-DD (daily) or YYYY-MM-DD-HH:MM (hourly)"
    )
    timezone: str = "UTC"

    @field_validator("start", mode="before")
    @classmethod
    def _date_as_text(cls, v: Any) -> Any:
        """YAML reads an unquoted ``start: 2026-11-01`` as a date: take it as the key it spells."""
        if isinstance(v, dt.datetime):
            return v.strftime("%Y-%m-%d-%H:%M")
        if isinstance(v, dt.date):
            return v.isoformat()
        return v

    @model_validator(mode="after")
    def _start_matches_type(self) -> Partitioning:
        if self.start is not None:
            try:
                dt.datetime.strptime(self.start, PARTITION_FORMATS[self.type])
            except ValueError:
                raise ValueError(
                    f"start {self.start!r} is not a {self.type} partition key "
                    f"({PARTITION_FORMATS[self.type].replace('%', '')})"
                ) from None
        elif self.type != "daily":
            raise ValueError(f"start is required for {self.type} partitioning")
        return self


class Features(_Strict):
    asset: str = Field(description="asset key of the feature table, e.g. features/device_hourly")
    table: str = Field(description="DuckDB table schema.table with partition_date, the key and the columns")
    key: str = Field(description="integer key column: one row per key and partition")
    columns: dict[str, ColumnRule | None] = Field(description="numeric feature columns and their hard limits")
    files: str | None = Field(
        default=None,
        description="folder of one partition's Parquet files; placeholders {partition} {date} {hour} "
        "{landing}; relative to the spec file. When set, the features asset is built from these files.",
    )
    max_bad_row_fraction: float = Field(default=0.01, ge=0, le=1)

    @field_validator("asset")
    @classmethod
    def _asset(cls, v: str) -> str:
        parts = v.split("/")
        for part in parts:
            _valid(check_identifier, part)
        return v

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        _valid(check_table, v)
        return v

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return _valid(check_identifier, v)

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, ColumnRule | None]) -> dict[str, ColumnRule | None]:
        if not v:
            raise ValueError("declare at least one feature column")
        for name in v:
            _valid(check_identifier, name)
            if name == "partition_date":
                raise ValueError("partition_date is the partition column, not a feature")
        return v

    @field_validator("files")
    @classmethod
    def _files(cls, v: str | None) -> str | None:
        if v is not None:
            template_fields(v)
        return v

    @model_validator(mode="after")
    def _key_not_a_feature(self) -> Features:
        if self.key in self.columns:
            raise ValueError(f"key {self.key!r} is also listed in columns")
        return self


class Model(_Strict):
    name: str
    alias: str = "champion"

    @field_validator("name", "alias")
    @classmethod
    def _name(cls, v: str) -> str:
        return _valid(check_name, "model name or alias", v)


class Output(_Strict):
    table: str
    dead_letter_table: str = "predictions.dead_letters"
    summary_table: str | None = Field(
        default=None, description="default: <schema>.<name without _scores>_summary"
    )
    high_score_threshold: float = 0.8

    @field_validator("table", "dead_letter_table", "summary_table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        if v is not None:
            _valid(check_table, v)
        return v

    @field_validator("high_score_threshold")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class Checks(_Strict):
    max_dead_letter_fraction: float = Field(default=0.01, ge=0, le=1)
    score_drift: DriftThresholds = DriftThresholds()
    feature_drift: DriftThresholds = DriftThresholds()
    feature_drift_overrides: dict[str, DriftThresholds] = {}


class Scoring(_Strict):
    # rows per record batch; unset: sized from the compute resource's memory budget (BATCH_ASSETS_BATCH_MEMORY_MB)
    batch_rows: int | None = Field(default=None, ge=1)
    # partitions per backfill run (BackfillPolicy.multi_run): the model loads once per run, each run pays a
    # process start; docs/performance.md weighs chunk size against run count
    backfill_chunk: int = Field(default=60, ge=1)


class SpecFile(_Strict):
    """A scored dataset: the whole spec file, validated (see batch_assets/specs/examples/device_failures.yaml).

    This is the one spec type: the wiring takes it as it is and derives the Dagster asset keys and the
    partitions definition from it (``batch_assets.keys``)."""

    _source: Path | None = PrivateAttr(default=None)  # the file it was read from (None: built in code)

    name: str = Field(description="predictions asset name: <group>/<name>")
    description: str = ""
    group: str = "predictions"
    partitioning: Partitioning = Partitioning()
    features: Features
    model: Model
    output: Output
    checks: Checks = Checks()
    scoring: Scoring = Scoring()

    @field_validator("name", "group")
    @classmethod
    def _ident(cls, v: str) -> str:
        return _valid(check_identifier, v)

    @model_validator(mode="after")
    def _cross_field(self) -> SpecFile:
        columns = self.features.columns
        for column in self.checks.feature_drift_overrides:
            if column not in columns:
                raise _FieldError(
                    ("checks", "feature_drift_overrides", column),
                    f"unknown column {column!r}: not one of features.columns ({', '.join(columns)})",
                )
        tables = {"features.table": self.features.table, "output.table": self.output.table}
        for field_name, table in [
            ("output.dead_letter_table", self.output.dead_letter_table),
            ("output.summary_table", self.summary_table),
        ]:
            clash = next((f for f, t in tables.items() if t == table), None)
            if clash:
                raise _FieldError(tuple(field_name.split(".")), f"{table!r} is already used by {clash}")
            tables[field_name] = table
        return self

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def contract(self) -> FeatureContract:
        """The pandera contract of the feature columns: their hard limits, nulls, the tolerated bad rows."""
        features = self.features
        return FeatureContract(
            key=features.key,
            columns={name: rule or ColumnRule() for name, rule in features.columns.items()},
            max_bad_row_fraction=features.max_bad_row_fraction,
        )

    @property
    def partition_type(self) -> str:
        """SQL type of ``partition_date`` in this dataset's tables: DATE when daily, else TIMESTAMP."""
        return "DATE" if self.partitioning.type == "daily" else "TIMESTAMP"

    @property
    def summary_table(self) -> str:
        if self.output.summary_table:
            return self.output.summary_table
        schema = self.output.table.split(".")[0]
        return f"{schema}.{self.name.removesuffix('_scores')}_summary"


class _FieldError(ValueError):
    """A cross-field error that knows which field it is about."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def parse_spec(data: Any, source: str = "<spec>") -> SpecFile:
    """Validate parsed YAML; a SpecError lists every problem as ``field.path: message``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a YAML mapping, got {type(data).__name__}")
    try:
        return SpecFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: invalid spec\n" + "\n".join(_describe(e) for e in exc.errors())) from None


def _describe(error: Any) -> str:
    loc = list(error.get("loc", ()))
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        loc, msg = list(cause.loc), str(cause)
    else:
        msg = error.get("msg", "").removeprefix("Value error, ")
        if error.get("type") == "missing":
            msg = "required field is missing"
        elif error.get("type") == "extra_forbidden":
            msg = "unknown field (check its spelling)"
    return f"  {'.'.join(str(p) for p in loc) or '(top level)'}: {msg}"


def load_spec_file(path: Path) -> SpecFile:
    """Read and validate one spec file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc})") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from exc
    spec = parse_spec(data, str(path))
    spec._source = path
    return spec


def spec_paths(locations: list[Path]) -> list[Path]:
    """Spec files at ``locations``: each a file, or a folder whose *.yaml / *.yml files are read (sorted)."""
    out: list[Path] = []
    for location in locations:
        if location.is_dir():
            out += sorted(p for p in location.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())
        elif location.is_file():
            out.append(location)
        else:
            raise SpecError(f"{location}: no such spec file or folder (BATCH_ASSETS_SPECS)")
    return out
