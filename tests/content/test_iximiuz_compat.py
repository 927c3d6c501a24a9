"""Content in iximiuz Labs' format: fields labyard does not use are kept and noted (errors only
with --strict) while typos of labyard's own fields stay errors; `__static__/` files and covers
are served, and only those; `solution.md` / `solution-NN.md` are the challenge's solutions."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labyard.api.app import create_app
from labyard.content.loader import load_item, load_tree
from labyard.content.markdown import render_item
from labyard.content.models import Challenge, PlaygroundRef, Tutorial
from labyard.errors import ManifestError
from labyard.services import Labyard
from labyard.settings import Settings
from tests.content import write
from tests.content.test_cli import Run

FIXTURE = Path(__file__).parent / "fixtures/iximiuz"
CHALLENGE = "challenges/start-a-container"
TUTORIAL = "tutorials/tour-of-the-box"


@pytest.fixture
def content(tmp_path: Path) -> Path:
    """A copy of the fixture folder (tests add files to it)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "content"))


@pytest.fixture
def labyard(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def test_iximiuz_items_load_and_keep_what_labyard_does_not_use(content: Path) -> None:
    tree = load_tree(content)

    assert tree.problems == []
    challenge = tree.get(CHALLENGE)
    assert isinstance(challenge.front, Challenge)
    assert challenge.front.cover == "__static__/cover.png"
    assert challenge.extra == {
        "tagz": ["docker", "containers-101"],
        "createdAt": "2025-04-02",  # a YAML date, as JSON can hold it
        "updatedAt": "2025-06-17",
        "tasks.helper_keep_logs_short.helper": True,
    }
    assert set(challenge.front.tasks) == {
        "verify_container",
        "verify_container_id",
        "helper_keep_logs_short",
    }
    tutorial = tree.get(TUTORIAL)
    assert isinstance(tutorial.front, Tutorial)
    assert tutorial.front.playground == PlaygroundRef(name="linux")
    assert tutorial.extra["playground.tabs"] == [{"kind": "ide"}, {"machine": "linux"}]
    assert tutorial.extra["challenges"] == {"start_a_container": {}}
    assert tutorial.extra["playground.machines"][0]["resources"] == {
        "cpuCount": 1,
        "ramSize": "1Gi",
    }


def test_each_kept_field_is_a_note_with_its_line(content: Path) -> None:
    notes = load_tree(content).notes
    index_md = content / CHALLENGE / "index.md"

    assert [note.split(": ")[0:2] for note in notes] == [
        [f"{index_md}:13", "tagz"],
        [f"{index_md}:18", "createdAt"],
        [f"{index_md}:19", "updatedAt"],
        [f"{index_md}:47", "tasks.helper_keep_logs_short.helper"],
        [f"{content / TUTORIAL}/index.md:8", "tagz"],
        [f"{content / TUTORIAL}/index.md:9", "createdAt"],
        [f"{content / TUTORIAL}/index.md:34", "challenges"],
        [f"{content / TUTORIAL}/index.md:15", "playground.machines"],
        [f"{content / TUTORIAL}/index.md:24", "playground.tabs"],
        [f"{content / TUTORIAL}/index.md:26", "playground.registryAuth"],
    ]
    assert notes[0].endswith(
        "kept as metadata, not used by labyard: iximiuz Labs' tags (labyard's are `tags`)"
    )


def test_validate_prints_notes_and_succeeds_strict_makes_them_errors(
    labyard: Run, content: Path
) -> None:
    code, out, err = labyard("content", "validate", str(content))
    assert (code, out) == (0, "1 challenge, 1 tutorial ok\n")
    lines = err.splitlines()
    assert len(lines) == 11 and lines[-1] == (
        "labyard: 10 notes: fields labyard does not use, kept as metadata (--strict makes "
        "them errors)"
    )

    code, out, err = labyard("content", "validate", "--strict", str(content))
    lines = err.splitlines()
    assert (code, out) == (2, "")
    assert lines[0] == (
        f"{content / CHALLENGE}/index.md:13: tagz: kept as metadata, not used by labyard: "
        "iximiuz Labs' tags (labyard's are `tags`)"
    )
    assert lines[-1] == f"labyard: 10 problems in {content}"
    assert "Traceback" not in err

    code, _, err = labyard("content", "validate", "--strict", str(content / CHALLENGE))
    assert code == 2 and err.splitlines()[-1].startswith("labyard: 4 problems in ")


ITEM = """
---
kind: {kind}
title: Typos
playground: linux
{fields}
tasks:
  check:
    run: "true"
{task_fields}
---
Body.
"""


@pytest.mark.parametrize(
    ("kind", "fields", "task_fields", "expected"),
    [
        ("challenge", "titel: Typo", "", "titel: unknown field (did you mean 'title'?)"),
        (
            "challenge",
            "dificulty: easy",
            "",
            "dificulty: unknown field (did you mean 'difficulty'?)",
        ),
        ("challenge", "show-solution: never", "", "(did you mean 'show_solution'?)"),
        ("challenge", "Categories: [linux]", "", "(did you mean 'categories'?)"),
        ("challenge", "desc: x", "", "desc: unknown field (did you mean 'description'?)"),
        (
            "challenge",
            "",
            "    timeout: 5",
            "tasks.check.timeout: unknown field (did you mean 'timeout_seconds'?)",
        ),
        ("challenge", "", "    hint_check: x", "(did you mean 'hintcheck'?)"),
        ("challenge", "", "    need: [x]", "(did you mean 'needs'?)"),
        ("tutorial", "show_solution: never", "", "show_solution: is a field of challenge items"),
        ("challenge", "steps: [a]", "", "steps: is a field of skill-path items"),
        ("challenge", "playground_name: x", "", "(did you mean 'playground'?)"),
    ],
)
def test_a_near_miss_of_a_labyard_field_is_still_an_error(
    tmp_path: Path, kind: str, fields: str, task_fields: str, expected: str
) -> None:
    text = ITEM.format(kind=kind, fields=fields, task_fields=task_fields)
    write(tmp_path, {f"{kind}s/typo/index.md": text})

    with pytest.raises(ManifestError) as raised:
        load_item(tmp_path / f"{kind}s/typo")

    [problem] = raised.value.problems
    assert problem.startswith(f"{tmp_path}/{kind}s/typo/index.md:")
    assert expected in problem


@pytest.mark.parametrize(
    "field",
    [
        "difficulties: [easy]",  # iximiuz's, though close to `difficulty`
        "tagz: [a]",  # close to `tags`
        "colour: blue",  # nobody's: kept
        "weight: 10",
        "x-internal-id: 42",
    ],
)
def test_other_fields_are_notes(tmp_path: Path, field: str) -> None:
    write(
        tmp_path,
        {"challenges/ok/index.md": ITEM.format(kind="challenge", fields=field, task_fields="")},
    )

    item = load_item(tmp_path / "challenges/ok")

    [note] = item.notes
    name = field.partition(":")[0]
    assert note.startswith(f"{tmp_path}/challenges/ok/index.md:5: {name}: kept as metadata")
    assert name in item.extra
    with pytest.raises(ManifestError):
        load_item(tmp_path / "challenges/ok", strict=True)


def test_an_inline_manifest_stays_labyard_s_own_format(tmp_path: Path) -> None:
    """`machines` with labyard's fields is an inline manifest, with its errors, not a note."""
    playground = "\n  name: two\n  machines:\n    - name: a\n      colour: red"
    write(
        tmp_path,
        {
            "tutorials/t/index.md": ITEM.format(kind="tutorial", fields="", task_fields="").replace(
                "playground: linux", "playground:" + playground
            )
        },
    )

    with pytest.raises(ManifestError) as raised:
        load_item(tmp_path / "tutorials/t")

    assert raised.value.problems == [
        f"{tmp_path}/tutorials/t/index.md:8: playground.machines.0.colour: Extra inputs are "
        "not permitted"
    ]


# -- solutions --------------------------------------------------------------------------------


def test_numbered_solutions_in_order_with_their_titles(content: Path) -> None:
    (content / CHALLENGE / "solution-10.md").write_text("Or just guess.\n")
    item = load_tree(content).get(CHALLENGE)

    assert [(s.file, s.title) for s in item.solutions] == [
        ("solution-01.md", "With docker run and docker ps"),
        ("solution-02.md", "With docker inspect"),
        ("solution-10.md", None),
    ]
    assert "<!--more-->" not in item.solutions[0].body
    markdown = item.solution_md or ""
    order = ["## With docker run and docker ps", "## With docker inspect", "## Solution 3"]
    assert [markdown.index(h) for h in order] == sorted(markdown.index(h) for h in order)


def test_a_lone_solution_md_is_shown_as_written(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "challenges/c/index.md": ITEM.format(kind="challenge", fields="", task_fields=""),
            "challenges/c/solution.md": "Just `true`.\n",
        },
    )

    item = load_item(tmp_path / "challenges/c")

    assert item.solution_md == "Just `true`.\n"
    assert item.solution_sh is None


def test_a_broken_solution_front_matter_names_its_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "challenges/c/index.md": ITEM.format(kind="challenge", fields="", task_fields=""),
            "challenges/c/solution-01.md": "---\ntitle: [unclosed\n---\nText\n",
        },
    )

    with pytest.raises(ManifestError) as raised:
        load_item(tmp_path / "challenges/c")

    [problem] = raised.value.problems
    assert problem.startswith(f"{tmp_path}/challenges/c/solution-01.md:3: invalid YAML")


# -- __static__ over the API ------------------------------------------------------------------


@pytest.fixture
def client(content: Path, tmp_path: Path) -> Iterator[TestClient]:
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(
        data_dir=data, images_dir=data / "images", database_url=f"sqlite:///{data}/labyard.db"
    )
    labyard = Labyard(settings, content_dir=content)
    with TestClient(create_app(labyard, reconcile_interval_s=None)) as client:
        yield client
    labyard.close()


STATIC = f"/api/content/static/{CHALLENGE}"


def test_static_files_are_served_with_their_types(client: TestClient, content: Path) -> None:
    folder = content / CHALLENGE / "__static__"
    for name, media_type in [
        ("cover.png", "image/png"),
        ("boxes.svg", "image/svg+xml"),
        ("app.yaml", "application/yaml"),
        ("page.html", "text/plain; charset=utf-8"),  # never a page of this site
    ]:
        response = client.get(f"{STATIC}/__static__/{name}")
        assert response.status_code == 200, name
        assert response.content == (folder / name).read_bytes()
        assert response.headers["content-type"] == media_type, name
        assert "sandbox" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"


def test_nothing_else_is_served(client: TestClient, content: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(b"host file")
    (content / CHALLENGE / "__static__/link.png").symlink_to(tmp_path / "secret.png")
    (content / CHALLENGE / "__static__/index-link.png").symlink_to(content / CHALLENGE / "index.md")
    (content / CHALLENGE / "__static__/.hidden.png").write_bytes(b"x")
    (content / CHALLENGE / "notes.yaml").write_text("outside __static__: not media")
    for path in [
        "index.md",
        "solution-01.md",
        "solution-02.md",
        "__static__/../index.md",
        "__static__/%2e%2e/index.md",
        "__static__/%2e%2e/solution-01.md",
        "%2e%2e/%2e%2e/tutorials/tour-of-the-box/index.md",
        "__static__/%2e%2e/%2e%2e/%2e%2e/secret.png",
        "__static__/link.png",  # a link out of the item
        "__static__/index-link.png",  # a link to what is never served
        "__static__/.hidden.png",
        "__static__/missing.png",
        "notes.yaml",
        "__static__",
    ]:
        response = client.get(f"{STATIC}/{path}")
        assert response.status_code == 404, path
        assert b"host file" not in response.content


def test_pages_use_the_static_urls(client: TestClient) -> None:
    item = client.get(f"/api/content/{CHALLENGE}").json()

    assert item["cover"] == f"{STATIC}/__static__/cover.png"
    assert f'<img src="{STATIC}/__static__/boxes.svg" alt="Two boxes' in item["html"]
    assert f'<img src="{STATIC}/__static__/cover.png" alt="the cover again"' in item["html"]
    assert item["extra"]["createdAt"] == "2025-04-02"
    assert item["solutions"] == 2
    for url in (item["cover"], f"{STATIC}/__static__/boxes.svg"):
        assert client.get(url).status_code == 200
    index = client.get("/api/content").json()
    assert len(index["notes"]) == 10 and index["problems"] == []
    page = client.get(f"/{CHALLENGE}").text
    assert "updated 2025-06-17" in page
    catalogue = client.get("/challenges").text
    assert f'<img class="learn-card-cover" src="{STATIC}/__static__/cover.png"' in catalogue


def test_the_solutions_api_shows_every_solution(client: TestClient, content: Path) -> None:
    index_md = content / CHALLENGE / "index.md"
    index_md.write_text(
        index_md.read_text().replace("difficulty: easy", "difficulty: easy\nshow_solution: always")
    )
    signup = client.post(
        "/api/signup", json={"email": "ix@example.com", "password": "correct horse battery"}
    )
    assert signup.status_code == 201, signup.text
    headers = {"X-CSRF-Token": client.cookies.get("labyard_csrf", "")}

    found = client.get(f"/api/solutions/{CHALLENGE}", headers=headers).json()

    assert [s["title"] for s in found["solutions"]] == [
        "With docker run and docker ps",
        "With docker inspect",
    ]
    assert "<h2>With docker inspect</h2>" in found["html"]
    assert "docker run -d nginx:alpine" in found["html"]
    assert "more--" not in found["html"]


def test_render_item_finds_files_in_static_and_beside(tmp_path: Path) -> None:
    """`__static__/x.png` is the file in __static__/, or beside index.md (labyard's first
    convention), both served at the URL the author wrote."""
    write(
        tmp_path,
        {
            "tutorials/t/index.md": "---\nkind: tutorial\ntitle: T\nplayground: linux\n---\n"
            "![a](__static__/a.png) ![b](__static__/b.png) ![c](./c.png)\n",
            "tutorials/t/__static__/a.png": "a",
            "tutorials/t/b.png": "b",
            "tutorials/t/c.png": "c",
        },
    )

    item = load_item(tmp_path / "tutorials/t")
    html = render_item(item, lambda owner, path: f"/s/{path}").html

    assert '<img src="/s/__static__/a.png"' in html
    assert '<img src="/s/__static__/b.png"' in html
    assert '<img src="/s/c.png"' in html


def test_remark_and_details_boxes_render(content: Path) -> None:
    html = render_item(load_tree(content).get(TUTORIAL), lambda owner, path: path).html

    assert '<aside class="remark remark-warning">\n<p>The kernel is the host' in html
    assert '<details class="details"><summary>Why the same kernel?</summary>' in html
    assert '<aside class="remark remark-info">\n<p>So <code>uname -r</code>' in html


def test_a_remark_box_kind_is_info_warning_or_error(tmp_path: Path) -> None:
    body = "::remark-box\n---\nkind: shout\n---\nHey.\n::\n"
    write(
        tmp_path,
        {"tutorials/t/index.md": "---\nkind: tutorial\ntitle: T\nplayground: linux\n---\n" + body},
    )

    with pytest.raises(ManifestError) as raised:
        load_item(tmp_path / "tutorials/t")

    assert raised.value.problems == [
        f"{tmp_path}/tutorials/t/index.md:8: ::remark-box.kind: 'shout' is not one of info, "
        "warning, error"
    ]
