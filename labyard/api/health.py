"""/healthz and Prometheus /metrics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from labyard.api.deps import LabyardDep
from labyard.services.reconciler import Heartbeat

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

PLAYGROUNDS_RUNNING = Gauge("labyard_playgrounds_running", "Playgrounds in state running")
STARTS = Counter("labyard_playground_starts_total", "Playground starts", ["outcome"])
START_SECONDS = Histogram(
    "labyard_playground_start_seconds",
    "Start request to every machine answering SSH",
    buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
TERMINALS = Gauge("labyard_terminals_open", "Browser terminals connected now")


@router.get("/healthz", responses={503: {"description": "Unhealthy; `reason` says why"}})
def healthz(request: Request, response: Response, labyard: LabyardDep) -> dict[str, Any]:
    """200 `{"status": "ok"}` while the database answers and, in a server that runs the
    reconciler, rounds keep succeeding: `reconciler` holds the interval and the age in
    seconds of the last successful round. 503 `{"status": "unhealthy", "reason": ...}` when
    the database does not answer or no round has succeeded for three intervals."""
    body: dict[str, Any] = {"status": "ok"}
    problem = _database_problem(labyard)
    heartbeat: Heartbeat | None = request.app.state.reconciler
    if heartbeat is not None:
        body["reconciler"] = heartbeat.to_json()
        problem = problem or heartbeat.problem()
    if problem:
        response.status_code = 503
        body.update(status="unhealthy", reason=problem)
    return body


def _database_problem(labyard: LabyardDep) -> str | None:
    try:
        with labyard.db.session() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("healthz: the database does not answer: %s", exc)
        return f"the database does not answer ({type(exc).__name__})"
    return None


@router.get("/metrics", include_in_schema=False)
async def metrics(labyard: LabyardDep) -> Response:
    running = [p for p in await labyard.playgrounds.list() if p.state == "running"]
    PLAYGROUNDS_RUNNING.set(len(running))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
