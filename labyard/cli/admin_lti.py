"""`labyard admin lti add|list|remove`: the LTI 1.3 platforms (LMSs) labyard accepts
launches from, managed on the server's host against its data directory and database (like
the other admin commands). Results on stdout (`--json` for scripts), messages on stderr.
The rules are services/lti/registrations.py's; docs/lti.md says what to enter.
"""

from __future__ import annotations

import typer
from rich.table import Table

from labyard.cli._common import err, out, print_json

lti = typer.Typer(help="Register the LMSs (LTI 1.3 platforms) labyard works with.")


@lti.command("add")
def add(
    issuer: str = typer.Option(..., "--issuer", help="The platform's issuer (iss), a URL."),
    client_id: str = typer.Option(..., "--client-id", help="The client id it gave labyard."),
    deployments: list[str] = typer.Option(
        ..., "--deployment", help="A deployment id (repeat for more)."
    ),
    jwks_url: str = typer.Option(..., "--jwks-url", help="Its public keyset URL."),
    auth_url: str = typer.Option(..., "--auth-url", help="Its OIDC authentication URL."),
    token_url: str = typer.Option(..., "--token-url", help="Its OAuth2 access token URL."),
    name: str = typer.Option("", "--name", help="What to call it (default: its host name)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register a platform."""
    from labyard.cli._common import local
    from labyard.services.lti import NewPlatform

    new = NewPlatform(issuer, client_id, tuple(deployments), jwks_url, auth_url, token_url, name)
    with local() as labyard:
        platform = labyard.lti.registrations.add(None, new)
    if as_json:
        print_json(platform.to_json())
        return
    out.print(platform.id)
    err.print(f"registered {platform.name}: {platform.issuer} (client id {platform.client_id})")


@lti.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every registered platform."""
    from labyard.cli._common import local

    with local() as labyard:
        found = labyard.lti.registrations.list(None)
    if as_json:
        print_json([p.to_json() for p in found])
        return
    table = Table("id", "name", "issuer", "client id", "deployments", "JWKS URL")
    for p in found:
        table.add_row(
            str(p.id), p.name, p.issuer, p.client_id, ", ".join(p.deployment_ids), p.jwks_url
        )
    out.print(table)


@lti.command("remove")
def remove(
    platform_id: int = typer.Argument(
        ..., help="The platform's id (see `labyard admin lti list`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove a platform: its launches stop working; its accounts stay, without LMS links."""
    from labyard.cli._common import local

    with local() as labyard:
        gone = labyard.lti.registrations.remove(None, platform_id)
    if as_json:
        print_json(gone.to_json())
    else:
        err.print(f"removed {gone.name}: {gone.issuer} (client id {gone.client_id})")
