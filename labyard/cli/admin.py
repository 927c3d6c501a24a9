"""`labyard admin ...`: the operator's commands, run on the server's host against its data
directory and database (like `labyard serve`), for people and scripts (`--json`)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from labyard.cli._common import err, out
from labyard.errors import InvalidInput
from labyard.settings import Settings

if TYPE_CHECKING:
    from labyard.services import Labyard


admin = typer.Typer(
    help="Administer accounts, plans, orders and the business.", no_args_is_help=True
)


@contextmanager
def local() -> Iterator[Labyard]:
    """The instance in LABYARD_DATA_DIR, opened for one command."""
    from labyard.services import Labyard

    labyard = Labyard(Settings.from_env())
    try:
        yield labyard
    finally:
        labyard.close()


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
    with local() as labyard:
        user = labyard.accounts.create_user(email, _password(), role=role, plan=plan)
    out.print(user.id)
    err.print(f"created {user.email} ({user.role}, {user.plan})")
