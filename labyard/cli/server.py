"""`labyard serve` and `labyard admin create-user`.

The server stack (services, database, FastAPI, uvicorn) is imported by the commands that run
it, not when the CLI starts.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import typer

from labyard.cli._common import err, out
from labyard.errors import InvalidInput
from labyard.settings import Settings

admin = typer.Typer(help="Administer accounts.", no_args_is_help=True)
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
    uvicorn.run(
        create_app(labyard),
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise InvalidInput("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


@admin.command("create-user")
def create_user(
    email: str,
    role: str = typer.Option("learner", help="learner, author or admin."),
    plan: str = typer.Option("free", help="free or premium."),
) -> None:
    """Create an account; the password is read from stdin when it is not a terminal."""
    from labyard.services import Labyard

    labyard = Labyard(Settings.from_env())
    try:
        user = labyard.accounts.create_user(email, _password(), role=role, plan=plan)
    finally:
        labyard.close()
    out.print(user.id)
    err.print(f"created {user.email} ({user.role}, {user.plan})")
