"""Data contracts of feature tables: a pandera schema per table, validated in bounded-memory batches.

A contract names, for every feature column, its dtype, whether nulls are allowed and its hard limits. The
same limits drive the scorer: a row outside them is dead-lettered with the column and the rule, never scored.
Structural breaks (a missing column, a wrong dtype) are errors; row-level violations up to a tolerated
fraction are warnings, since those rows are dead-lettered and the rest of the partition can be scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandera.errors import SchemaErrors
from pydantic import BaseModel, ConfigDict, model_validator

SAMPLE_FAILURES = 20


class ColumnRule(BaseModel):
    """Hard limits of one numeric feature (inclusive; None means unbounded); rows outside them are
    dead-lettered. A spec file's ``features.columns`` entries are these."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ge: int | float | None = None  # an int stays an int, so messages read "<= 1", not "<= 1.0"
    le: int | float | None = None
    nullable: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> ColumnRule:
        if self.ge is not None and self.le is not None and self.ge > self.le:
            raise ValueError(f"ge {self.ge} is greater than le {self.le}")
        return self

    def describe(self) -> str:
        lo = "-inf" if self.ge is None else f"{self.ge:g}"
        hi = "inf" if self.le is None else f"{self.le:g}"
        return f"[{lo}, {hi}]" + (", nullable" if self.nullable else ", not null")


@dataclass(frozen=True)
class FeatureContract:
    """The contract of a feature table: key column plus numeric feature columns with their rules."""

    key: str
    columns: Mapping[str, ColumnRule]
    max_bad_row_fraction: float = 0.01

    def pandera_schema(self) -> pa.DataFrameSchema:
        cols: dict[str, pa.Column] = {self.key: pa.Column("int64", nullable=False)}
        for name, rule in self.columns.items():
            checks = []
            if rule.ge is not None:
                checks.append(pa.Check.ge(rule.ge))
            if rule.le is not None:
                checks.append(pa.Check.le(rule.le))
            cols[name] = pa.Column("float64", checks=checks, nullable=rule.nullable)
        return pa.DataFrameSchema(cols, strict=False, coerce=False, name="feature contract")

    def limits(self) -> dict[str, tuple[float | None, float | None]]:
        return {name: (rule.ge, rule.le) for name, rule in self.columns.items()}


@dataclass
class ContractReport:
    """What the validation of one partition found."""

    rows: int = 0
    structural: list[str] = field(default_factory=list)  # column-level failures: missing column, dtype
    bad_rows: int = 0
    failures_by_rule: dict[str, int] = field(default_factory=dict)  # "column: check" -> failing values
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bad_row_fraction(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0


def validate_batches(contract: FeatureContract, batches: Iterable[pa_arrow.RecordBatch]) -> ContractReport:
    """Validate record batches against the contract, one batch in memory at a time."""
    schema = contract.pandera_schema()
    report = ContractReport()
    batch_schema = getattr(batches, "schema", None)
    if batch_schema is not None:
        report.structural = structural_failures(contract, batch_schema)
        if report.structural:
            return report
    offset = 0
    for batch in batches:
        if batch_schema is None and offset == 0:
            report.structural = structural_failures(contract, batch.schema)
            if report.structural:
                return report
        df = batch.to_pandas()
        df.index = pd.RangeIndex(offset, offset + len(df))
        offset += len(df)
        report.rows += len(df)
        try:
            schema.validate(df, lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
            rows_idx = cases["index"].dropna().unique()
            report.bad_rows += len(rows_idx)
            for (col, chk), n in cases.groupby(["column", "check"], dropna=False).size().items():
                rule = f"{col}: {chk}"
                report.failures_by_rule[rule] = report.failures_by_rule.get(rule, 0) + int(n)
            for _, case in cases.head(max(0, SAMPLE_FAILURES - len(report.sample))).iterrows():
                idx = case["index"]
                key = df.at[idx, contract.key] if idx is not None and not pd.isna(idx) else None
                report.sample.append(
                    {
                        "row": None if pd.isna(idx) else int(idx),
                        contract.key: None if key is None or pd.isna(key) else int(key),
                        "column": case["column"],
                        "rule": str(case["check"]),
                        "value": _plain(case["failure_case"]),
                    }
                )
    return report


def structural_failures(contract: FeatureContract, schema: pa_arrow.Schema) -> list[str]:
    """Missing columns and wrong dtypes, each message naming the column and the rule."""
    out = []
    wanted = {contract.key: "int64", **{c: "float64" for c in contract.columns}}
    for name, dtype in wanted.items():
        if name not in schema.names:
            out.append(f"column {name!r}: missing (rule: column_in_dataframe)")
            continue
        actual = schema.field(name).type
        if np.dtype(actual.to_pandas_dtype()).name != dtype:
            out.append(f"column {name!r}: dtype {actual} (rule: dtype('{dtype}'))")
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value
