"""`labyard serve`.

The server stack (services, database, FastAPI, uvicorn) is imported by the commands that run
it, not when the CLI starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from labyard.cli._common import err
from labyard.settings import Settings

DEFAULT_CONTENT = Path(__file__).resolve().parents[2] / "content"


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(None, help="State directory (env LABYARD_DATA_DIR)."),
    content: Path = typer.Option(None, help="Content folder (default: ./content if present)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Run the server: web UI, JSON API under /api, terminals, reconciler."""
    import uvicorn

    from labyard import logs
    from labyard.api.app import create_app
    from labyard.services import Labyard

    if data_dir is not None:
        os.environ["LABYARD_DATA_DIR"] = str(data_dir)
    content_dir = content or (DEFAULT_CONTENT if DEFAULT_CONTENT.is_dir() else None)
    logs.configure(log_level.upper())
    labyard = Labyard(Settings.from_env(), content_dir=content_dir)
    err.print(f"labyard: serving on http://{host}:{port}/ (data in {labyard.settings.data_dir})")
    if labyard.driver.name != "local":
        err.print(
            f"labyard: machines run on the {labyard.driver.name} runtime (LABYARD_DRIVER)"
            + (
                "; it isolates nothing: never let strangers in"
                if labyard.driver.name == "fake"
                else ""
            )
        )
    uvicorn.run(
        create_app(labyard),
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
