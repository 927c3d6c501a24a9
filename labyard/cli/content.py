"""`labyard content new|validate|schema|preview|test|debug|import killercoda`.

`labyard.content` (front matter models, Markdown, importers) is imported by the commands.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import typer

from labyard.cli import content_debug, content_test
from labyard.cli._common import err
from labyard.errors import ManifestError

app = typer.Typer(
    help="Write, check and preview challenges, tutorials and courses.", no_args_is_help=True
)
importer = typer.Typer(help="Convert content written for another platform.", no_args_is_help=True)
app.add_typer(importer, name="import")

# `labyard content test`: the task engine's, in its own module.
app.command("test")(content_test.test)
# `labyard content debug`: the authors' task panel in a terminal.
app.command("debug")(content_debug.debug)


def _result(line: str) -> None:
    sys.stdout.write(line + "\n")


def _fail(problems: list[str], what: Path | str, outcome: str = "") -> NoReturn:
    """Every problem on its own unindented `file:line: field: message` line, then exit 2."""
    sys.stderr.write("".join(f"{p}\n" for p in problems))
    n = len(problems)
    err.print(
        f"labyard: {n} problem{'' if n == 1 else 's'} in {what}{outcome}",
        markup=False,
        soft_wrap=True,
    )
    raise typer.Exit(2)


def _is_item(path: Path) -> bool:
    return path.is_file() or (path / "index.md").is_file()


@app.command()
def new(
    kind: str = typer.Argument(..., metavar="challenge|tutorial|course"),
    name: str = typer.Argument(..., help="Folder name: lowercase letters, digits, dashes."),
    directory: Path = typer.Option(Path("content"), "--dir", help="The content folder."),
) -> None:
    """Create a small item that validates, to edit from there; prints its index.md."""
    from labyard.content.scaffold import new_item

    index_md = new_item(kind, name, directory)
    err.print(f"created {index_md.parent}/", markup=False, soft_wrap=True)
    _result(str(index_md))


@app.command()
def validate(
    path: Path = typer.Argument(..., help="A content folder, item folder or index.md."),
    strict: bool = typer.Option(
        False, "--strict", help="Fields labyard does not use are errors too, not notes."
    ),
) -> None:
    """Check content; prints every problem as file:line: field: message and exits 2 on any.
    Fields labyard keeps but does not use (iximiuz Labs' `tagz`, `createdAt`, ...) are
    printed as notes, which only --strict counts as problems."""
    from labyard.content.loader import load_item, load_tree

    if _is_item(path):
        try:
            item = load_item(path, strict=strict)
        except ManifestError as exc:
            _fail(exc.problems, path)
        _notes(item.notes)
        _result(f"{item.key} ({item.kind}) ok")
        return
    tree = load_tree(path, strict=strict)
    if tree.problems:
        _fail(tree.problems, path)
    _notes(tree.notes)
    _result(f"{tree.summary()} ok")


def _notes(notes: list[str]) -> None:
    """Notes on stderr, like problems, then how many and what --strict would do."""
    if not notes:
        return
    sys.stderr.write("".join(f"{note}\n" for note in notes))
    n = len(notes)
    err.print(
        f"labyard: {n} note{'' if n == 1 else 's'}: fields labyard does not use, kept as "
        "metadata (--strict makes them errors)",
        markup=False,
        soft_wrap=True,
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of front matter (for editors' YAML support)."""
    from labyard.content.frontmatter import json_schema

    _result(json_schema())


@app.command()
def preview(
    path: Path = typer.Argument(Path("content"), help="The content folder."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(None, help="State directory (env LABYARD_DATA_DIR)."),
) -> None:
    """Serve the content and reload it whenever a file changes (problems stay on stderr and
    in GET /api/content)."""
    from labyard.cli.server import serve
    from labyard.content.loader import load_tree

    tree = load_tree(path)
    sys.stderr.write("".join(f"{p}\n" for p in tree.problems))
    err.print(
        f"labyard: {tree.summary()}; items at http://{host}:{port}/api/content, reloaded on save",
        markup=False,
    )
    serve(host=host, port=port, data_dir=data_dir, content=path, log_level="info")


@importer.command("killercoda")
def killercoda(
    scenario: Path = typer.Argument(..., help="A Killercoda scenario folder (with index.json)."),
    out: Path = typer.Option(Path("content"), "--out", help="The content folder to write to."),
    slug: str = typer.Option(None, help="Folder name of the tutorial (default: from SCENARIO)."),
) -> None:
    """Convert a Killercoda scenario into a tutorial; warns about every field not mapped.
    What it writes validates (even with --strict), or it writes nothing and exits 2."""
    from labyard.content.killercoda import import_killercoda

    try:
        imported = import_killercoda(scenario, out, slug, has_image=_image_check())
    except ManifestError as exc:
        _fail(exc.problems, f"the tutorial made from {scenario}", "; nothing was written")
    for warning in imported.warnings:
        err.print(f"labyard: warning: {warning}", markup=False, soft_wrap=True)
    _result(str(imported.index_md))


def _image_check() -> Callable[[str], bool]:
    """Whether an image is built on this host (Kubernetes scenarios map to the k3s
    playgrounds only then)."""
    from labyard.errors import LabyardError
    from labyard.images import find_image
    from labyard.settings import Settings

    images_dir = Settings.from_env().images_dir

    def built(name: str) -> bool:
        try:
            find_image(images_dir, name)
        except LabyardError:
            return False
        return True

    return built
