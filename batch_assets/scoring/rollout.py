"""The decision of the model-rollout sensor, as a pure function of registry state, history and cursor.

When the alias moves to a new version, one canary partition (the latest one scored by another version) is
re-scored first; only after its run and blocking checks pass are the other partitions still scored by
another version requested, newest first, a bounded number per tick. A failed canary stops the rollout and
says why. Run keys are ``{version}:{partition}``: Dagster never launches two runs with the same key for a
sensor, so repeated ticks, restarts and cursor resets cannot duplicate work. Promoting a version a second
time (a rollback to it) needs fresh keys, so the N-th promotion of a version uses ``{version}:{partition}#N``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

CANARY = "canary"
ROLLOUT = "rollout"
DONE = "done"
FAILED = "failed"


@dataclass
class RolloutState:
    """What the sensor remembers between ticks (its cursor)."""

    version: str
    sha256: str
    promotion: int = 1
    phase: str = CANARY
    canary_partition: str | None = None
    requested: list[str] = field(default_factory=list)
    reason: str = ""

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> RolloutState | None:
        if not cursor:
            return None
        try:
            return cls(**json.loads(cursor))
        except (json.JSONDecodeError, TypeError):
            return None  # an unreadable cursor restarts the decision; run keys keep it idempotent

    def run_key(self, partition: str) -> str:
        suffix = f"#{self.promotion}" if self.promotion > 1 else ""
        return f"{self.version}:{partition}{suffix}"


@dataclass(frozen=True)
class Request:
    partition: str
    run_key: str
    role: str  # "canary" or "rollout"


@dataclass(frozen=True)
class Decision:
    requests: list[Request]
    state: RolloutState | None
    skip_reason: str | None = None


def stale_partitions(scored_by: Mapping[str, str], version: str, window: int | None) -> list[str]:
    """Partitions scored by another version, newest first, within the newest ``window`` scored partitions."""
    partitions = sorted(scored_by, reverse=True)
    if window is not None:
        partitions = partitions[:window]
    return [p for p in partitions if scored_by[p] != version]


def decide(
    *,
    alias_version: str | None,
    alias_sha256: str | None,
    promotion: int,
    scored_by: Mapping[str, str],
    state: RolloutState | None,
    canary_outcome: str | None,
    window: int | None = None,
    max_per_tick: int = 10,
) -> Decision:
    """What to request now.

    ``scored_by`` maps each scored partition to the version of its latest materialization.
    ``canary_outcome`` is None while the canary run has not finished, "success" once it and its blocking
    checks passed, or a sentence saying why it failed.
    """
    if alias_version is None or alias_sha256 is None:
        return Decision([], state, "no model version behind the alias yet")
    if state is None or (state.version, state.promotion) != (alias_version, promotion):
        state = RolloutState(version=alias_version, sha256=alias_sha256, promotion=promotion)
        stale = stale_partitions(scored_by, alias_version, window)
        if not stale:
            state.phase = DONE
            return Decision([], state, f"every scored partition is already scored by version {alias_version}")
        state.canary_partition = stale[0]
        req = Request(stale[0], state.run_key(stale[0]), CANARY)
        return Decision([req], state)

    if state.phase == FAILED:
        return Decision([], state, f"rollout of version {state.version} stopped: {state.reason}")
    if state.phase == CANARY:
        if canary_outcome is None:
            return Decision(
                [],
                state,
                f"waiting for the canary run of {state.canary_partition} "
                f"(run key {state.run_key(state.canary_partition or '')})",
            )
        if canary_outcome != "success":
            state.phase = FAILED
            state.reason = f"canary {state.canary_partition} failed: {canary_outcome}"
            return Decision([], state, f"rollout of version {state.version} stopped: {state.reason}")
        state.phase = ROLLOUT
        state.requested = [state.canary_partition] if state.canary_partition else []

    todo = [p for p in stale_partitions(scored_by, state.version, window) if p not in state.requested]
    if not todo:
        in_flight = [p for p in state.requested if scored_by.get(p) != state.version]
        if not in_flight:
            state.phase = DONE
            return Decision([], state, f"rollout of version {state.version} complete")
        return Decision([], state, f"waiting for {len(in_flight)} re-scoring runs of version {state.version}")
    batch = todo[:max_per_tick]
    state.requested = [*state.requested, *batch]
    return Decision([Request(p, state.run_key(p), ROLLOUT) for p in batch], state)
