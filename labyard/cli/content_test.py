"""`labyard content test PATH`: each challenge passes with its solution and not without."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from labyard.cli._common import err, out, print_json, run

if TYPE_CHECKING:
    from labyard.services import Labyard
    from labyard.services.tasks.selftest import Verdict


def test(
    path: Path = typer.Argument(..., help="A content folder or one challenge's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    only: str = typer.Option(None, "--only", help="Test only the challenge with this name."),
) -> None:
    """Run every challenge in fresh playgrounds of this host: with solution.sh every task
    must complete within its timeout; without it, some task must stay unfinished.
    Exits 1 if any challenge fails."""
    from labyard.services.tasks import Attempts
    from labyard.services.tasks.selftest import collect, test_challenge

    found = collect(path, only)
    for problem in found.problems:
        err.print(f"labyard: warning: {problem}", markup=False, soft_wrap=True)

    async def work(labyard: Labyard) -> list[Verdict]:
        # Nobody watches these attempts: their checks must not pause.
        attempts = Attempts(labyard.playgrounds, labyard.catalog, idle_pause_s=None)
        verdicts = []
        try:
            for item in found.items:
                with err.status(f"testing {item.key}…"):
                    verdict = await test_challenge(attempts, item, found.playgrounds)
                word = "passed" if verdict.passed else f"FAILED: {verdict.message}"
                err.print(f"{item.key}: {word} ({verdict.seconds:g} s)", markup=False)
                verdicts.append(verdict)
        finally:
            await attempts.shutdown()
        return verdicts

    verdicts = run(work)
    if as_json:
        print_json([v.to_json() for v in verdicts])
    else:
        out.print(_table(verdicts))
    if not all(v.passed for v in verdicts):
        raise typer.Exit(1)


def _table(verdicts: list[Verdict]) -> Table:
    table = Table("NAME", "PASSED", "SECONDS", "TASKS")
    for v in verdicts:
        tasks = ", ".join(f"{name}: {state}" for name, state in v.tasks.items())
        table.add_row(v.name, "yes" if v.passed else "no", f"{v.seconds:g}", tasks or v.message)
    return table
