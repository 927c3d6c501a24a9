"""Binary machine files: `content_base64`, or `source:` a file beside the manifest, landing in
a real started machine byte for byte, with their owner and mode; and the ways they are
refused (a manifest sent as text names no server file; nothing outside the folder)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from labyard.content.killercoda import import_killercoda
from labyard.content.loader import load_item
from labyard.content.models import Tutorial
from labyard.errors import ManifestError
from labyard.manifest import Manifest, load_manifest, manifest_from_text
from labyard.manifest.models import MAX_FILE_BYTES
from tests.conftest import Starter
from tests.content import write

RANDOM = bytes((i * 197 + 13) % 256 for i in range(70_000)) + b"\0\0\xff\0"
"""Every byte value, NULs and a non-UTF-8 tail: no text codec would keep it."""
TOOL = Path("/usr/bin/true")
"""A real ELF binary to run in the machine."""

MANIFEST = """
kind: playground
name: bin-files
machines:
  - name: box
    files:
      - path: /usr/local/bin/tool
        source: ./bin/tool
        mode: "0755"
      - path: /srv/data/random.bin
        source: bin/random.bin
        mode: "0640"
        owner: nobody:nogroup
      - path: /etc/labyard/small.bin
        content_base64: |
          {small}
      - path: /etc/labyard/note.txt
        content: "text still works\\n"
"""
SMALL = bytes([0, 1, 2, 250, 0, 255, 10, 13])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def manifest_file(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    (folder / "bin").mkdir(parents=True)
    shutil.copy(TOOL, folder / "bin/tool")
    (folder / "bin/random.bin").write_bytes(RANDOM)
    small = base64.encodebytes(SMALL).decode().strip()  # line breaks are fine
    (folder / "bin-files.yaml").write_text(MANIFEST.format(small=small))
    return folder / "bin-files.yaml"


def test_sources_are_read_at_load_and_stored_whole(manifest_file: Path) -> None:
    manifest = load_manifest(str(manifest_file))

    files = {f.path: f for f in manifest.machines[0].files}
    assert files["/usr/local/bin/tool"].data() == TOOL.read_bytes()
    assert files["/usr/local/bin/tool"].source == "./bin/tool"
    assert files["/srv/data/random.bin"].data() == RANDOM
    assert files["/etc/labyard/small.bin"].data() == SMALL
    assert files["/etc/labyard/note.txt"].data() == b"text still works\n"
    stored = json.loads(json.dumps(manifest.model_dump(mode="json")))  # as the database has it
    assert all("source" not in f for f in stored["machines"][0]["files"])
    again = Manifest.model_validate(stored)  # no folder needed any more
    assert [f.data() for f in again.machines[0].files] == [f.data() for f in files.values()]


async def test_binary_files_land_byte_identical_in_a_started_machine(
    starter: Starter, manifest_file: Path
) -> None:
    playground = await starter(load_manifest(str(manifest_file)))

    code, out, err = await starter.exec(
        playground,
        "sha256sum /usr/local/bin/tool /srv/data/random.bin /etc/labyard/small.bin"
        " | cut -d' ' -f1"
        " && stat -c '%n %a %U %G %s' /usr/local/bin/tool /srv/data/random.bin"
        " && /usr/local/bin/tool && echo ran",
    )

    assert code == 0, err
    lines = out.splitlines()
    assert lines[:3] == [_sha(TOOL.read_bytes()), _sha(RANDOM), _sha(SMALL)]
    assert lines[3:] == [
        f"/usr/local/bin/tool 755 root root {TOOL.stat().st_size}",
        f"/srv/data/random.bin 640 nobody nogroup {len(RANDOM)}",
        "ran",
    ]


async def test_an_imported_killercoda_binary_asset_lands_in_the_machine(
    starter: Starter, tmp_path: Path
) -> None:
    scenario = write(
        tmp_path / "scenario",
        {
            "index.json": json.dumps(
                {
                    "title": "Binary",
                    "details": {
                        "intro": {"text": "intro.md"},
                        "assets": {"host01": [{"file": "bin/*", "target": "~/bin", "chmod": "+x"}]},
                    },
                    "backend": {"imageid": "ubuntu"},
                }
            ),
            "intro.md": "Run `~/bin/tool`{{exec}}.\n",
        },
    )
    (scenario / "assets/bin").mkdir(parents=True)
    shutil.copy(TOOL, scenario / "assets/bin/tool")
    (scenario / "assets/bin/blob").write_bytes(RANDOM)

    imported = import_killercoda(scenario, tmp_path / "content", slug="binary")
    front = load_item(imported.index_md, strict=True).front
    assert isinstance(front, Tutorial) and isinstance(front.playground, Manifest)
    playground = await starter(front.playground)

    code, out, err = await starter.exec(
        playground, "sha256sum /root/bin/blob | cut -d' ' -f1 && /root/bin/tool && echo ran"
    )
    assert code == 0, err
    assert out.splitlines() == [_sha(RANDOM), "ran"]


def _problems(text: str, folder: Path | None = None) -> list[str]:
    path = None
    if folder is not None:
        path = folder / "m.yaml"
        path.write_text(text)
    with pytest.raises(ManifestError) as raised:
        load_manifest(str(path)) if path else manifest_from_text(text, "m.yaml")
    return raised.value.problems


FILE = "name: m\nmachines:\n  - name: box\n    files:\n      - path: /x\n{entry}"


def test_a_manifest_sent_as_text_names_no_file_of_the_server() -> None:
    [problem] = _problems(FILE.format(entry="        source: /etc/shadow\n"))

    assert problem == (
        "m.yaml:5: machines.0.files.0: source '/etc/shadow': only a manifest file can name a "
        "file beside it (this manifest came as text); use content_base64"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("source: ../outside.bin", "source '../outside.bin' points outside"),
        ("source: /etc/hostname", "name a file beside the manifest"),
        ("source: link.bin", "source 'link.bin' points outside"),
        ("source: missing.bin", "source 'missing.bin': no file"),
        ("source: big.bin", "more than a machine file may hold (8.0 MiB)"),
        ("content_base64: 'not base64!'", "files.0.content_base64: not base64"),
        ("content: a\n        content_base64: YQ==", "give exactly one of content"),
        ("source: ok.bin\n        content: a", "give exactly one of content"),
        ("mode: '0644'", "give exactly one of content, content_base64 or source"),
    ],
)
def test_machine_files_that_are_refused(tmp_path: Path, entry: str, message: str) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"outside")
    (folder / "link.bin").symlink_to(tmp_path / "outside.bin")
    (folder / "ok.bin").write_bytes(b"ok")
    with (folder / "big.bin").open("wb") as big:
        big.truncate(MAX_FILE_BYTES + 1)

    [problem] = _problems(FILE.format(entry=f"        {entry}\n"), folder)

    assert problem.startswith(f"{folder}/m.yaml:")
    assert ": machines.0.files.0" in problem
    assert message in problem


def test_content_base64_over_the_limit_is_refused() -> None:
    data = base64.b64encode(bytes(MAX_FILE_BYTES + 1)).decode()

    [problem] = _problems(FILE.format(entry=f"        content_base64: {data}\n"))

    assert "machines.0.files.0.content_base64: 8.0 MiB is more than" in problem


def test_a_content_folder_playground_reads_sources_beside_it(tmp_path: Path) -> None:
    root = write(
        tmp_path / "content",
        {
            "playgrounds/tools.yaml": "kind: playground\nname: tools\nmachines:\n"
            "  - name: box\n    files:\n      - {path: /opt/blob, source: files/blob}\n",
            "tutorials/t/index.md": "---\nkind: tutorial\ntitle: T\nplayground: tools\n---\n",
        },
    )
    (root / "playgrounds/files").mkdir()
    (root / "playgrounds/files/blob").write_bytes(RANDOM)

    item = load_item(root / "tutorials/t", strict=True)

    assert item.front.kind == "tutorial"
    from labyard.content.loader import load_tree

    [file] = load_tree(root).playgrounds["tools"].machines[0].files
    assert file.data() == RANDOM
    os.remove(root / "playgrounds/files/blob")
    assert "source 'files/blob': no file" in load_tree(root).problems[0]
