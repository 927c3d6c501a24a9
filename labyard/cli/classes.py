"""`labyard class create FILE`: a class from a YAML file (docs/classes.md has the format).

The file is validated here first, every problem as file:line: field, like a manifest. On a
server (after `labyard login`, or with `--server`) the class is made through its API as the
signed-in instructor, and the server's objections to content keys and the region come back
with their lines too; otherwise it is made in the local instance for the instructor `--instructor`
names (and content from `--content`, as `labyard serve`). Prints the class's id on stdout,
its join code and link on stderr.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from labyard.cli._common import err, out, print_json
from labyard.cli.backend import server_option

if TYPE_CHECKING:
    from labyard.manifest.source import YamlSource
    from labyard.services.class_spec import ClassSpec

app = typer.Typer(help="Classes and workshops.", no_args_is_help=True)
_CONTENT_PROBLEM = re.compile(r"^content\[(\d+)\]: (.*)$")
_REGION_PROBLEM = re.compile(r"^region: (.*)$")


@app.command()
def create(
    file: Path = typer.Argument(..., help="The class as YAML (title, content, seats, ...)."),
    instructor: str = typer.Option(
        None, "--instructor", help="Local instance only: the instructor's (or admin's) email."
    ),
    content: Path = typer.Option(
        None, "--content", help="Local instance only: the content folder (as `labyard serve`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the class as JSON."),
) -> None:
    """Create a class; prints its id (join code and link on stderr)."""
    from labyard.cli import credentials
    from labyard.services.class_spec import read_class_file

    spec, source = read_class_file(file)
    login = credentials.current(server_option())
    if login is not None:
        made = _remote(login.server, login.token, spec, source)
    else:
        made = _local(spec, source, instructor, content)
    if as_json:
        print_json(made)
    else:
        out.print(made["id"])
        err.print(f"join code {made['join_code']} · {made['join_url']}")


def _remote(server: str, token: str, spec: ClassSpec, source: YamlSource) -> dict[str, Any]:
    import asyncio

    from labyard.cli._client import ApiClient
    from labyard.errors import InvalidInput

    async def call() -> dict[str, Any]:
        body = spec.model_dump(mode="json")
        made: dict[str, Any] = await ApiClient(server, token).call("POST", "/api/classes", body)
        return made

    try:
        return asyncio.run(call())
    except InvalidInput as exc:
        raise _located(exc.message, source) from exc


def _located(message: str, source: YamlSource) -> Exception:
    """The server's `content[i]: ...` and `region: ...` problems at their lines in the file."""
    from labyard.errors import InvalidInput, ManifestError

    problems = []
    for part in message.split("; "):
        if found := _CONTENT_PROBLEM.match(part):
            problems.append(source.error(("content", int(found[1])), found[2]))
        elif found := _REGION_PROBLEM.match(part):
            problems.append(source.error(("region",), found[1]))
        else:
            return InvalidInput(message)
    return ManifestError(problems)


def _local(
    spec: ClassSpec, source: YamlSource, instructor: str | None, content: Path | None
) -> dict[str, Any]:
    from labyard.cli.server import DEFAULT_CONTENT
    from labyard.errors import InvalidInput, ManifestError
    from labyard.services import Labyard
    from labyard.settings import Settings

    if not instructor:
        raise InvalidInput("give the instructor's email with --instructor (or `labyard login`)")
    content = content or (DEFAULT_CONTENT if DEFAULT_CONTENT.is_dir() else None)
    labyard = Labyard(Settings.from_env(), content_dir=content)
    try:
        problems = labyard.classes.problems(spec)
        if problems:
            raise ManifestError([source.error(loc, message) for loc, message in problems])
        user = labyard.accounts.by_email(instructor)
        # No server address here: the join link is the path on the server (/classes/join/...).
        return labyard.classes.create(user, spec).to_json("")
    finally:
        labyard.close()
