"""The `labyard` command.

Labyard errors print `labyard: <sentence>` to stderr with their exit code; an OSError that
escaped untranslated (the host refused something: a runtime failure) prints the same way,
exit 5. Usage errors (unknown option or command, missing argument, bad value) are Typer's
own: its usage panel on stderr, exit 2. Typer parses the command line with a copy of Click
of its own (`typer._click`), so only Typer itself can tell its exceptions apart; it runs in
standalone mode and handles them, and nothing here imports Click.

Starting is cheap: the command modules import only Typer, Rich and the standard library;
each command imports what it uses (the server stack, SSH, the HTTP client) when it runs.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer

from labyard.cli import (
    account,
    admin,
    backend,
    classes,
    cluster,
    content,
    images,
    machines,
    openssh,
    playgrounds,
    server,
)
from labyard.cli._common import err, print_json, run
from labyard.errors import LabyardError, ManifestError, RuntimeFailure

cli = typer.Typer(
    name="labyard",
    help="Disposable Linux playgrounds with real machines, on one host.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli.add_typer(images.app, name="image")
cli.add_typer(playgrounds.app, name="playground")
cli.command("ssh")(machines.ssh)
cli.command("exec")(machines.exec_)
cli.command("cp")(machines.cp)
cli.command("port-forward")(machines.port_forward)
cli.command("ssh-proxy")(openssh.ssh_proxy)
cli.command("ssh-config")(openssh.ssh_config)
cli.command("login")(account.login)
cli.command("logout")(account.logout)
cli.command("serve")(server.serve)
cli.add_typer(admin.admin, name="admin")
cli.add_typer(content.app, name="content")
cli.add_typer(classes.app, name="class")
cli.add_typer(cluster.app, name="cluster")


@cli.callback()
def main(
    server_url: str = typer.Option(
        None, "--server", help="Act on this labyard server (env LABYARD_SERVER)."
    ),
) -> None:
    """Disposable Linux playgrounds with real machines: on this host, or on a server after
    `labyard login`."""
    backend.use_server(server_url)


@cli.command()
def reconcile(as_json: bool = typer.Option(False, "--json")) -> None:
    """Destroy expired playgrounds and remove what no playground owns from the host."""
    from labyard.services import reconcile as reconcile_round

    report = run(lambda labyard: reconcile_round(labyard.playgrounds))
    if as_json:
        print_json(report.__dict__)
    else:
        for key, ids in report.__dict__.items():
            if ids:
                err.print(f"{key}: {', '.join(ids)}")


def app(argv: list[str] | None = None) -> Any:
    """Entry point: runs the CLI (which exits: Typer's standalone mode) and turns labyard
    errors into messages and exit codes. Called without `argv`, as the `labyard` command,
    the process is the command's: it ends as soon as the command has (see `_end`)."""
    try:
        return _run(argv)
    except SystemExit as done:
        if argv is not None:
            raise
        _end(done.code)


def _run(argv: list[str] | None) -> Any:
    try:
        return cli(args=argv, prog_name="labyard")
    except LabyardError as exc:
        message = exc.message
        if isinstance(exc, ManifestError):
            message = "invalid manifest:\n" + "\n".join(f"  {p}" for p in exc.problems)
        err.print(f"labyard: {message}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # the host refused something no layer translated: still one line
        err.print(f"labyard: {exc}", markup=False, soft_wrap=True)
        sys.exit(RuntimeFailure.exit_code)
    except KeyboardInterrupt:  # Typer turns one inside a command into exit 130 itself
        err.print("labyard: interrupted")
        sys.exit(130)


def _end(code: object) -> NoReturn:
    """Exit with `code` once stdout and stderr are flushed, skipping the interpreter's
    teardown: with SSH and crypto loaded it frees module after module for ~55 ms of every
    `labyard exec`, for a process that is ending anyway. Files, connections and terminals
    are closed by the commands themselves (context managers, asyncio.run) before this."""
    if isinstance(code, str):  # what `sys.exit("message")` means
        sys.stderr.write(code + "\n")
        code = 1
    status = code if isinstance(code, int) else (0 if code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            status = status or 1
    os._exit(status)
