"""Import a Killercoda scenario (a folder with index.json) as a labyard tutorial.

| Killercoda                          | labyard                                              |
|-------------------------------------|------------------------------------------------------|
| title, description                  | title, description                                   |
| difficulty beginner/intermediate/…  | difficulty easy/medium/hard                          |
| details.intro.text                  | the body's first part                                |
| details.intro.background            | init task `intro_setup`                              |
| details.steps[i].title, .text       | `## title` and the text, in order                    |
| details.steps[i].background         | init task `step_<i>_setup`, needs the previous step  |
| details.steps[i].verify             | task `step_<i>` (`run`) + a ::simple-task block       |
| details.finish.text                 | the body's last part, under `## Finish`              |
| details.assets.hostNN               | machine files of the NNth machine (assets.py)        |
| backend.imageid                     | a playground of the catalog (machines.backend)       |
| `{{exec}}`, `{{copy}}`, `{{exec interrupt}}` | kept: rendered as run/copy buttons          |

Anything else (foreground scripts, `interface`, `time`, unknown `{{...}}` actions, assets it
cannot place, ...) produces a warning: nothing is dropped silently. The tutorial is written
to a staging folder, validated as `labyard content validate --strict` would, and only then
moved into place: an import never leaves content behind that does not validate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labyard.content.killercoda import front_matter
from labyard.content.killercoda.index_json import Scenario
from labyard.content.killercoda.machines import ImageCheck
from labyard.content.killercoda.scenario import convert
from labyard.content.layout import SLUG
from labyard.content.loader import load_item
from labyard.content.playgrounds import PlaygroundIndex, load_playgrounds
from labyard.errors import Conflict, InvalidInput, ManifestError, NotFound

IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")


@dataclass
class Imported:
    index_md: Path
    warnings: list[str]


def import_killercoda(
    scenario: Path, out: Path, slug: str | None = None, has_image: ImageCheck | None = None
) -> Imported:
    """Write `out/tutorials/<slug>/` from a Killercoda scenario folder; warnings say what
    could not be mapped. Playgrounds are those of `out` and the built-in ones; `has_image`
    (when given) also requires a Kubernetes playground's images to be built. Raises
    ManifestError, writing nothing, if the result would not validate."""
    data = _index(scenario)
    slug = slug or _slug(scenario.resolve().name)
    if not SLUG.match(slug):
        raise InvalidInput(f"{slug!r} is not a slug: use lowercase letters, digits and dashes")
    folder = out / "tutorials" / slug
    if folder.exists():
        raise Conflict(f"{folder} already exists")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".labyard-import-", dir=out))
    try:
        draft = staging / "tutorials" / slug
        draft.mkdir(parents=True)
        source = Scenario(scenario, data)
        index = PlaygroundIndex(load_playgrounds(out, []))
        front, body = convert(source, slug, draft, index, has_image)
        for path in source.unused():
            source.warn(f"{path}: not mapped (labyard has no equivalent); left out")
        (draft / "index.md").write_text(f"---\n{front_matter.dump(front)}---\n\n{body}")
        _copy_images(scenario, draft)
        _check(draft, folder, out)
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.rename(draft, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Imported(folder / "index.md", source.warnings)


def _check(draft: Path, folder: Path, out: Path) -> None:
    """Raise ManifestError, naming the files where they would have been, unless the draft
    validates with no problem and no note."""
    try:
        load_item(draft / "index.md", strict=True, playgrounds=out)
    except ManifestError as exc:
        raise ManifestError([p.replace(str(draft), str(folder)) for p in exc.problems]) from exc


def _index(scenario: Path) -> dict[str, Any]:
    index = scenario / "index.json"
    if not index.is_file():
        raise NotFound(f"{index} does not exist (is {scenario} a Killercoda scenario?)")
    try:
        data = json.loads(index.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{index} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{index} is not a JSON object")
    return data


def _copy_images(scenario: Path, folder: Path) -> None:
    for image in scenario.rglob("*"):
        if image.suffix.lower() in IMAGES and image.is_file():
            target = folder / image.relative_to(scenario)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(image, target)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-") or "scenario"
