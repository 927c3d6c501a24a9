"""`labyard content ...`: scaffolding, validation output and exit codes, schema, import."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from labyard.cli.main import app
from tests.content import write
from tests.content.test_killercoda_import import FIXTURE
from tests.content.test_loader import BROKEN


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of `labyard ARGS`, run in this process."""
        try:
            code = app(list(args)) or 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def labyard(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def test_scaffolded_items_validate(labyard: Run, tmp_path: Path) -> None:
    content = tmp_path / "content"
    for kind, name in [("challenge", "hello"), ("tutorial", "intro"), ("course", "basics")]:
        code, out, err = labyard("content", "new", kind, name, "--dir", str(content))
        assert code == 0, err
        assert out == f"{content}/{kind}s/{name}/index.md\n"

    challenge = content / "challenges/hello"
    assert sorted(p.name for p in challenge.iterdir()) == ["index.md", "solution.md", "solution.sh"]
    assert os.access(challenge / "solution.sh", os.X_OK)
    assert (content / "courses/basics/first-lesson/index.md").is_file()
    assert labyard("content", "validate", str(content)) == (
        0,
        "1 challenge, 1 tutorial, 1 course (1 lesson) ok\n",
        "",
    )
    assert labyard("content", "validate", str(challenge / "index.md")) == (
        0,
        "challenges/hello (challenge) ok\n",
        "",
    )


def test_new_refuses_an_existing_item_and_unknown_kinds(labyard: Run, tmp_path: Path) -> None:
    labyard("content", "new", "challenge", "hello", "--dir", str(tmp_path))

    code, out, err = labyard("content", "new", "challenge", "hello", "--dir", str(tmp_path))
    assert (code, out) == (4, "")
    assert err == f"labyard: {tmp_path}/challenges/hello already exists\n"
    code, _, err = labyard("content", "new", "skill-path", "x", "--dir", str(tmp_path))
    assert code == 2 and "cannot scaffold a 'skill-path'" in err
    code, _, err = labyard("content", "new", "challenge", "Not_A_Slug", "--dir", str(tmp_path))
    assert code == 2 and "'Not_A_Slug' is not a slug" in err


def test_validate_prints_every_problem_and_exits_2(labyard: Run, tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "challenges/broken/index.md": BROKEN,
            "skill-paths/p/index.md": "---\nkind: skill-path\ntitle: P\n"
            "steps: [tutorials/x]\n---\n",
        },
    )

    code, out, err = labyard("content", "validate", str(tmp_path))

    lines = err.splitlines()
    assert (code, out) == (2, "")
    assert len(lines) == 12
    assert (
        lines[0] == f"{tmp_path}/challenges/broken/index.md:5: dificulty: unknown field (did "
        "you mean 'difficulty'?)"
    )
    assert lines[-2].startswith(f"{tmp_path}/skill-paths/p/index.md:4: steps.0: no item ")
    assert lines[-1] == f"labyard: 11 problems in {tmp_path}"


def test_validate_one_broken_item(labyard: Run, tmp_path: Path) -> None:
    write(tmp_path, {"challenges/broken/index.md": BROKEN})

    code, out, err = labyard("content", "validate", str(tmp_path / "challenges/broken"))

    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"labyard: 10 problems in {tmp_path}/challenges/broken"


def test_validate_a_missing_folder(labyard: Run, tmp_path: Path) -> None:
    code, out, err = labyard("content", "validate", str(tmp_path / "nope"))

    assert (code, out) == (3, "")
    assert err == f"labyard: content folder {tmp_path}/nope does not exist\n"


def test_schema_is_the_front_matter_json_schema(labyard: Run) -> None:
    code, out, _ = labyard("content", "schema")

    schema = json.loads(out)
    assert code == 0
    assert {"Challenge", "Tutorial", "Lesson", "Course", "SkillPath", "Task"} <= set(
        schema["$defs"]
    )
    assert schema["discriminator"]["propertyName"] == "kind"
    assert schema["$defs"]["Challenge"]["additionalProperties"] is False


def test_import_killercoda(labyard: Run, tmp_path: Path) -> None:
    code, out, err = labyard(
        "content", "import", "killercoda", str(FIXTURE), "--out", str(tmp_path)
    )

    assert code == 0, err
    assert out == f"{tmp_path}/tutorials/hello-scenario/index.md\n"
    warnings = err.splitlines()
    assert len(warnings) == 5
    assert all(w.startswith("labyard: warning: ") for w in warnings)
    assert labyard("content", "validate", str(tmp_path))[:2] == (0, "1 tutorial ok\n")


@pytest.mark.parametrize(
    "args",
    [
        ("content", "validate"),
        ("content", "validate", "--strcit", "content"),
        ("content", "import", "killercoda"),
        ("content", "import", "katacoda", "x"),
        ("content", "import", "killercoda", "x", "--out"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(labyard: Run, args: tuple[str, ...]) -> None:
    code, out, err = labyard(*args)

    assert (code, out) == (2, "")
    assert "Error" in err and "Traceback" not in err


def test_import_errors_say_what_is_wrong(labyard: Run, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/index.json").write_text("{not json")
    out = str(tmp_path / "out")

    code, _, err = labyard("content", "import", "killercoda", str(tmp_path / "nope"), "--out", out)
    assert code == 3 and err.startswith(f"labyard: {tmp_path}/nope/index.json does not exist")
    code, _, err = labyard("content", "import", "killercoda", str(tmp_path / "bad"), "--out", out)
    assert code == 2 and err.startswith(f"labyard: {tmp_path}/bad/index.json is not valid JSON")
    code, _, err = labyard(
        "content", "import", "killercoda", str(FIXTURE), "--out", out, "--slug", "Not A Slug"
    )
    assert code == 2 and "'Not A Slug' is not a slug" in err
    assert labyard("content", "import", "killercoda", str(FIXTURE), "--out", out)[0] == 0
    code, _, err = labyard("content", "import", "killercoda", str(FIXTURE), "--out", out)
    assert code == 4 and err == f"labyard: {out}/tutorials/hello-scenario already exists\n"
    assert labyard("content", "validate", "--strict", out)[:2] == (0, "1 tutorial ok\n")


def test_an_import_that_would_not_validate_exits_2_and_writes_nothing(
    labyard: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labyard.content import killercoda

    real = killercoda.convert

    def broken(*args: object) -> tuple[dict[str, object], str]:
        front, body = real(*args)  # type: ignore[arg-type]
        return {**front, "title": ""}, body

    monkeypatch.setattr(killercoda, "convert", broken)

    code, out, err = labyard(
        "content", "import", "killercoda", str(FIXTURE), "--out", str(tmp_path / "out")
    )

    lines = err.splitlines()
    assert (code, out) == (2, "")
    assert lines[0].startswith(f"{tmp_path}/out/tutorials/hello-scenario/index.md:3: title: ")
    assert lines[-1] == (
        f"labyard: 1 problem in the tutorial made from {FIXTURE}; nothing was written"
    )
    assert list((tmp_path / "out").iterdir()) == []
