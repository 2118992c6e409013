"""The streaming scorer: Arrow record batches in, scored and dead-lettered Arrow tables out.

No per-row Python on the hot path. Each batch's feature columns are cast into one column-major float32 block
(one contiguous write per column), and the model runs on cache-sized row chunks of it under
``torch.inference_mode()``: an MLP is several times faster on 2,048-row chunks than on 65,536-row ones, whose
activations spill out of the CPU caches. Rows that cannot be scored (null key, non-finite feature, a key that
occurs more than once, non-finite score) are diverted with a reason instead of failing the partition.

The input checksum is a digest of the *multiset* of input rows, so it does not depend on the order in which
the warehouse returns them: the reader needs no ``ORDER BY``, which would materialise and sort the whole
partition in memory before the first row is scored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import queue
import struct
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

# Rows per forward call: activations of the widest layer should stay in the CPU caches (see module doc).
FORWARD_CACHE_BYTES = 2 * 1024 * 1024
DEFAULT_BATCH_MEMORY_MB = 64


class SchemaError(ValueError):
    """The feature input does not have the columns the model declares."""


@functools.cache
def _odd_weights(seed: int, n: int) -> np.ndarray:
    """Fixed odd 64-bit multipliers of the row digest, made once per width rather than per batch."""
    w = np.random.default_rng(seed).integers(1, 2**62, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    w.setflags(write=False)
    return w


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: a bijective, avalanching mix of each 64-bit word."""
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


@dataclass
class ScoreStats:
    """Counts and the input checksum of one scored partition."""

    rows_read: int = 0
    rows_scored: int = 0
    dead_letters: int = 0
    batches: int = 0
    dead_reasons: dict[str, int] = field(default_factory=dict)
    # Order-independent multiset digest: two independent 64-bit row hashes, summed (mod 2**64) over all rows,
    # plus the XOR of the first. Memory is constant, batches and row order do not matter.
    _acc: list = field(default_factory=lambda: [0, 0, 0], repr=False)

    def update_checksum(self, keys: np.ndarray, key_null: np.ndarray, xt: np.ndarray) -> None:
        """Fold rows into the digest: int64 ``keys``, bool ``key_null``, column-major float32 ``xt`` (F, n)."""
        u = xt.view(np.uint32)
        tmp = np.empty(keys.shape[0], dtype=np.uint64)
        for i, seed in enumerate((1, 2)):
            w = _odd_weights(seed, u.shape[0] + 2)
            h = keys.view(np.uint64) * w[0]
            h += key_null.astype(np.uint64) * w[1]
            for j in range(u.shape[0]):
                np.multiply(u[j], w[j + 2], out=tmp, casting="unsafe")
                h += tmp
            h = _mix64(h)
            self._acc[i] = (self._acc[i] + int(h.sum(dtype=np.uint64))) % 2**64
            if i == 0:
                self._acc[2] ^= int(np.bitwise_xor.reduce(h)) if h.size else 0

    @property
    def input_sha256(self) -> str:
        """sha256 over the row count and the multiset digest of (key, key is null, float32 features) rows."""
        body = struct.pack("<4Q", self.rows_read, *self._acc)
        return hashlib.sha256(b"batch-assets input rows v2\0" + body).hexdigest()


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


def forward_rows_for(module: nn.Module, cache_bytes: int = FORWARD_CACHE_BYTES) -> int:
    """Rows per forward call such that the widest layer's float32 activations fit in ``cache_bytes``."""
    widths = [m.out_features for m in module.modules() if isinstance(m, nn.Linear)] or [256]
    rows = cache_bytes // (4 * max(widths))
    return int(min(max(256, 1 << (max(rows, 1).bit_length() - 1)), 65_536))


def batch_rows_for(n_features: int, memory_mb: int = DEFAULT_BATCH_MEMORY_MB) -> int:
    """Rows per record batch so that one batch in flight (Arrow float64 + float32 block) fits ``memory_mb``.

    Two batches are in flight at once (one read ahead), so the scorer's working set is about twice this.
    """
    per_row = 8 + 12 * n_features + 64  # key, float64 + float32 copies of the features, masks and outputs
    return int(min(max(1024, memory_mb * 1024 * 1024 // per_row), 1_048_576))


@dataclass
class _Prepared:
    batch: pa.RecordBatch
    keys: np.ndarray
    key_null: np.ndarray
    xt: np.ndarray
    finite_rows: np.ndarray
    in_range: np.ndarray
    duplicate: np.ndarray


def score_batches(
    module: nn.Module,
    batches: Iterable[pa.RecordBatch],
    *,
    key: str,
    features: Sequence[str],
    stats: ScoreStats,
    limits: Mapping[str, tuple[float | None, float | None]] | None = None,
    duplicate_keys: Collection[int] = (),
    forward_rows: int | None = None,
    device: str | torch.device = "cpu",
    read_ahead: bool = True,
) -> Iterator[ScoredBatch]:
    """Score ``batches`` (in any order) with ``module``; update ``stats`` as batches are consumed.

    ``duplicate_keys`` are the keys that occur more than once in the whole input (find them first, e.g. with
    ``GROUP BY key HAVING count(*) > 1``): every row carrying one is dead-lettered, since which copy is right
    cannot be known. ``limits`` maps feature columns to inclusive hard limits (None: unbounded); a row outside
    them is dead-lettered instead of scored. With ``read_ahead`` the next batch is read and prepared on a
    second thread while this one is scored (DuckDB, Arrow, numpy and torch all release the GIL).
    """
    features = list(features)
    lo = np.array([(limits or {}).get(c, (None, None))[0] for c in features], dtype=np.float64)
    hi = np.array([(limits or {}).get(c, (None, None))[1] for c in features], dtype=np.float64)
    lo, hi = np.nan_to_num(lo, nan=-np.inf), np.nan_to_num(hi, nan=np.inf)
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    dups = np.unique(np.asarray(list(duplicate_keys), dtype=np.int64))
    chunk = forward_rows or forward_rows_for(module)
    device = torch.device(device)
    schema = getattr(batches, "schema", None)  # a RecordBatchReader knows its schema before any batch
    if schema is not None:
        check_columns(schema, key, features)

    def prepare(batch: pa.RecordBatch) -> _Prepared:
        n = batch.num_rows
        key_col = batch.column(key)
        key_null = key_col.is_null().to_numpy(zero_copy_only=False)
        keys = pc.fill_null(key_col, 0).cast(pa.int64()).to_numpy()
        xt = np.empty((len(features), n), dtype=np.float32)  # column-major: one contiguous write per column
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf: dead-lettered below
            for j, name in enumerate(features):
                col = batch.column(name)
                if not pa.types.is_floating(col.type):
                    col = col.cast(pa.float64())
                xt[j] = col.to_numpy(zero_copy_only=False)
        finite_rows = np.isfinite(xt).all(axis=0)
        if bounded:
            in_range = ((xt >= lo[:, None]) & (xt <= hi[:, None])).all(axis=0) | ~finite_rows
        else:
            in_range = np.ones(n, dtype=bool)
        duplicate = np.isin(keys, dups) & ~key_null if dups.size else np.zeros(n, dtype=bool)
        stats.update_checksum(keys, key_null, xt)
        return _Prepared(batch, keys, key_null, xt, finite_rows, in_range, duplicate)

    def prepared() -> Iterator[_Prepared]:
        for batch in batches:
            if stats.batches == 0 and schema is None:
                check_columns(batch.schema, key, features)
            stats.batches += 1
            if batch.num_rows:
                yield prepare(batch)

    source = _read_ahead(prepared()) if read_ahead else prepared()
    try:
        for p in source:
            n = p.batch.num_rows
            stats.rows_read += n
            ok = p.finite_rows & p.in_range & ~p.key_null & ~p.duplicate
            scores = np.full(n, np.nan, dtype=np.float32)
            if ok.any():
                scores[ok] = _forward(module, p.xt if ok.all() else p.xt[:, ok], chunk, device)
            bad_score = ok & ~np.isfinite(scores)
            ok &= ~bad_score

            scored = pa.table(
                {key: pa.array(p.keys[ok], pa.int64()), "score": pa.array(scores[ok], pa.float32())}
            )
            stats.rows_scored += scored.num_rows
            dead = None
            bad = np.flatnonzero(~ok)
            if bad.size:
                dead = _dead_letters(p, key, features, bad, bad_score, lo, hi)
                stats.dead_letters += dead.num_rows
                for reason in dead.column("reason").to_pylist():
                    kind = reason.split(":")[0]
                    stats.dead_reasons[kind] = stats.dead_reasons.get(kind, 0) + 1
            yield ScoredBatch(scored=scored, dead=dead)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _forward(module: nn.Module, xt: np.ndarray, chunk: int, device: torch.device) -> np.ndarray:
    """Scores of the rows of column-major ``xt`` (F, m), computed ``chunk`` rows at a time."""
    m = xt.shape[1]
    out = np.empty(m, dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, m, chunk):
            x = torch.from_numpy(np.ascontiguousarray(xt[:, s : s + chunk].T))
            y = module(x.to(device, non_blocking=True) if device.type != "cpu" else x)
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.shape != (x.shape[0],):
                raise ValueError(
                    f"the model returned shape {tuple(y.shape)} for {x.shape[0]} rows; expected one score per row"
                )
            out[s : s + chunk] = y.float().cpu().numpy() if device.type != "cpu" else y.numpy()
    return out


_DONE = object()


def _read_ahead(items: Iterator[_Prepared], depth: int = 1) -> Iterator[_Prepared]:
    """Run ``items`` on a worker thread, ``depth`` items ahead of the consumer; errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there with its traceback
            q.put(exc)

    worker = threading.Thread(target=work, name="batch-assets-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting on a full queue, then let it finish
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)


def _dead_letters(
    p: _Prepared,
    key: str,
    features: list[str],
    bad: np.ndarray,
    bad_score: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> pa.Table:
    """One row per unscored input row: key (may be null), reason, and the row as JSON text (bad rows only)."""
    batch, key_null, finite_rows, in_range, duplicate = (
        p.batch,
        p.key_null,
        p.finite_rows,
        p.in_range,
        p.duplicate,
    )
    x = p.xt.T
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
            reason = f"duplicate_key: {key} {row[key]} appears more than once in the input; no copy is scored"
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
