"""`labyard playground start|list|status|stop|restart|destroy|save|fork|saved|schema`."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from labyard.cli._common import err, out, print_json
from labyard.cli.backend import Backend, run_on
from labyard.types import Playground

app = typer.Typer(help="Start and manage playgrounds.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _remaining(playground: Playground) -> str:
    seconds = int((playground.expires_at - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return "expired"
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def _table(playgrounds: list[Playground]) -> Table:
    table = Table("ID", "NAME", "STATE", "MACHINES", "EXPIRES IN")
    for p in playgrounds:
        machines = ", ".join(
            f"{m.name} {m.address} ({m.state}{': ' + m.reason if m.reason else ''})"
            for m in p.machines
        )
        table.add_row(p.id, p.name, p.state, machines, _remaining(p))
    return table


def _show(playgrounds: list[Playground]) -> None:
    """The table, then a line for each playground with a notice for its owner (why it
    stopped)."""
    out.print(_table(playgrounds))
    for p in playgrounds:
        if p.notice:
            out.print(f"{p.id}: {p.notice}", markup=False)


@app.command()
def start(
    name_or_manifest: str = typer.Argument(..., help="A built-in playground or a manifest file."),
    lifetime: int = typer.Option(None, help="Lifetime in seconds (default: the manifest's)."),
    from_saved: bool = typer.Option(
        False, "--saved", help="NAME is one of your saved playgrounds (`playground saved`)."
    ),
    as_json: bool = JSON,
) -> None:
    """Start a playground; prints its id once every machine answers SSH."""

    async def work(backend: Backend) -> Playground:
        with err.status(f"starting {name_or_manifest}…"):
            if from_saved:
                return await backend.start_saved(name_or_manifest, lifetime)
            return await backend.start(name_or_manifest, lifetime)

    playground = run_on(work)
    if as_json:
        print_json(playground.to_json())
    else:
        out.print(playground.id)
        err.print(f"enter it with: labyard ssh {playground.id}")


@app.command("list")
def list_(as_json: bool = JSON) -> None:
    """Playgrounds of this labyard (expired ones are removed first)."""
    playgrounds = run_on(lambda backend: backend.list())
    if as_json:
        print_json([p.to_json() for p in playgrounds])
    else:
        _show(playgrounds)


@app.command()
def status(playground_id: str, as_json: bool = JSON) -> None:
    """One playground, with the live state of each machine."""
    playground = run_on(lambda backend: backend.get(playground_id))
    if as_json:
        print_json(playground.to_json())
    else:
        _show([playground])


@app.command()
def stop(playground_id: str) -> None:
    """Halt the machines; their disks are kept for `restart`."""
    run_on(lambda backend: backend.stop(playground_id))
    err.print(f"stopped {playground_id}")


@app.command()
def restart(playground_id: str) -> None:
    """Start the machines again, with their disks as they were."""
    run_on(lambda backend: backend.restart(playground_id))
    err.print(f"restarted {playground_id}")


@app.command()
def destroy(playground_ids: list[str]) -> None:
    """Remove playgrounds and everything they had on the host."""

    async def work(backend: Backend) -> None:
        for playground_id in playground_ids:
            await backend.destroy(playground_id)
            err.print(f"destroyed {playground_id}")

    run_on(work)


@app.command()
def save(
    playground_id: str,
    name: str = typer.Argument(..., help="Its name among your saved playgrounds."),
) -> None:
    """Save a stopped playground's machines, with everything installed or written in them,
    as new images plus a manifest; start it again with `labyard playground start --saved`."""

    async def work(backend: Backend) -> dict[str, object]:
        with err.status(f"saving {playground_id} as {name}…"):
            return await backend.save(playground_id, name)

    saved = run_on(work)
    out.print(saved["name"])
    err.print(f"start it with: labyard playground start --saved {name}")


@app.command()
def fork(playground_id: str, as_json: bool = JSON) -> None:
    """Start a copy of a running (frozen for a moment while copied) or stopped playground;
    prints the copy's id."""

    async def work(backend: Backend) -> Playground:
        with err.status(f"forking {playground_id}…"):
            return await backend.fork(playground_id)

    copy = run_on(work)
    if as_json:
        print_json(copy.to_json())
    else:
        out.print(copy.id)
        err.print(f"enter it with: labyard ssh {copy.id}")


@app.command()
def saved(as_json: bool = JSON) -> None:
    """Your saved playgrounds."""
    found = run_on(lambda backend: backend.saved())
    if as_json:
        print_json(found)
        return
    table = Table("NAME", "MACHINES", "SAVED", "FROM")
    for s in found:
        machines = ", ".join(f"{m['name']} ({m['image']})" for m in s["machines"])
        table.add_row(s["name"], machines, s["created_at"][:19], s["source_playground_id"])
    out.print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of playground manifests."""
    from labyard.manifest import json_schema

    out.print(json_schema(), soft_wrap=True)


@app.command()
def validate(manifest: str) -> None:
    """Check a manifest file; prints every problem with its line."""
    from labyard.manifest import load_manifest

    load_manifest(manifest)
    err.print(f"{manifest}: ok")
