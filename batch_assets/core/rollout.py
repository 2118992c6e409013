"""The decision of the model-rollout sensor, as a pure function of registry state, history and cursor.

When the alias moves to a new version, one canary partition (the latest one scored by another version) is
re-scored first, as a run of its own. Only after its run and blocking checks pass are the other partitions
still scored by another version requested, newest first, as **chunked backfills**: one backfill per chunk
of at most ``chunk`` partitions (the assets' backfill policy, so a chunk is one run that loads the model
once), at most ``max_per_tick`` chunks per tick.

Nothing is launched twice:

- the canary's run key is ``{version}:{partition}`` (``#N`` for the N-th promotion of a version, so a
  rollback to it gets fresh keys); Dagster never launches two runs with one key for a sensor;
- every rollout backfill is tagged with its rollout (``{version}#{promotion}``) and its partitions, and
  the decision reads those backfills back on every tick (:class:`Wave`), so a partition already in an
  active or finished backfill of the rollout is never requested again, across ticks, daemon restarts
  and cursor resets.

A rollout is **paused** when one of its backfills is cancelled (from the UI or ``batch-assets rescore
cancel``) or the CLI recorded a cancel, after the last resume; it **resumes** when the sensor is started
again or ``batch-assets rescore resume`` is recorded, and then requests only the partitions still scored by
another version. A backfill that failed is not retried by itself: its partitions are reported, and
retried after a resume. A failed canary stops the rollout until the version is promoted again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

CANARY = "canary"
ROLLOUT = "rollout"
DONE = "done"
FAILED = "failed"
CANCELLED_RUN = "cancelled"  # the canary outcome of a run that was cancelled

# What a wave's backfill status means to the rollout.
ACTIVE, FINISHED, CANCELED, BROKEN = "active", "finished", "canceled", "failed"


@dataclass
class RolloutState:
    """What the sensor remembers between ticks (its cursor). The backfills themselves are the record of
    what was requested; the cursor only carries the phase and the canary."""

    version: str
    sha256: str
    promotion: int = 1
    phase: str = CANARY
    canary_partition: str | None = None
    reason: str = ""
    chunks_requested: int = 0
    canary_failed: bool = False
    canary_attempt: int = 1  # a cancelled canary is tried again after a resume, with a new run key

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> RolloutState | None:
        if not cursor:
            return None
        try:
            return cls(**json.loads(cursor))
        except (json.JSONDecodeError, TypeError):
            return None  # an unreadable cursor restarts the decision; the backfills keep it idempotent

    @property
    def rollout_id(self) -> str:
        return rollout_id(self.version, self.promotion)

    def run_key(self, partition: str) -> str:
        suffix = f"#{self.promotion}" if self.promotion > 1 else ""
        attempt = f"/{self.canary_attempt}" if self.canary_attempt > 1 else ""
        return f"{self.version}:{partition}{suffix}{attempt}"


def rollout_id(version: str, promotion: int) -> str:
    """The tag value that names one rollout: a version and how many times it was promoted."""
    return f"{version}#{promotion}"


@dataclass(frozen=True)
class Wave:
    """One backfill of a rollout, as read back from the instance."""

    backfill_id: str
    partitions: tuple[str, ...]
    status: str  # ACTIVE, FINISHED, CANCELED or BROKEN
    at: float  # when it ended (or was created, while it runs)


@dataclass(frozen=True)
class Request:
    partitions: tuple[str, ...]
    key: str  # the canary's run key, or the chunk's name (its tag)
    role: str  # "canary" or "rollout"

    @property
    def partition(self) -> str:
        return self.partitions[0]


@dataclass(frozen=True)
class Decision:
    requests: list[Request]
    state: RolloutState | None
    skip_reason: str | None = None


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands, from its backfills and the partitions' latest versions."""

    stale: list[str]  # partitions (newest first, inside the window) scored by another version
    in_flight: set[str]
    failed: list[str]  # stale partitions of backfills that failed since the last resume
    paused_by: str | None  # why the rollout is paused, or None


def stale_partitions(scored_by: Mapping[str, str], version: str, window: int | None) -> list[str]:
    """Partitions scored by another version, newest first, within the newest ``window`` scored partitions."""
    partitions = sorted(scored_by, reverse=True)
    if window is not None:
        partitions = partitions[:window]
    return [p for p in partitions if scored_by[p] != version]


def progress(
    scored_by: Mapping[str, str],
    version: str,
    waves: Sequence[Wave],
    *,
    window: int | None,
    resumed_at: float | None,
    cancelled_at: float | None,
) -> Progress:
    stale = stale_partitions(scored_by, version, window)
    since = resumed_at or 0.0
    in_flight = {p for w in waves if w.status == ACTIVE for p in w.partitions}
    # a partition of a failed or finished backfill (since the last resume) that is still behind was not
    # written: reported, and not requested again until a resume
    broken = {p for w in waves if w.status in (BROKEN, FINISHED) and w.at > since for p in w.partitions}
    failed = [p for p in stale if p in broken and p not in in_flight]
    cancels = [(w.at, f"backfill {w.backfill_id} was cancelled") for w in waves if w.status == CANCELED]
    if cancelled_at is not None:
        cancels.append((cancelled_at, "the rollout was cancelled from the CLI"))
    recent = [why for at, why in sorted(cancels) if at > since]
    return Progress(stale, in_flight, failed, recent[-1] if recent else None)


def chunks(partitions: Sequence[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(partitions[i : i + size]) for i in range(0, len(partitions), size)]


def chunk_key(state: RolloutState, partitions: Sequence[str]) -> str:
    return f"{state.rollout_id}:{partitions[-1]}..{partitions[0]}"


def decide(
    *,
    alias_version: str | None,
    alias_sha256: str | None,
    promotion: int,
    scored_by: Mapping[str, str],
    state: RolloutState | None,
    canary_outcome: str | None,
    waves: Sequence[Wave] = (),
    window: int | None = None,
    chunk: int = 10,
    max_per_tick: int = 10,
    resumed_at: float | None = None,
    cancelled_at: float | None = None,
) -> Decision:
    """What to request now.

    ``scored_by`` maps each scored partition to the version of its latest materialization. ``waves`` are
    the backfills of this rollout (version and promotion) found on the instance. ``canary_outcome`` is None
    while the canary run has not finished, "success" once it and its blocking checks passed, or a sentence
    saying why it failed. ``resumed_at`` and ``cancelled_at`` are the times of the last resume (the sensor
    started, or ``rescore resume``) and of a cancel recorded by the CLI.
    """
    if alias_version is None or alias_sha256 is None:
        return Decision([], state, "no model version behind the alias yet")
    if state is None or (state.version, state.promotion) != (alias_version, promotion):
        state = RolloutState(version=alias_version, sha256=alias_sha256, promotion=promotion)
        if waves:  # a reset cursor: this rollout's backfills exist, so its canary passed
            state.phase = ROLLOUT
        else:
            stale = stale_partitions(scored_by, alias_version, window)
            if not stale:
                state.phase = DONE
                return Decision(
                    [], state, f"every scored partition is already scored by version {alias_version}"
                )
            state.canary_partition = stale[0]
            return Decision([Request((stale[0],), state.run_key(stale[0]), CANARY)], state)

    if state.canary_failed:  # sticky: fix the cause and promote again (a new promotion, new run keys)
        return Decision([], state, f"rollout of version {state.version} stopped: {state.reason}")
    now = progress(
        scored_by, state.version, waves, window=window, resumed_at=resumed_at, cancelled_at=cancelled_at
    )
    if now.paused_by:
        state.reason = now.paused_by
        return Decision(
            [],
            state,
            f"rollout of version {state.version} paused: {now.paused_by}; {len(now.stale)} partitions "
            "behind (resume: `batch-assets rescore resume`, or stop and start this sensor)",
        )
    if state.phase == CANARY:
        if canary_outcome == CANCELLED_RUN and state.canary_partition:  # resumed after a cancel: again
            state.canary_attempt += 1
            state.reason = ""
            key = state.run_key(state.canary_partition)
            return Decision([Request((state.canary_partition,), key, CANARY)], state)
        if canary_outcome is None:
            return Decision(
                [],
                state,
                f"waiting for the canary run of {state.canary_partition} "
                f"(run key {state.run_key(state.canary_partition or '')})",
            )
        if canary_outcome != "success":
            state.phase, state.canary_failed = FAILED, True
            state.reason = f"canary {state.canary_partition} failed: {canary_outcome}"
            return Decision([], state, f"rollout of version {state.version} stopped: {state.reason}")
        state.phase = ROLLOUT

    left = [p for p in now.stale if p not in now.in_flight and p not in now.failed]
    state.phase, state.reason = ROLLOUT, ""
    if not left:
        if now.in_flight:
            return Decision(
                [], state, f"waiting for {len(now.in_flight)} partitions being re-scored by {state.version}"
            )
        if now.failed:
            state.phase = FAILED
            state.reason = f"{len(now.failed)} partitions failed to re-score: {', '.join(now.failed[:10])}"
            return Decision([], state, f"rollout of version {state.version} stopped: {state.reason}")
        state.phase = DONE
        return Decision([], state, f"rollout of version {state.version} complete")
    batch = chunks(left, chunk)[:max_per_tick]
    state.chunks_requested += len(batch)
    return Decision([Request(c, chunk_key(state, c), ROLLOUT) for c in batch], state)
