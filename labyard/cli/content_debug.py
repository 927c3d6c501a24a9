"""`labyard content debug PLAYGROUND_ID`: the authors' task panel, live, in a terminal.

What it shows is GET /api/playgrounds/{id}/devtools (services/tasks/devtools.py): every task
with its state, why a blocked one waits, how often it ran, the `env` it ran with, and each
check's last exit code, duration, stdout and stderr. On a server (after `labyard login`)
that is the server's own checker's output; on this host, the running tasks' checks are run
once more by this command to show theirs (nothing they find is applied).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from labyard.cli import backend
from labyard.cli._common import out

STATE_STYLES = {
    "completed": "green",
    "running": "cyan",
    "blocked": "yellow",
    "failed": "red",
    "created": "dim",
}
KIND_NAMES = {"run": "check", "hint": "hintcheck", "fail": "failcheck"}
OUTPUT_LINES = 6
"""Lines of stdout/stderr shown per check (the last ones: where errors are)."""


def debug(
    playground_id: str = typer.Argument(..., help="The playground of the attempt."),
    once: bool = typer.Option(False, "--once", help="Print the view once and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the view as JSON, once."),
    interval: float = typer.Option(1.0, help="Seconds between refreshes."),
) -> None:
    """Show every task of the attempt in a playground, live: state, last check output
    (check, hintcheck, failcheck), duration, runs, env, and what a blocked task waits for.
    Ctrl-C to stop. For authors and admins, on their own attempts."""

    async def work(chosen: backend.Backend) -> None:
        import asyncio  # here, not at start-up: every other command would pay for it

        from rich.live import Live

        if as_json:
            sys.stdout.write(json.dumps(await chosen.devtools(playground_id), indent=2) + "\n")
            return
        if once:
            out.print(render(await chosen.devtools(playground_id)))
            return
        with Live(render(await chosen.devtools(playground_id)), console=out) as live:
            while True:
                await asyncio.sleep(interval)
                live.update(render(await chosen.devtools(playground_id)))

    try:
        backend.run_on(work)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def render(view: dict[str, Any]) -> RenderableType:
    """The view as rich renderables: a header line, then a panel per task."""
    attempt = view["attempt"]
    head = Text.assemble(
        (f"{attempt['title']} ", "bold"),
        (f"({attempt['content']}, attempt {attempt['id']}) ", "dim"),
        (attempt["state"], _style(attempt["state"])),
    )
    if attempt["message"]:
        head.append(f"  {attempt['message']}", "dim")
    if (view.get("checker") or {}).get("paused"):
        head.append("  checks paused: nobody is watching", "yellow")
    parts: list[RenderableType] = [head]
    parts += [_task(task) for task in view["tasks"]]
    if view["solution"]:
        steps = ", ".join(f"{s['index'] + 1}. {s['file']}@{s['machine']}" for s in view["solution"])
        parts.append(Text(f"solution steps: {steps}", "dim"))
    return Group(*parts)


def _task(task: dict[str, Any]) -> Panel:
    title = Text.assemble(
        (task["name"], "bold"),
        " ",
        (task["state"], _style(task["state"])),
        (
            f"  ran {task['runs']}x  {task['user']}@{task['machine']}",
            "dim",
        ),
    )
    rows: list[RenderableType] = []
    if task["waiting_for"]:
        rows.append(Text(f"waits for: {', '.join(task['waiting_for'])}", "yellow"))
    if task["hint"]:
        rows.append(Text(f"hint shown: {task['hint']}", "dim"))
    if task["env"]:
        env = " ".join(f"{k}={v}" for k, v in task["env"].items())
        rows.append(Text(f"env: {env}", "dim"))
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for kind, run in task["checks"].items():
        table.add_row(KIND_NAMES[kind], _run(run))
    if task["checks"]:
        rows.append(table)
    if not rows:
        rows.append(Text("init task" if task["init"] else "no checks", "dim"))
    return Panel(Group(*rows), title=title, title_align="left", border_style="dim")


def _run(run: dict[str, Any] | None) -> RenderableType:
    if run is None:
        return Text("not run yet", "dim")
    line = Text.assemble(
        (f"exit {run['exit_code']}", "green" if run["exit_code"] == 0 else "red"),
    )
    if run["duration_s"] is not None:
        line.append(f"  {run['duration_s'] * 1000:.0f} ms", "dim")
    if run["timed_out"]:
        line.append("  timed out", "red")
    parts: list[RenderableType] = [line]
    for name in ("stdout", "stderr"):
        text = run[name].rstrip("\n")
        if text:
            last = "\n".join(text.splitlines()[-OUTPUT_LINES:])
            parts.append(Text(f"{name}: ", "dim") + Text(last))
    return Group(*parts)


def _style(state: str) -> str:
    return STATE_STYLES.get(state, "bold")
