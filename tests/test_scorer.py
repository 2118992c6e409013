"""The streaming scorer against a direct model(x) computation, and its handling of bad rows."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from batch_assets.core.scorer import SchemaError, ScoreStats, score_batches
from tests.conftest import make_model

FEATURES = ["a", "b", "c"]


def batches(table: pa.Table, size: int):
    return table.to_batches(max_chunksize=size)


def table(n: int = 1000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols = {"entity_id": pa.array(np.arange(n, dtype=np.int64))}
    for name in FEATURES:
        cols[name] = pa.array(rng.normal(0, 3, n))
    return pa.table(cols)


def run(model, tbl, size=128, **kw):
    stats = ScoreStats()
    out = list(
        score_batches(model, batches(tbl, size), key="entity_id", features=FEATURES, stats=stats, **kw)
    )
    scored = pa.concat_tables([o.scored for o in out])
    dead = [o.dead for o in out if o.dead is not None]
    return scored, (pa.concat_tables(dead) if dead else None), stats


def test_scores_equal_direct_model_call():
    model = make_model(3)
    tbl = table()
    scored, dead, stats = run(model, tbl, size=97)  # batch size that does not divide the row count
    x = np.column_stack([tbl.column(c).to_numpy() for c in FEATURES]).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    assert dead is None
    assert scored.column("entity_id").to_pylist() == list(range(1000))
    # equal up to float32 rounding: BLAS may block a 97-row batch differently from a 1000-row one
    np.testing.assert_allclose(scored.column("score").to_numpy(), expected, rtol=1e-6, atol=1e-7)
    assert stats.rows_read == stats.rows_scored == 1000 and stats.batches == 11


def test_checksum_depends_on_content_not_batching_or_order():
    model = make_model(3)
    _, _, s1 = run(model, table(), size=100)
    _, _, s2 = run(model, table(), size=333)
    shuffled = table().take(np.random.default_rng(7).permutation(1000))
    _, _, s3 = run(model, shuffled, size=64)
    _, _, s4 = run(model, table(seed=1), size=100)
    assert s1.input_sha256 == s2.input_sha256 == s3.input_sha256 != s4.input_sha256


def test_checksum_sees_any_single_change_and_swapped_values():
    base = table(50)
    _, _, ref = run(make_model(3), base)
    a = base.column("a").to_numpy().copy()
    changed = []
    nudged = a.copy()
    nudged[17] = np.nextafter(np.float32(nudged[17]), np.float32(np.inf))  # one float32 ulp
    changed.append(base.set_column(1, "a", pa.array(nudged)))
    swapped = a.copy()
    swapped[[3, 4]] = swapped[[4, 3]]  # same column values, moved between entities
    changed.append(base.set_column(1, "a", pa.array(swapped)))
    keys = base.column("entity_id").to_numpy().copy()
    keys[0] = 999
    changed.append(base.set_column(0, "entity_id", pa.array(keys)))
    changed.append(base.slice(0, 49))
    digests = {run(make_model(3), t)[2].input_sha256 for t in changed}
    assert ref.input_sha256 not in digests and len(digests) == len(changed)


@pytest.mark.parametrize("forward_rows", [1, 7, 256])
def test_forward_chunks_do_not_change_scores(forward_rows):
    model = make_model(3)
    tbl = table(500)
    scored, _, _ = run(model, tbl, size=64, forward_rows=forward_rows)
    x = np.column_stack([tbl.column(c).to_numpy() for c in FEATURES]).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(scored.column("score").to_numpy(), expected, rtol=1e-6, atol=1e-7)


def test_an_error_while_reading_ahead_is_raised_to_the_caller():
    def broken():
        yield from table(100).to_batches(max_chunksize=10)[:3]
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        list(score_batches(make_model(3), broken(), key="entity_id", features=FEATURES, stats=ScoreStats()))


def test_a_model_with_the_wrong_output_shape_is_refused():
    class TwoScores(torch.nn.Module):
        def forward(self, x):
            return x[:, :2]

    with pytest.raises(ValueError, match="one score per row"):
        run(TwoScores(), table(10))


def test_bad_rows_are_dead_lettered_with_reasons():
    model = make_model(3)
    tbl = pa.table(
        {
            "entity_id": pa.array([1, 2, 2, None, 5, 6], pa.int64()),
            "a": [0.0, 1.0, 1.0, 1.0, float("nan"), 1.0],
            "b": [0.0, 1.0, 1.0, 1.0, 1.0, float("inf")],
            "c": pa.array([0.0, 1.0, 1.0, 1.0, 1.0, None], pa.float64()),
        }
    )
    # the duplicate 2 spans a batch boundary; neither copy is scored, since which one is right is unknown
    scored, dead, stats = run(model, tbl, size=2, duplicate_keys=[2])
    assert scored.column("entity_id").to_pylist() == [1]
    reasons = dict(zip(range(len(dead)), dead.column("reason").to_pylist(), strict=True))
    assert dead.column("entity_id").to_pylist() == [2, 2, None, 5, 6]
    assert reasons[0].startswith("duplicate_key") and reasons[1].startswith("duplicate_key")
    assert reasons[2].startswith("null_key")
    assert reasons[3] == "non_finite_feature: a"
    assert reasons[4] == "non_finite_feature: b, c"
    payload = json.loads(dead.column("payload")[3].as_py())
    assert payload == {"entity_id": 5, "a": "nan", "b": 1.0, "c": 1.0}
    assert stats.rows_read == stats.rows_scored + stats.dead_letters == 6


@pytest.mark.parametrize("missing", FEATURES)
def test_missing_column_fails_before_scoring_naming_it(missing):
    tbl = table().drop_columns([missing])
    with pytest.raises(SchemaError, match=f"'{missing}'"):
        run(make_model(3), tbl)


def test_non_numeric_column_fails_naming_it():
    tbl = table()
    tbl = tbl.set_column(2, "b", pa.array(["x"] * tbl.num_rows))
    with pytest.raises(SchemaError, match="'b' has type string"):
        run(make_model(3), tbl)


def test_empty_input_scores_nothing():
    scored_parts = list(
        score_batches(
            make_model(3),
            batches(table(0), 10),
            key="entity_id",
            features=FEATURES,
            stats=(stats := ScoreStats()),
        )
    )
    assert all(p.scored.num_rows == 0 for p in scored_parts) and stats.rows_read == 0


def test_rows_outside_hard_limits_are_dead_lettered_naming_the_rule():
    tbl = pa.table(
        {
            "entity_id": pa.array([1, 2, 3], pa.int64()),
            "a": [0.5, -1.0, 0.5],
            "b": [0.5, 0.5, 7.0],
            "c": [0.0, 0.0, 0.0],
        }
    )
    stats = ScoreStats()
    out = list(
        score_batches(
            make_model(3),
            batches(tbl, 10),
            key="entity_id",
            features=FEATURES,
            stats=stats,
            limits={"a": (0, None), "b": (0, 1)},
        )
    )
    assert out[0].scored.column("entity_id").to_pylist() == [1]
    assert out[0].dead.column("reason").to_pylist() == [
        "out_of_range: a=-1 outside [0, inf]",
        "out_of_range: b=7 outside [0, 1]",
    ]
    assert stats.dead_reasons == {"out_of_range": 2}


def test_values_beyond_float32_are_dead_lettered_as_overflow():
    tbl = pa.table(
        {"entity_id": pa.array([1, 2], pa.int64()), "a": [1e308, 0.0], "b": [0.0, 0.0], "c": [0.0, 0.0]}
    )
    stats = ScoreStats()
    out = list(
        score_batches(make_model(3), batches(tbl, 10), key="entity_id", features=FEATURES, stats=stats)
    )
    assert out[0].dead.column("reason").to_pylist() == [
        "float32_overflow: a beyond the model's float32 range"
    ]
    assert out[0].scored.column("entity_id").to_pylist() == [2]
