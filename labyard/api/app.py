"""The HTTP application: JSON API under /api, web pages, WebSockets; one error handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from types import EllipsisType

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from labyard.api import (
    account_pages,
    admin_pages,
    analytics,
    attempts,
    auth,
    billing,
    class_pages,
    classes,
    cluster,
    content,
    files,
    health,
    invoices,
    learn_pages,
    look_pages,
    looks,
    lti,
    pages,
    playgrounds,
    ports,
    pricing,
    promos,
    saved,
    shares,
    task_devtools,
    team_pages,
    teams,
    terminals,
    tunnel,
    web,
)
from labyard.errors import LabyardError
from labyard.services import Labyard
from labyard.services.reconciler import Heartbeat, reconcile_forever

log = logging.getLogger("labyard.api")


def _error(status: int, message: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "reason": reason}}, status_code=status)


def create_app(
    labyard: Labyard, *, reconcile_interval_s: float | EllipsisType | None = ...
) -> FastAPI:
    """The app for one labyard instance. The reconciler runs in the background every
    `reconcile_interval_s` seconds (by default the settings' interval), or not at all with
    None; its heartbeat, in `app.state.reconciler`, is what /healthz reports."""
    interval_s = (
        labyard.settings.reconcile_interval_s
        if isinstance(reconcile_interval_s, EllipsisType)
        else reconcile_interval_s
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = pools = None
        if interval_s is not None:
            app.state.reconciler = Heartbeat(interval_s)
            task = asyncio.create_task(reconcile_forever(labyard.playgrounds, app.state.reconciler))
            pools = asyncio.create_task(labyard.pools.keep_warm_forever())  # services/pools.py
        await labyard.attempts.resume()  # checks of attempts under way go on after a restart
        yield
        for background in (task, pools):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background  # a host step under way finishes first (runtime/local)
        await labyard.pools.close()
        await labyard.attempts.shutdown()

    app = FastAPI(
        title="labyard",
        version="0.1.0",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.labyard = labyard
    app.state.reconciler = None

    @app.exception_handler(LabyardError)
    async def labyard_error(request: Request, exc: LabyardError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s %s: %s (%s)", request.method, request.url.path, exc.message, exc.detail)
        return _error(exc.http_status, exc.message, exc.reason)

    @app.exception_handler(DataError)
    async def refused_by_database(request: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold (PostgreSQL: NUL characters, numbers out of
        # range, strings over a column's length): the input's fault, not the server's.
        log.warning(
            "%s %s: database refused a value: %s", request.method, request.url.path, exc.orig
        )
        return _error(
            422,
            "a value in the request is not valid (control character, too long or out of range)",
            "invalid_input",
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, problems, "invalid_input")

    @app.middleware("http")
    async def access_log(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        response = await call_next(request)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return response

    for router in (
        auth.router,
        playgrounds.router,
        attempts.router,
        files.router,
        task_devtools.router,
        health.router,
        tunnel.router,
        shares.router,
        ports.router,
        content.router,
        learn_pages.api_router,
        billing.router,
        analytics.router,
        invoices.router,
        pricing.api_router,
        promos.router,
        cluster.router,
        teams.router,
        classes.router,
        looks.router,
        lti.router,
        saved.router,
    ):
        app.include_router(router)
    app.add_middleware(ports.SubdomainPorts, domain=labyard.settings.ports_domain)
    # Web UI: pages, the terminal WebSocket and static files (see labyard/api/web.py).
    for router in (
        account_pages.router,
        admin_pages.router,
        analytics.pages,
        pages.router,
        pricing.router,
        promos.pages,
        cluster.pages,
        learn_pages.router,
        team_pages.router,
        class_pages.router,
        look_pages.router,
        lti.pages,
        saved.pages,
        terminals.router,
    ):
        app.include_router(router)
    web.mount_static(app)
    return app
