"""/healthz and Prometheus /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text

from labyard.api.deps import LabyardDep

router = APIRouter(tags=["operations"])

PLAYGROUNDS_RUNNING = Gauge("labyard_playgrounds_running", "Playgrounds in state running")
STARTS = Counter("labyard_playground_starts_total", "Playground starts", ["outcome"])
START_SECONDS = Histogram(
    "labyard_playground_start_seconds",
    "Start request to every machine answering SSH",
    buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
TERMINALS = Gauge("labyard_terminals_open", "Browser terminals connected now")


@router.get("/healthz")
def healthz(labyard: LabyardDep) -> dict[str, str]:
    """200 when the database answers."""
    with labyard.db.session() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics(labyard: LabyardDep) -> Response:
    running = [p for p in await labyard.playgrounds.list() if p.state == "running"]
    PLAYGROUNDS_RUNNING.set(len(running))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
