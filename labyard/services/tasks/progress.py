"""A learner's progress: per content item, solved or attempted, with times."""

from __future__ import annotations

from typing import Any

from labyard.services.tasks.records import AttemptRecord
from labyard.types import AttemptState


def summarize(records: list[AttemptRecord]) -> list[dict[str, Any]]:
    """One entry per content item, most recently started first."""
    by_key: dict[str, list[AttemptRecord]] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        by_key.setdefault(record.content_key, []).append(record)
    entries = [_entry(key, attempts) for key, attempts in by_key.items()]
    return sorted(entries, key=lambda e: str(e["last_started_at"]), reverse=True)


def _entry(key: str, attempts: list[AttemptRecord]) -> dict[str, Any]:
    solved = [a for a in attempts if a.state == AttemptState.SOLVED and a.finished_at]
    durations = [(a.finished_at - a.started_at).total_seconds() for a in solved if a.finished_at]
    first_solved = solved[0].finished_at if solved and solved[0].finished_at else None
    return {
        "content": key,
        "title": attempts[-1].spec.title,
        "state": "solved" if solved else "attempted",
        "attempts": len(attempts),
        "active_attempt": next((a.id for a in attempts if not a.finished), None),
        "first_started_at": attempts[0].started_at.isoformat(),
        "last_started_at": attempts[-1].started_at.isoformat(),
        "first_solved_at": first_solved.isoformat() if first_solved else None,
        "best_seconds": round(min(durations), 1) if durations else None,
    }
