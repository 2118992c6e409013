"""The rollout decision as a pure function: canary first, then the rest as chunked backfills newest first,
never twice (across ticks and cursor resets), paused by a cancel, resumed without redoing finished work,
stopped on failure."""

from batch_assets.core.rollout import (
    ACTIVE,
    BROKEN,
    CANARY,
    CANCELED,
    CANCELLED_RUN,
    DONE,
    FAILED,
    FINISHED,
    ROLLOUT,
    RolloutState,
    Wave,
    decide,
    stale_partitions,
)

DAYS = [f"2026-09-{d:02d}" for d in range(1, 8)]


def scored(version, **overrides):
    return {d: overrides.get(d, version) for d in DAYS}


def tick(state, scored_by, outcome=None, version="2", promotion=1, **kw):
    kw.setdefault("chunk", 2)
    return decide(
        alias_version=version,
        alias_sha256="sha" + version,
        promotion=promotion,
        scored_by=scored_by,
        state=state,
        canary_outcome=outcome,
        **kw,
    )


def waves_of(decision, status=ACTIVE, at=100.0):
    return [Wave(f"b{i}", r.partitions, status, at) for i, r in enumerate(decision.requests)]


def passed_canary():
    state = tick(None, scored("1")).state
    return state, scored("1", **{"2026-09-07": "2"})


def test_new_version_requests_one_canary_for_the_latest_stale_partition():
    d = tick(None, scored("1"))
    assert [(r.partitions, r.key, r.role) for r in d.requests] == [
        (("2026-09-07",), "2:2026-09-07", "canary")
    ]
    assert d.state.phase == CANARY and d.state.canary_partition == "2026-09-07"
    assert d.state.rollout_id == "2#1"
    assert RolloutState.from_cursor(d.state.to_cursor()) == d.state


def test_waiting_canary_requests_nothing():
    state = tick(None, scored("1")).state
    d = tick(state, scored("1"), outcome=None)
    assert d.requests == [] and "waiting for the canary" in d.skip_reason


def test_passing_canary_releases_the_rest_as_chunks_newest_first_bounded_per_tick():
    state, after_canary = passed_canary()
    d = tick(state, after_canary, outcome="success", max_per_tick=2)
    assert [r.partitions for r in d.requests] == [("2026-09-06", "2026-09-05"), ("2026-09-04", "2026-09-03")]
    assert [r.key for r in d.requests] == ["2#1:2026-09-05..2026-09-06", "2#1:2026-09-03..2026-09-04"]
    assert all(r.role == "rollout" for r in d.requests) and d.state.phase == ROLLOUT
    waves = waves_of(d)
    d2 = tick(d.state, after_canary, waves=waves, max_per_tick=2)  # in flight: only the rest, no duplicates
    assert [r.partitions for r in d2.requests] == [("2026-09-02", "2026-09-01")]
    waves += [Wave("b9", ("2026-09-02", "2026-09-01"), ACTIVE, 100.0)]
    d3 = tick(d2.state, after_canary, waves=waves, max_per_tick=2)
    assert d3.requests == [] and "waiting for 6 partitions" in d3.skip_reason
    done = [Wave(w.backfill_id, w.partitions, FINISHED, 200.0) for w in waves]
    d4 = tick(d3.state, scored("2"), waves=done)
    assert d4.requests == [] and d4.state.phase == DONE and "complete" in d4.skip_reason


def test_a_reset_cursor_skips_the_canary_and_never_requests_a_partition_in_a_backfill():
    state, after_canary = passed_canary()
    first = tick(state, after_canary, outcome="success", max_per_tick=1)
    waves = waves_of(first)
    again = tick(None, after_canary, waves=waves, max_per_tick=10)  # cursor lost
    assert again.state.phase == ROLLOUT
    requested = [p for r in again.requests for p in r.partitions]
    assert requested == ["2026-09-04", "2026-09-03", "2026-09-02", "2026-09-01"]
    assert not set(requested) & set(first.requests[0].partitions)


def test_a_cancelled_backfill_pauses_until_a_resume_then_only_what_is_behind_is_requested():
    state, after_canary = passed_canary()
    d = tick(state, after_canary, outcome="success", max_per_tick=3)
    cancelled = [Wave(w.backfill_id, w.partitions, CANCELED, 150.0) for w in waves_of(d)]
    # the first chunk finished before the cancel
    partly = scored("2", **{d: "1" for d in ("2026-09-04", "2026-09-03", "2026-09-02", "2026-09-01")})
    paused = tick(d.state, partly, waves=cancelled, resumed_at=None)
    assert paused.requests == [] and "paused: backfill b2 was cancelled" in paused.skip_reason
    assert "4 partitions behind" in paused.skip_reason
    still = tick(paused.state, partly, waves=cancelled, resumed_at=120.0)  # a resume before the cancel
    assert still.requests == []
    resumed = tick(still.state, partly, waves=cancelled, resumed_at=160.0, max_per_tick=10)
    assert [p for r in resumed.requests for p in r.partitions] == [
        "2026-09-04",
        "2026-09-03",
        "2026-09-02",
        "2026-09-01",
    ]


def test_a_cancel_recorded_by_the_cli_pauses_even_before_any_backfill():
    state, after_canary = passed_canary()
    paused = tick(state, after_canary, outcome="success", cancelled_at=50.0)
    assert paused.requests == [] and "cancelled from the CLI" in paused.skip_reason
    resumed = tick(paused.state, after_canary, outcome="success", cancelled_at=50.0, resumed_at=60.0)
    assert resumed.requests


def test_a_cancelled_canary_is_tried_again_after_a_resume_with_a_new_run_key():
    state = tick(None, scored("1")).state
    paused = tick(state, scored("1"), outcome=CANCELLED_RUN, cancelled_at=10.0)
    assert paused.requests == [] and "paused" in paused.skip_reason
    again = tick(paused.state, scored("1"), outcome=CANCELLED_RUN, cancelled_at=10.0, resumed_at=20.0)
    assert [r.key for r in again.requests] == ["2:2026-09-07/2"] and again.state.phase == CANARY


def test_a_failed_backfill_is_reported_not_retried_until_a_resume():
    state, after_canary = passed_canary()
    d = tick(state, after_canary, outcome="success", chunk=6)
    broken = [Wave("b0", d.requests[0].partitions, BROKEN, 300.0)]
    partly = scored("2", **{"2026-09-02": "1", "2026-09-01": "1"})
    stopped = tick(d.state, partly, waves=broken, chunk=6)
    assert stopped.requests == [] and stopped.state.phase == FAILED
    assert "2 partitions failed to re-score: 2026-09-02, 2026-09-01" in stopped.skip_reason
    retried = tick(stopped.state, partly, waves=broken, resumed_at=400.0, chunk=6)
    assert [r.partitions for r in retried.requests] == [("2026-09-02", "2026-09-01")]


def test_failed_canary_stops_the_rollout_and_says_why():
    state = tick(None, scored("1")).state
    d = tick(state, scored("1"), outcome="blocking check failed: validity: 3 scores outside [0, 1]")
    assert d.requests == [] and d.state.phase == FAILED
    assert "canary 2026-09-07 failed: blocking check failed: validity" in d.skip_reason
    again = tick(d.state, scored("1"), resumed_at=1e12)
    assert again.requests == [] and "stopped" in again.skip_reason


def test_alias_already_current_requests_nothing():
    d = tick(None, scored("2"))
    assert d.requests == [] and d.state.phase == DONE


def test_rollback_rescores_back_with_fresh_run_keys():
    done = tick(None, scored("2")).state  # version 2 everywhere
    d = tick(done, scored("2"), version="1", promotion=2)  # 1 promoted a second time
    assert [r.key for r in d.requests] == ["1:2026-09-07#2"] and d.state.rollout_id == "1#2"


def test_window_limits_the_partitions_considered():
    assert stale_partitions(scored("1"), "2", window=3) == ["2026-09-07", "2026-09-06", "2026-09-05"]
    state = tick(None, scored("1"), window=3).state
    d = tick(state, scored("1", **{"2026-09-07": "2"}), outcome="success", window=3)
    assert [p for r in d.requests for p in r.partitions] == ["2026-09-06", "2026-09-05"]


def test_no_alias_yet():
    d = decide(
        alias_version=None, alias_sha256=None, promotion=1, scored_by={}, state=None, canary_outcome=None
    )
    assert d.requests == [] and d.skip_reason.startswith("no model version")


def test_unreadable_cursor_restarts_safely():
    assert RolloutState.from_cursor("not json") is None
    assert RolloutState.from_cursor(None) is None
    assert RolloutState.from_cursor('{"version": "2", "sha256": "x", "requested": []}') is None  # old shape
