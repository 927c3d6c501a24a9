"""`labyard image build|import|list|rm`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from labyard.cli._common import err, out, print_json
from labyard.settings import Settings

app = typer.Typer(help="Build, list and remove machine images.", no_args_is_help=True)


def _files(pairs: list[str]) -> dict[str, Path]:
    from labyard.errors import InvalidInput

    files: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InvalidInput(f"--file {pair}: give NAME=PATH (a build input of the recipe)")
        files[name] = Path(path)
    return files


def _buildable_by_default(name: str) -> bool:
    """Whether `labyard image build` without names builds it (else it says why not)."""
    from labyard.images import resolve

    recipe = resolve(name)
    if recipe.mirror is not None:
        err.print(f"{name}: skipped (needs {recipe.mirror.url}; name it to build it)")
        return False
    if recipe.inputs:
        flags = " ".join(f"--file {i.name}=PATH" for i in recipe.inputs)
        err.print(
            f"{name}: skipped (needs files from outside the Debian archive: "
            f"{', '.join(i.name for i in recipe.inputs)}; name it to download them, or give "
            f"them: labyard image build {name} {flags})"
        )
        return False
    return True


@app.command("build")
def build(
    names: list[str] = typer.Argument(None, help="Images to build (default: all recipes)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if up to date."),
    dockerfile: Path = typer.Option(
        None, "--dockerfile", help="Build NAME from this Dockerfile (Docker or buildah)."
    ),
    file: list[str] = typer.Option(
        [], "--file", help="A recipe's build input as a local file: NAME=PATH (repeatable)."
    ),
    no_ssh: bool = typer.Option(
        False, "--no-ssh", help="With --dockerfile: the image has no sshd."
    ),
) -> None:
    """Build images from their recipes; an image whose recipe did not change is kept.
    Without names, every recipe from the Debian archive that needs no outside files (name
    the others to build them). With --dockerfile, one NAME built by the host's Docker or
    buildah and imported."""
    from labyard.errors import InvalidInput
    from labyard.images import build_image, recipe_names

    settings = Settings.from_env()
    if dockerfile is not None:
        if len(names or []) != 1:
            raise InvalidInput("--dockerfile builds one image: give exactly one NAME")
        from labyard.images.dockerfile import build_from_dockerfile

        with err.status(f"building {names[0]} from {dockerfile}…") as status:
            image = build_from_dockerfile(
                settings.images_dir,
                names[0],
                dockerfile,
                no_ssh=no_ssh,
                progress=lambda line: status.update(line[:100]),
            )
        _built(image)
        return
    files = _files(file)
    if files and len(names or []) != 1:
        raise InvalidInput("--file gives one recipe's inputs: give exactly one NAME")
    if not names:
        names = [name for name in recipe_names() if _buildable_by_default(name)]
    for name in names:
        with err.status(f"building {name}…") as status:
            image = build_image(
                settings.images_dir,
                name,
                force=force,
                progress=lambda line: status.update(line[:100]),
                files=files,
            )
        _built(image)


def _built(image: object) -> None:
    from labyard.images import Image

    assert isinstance(image, Image)  # typed loosely: this module imports no images at start
    err.print(f"[green]✓[/] {image.name} {image.digest} ({image.size_bytes / 2**20:.0f} MiB)")
    out.print(image.path, soft_wrap=True)


@app.command("import")
def import_(
    name: str = typer.Argument(..., help="The new image's name."),
    archive: Path = typer.Argument(
        ..., help="A `docker save` tar, or an OCI image layout (tar or directory)."
    ),
    no_ssh: bool = typer.Option(
        False, "--no-ssh", help="The image has no sshd on purpose (it cannot start: see docs)."
    ),
) -> None:
    """Make a machine image from a container image archive; refused (nothing kept) when it
    cannot boot as a machine: systemd as /sbin/init and an sshd are needed."""
    from labyard.images.imports import import_image

    with err.status(f"importing {archive}…") as status:
        image = import_image(
            Settings.from_env().images_dir,
            name,
            archive,
            no_ssh=no_ssh,
            progress=lambda line: status.update(line[:100]),
        )
    _built(image)
    if not image.ssh:
        err.print(
            f"{name} is no-ssh: kept and listed, but no playground can start it (labyard "
            "reaches machines only over SSH)"
        )


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
                    "origin": i.origin,
                    "ssh": i.ssh,
                    "path": str(i.path),
                }
                for i in images
            ]
        )
        return
    table = Table("NAME", "DIGEST", "SIZE", "BUILT", "FROM", "CURRENT")
    for i in images:
        table.add_row(
            i.name,
            i.digest,
            f"{i.size_bytes / 2**20:.0f} MiB",
            i.built_at,
            i.origin if i.ssh else f"{i.origin} (no-ssh)",
            "yes" if i.current else "no (recipe changed)",
        )
    out.print(table)


@app.command("rm")
def rm(name: str) -> None:
    """Remove every build of an image (refused while a playground uses it)."""
    from labyard.images import remove_image

    for image in remove_image(Settings.from_env().images_dir, name):
        err.print(f"removed {image.name} {image.digest}")
