"""Importing Killercoda scenarios: what maps where, and a warning for all that does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labyard.content.killercoda import import_killercoda
from labyard.content.loader import load_item
from labyard.content.markdown import render_item
from labyard.content.models import Tutorial
from labyard.errors import Conflict, NotFound
from labyard.manifest import Manifest
from tests.content import write

FIXTURE = Path(__file__).parent / "fixtures/killercoda/hello-scenario"


def scenario(root: Path, index: dict[str, object], files: dict[str, str] | None = None) -> Path:
    return write(root, {"index.json": json.dumps(index), **(files or {})})


def test_the_fixture_becomes_a_valid_tutorial(tmp_path: Path) -> None:
    imported = import_killercoda(FIXTURE, tmp_path)

    assert imported.index_md == tmp_path / "tutorials/hello-scenario/index.md"
    item = load_item(imported.index_md)  # raises on any problem
    front = item.front
    assert isinstance(front, Tutorial)
    assert (front.title, front.description, front.difficulty) == (
        "Hello files",
        "Create files and directories.",
        "easy",
    )


def test_verify_and_background_scripts_become_ordered_tasks(tmp_path: Path) -> None:
    front = load_item(import_killercoda(FIXTURE, tmp_path).index_md).front
    assert isinstance(front, Tutorial)
    tasks = front.tasks

    assert list(tasks) == ["intro_setup", "step_1", "step_2_setup", "step_2"]
    assert tasks["intro_setup"].init and tasks["intro_setup"].needs == []
    assert tasks["intro_setup"].run == (FIXTURE / "setup.sh").read_text()
    assert not tasks["step_1"].init and tasks["step_1"].needs == ["intro_setup"]
    assert tasks["step_1"].run == (FIXTURE / "step1/verify.sh").read_text()
    assert tasks["step_2_setup"].init and tasks["step_2_setup"].needs == ["step_1"]
    assert tasks["step_2_setup"].run == (FIXTURE / "step2/background.sh").read_text()
    assert tasks["step_2"].needs == ["step_2_setup"]


def test_assets_become_startup_files_of_the_linux_machine(tmp_path: Path) -> None:
    front = load_item(import_killercoda(FIXTURE, tmp_path).index_md).front
    assert isinstance(front, Tutorial)
    playground = front.playground

    assert isinstance(playground, Manifest)
    [machine] = playground.machines
    assert (machine.name, machine.image) == ("linux", "linux")
    [file] = machine.files
    assert (file.path, file.mode) == ("/usr/local/bin/greet.sh", "0755")
    assert file.content == (FIXTURE / "assets/greet.sh").read_text()


def test_texts_are_kept_in_order_with_task_blocks_and_actions(tmp_path: Path) -> None:
    item = load_item(import_killercoda(FIXTURE, tmp_path).index_md)
    rendered = render_item(item, lambda owner, path: path)
    html = rendered.html

    order = [
        "In this scenario",
        "<h2>Create a directory</h2>",
        'data-task="step_1"',
        "<h2>Write a file</h2>",
        'data-task="step_2"',
        "<h2>Finish</h2>",
    ]
    positions = [html.index(text) for text in order]
    assert positions == sorted(positions)
    assert [t.name for t in rendered.tasks] == ["step_1", "step_2"]
    assert '<code data-copy="" data-run="">mkdir -p /root/work</code>' in html
    assert '<code data-copy="">echo hello &gt; /root/work/hello.txt</code>' in html
    assert "<pre data-copy data-run><code>ls -ld /root/work\n</code></pre>" in html
    assert "echo &quot;Welcome&quot;" in html  # the foreground script, as a snippet


def test_every_unmapped_field_is_a_warning(tmp_path: Path) -> None:
    imported = import_killercoda(FIXTURE, tmp_path)

    assert imported.warnings == [
        "index.json: details.assets.host02: only host01 maps to a machine; left out",
        "index.json: details.intro.foreground: labyard does not type scripts into the "
        "learner's terminal; added to the text as a snippet to run",
        "Markdown: {{open}} has no labyard equivalent; left in the text as is",
        "index.json: time: not mapped (labyard has no equivalent); left out",
        "index.json: interface.layout: not mapped (labyard has no equivalent); left out",
    ]


@pytest.mark.parametrize(
    ("imageid", "warning"),
    [
        ("ubuntu", None),
        ("debian", None),
        ("kubernetes-kubeadm-2nodes", "labyard has no Kubernetes playground yet"),
        ("centos", "'centos' is unknown here; using the linux playground"),
    ],
)
def test_backend_image_maps_to_linux(tmp_path: Path, imageid: str, warning: str | None) -> None:
    folder = scenario(
        tmp_path / "src",
        {
            "title": "Mini",
            "backend": {"imageid": imageid},
            "details": {
                "steps": [{"title": "One", "text": "one.md", "verify": "one.sh", "extra": 1}]
            },
        },
        {"one.md": "Do it.\n", "one.sh": "true\n"},
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="mini")

    front = load_item(imported.index_md).front
    assert isinstance(front, Tutorial) and front.playground == "linux"
    assert (
        "index.json: details.steps.0.extra: not mapped (labyard has no equivalent); "
        "left out" in imported.warnings
    )
    image_warnings = [w for w in imported.warnings if "backend.imageid" in w]
    if warning is None:
        assert image_warnings == []
    else:
        assert len(image_warnings) == 1 and warning in image_warnings[0]


def test_missing_files_and_odd_values_warn(tmp_path: Path) -> None:
    folder = scenario(
        tmp_path / "src",
        {
            "title": "Odd",
            "difficulty": "legendary",
            "details": {"intro": {"text": "missing.md"}},
        },
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="odd")

    load_item(imported.index_md)
    assert any(
        w.startswith("index.json: details.intro.text: cannot read") for w in imported.warnings
    )
    assert (
        "index.json: difficulty: 'legendary' has no labyard equivalent (easy, medium, "
        "hard); left out" in imported.warnings
    )
    assert "index.json: backend.imageid: missing; using the linux playground" in imported.warnings


def test_refuses_a_folder_without_index_json_and_an_existing_target(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        import_killercoda(tmp_path, tmp_path / "out")
    import_killercoda(FIXTURE, tmp_path / "out")
    with pytest.raises(Conflict):
        import_killercoda(FIXTURE, tmp_path / "out")
