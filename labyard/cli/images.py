"""`labyard image build|list|rm`."""

from __future__ import annotations

import typer
from rich.table import Table

from labyard.cli._common import err, out, print_json
from labyard.settings import Settings

app = typer.Typer(help="Build, list and remove machine images.", no_args_is_help=True)


@app.command("build")
def build(
    names: list[str] = typer.Argument(None, help="Images to build (default: all recipes)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
) -> None:
    """Build images from their recipes; an image whose recipe did not change is kept.
    Without names, every recipe from the Debian archive (name the others to build them)."""
    from labyard.images import build_image, recipe_names, resolve

    settings = Settings.from_env()
    if not names:
        names = []
        for name in recipe_names():
            mirror = resolve(name).mirror
            if mirror is None:
                names.append(name)
            else:
                err.print(f"{name}: skipped (needs {mirror.url}; name it to build it)")
    for name in names:
        with err.status(f"building {name}…") as status:
            image = build_image(
                settings.images_dir,
                name,
                force=force,
                progress=lambda line: status.update(line[:100]),
            )
        err.print(f"[green]✓[/] {name} {image.digest} ({image.size_bytes / 2**20:.0f} MiB)")
        out.print(image.path, soft_wrap=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Built images, and whether each matches its current recipe."""
    from labyard.images import list_images

    images = list_images(Settings.from_env().images_dir)
    if as_json:
        print_json(
            [
                {
                    "name": i.name,
                    "digest": i.digest,
                    "current": i.current,
                    "size_bytes": i.size_bytes,
                    "built_at": i.built_at,
                    "path": str(i.path),
                }
                for i in images
            ]
        )
        return
    table = Table("NAME", "DIGEST", "SIZE", "BUILT", "CURRENT")
    for i in images:
        table.add_row(
            i.name,
            i.digest,
            f"{i.size_bytes / 2**20:.0f} MiB",
            i.built_at,
            "yes" if i.current else "no (recipe changed)",
        )
    out.print(table)


@app.command("rm")
def rm(name: str) -> None:
    """Remove every build of an image (refused while a playground uses it)."""
    from labyard.images import remove_image

    for image in remove_image(Settings.from_env().images_dir, name):
        err.print(f"removed {image.name} {image.digest}")
