"""`labyard class create FILE`, the real command: locally for an instructor made with
`labyard admin create-user --role instructor`, and against a running server with an API
token; a file that does not validate names its lines, a content key the server does not
have too, and nothing is created."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Server
from tests.conftest import IMAGES_DIR, REPO

PASSWORD = "a long enough password"
GOOD = """\
title: Containers 101
content:
  - linux
seats: 12
starts_at: 2031-05-06T09:00:00Z
ends_at: 2031-05-06T17:00:00Z
guests: true
"""
UNKNOWN_CONTENT = """\
title: Containers 101
content:
  - linux
  - challenges/no-such-thing
seats: 12
starts_at: 2031-05-06T09:00:00Z
ends_at: 2031-05-06T17:00:00Z
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="labyard-class-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def labyard(
    data_dir: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "LABYARD_DATA_DIR": str(data_dir),
        "LABYARD_IMAGES_DIR": str(IMAGES_DIR),
        "LABYARD_CONFIG": str(data_dir / "config"),
        "COLUMNS": "200",
        **env,
    }
    environment.pop("LABYARD_DATABASE_URL", None)
    return subprocess.run(
        [str(REPO / ".venv/bin/labyard"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_class_create_locally_for_an_instructor(data_dir: Path, tmp_path: Path) -> None:
    made = labyard(
        data_dir,
        "admin",
        "create-user",
        "teach@example.org",
        "--role",
        "instructor",
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    assert "(instructor, free)" in made.stderr
    learner = labyard(data_dir, "admin", "create-user", "learn@example.org", stdin=PASSWORD + "\n")
    assert learner.returncode == 0, learner.stderr

    good = tmp_path / "class.yaml"
    good.write_text(GOOD)
    created = labyard(data_dir, "class", "create", str(good), "--instructor", "teach@example.org")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("cl_")
    assert "join code" in created.stderr and "/classes/join/" in created.stderr

    refused = labyard(data_dir, "class", "create", str(good), "--instructor", "learn@example.org")
    assert refused.returncode == 4 and "only instructors and admins" in refused.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("seats: 12", "seats: many").replace("guests: true", "guests: 3"))
    invalid = labyard(data_dir, "class", "create", str(bad), "--instructor", "teach@example.org")
    assert invalid.returncode == 2, invalid.stderr
    assert f"{bad}:4: seats:" in invalid.stderr and f"{bad}:7: guests:" in invalid.stderr

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(UNKNOWN_CONTENT)
    missing = labyard(
        data_dir, "class", "create", str(unknown), "--instructor", "teach@example.org"
    )
    assert missing.returncode == 2, missing.stderr
    assert f"{unknown}:4: content.1:" in missing.stderr


def test_class_create_on_a_server_as_the_signed_in_instructor(
    server: Server, data_dir: Path, tmp_path: Path
) -> None:
    email = f"teach-{os.getpid()}@example.org"
    made = labyard(
        server.data_dir,
        "admin",
        "create-user",
        email,
        "--role",
        "instructor",
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    with server.client() as client:
        token = client.post("/api/tokens", json={"email": email, "password": PASSWORD})
        assert token.status_code == 201, token.text
        secret = token.json()["token"]
        good = tmp_path / "class.yaml"
        good.write_text(GOOD)
        env = {"LABYARD_SERVER": server.url, "LABYARD_TOKEN": secret}
        created = labyard(data_dir, "class", "create", str(good), "--json", **env)
        assert created.returncode == 0, created.stderr
        import json

        data = json.loads(created.stdout)
        assert data["join_url"] == f"{server.url}/classes/join/{data['join_code']}"
        seen = client.get(
            f"/api/classes/{data['id']}", headers={"Authorization": f"Bearer {secret}"}
        )
        assert seen.status_code == 200 and seen.json()["seats"] == 12

        unknown = tmp_path / "unknown.yaml"
        unknown.write_text(UNKNOWN_CONTENT)
        missing = labyard(data_dir, "class", "create", str(unknown), **env)
        assert missing.returncode == 2, missing.stderr
        assert f"{unknown}:4: content.1:" in missing.stderr
        mine = client.get("/api/classes", headers={"Authorization": f"Bearer {secret}"})
        assert len(mine.json()) == 1  # nothing half-made
