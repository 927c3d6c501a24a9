"""`labyard cluster ...`: the servers playgrounds run on, for a driver that has several (an
LXD or Incus cluster): run on the control plane's host, against its data directory."""

from __future__ import annotations

import typer
from rich.table import Table

from labyard.cli._common import err, out, print_json, run

app = typer.Typer(help="The servers playgrounds run on, and their regions.", no_args_is_help=True)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value >> 20:,} MiB"


@app.command("members")
def members(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every server of the cluster: its regions, state, playgrounds and free memory."""
    found = run(lambda labyard: labyard.cluster.members())
    if as_json:
        print_json([m.to_json() for m in found])
        return
    table = Table("member", "regions", "state", "playgrounds", "free memory", "memory")
    for m in found:
        table.add_row(
            m.name,
            ", ".join(m.regions) or "-",
            m.state,
            str(m.playgrounds),
            _mib(m.memory_free),
            _mib(m.memory_total),
        )
    out.print(table)


@app.command("regions")
def regions(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every region of the regions file: its cluster group, countries, members and state."""
    found = run(lambda labyard: labyard.cluster.regions_now())
    if as_json:
        print_json([r.to_json() for r in found])
        return
    table = Table("region", "title", "group", "state", "members", "countries")
    for r in found:
        table.add_row(
            r.name, r.title, r.group, r.state, ", ".join(r.members) or "-", " ".join(r.countries)
        )
    out.print(table)


@app.command("evacuate")
def evacuate(
    member: str = typer.Argument(..., help="The member to drain (`labyard cluster members`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Give MEMBER no new playgrounds, and stop the ones it runs (their disks stay, to start
    again after `labyard cluster restore MEMBER`); learners' new starts run elsewhere."""
    drained = run(lambda labyard: labyard.cluster.evacuate(member))
    if as_json:
        print_json([d.to_json() for d in drained])
        return
    for d in drained:
        out.print(f"{d.playground_id}\t{d.owner or '-'}\twas {d.was}")
    err.print(f"{member} is drained: {len(drained)} playground(s) on it, stopped")


@app.command("restore")
def restore(member: str = typer.Argument(..., help="A drained member.")) -> None:
    """Let MEMBER take new playgrounds again."""
    run(lambda labyard: labyard.cluster.restore(member))
    err.print(f"{member} takes new playgrounds again")
