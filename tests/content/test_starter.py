"""The starter content in `content/`: it validates, it is complete, and every challenge is
solvable by its solution.sh and not solved without it (`labyard content test`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labyard.content.blocks import parse
from labyard.content.loader import ContentTree, load_tree
from labyard.content.models import Challenge, Course
from labyard.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONTENT = REPO / "content"
LABYARD = str(Path(sys.executable).parent / "labyard")
IMAGES_DIR = os.environ.get("LABYARD_IMAGES_DIR", "/var/lib/labyard/images")


@pytest.fixture(scope="module")
def tree() -> ContentTree:
    return load_tree(CONTENT)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A labyard instance of its own; whatever it leaves on the host is removed after."""
    path = Path(tempfile.mkdtemp(prefix="labyard-starter-"))
    yield path
    env = _env(path)
    listed = subprocess.run(
        [LABYARD, "playground", "list", "--json"], env=env, capture_output=True, text=True
    )
    for playground in json.loads(listed.stdout or "[]"):
        subprocess.run([LABYARD, "playground", "destroy", playground["id"]], env=env, check=False)
    instance = Settings(
        data_dir=path, images_dir=Path(IMAGES_DIR), database_url=f"sqlite:///{path}/labyard.db"
    ).instance
    subprocess.run(["nft", "delete", "table", "inet", f"labyard_{instance}"], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABYARD_")}
    return env | {"LABYARD_DATA_DIR": str(data_dir), "LABYARD_IMAGES_DIR": IMAGES_DIR}


def test_starter_content_validates(data_dir: Path) -> None:
    result = subprocess.run(
        [LABYARD, "content", "validate", str(CONTENT)],
        env=_env(data_dir),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


def test_starter_content_has_enough_of_each_kind(tree: ContentTree) -> None:
    assert tree.problems == []
    assert len(tree.of_kind("challenge")) >= 6
    assert len(tree.of_kind("tutorial")) >= 3
    courses = tree.of_kind("course")
    assert courses
    for course in courses:
        assert isinstance(course.front, Course)
        assert len(course.front.modules) >= 2
        assert len(tree.lessons(course.key)) >= 4


def test_every_challenge_is_complete(tree: ContentTree) -> None:
    """2-4 tasks to solve, a live hint, hint boxes, a task block per task, and a solution
    in prose and as a script."""
    for item in tree.of_kind("challenge"):
        front = item.front
        assert isinstance(front, Challenge)
        checks = {name: t for name, t in front.tasks.items() if not t.init}
        assert 2 <= len(checks) <= 4, item.key
        assert any(t.hintcheck for t in checks.values()), f"{item.key}: no hintcheck"
        blocks = list(parse(item.body, item.body_line).blocks())
        assert any(b.name == "hint-box" for b in blocks), f"{item.key}: no ::hint-box"
        shown = {b.props.get("name") for b in blocks if b.name.endswith("-task")}
        assert shown == set(checks), f"{item.key}: tasks without a block: {set(checks) - shown}"
        assert item.solution_md and len(item.solution_md) > 200, f"{item.key}: no solution.md"
        assert item.solution_sh is not None, f"{item.key}: no solution.sh"
        assert os.access(item.solution_sh, os.X_OK), f"{item.key}: solution.sh not executable"


@pytest.mark.timeout(1500)
def test_every_challenge_passes_content_test(tree: ContentTree, data_dir: Path) -> None:
    result = subprocess.run(
        [LABYARD, "content", "test", str(CONTENT), "--json"],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=1400,
    )
    verdicts = json.loads(result.stdout)
    failed = {v["name"]: v["message"] for v in verdicts if not v["passed"]}
    assert failed == {}, result.stderr
    assert result.returncode == 0, result.stderr
    assert {v["name"] for v in verdicts} == {i.key for i in tree.of_kind("challenge")}
    assert len(verdicts) >= 6
