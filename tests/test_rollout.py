"""The rollout decision as a pure function: canary first, then the rest, never twice, stop on failure."""

from batch_assets.scoring.rollout import CANARY, DONE, FAILED, ROLLOUT, RolloutState, decide, stale_partitions

DAYS = [f"2026-09-{d:02d}" for d in range(1, 8)]


def scored(version, **overrides):
    return {d: overrides.get(d, version) for d in DAYS}


def tick(state, scored_by, outcome=None, version="2", promotion=1, **kw):
    return decide(
        alias_version=version,
        alias_sha256="sha" + version,
        promotion=promotion,
        scored_by=scored_by,
        state=state,
        canary_outcome=outcome,
        **kw,
    )


def test_new_version_requests_one_canary_for_the_latest_stale_partition():
    d = tick(None, scored("1"))
    assert [(r.partition, r.run_key, r.role) for r in d.requests] == [
        ("2026-09-07", "2:2026-09-07", "canary")
    ]
    assert d.state.phase == CANARY and d.state.canary_partition == "2026-09-07"
    assert RolloutState.from_cursor(d.state.to_cursor()) == d.state


def test_waiting_canary_requests_nothing():
    state = tick(None, scored("1")).state
    d = tick(state, scored("1"), outcome=None)
    assert d.requests == [] and "waiting for the canary" in d.skip_reason


def test_passing_canary_releases_the_rest_in_bounded_batches_newest_first():
    state = tick(None, scored("1")).state
    after_canary = scored("1", **{"2026-09-07": "2"})
    d = tick(state, after_canary, outcome="success", max_per_tick=4)
    assert [r.run_key for r in d.requests] == ["2:2026-09-06", "2:2026-09-05", "2:2026-09-04", "2:2026-09-03"]
    assert all(r.role == "rollout" for r in d.requests) and d.state.phase == ROLLOUT
    d2 = tick(d.state, after_canary, max_per_tick=4)  # runs still in flight: only the rest, no duplicates
    assert [r.run_key for r in d2.requests] == ["2:2026-09-02", "2:2026-09-01"]
    d3 = tick(d2.state, after_canary, max_per_tick=4)
    assert d3.requests == [] and "waiting for 6 re-scoring runs" in d3.skip_reason
    d4 = tick(d3.state, scored("2"))
    assert d4.requests == [] and d4.state.phase == DONE and "complete" in d4.skip_reason


def test_failed_canary_stops_the_rollout_and_says_why():
    state = tick(None, scored("1")).state
    d = tick(state, scored("1"), outcome="blocking check failed: validity: 3 scores outside [0, 1]")
    assert d.requests == [] and d.state.phase == FAILED
    assert "canary 2026-09-07 failed: blocking check failed: validity" in d.skip_reason
    again = tick(d.state, scored("1"))
    assert again.requests == [] and "stopped" in again.skip_reason


def test_alias_already_current_requests_nothing():
    d = tick(None, scored("2"))
    assert d.requests == [] and d.state.phase == DONE


def test_rollback_rescores_back_with_fresh_run_keys():
    done = tick(None, scored("2")).state  # version 2 everywhere
    d = tick(done, scored("2"), version="1", promotion=2)  # 1 promoted a second time
    assert [r.run_key for r in d.requests] == ["1:2026-09-07#2"]


def test_window_limits_the_partitions_considered():
    assert stale_partitions(scored("1"), "2", window=3) == ["2026-09-07", "2026-09-06", "2026-09-05"]
    state = tick(None, scored("1"), window=3).state
    d = tick(state, scored("1", **{"2026-09-07": "2"}), outcome="success", window=3)
    assert [r.partition for r in d.requests] == ["2026-09-06", "2026-09-05"]


def test_no_alias_yet():
    d = decide(
        alias_version=None, alias_sha256=None, promotion=1, scored_by={}, state=None, canary_outcome=None
    )
    assert d.requests == [] and d.skip_reason.startswith("no model version")


def test_unreadable_cursor_restarts_safely():
    assert RolloutState.from_cursor("not json") is None
    assert RolloutState.from_cursor(None) is None
