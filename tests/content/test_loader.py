"""Loading a content folder: the items, lookups, and every problem with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from labyard.content.loader import load_item, load_tree
from labyard.content.models import Challenge, Tutorial
from labyard.errors import ManifestError, NotFound
from labyard.manifest import Manifest, builtin_names, external_names
from tests.content import write

RUNNABLE = """
---
kind: {kind}
title: {title}
playground: {playground}
tasks:
  done:
    run: test -f /tmp/done
---
Touch the file.

::simple-task
:name: done
#active
Waiting.
#completed
Done.
::
"""


def runnable(kind: str, title: str, playground: str = "linux") -> str:
    return RUNNABLE.format(kind=kind, title=title, playground=playground)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "challenges/touch/index.md": runnable("challenge", "Touch"),
            "challenges/touch/solution.md": "Run `touch /tmp/done`.\n",
            "challenges/touch/solution.sh": "touch /tmp/done\n",
            "challenges/touch/diagram.png": "png",
            "tutorials/two-boxes/index.md": """
            ---
            kind: tutorial
            title: Two boxes
            playground: lab
            tasks:
              on_b:
                run: "true"
                machine: b
            ---
            ::image-box
            :src: __static__/diagram.png
            :alt: Boxes
            ::
            """,
            "tutorials/two-boxes/diagram.png": "png",
            "playgrounds/lab.yaml": """
            kind: playground
            name: lab
            machines:
              - name: a
              - name: b
            """,
            "courses/basics/index.md": """
            ---
            kind: course
            title: Basics
            modules:
              - name: start
                title: Start
                lessons: [second, first]
            ---
            """,
            "courses/basics/first/index.md": runnable("lesson", "First"),
            "courses/basics/second/index.md": "---\nkind: lesson\ntitle: Second\n---\nRead.\n",
            "skill-paths/linux/index.md": """
            ---
            kind: skill-path
            title: Linux
            steps: [tutorials/two-boxes, challenges/touch, courses/basics]
            ---
            """,
        },
    )


def test_a_valid_tree_loads_without_problems(good: Path) -> None:
    tree = load_tree(good)

    assert tree.problems == []
    assert (
        tree.summary() == "1 challenge, 1 tutorial, 1 course (2 lessons), 1 skill path, "
        "1 playground"
    )
    assert sorted(tree.items) == [
        "challenges/touch",
        "courses/basics",
        "courses/basics/first",
        "courses/basics/second",
        "skill-paths/linux",
        "tutorials/two-boxes",
    ]
    assert isinstance(tree.playgrounds["lab"], Manifest)


def test_item_fields(good: Path) -> None:
    item = load_tree(good).get("challenges/touch")

    assert (item.kind, item.slug, item.key) == ("challenge", "touch", "challenges/touch")
    assert item.path == good / "challenges/touch/index.md"
    assert item.dir == good / "challenges/touch"
    assert isinstance(item.front, Challenge)
    assert item.front.tasks["done"].run == "test -f /tmp/done"
    assert item.body_line == 9
    assert item.body.splitlines()[0] == "Touch the file."
    assert item.solution_md == "Run `touch /tmp/done`.\n"
    assert item.solution_sh == good / "challenges/touch/solution.sh"


def test_lookups(good: Path) -> None:
    tree = load_tree(good)

    assert [i.key for i in tree.of_kind("lesson")] == [
        "courses/basics/first",
        "courses/basics/second",
    ]
    assert [i.slug for i in tree.lessons("courses/basics")] == ["second", "first"]
    assert [i.key for i in tree.steps("skill-paths/linux")] == [
        "tutorials/two-boxes",
        "challenges/touch",
        "courses/basics",
    ]
    with pytest.raises(NotFound):
        tree.get("challenges/nope")
    with pytest.raises(NotFound):
        tree.lessons("challenges/touch")


BROKEN = """
---
kind: challenge
title: Broken
playground: linux
dificulty: easy
tasks:
  setup:
    init: true
    run: "true"
  check:
    run: test -f /tmp/x
    needs: [setup, missing]
    machine: nope
    env:
      - OUT=x(.needs.other.stdout)
      - ANSWER=x(.input)
  other:
    run: "true"
    needs: [again]
  again:
    run: "true"
    needs: [other]
---
Body.

::simple-task
:name: chek
::

::user-input-task
:name: other
:validateRegex: '[0-9'
:destination: tmp/answer
::

::image-box
:src: __static__/missing.png
::
"""


def test_every_problem_of_an_item_is_reported_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, {"challenges/broken/index.md": BROKEN})
    p = tmp_path / "challenges/broken/index.md"
    known = "known: setup, check, other, again"

    problems = load_tree(tmp_path).problems

    expected = [
        f"{p}:5: dificulty: unknown field (did you mean 'difficulty'?)",
        f"{p}:12: tasks.check.needs.1: unknown task 'missing' ({known})",
        f"{p}:19: tasks.other.needs: tasks need each other: other -> again -> other",
        f"{p}:15: tasks.check.env.0: x(.needs.other.stdout) names a task that is not in needs "
        "(needs: setup, missing)",
        f"{p}:16: tasks.check.env.1: x(.input) needs a ::user-input-task block in the body "
        "with :name: check",
        f"{p}:13: tasks.check.machine: no machine 'nope' in playground 'linux' (machines: linux)",
        f"{p}:27: ::simple-task.name: unknown task 'chek' ({known})",
        f"{p}:33: ::user-input-task.destination: must be an absolute path in the machine "
        "(the answer is written there)",
        f"{p}:37: ::image-box.src: no file __static__/missing.png in {p.parent}",
    ]
    for problem in expected:
        assert problem in problems
    assert any(
        x.startswith(f"{p}:32: ::user-input-task.validateRegex: does not compile") for x in problems
    )
    assert len(problems) == len(expected) + 1


def test_load_item_raises_every_problem_at_once(tmp_path: Path) -> None:
    write(tmp_path, {"challenges/broken/index.md": BROKEN})

    with pytest.raises(ManifestError) as caught:
        load_item(tmp_path / "challenges/broken")

    assert len(caught.value.problems) == 10


def test_load_item_knows_the_playgrounds_of_its_content_folder(good: Path) -> None:
    item = load_item(good / "tutorials/two-boxes/index.md")

    assert isinstance(item.front, Tutorial)
    assert item.key == "tutorials/two-boxes"


def test_inline_playground_errors_name_the_manifest_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "tutorials/bad/index.md": """
            ---
            kind: tutorial
            title: Inline
            playground:
              name: mine
              machines:
                - name: box
                  memory: lots
            tasks:
              t:
                run: "true"
                machine: box
            ---
            """,
            "tutorials/good/index.md": """
            ---
            kind: tutorial
            title: Inline
            playground:
              name: mine
              machines:
                - name: box
            tasks:
              t:
                run: "true"
                machine: other
            ---
            """,
        },
    )
    bad, good = tmp_path / "tutorials/bad/index.md", tmp_path / "tutorials/good/index.md"

    assert load_tree(tmp_path).problems == [
        f"{bad}:8: playground.machines.0.memory: 'lots' is not a size; write e.g. 512MiB or 2GiB",
        f"{good}:11: tasks.t.machine: no machine 'other' in playground 'mine' (machines: box)",
    ]


def test_unknown_playground(tmp_path: Path) -> None:
    write(tmp_path, {"challenges/x/index.md": runnable("challenge", "X", "nope")})

    assert load_tree(tmp_path).problems == [
        f"{tmp_path}/challenges/x/index.md:4: playground: unknown playground 'nope' "
        f"(known: {', '.join(sorted([*builtin_names(), *external_names()]))})"
    ]


def test_course_and_skill_path_references(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "courses/c/index.md": """
            ---
            kind: course
            title: C
            modules:
              - name: m
                title: M
                lessons:
                  - one
                  - ghost
            ---
            """,
            "courses/c/one/index.md": "---\nkind: lesson\ntitle: One\n---\n",
            "courses/c/stray/index.md": "---\nkind: lesson\ntitle: Stray\n---\n",
            "courses/c/images/a.png": "png",
            "skill-paths/p/index.md": """
            ---
            kind: skill-path
            title: P
            steps:
              - courses/c
              - tutorials/ghost
              - ghost
            ---
            """,
        },
    )
    course, path = tmp_path / "courses/c/index.md", tmp_path / "skill-paths/p/index.md"

    assert load_tree(tmp_path).problems == [
        f"{course}:9: modules.0.lessons.1: no lesson ghost/index.md in {course.parent}",
        f"{tmp_path}/courses/c/stray/index.md:1: (folder): lesson 'stray' is not listed in any "
        f"module of {course}",
        f"{path}:6: steps.1: no item tutorials/ghost ({tmp_path}/tutorials/ghost has no index.md)",
        f"{path}:7: steps.2: 'ghost' is not challenges/SLUG, tutorials/SLUG or courses/SLUG",
    ]


def test_layout_problems(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "challenges/empty/notes.txt": "no index here",
            "challenges/Bad_Name/index.md": runnable("challenge", "Bad"),
            "tutorials/wrong-kind/index.md": runnable("challenge", "Wrong"),
            "tutorials/no-front/index.md": "# Just Markdown\n",
            "tutorials/unclosed/index.md": "---\nkind: tutorial\n",
            "tutorials/bad-yaml/index.md": "---\nkind: tutorial\ntitle: [oops\n---\n",
            "playgrounds/broken.yaml": "kind: playground\nname: broken\nmachines: []\n",
        },
    )

    assert load_tree(tmp_path).problems == [
        f"{tmp_path}/playgrounds/broken.yaml:3: machines: List should have at least 1 item "
        "after validation, not 0",
        f"{tmp_path}/challenges/Bad_Name/index.md:1: (folder): 'Bad_Name' is not a slug "
        "(lowercase letters, digits and dashes)",
        f"{tmp_path}/challenges/empty: no index.md (every item folder needs one)",
        f"{tmp_path}/tutorials/bad-yaml/index.md:4: invalid YAML: expected ',' or ']', "
        "but got '<stream end>'",
        f"{tmp_path}/tutorials/no-front/index.md:1: (top level): the file must start with a "
        "--- line",
        f"{tmp_path}/tutorials/unclosed/index.md:1: (top level): front matter is never closed "
        "with ---",
        f"{tmp_path}/tutorials/wrong-kind/index.md:2: kind: is 'challenge' but this folder "
        "holds 'tutorial' items",
    ]


def test_block_syntax_problems(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "tutorials/t/index.md": """
            ---
            kind: tutorial
            title: T
            playground: linux
            tasks:
              t:
                run: "true"
            ---
            ```
            ::simple-task
            :name: not-parsed-inside-code
            ```

            ::hint-box
            :summary: Hint
            :colour: red
            text
            ::

            ::fancy-box
            ::

            ::simple-task
            :name: t
            #pending
            ::

            ::simple-task{name="t"}

            ::user-input-task
            :name: t
            """,
        },
    )
    p = tmp_path / "tutorials/t/index.md"

    assert load_tree(tmp_path).problems == [
        f"{p}:16: ::hint-box.colour: unknown prop (known: :summary:)",
        f"{p}:20: ::fancy-box: unknown block (known: simple-task, user-input-task, hint-box, "
        "image-box, remark-box, details-box, open-file)",
        f"{p}:25: body: unknown section #pending (use #active or #completed)",
        f"{p}:28: body: write a block's props on their own :key: lines",
        f"{p}:30: ::user-input-task: never closed with a :: line",
        f"{p}:30: ::user-input-task.validateRegex: missing: the answer must match it",
        f"{p}:30: ::user-input-task.destination: missing: the file in the machine the answer "
        "is written to",
    ]


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_tree(tmp_path / "nope")
    with pytest.raises(NotFound):
        load_item(tmp_path / "nope/index.md")


def test_the_documented_example_validates(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs/content-format.md").read_text()
    example = doc.split("## Example\n\n```markdown\n", 1)[1].split("\n```\n", 1)[0]
    write(tmp_path, {"challenges/web/index.md": example + "\n"})

    item = load_item(tmp_path / "challenges/web")

    assert isinstance(item.front, Challenge)
    assert item.front.tasks["port_open"].needs == ["nginx_running"]
