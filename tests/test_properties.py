"""Property-based: whatever the feature input, every row ends scored once or dead-lettered with a reason, or
the partition fails before scoring with an error naming the column. Nothing is lost, nothing duplicated.

The input is a Delta table of the lake (rewritten with its own schema for each example) and the predictions
and dead letters are written to the lake, as in production."""

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_assets.core.scorer import SchemaError
from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import connect_lake, replace_predictions_partition
from tests.conftest import make_model

FEATURES = ["a", "b", "c"]
DAY = dt.date(2026, 9, 1)
LIMITS = {"a": (0.0, None), "b": (None, 100.0)}

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e38, -1e38]),
    st.none(),
)
rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(-5, 40), st.integers(-(2**63), 2**63 - 1)), values, values, values
    ),
    max_size=60,
)


class Lakeside:
    """A fresh lake and a DuckDB connection over it: each example starts from an empty lake (a short Delta
    log keeps every example as fast as the first)."""

    def __init__(self, root: str):
        self.lake = Lake(root)
        self.con = duckdb.connect()
        connect_lake(self.con, self.lake)

    def execute(self, *args):
        return self.con.execute(*args)


@contextmanager
def fresh_lake() -> Iterator[Lakeside]:
    with tempfile.TemporaryDirectory(prefix="prop-lake-") as root:
        side = Lakeside(root)
        try:
            yield side
        finally:
            side.con.close()


def load(con, table: pa.Table) -> None:
    """Replace the input Delta table ``f.input`` with ``table`` (its schema too) as partition ``DAY``."""
    rows = table.append_column(
        pa.field("partition_date", pa.date32(), False), pa.repeat(pa.scalar(DAY), table.num_rows)
    )
    write_deltalake(
        con.lake.uri("f.input"),
        rows,
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=["partition_date"],
    )
    con.lake.register(con.con, ["f.input"])


def score(con, features=FEATURES):
    return replace_predictions_partition(
        con.con,
        con.lake,
        day=DAY,
        module=make_model(3),
        features_table="f.input",
        key="entity_id",
        feature_columns=features,
        output_table="predictions.prop_scores",
        model_name="m",
        model_version="1",
        run_id="r",
        scored_at=dt.datetime(2026, 9, 2),
        dead_letter_table="predictions.prop_dead",
        limits=LIMITS,
        batch_rows=7,
    )


def count(con, sql):
    return con.execute(sql, {"day": DAY}).fetchall()[0][0]


@settings(max_examples=150, deadline=None)
@given(data=rows)
def test_every_row_is_scored_once_or_dead_lettered(data):
    with fresh_lake() as con:
        table = pa.table(
            {
                "entity_id": pa.array([r[0] for r in data], pa.int64()),
                **{name: pa.array([r[i + 1] for r in data], pa.float64()) for i, name in enumerate(FEATURES)},
            }
        )
        load(con, table)
        stats = score(con)
        scored = count(con, "SELECT count(*) FROM predictions.prop_scores WHERE partition_date = $day")
        dead = count(con, "SELECT count(*) FROM predictions.prop_dead WHERE partition_date = $day")
        assert scored + dead == len(data) == stats.rows_read
        assert (
            count(
                con,
                "SELECT count(*) - count(DISTINCT entity_id) FROM predictions.prop_scores "
                "WHERE partition_date = $day",
            )
            == 0
        )
        assert (
            count(
                con,
                "SELECT count(*) FROM predictions.prop_scores WHERE partition_date = $day "
                "AND (isnan(score) OR isinf(score))",
            )
            == 0
        )
        assert (
            count(
                con,
                "SELECT count(*) FROM predictions.prop_dead WHERE partition_date = $day "
                "AND (reason IS NULL OR reason = '' OR payload IS NULL)",
            )
            == 0
        )
        # only rows with a key and finite in-limit features (as the model sees them: float32) can be scored
        with np.errstate(over="ignore"):
            f32 = [[None if v is None else np.float32(v) for v in r[1:]] for r in data]
        good = [
            r
            for r, v in zip(data, f32, strict=True)
            if r[0] is not None
            and all(x is not None and np.isfinite(x) for x in v)
            and v[0] >= 0
            and v[1] <= 100
        ]
        assert scored <= len(good)
        # a re-run gives the same partition, never more
        score(con)
        assert (
            count(con, "SELECT count(*) FROM predictions.prop_scores WHERE partition_date = $day") == scored
        )


COLUMN_BREAKS = st.sampled_from(["missing", "renamed", "string", "extra", "reordered", "wide"])


@settings(max_examples=30, deadline=None)
@given(kind=COLUMN_BREAKS, victim=st.sampled_from(FEATURES), n=st.integers(0, 20))
def test_column_breaks_fail_naming_the_column_or_are_ignored(kind, victim, n):
    with fresh_lake() as con:
        base = {
            "entity_id": pa.array(np.arange(n), pa.int64()),
            **{c: pa.array(np.linspace(0, 1, n)) for c in FEATURES},
        }
        if kind == "missing":
            base.pop(victim)
        elif kind == "renamed":
            base[victim.upper() + "_x"] = base.pop(victim)
        elif kind == "string":
            base[victim] = pa.array([str(i) for i in range(n)], pa.string())
        elif kind == "extra":
            base["unexpected"] = pa.array(np.ones(n))
        elif kind == "reordered":
            base = dict(reversed(list(base.items())))
        elif kind == "wide":
            base.update({f"extra_{i}": pa.array(np.zeros(n)) for i in range(300)})
        load(con, pa.table(base))
        if kind in ("missing", "renamed", "string"):
            with pytest.raises(SchemaError, match=f"'{victim}'"):
                score(con)
        else:  # extra, reordered and very wide inputs: the model's columns are selected by name
            stats = score(con)
            assert stats.rows_scored == n and stats.dead_letters == 0


DTYPES = {
    "int8": pa.int8(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "decimal": pa.decimal128(24, 4),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "null": pa.null(),
}
NUMERIC = {"int8", "int32", "int64", "uint64", "float32", "float64", "decimal"}  # DuckDB has no float16


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(sorted(DTYPES)),
    victim=st.sampled_from(FEATURES),
    values_=st.lists(st.one_of(st.none(), st.integers(0, 100)), max_size=25),
)
def test_any_column_dtype_is_scored_or_refused_naming_the_column(dtype, victim, values_):
    with fresh_lake() as con:
        n = len(values_)
        cols = {"entity_id": pa.array(np.arange(n), pa.int64())}
        for c in FEATURES:
            cols[c] = pa.array(np.linspace(0, 1, n))
        if dtype == "null":
            cols[victim] = pa.nulls(n)
        elif dtype == "string":
            cols[victim] = pa.array([None if v is None else str(v) for v in values_], pa.string())
        elif dtype == "bool":
            cols[victim] = pa.array([None if v is None else bool(v % 2) for v in values_], pa.bool_())
        elif dtype == "date":
            cols[victim] = pa.array(values_, pa.int32()).cast(pa.date32())
        else:
            cols[victim] = pa.array(values_, pa.int64()).cast(DTYPES[dtype])
        load(con, pa.table(cols))
        stored = con.lake.table("f.input").to_pyarrow_dataset().schema.field(victim).type
        if dtype in NUMERIC:
            stats = score(con)
            # nulls in a numeric feature are dead-lettered as non-finite; every other row is scored
            nulls = sum(v is None for v in values_)
            assert stats.rows_read == n and stats.dead_letters == nulls and stats.rows_scored == n - nulls
        else:
            with pytest.raises(SchemaError, match=f"'{victim}'"):
                score(con)
        # the lake kept the column's type as given, except where Delta has none (no unsigned integers)
        assert stored == (pa.int64() if dtype == "uint64" else DTYPES[dtype]), stored
