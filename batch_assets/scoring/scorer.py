"""The streaming scorer: Arrow record batches in, scored and dead-lettered Arrow tables out.

No per-row Python on the hot path: each batch's feature columns become one float32 matrix (numpy, then
``torch.from_numpy`` without a copy), scored under ``torch.inference_mode()``. Rows that cannot be scored
(null key, non-finite feature, duplicate key, non-finite score) are diverted with a reason instead of failing
the partition. The input checksum covers every row read, in the order read.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn


class SchemaError(ValueError):
    """The feature input does not have the columns the model declares."""


@dataclass
class ScoreStats:
    """Counts and the input checksum of one scored partition."""

    rows_read: int = 0
    rows_scored: int = 0
    dead_letters: int = 0
    batches: int = 0
    dead_reasons: dict[str, int] = field(default_factory=dict)
    # One running hash per stream (keys, key-null flags, float32 feature rows), so the checksum depends
    # on the rows and their order only, not on how they were split into batches.
    _streams: tuple = field(
        default_factory=lambda: (hashlib.sha256(), hashlib.sha256(), hashlib.sha256()), repr=False
    )

    def update_checksum(self, keys: np.ndarray, key_null: np.ndarray, x: np.ndarray) -> None:
        for h, arr in zip(self._streams, (keys, key_null, x), strict=True):
            h.update(np.ascontiguousarray(arr).tobytes())

    @property
    def input_sha256(self) -> str:
        """sha256 of the three stream digests: int64 keys, uint8 null flags, row-major float32 features."""
        return hashlib.sha256(b"".join(h.digest() for h in self._streams)).hexdigest()


@dataclass(frozen=True)
class ScoredBatch:
    """``scored``: (key, score float32); ``dead``: (key, reason, payload JSON text)."""

    scored: pa.Table
    dead: pa.Table | None


DEAD_SCHEMA_FIELDS = ("reason", "payload")


def check_columns(schema: pa.Schema, key: str, features: Sequence[str]) -> None:
    """Fail before scoring when a declared column is missing or not numeric, naming the column."""
    names = set(schema.names)
    for col in [key, *features]:
        if col not in names:
            raise SchemaError(
                f"feature input has no column {col!r} required by the model (has: {sorted(names)})"
            )
    if not pa.types.is_integer(schema.field(key).type):
        raise SchemaError(f"key column {key!r} has type {schema.field(key).type}, expected an integer")
    for col in features:
        t = schema.field(col).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
            raise SchemaError(f"feature column {col!r} has type {t}, expected a number")


def score_batches(
    module: nn.Module,
    batches: Iterable[pa.RecordBatch],
    *,
    key: str,
    features: Sequence[str],
    stats: ScoreStats,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
) -> Iterator[ScoredBatch]:
    """Score ``batches`` (ordered by ``key``) with ``module``; update ``stats`` as batches are consumed.

    ``limits`` maps feature columns to inclusive hard limits (None: unbounded); a row outside them is
    dead-lettered instead of scored.
    """
    features = list(features)
    lo = np.array([(limits or {}).get(c, (None, None))[0] for c in features], dtype=np.float64)
    hi = np.array([(limits or {}).get(c, (None, None))[1] for c in features], dtype=np.float64)
    lo, hi = np.nan_to_num(lo, nan=-np.inf), np.nan_to_num(hi, nan=np.inf)
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    last_key: int | None = None
    schema = getattr(batches, "schema", None)  # a RecordBatchReader knows its schema before any batch
    if schema is not None:
        check_columns(schema, key, features)
    for batch in batches:
        if stats.batches == 0 and schema is None:
            check_columns(batch.schema, key, features)
        stats.batches += 1
        n = batch.num_rows
        if n == 0:
            continue
        stats.rows_read += n
        key_col = batch.column(key)
        key_null = key_col.is_null().to_numpy(zero_copy_only=False)
        keys = pc.fill_null(key_col, 0).cast(pa.int64()).to_numpy()
        x = np.empty((n, len(features)), dtype=np.float32)
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf: dead-lettered below
            for j, name in enumerate(features):
                x[:, j] = batch.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
        stats.update_checksum(keys, key_null, x)

        finite_rows = np.isfinite(x).all(axis=1)
        in_range = ((x >= lo) & (x <= hi)).all(axis=1) | ~finite_rows if bounded else np.ones(n, dtype=bool)
        duplicate = np.zeros(n, dtype=bool)
        duplicate[1:] = (keys[1:] == keys[:-1]) & ~key_null[1:] & ~key_null[:-1]
        if last_key is not None and not key_null[0]:
            duplicate[0] = keys[0] == last_key
        valid_keys = keys[~key_null]
        if valid_keys.size:
            last_key = int(valid_keys[-1])

        ok = finite_rows & in_range & ~key_null & ~duplicate
        scores = np.full(n, np.nan, dtype=np.float32)
        if ok.any():
            rows = x if ok.all() else x[ok]
            with torch.inference_mode():
                out = module(torch.from_numpy(rows)).numpy()
            scores[ok] = out
        bad_score = ok & ~np.isfinite(scores)
        ok &= ~bad_score

        scored = pa.table({key: pa.array(keys[ok], pa.int64()), "score": pa.array(scores[ok], pa.float32())})
        stats.rows_scored += scored.num_rows
        dead = None
        bad = np.flatnonzero(~ok)
        if bad.size:
            dead = _dead_letters(
                batch, key, features, bad, key_null, finite_rows, in_range, duplicate, bad_score, x, lo, hi
            )
            stats.dead_letters += dead.num_rows
            for reason in dead.column("reason").to_pylist():
                stats.dead_reasons[reason.split(":")[0]] = stats.dead_reasons.get(reason.split(":")[0], 0) + 1
        yield ScoredBatch(scored=scored, dead=dead)


def _dead_letters(
    batch: pa.RecordBatch,
    key: str,
    features: list[str],
    bad: np.ndarray,
    key_null: np.ndarray,
    finite_rows: np.ndarray,
    in_range: np.ndarray,
    duplicate: np.ndarray,
    bad_score: np.ndarray,
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> pa.Table:
    """One row per unscored input row: key (may be null), reason, and the row as JSON text (bad rows only)."""
    keys = batch.column(key).take(pa.array(bad)).to_pylist()
    reasons, payloads = [], []
    for i, row in zip(bad.tolist(), batch.take(pa.array(bad)).to_pylist(), strict=True):
        if key_null[i]:
            reason = f"null_key: {key} is null"
        elif not finite_rows[i]:
            cols = [features[j] for j in np.flatnonzero(~np.isfinite(x[i]))]
            overflow = [c for c in cols if isinstance(row[c], float) and math.isfinite(row[c])]
            nonfinite = [c for c in cols if c not in overflow]
            reason = (
                "non_finite_feature: " + ", ".join(nonfinite)
                if nonfinite
                else "float32_overflow: " + ", ".join(overflow) + " beyond the model's float32 range"
            )
        elif not in_range[i]:
            cols = np.flatnonzero((x[i] < lo) | (x[i] > hi))
            reason = "out_of_range: " + ", ".join(
                f"{features[j]}={row[features[j]]:g} outside [{lo[j]:g}, {hi[j]:g}]" for j in cols
            )
        elif duplicate[i]:
            reason = f"duplicate_key: {key} {row[key]} appears more than once in the input"
        else:
            reason = "non_finite_score: the model returned NaN or infinity"
        reasons.append(reason)
        payloads.append(json.dumps({k: _json_safe(v) for k, v in row.items()}, default=str))
    return pa.table(
        {
            key: pa.array(keys, pa.int64()),
            "reason": pa.array(reasons, pa.string()),
            "payload": pa.array(payloads, pa.string()),
        }
    )


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
