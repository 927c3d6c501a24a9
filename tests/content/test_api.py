"""/api/content (what `labyard content preview` serves) and the watcher that keeps it fresh."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labyard.api.app import create_app
from labyard.content.watch import ContentWatcher
from labyard.services import Labyard
from labyard.settings import Settings
from tests.conftest import REPO
from tests.content import write
from tests.content.test_loader import runnable


@pytest.fixture
def content(tmp_path: Path) -> Path:
    return write(
        tmp_path / "content",
        {
            "challenges/touch/index.md": runnable("challenge", "Touch") + "\n![d](diagram.png)\n",
            "challenges/touch/diagram.png": "png",
            "challenges/touch/solution.md": "touch it",
            "challenges/touch/solution.sh": "touch /tmp/done",
            "challenges/touch/.hidden/x.png": "png",
            "skill-paths/p/index.md": "---\nkind: skill-path\ntitle: P\nsteps: [challenges/gone]\n"
            "---\n",
        },
    )


@pytest.fixture
def client(content: Path, tmp_path: Path) -> Iterator[TestClient]:
    data = tmp_path / "data"
    settings = Settings(
        data_dir=data, images_dir=data / "images", database_url=f"sqlite:///{data}/labyard.db"
    )
    data.mkdir()
    labyard = Labyard(settings, content_dir=content)
    with TestClient(create_app(labyard, reconcile_interval_s=None)) as client:
        yield client
    labyard.close()


def test_index_lists_items_and_problems(client: TestClient, content: Path) -> None:
    body = client.get("/api/content").json()

    assert body["version"] == 1
    assert [item["key"] for item in body["items"]] == ["challenges/touch", "skill-paths/p"]
    assert body["problems"] == [
        f"{content}/skill-paths/p/index.md:4: steps.0: no item challenges/gone "
        f"({content}/challenges/gone has no index.md)"
    ]


def test_item_is_rendered_without_scripts_or_solutions(client: TestClient) -> None:
    response = client.get("/api/content/challenges/touch")
    item = response.json()

    assert response.status_code == 200
    assert item["title"] == "Touch"
    assert item["tasks"] == [{"name": "done", "init": False, "needs": [], "machine": None}]
    assert item["has_solution"] is True
    assert 'data-task="done"' in item["html"]
    assert '<img src="/api/content/static/challenges/touch/diagram.png"' in item["html"]
    assert "test -f /tmp/done" not in response.text
    assert "touch it" not in response.text
    assert client.get("/api/content/challenges/nope").status_code == 404


def test_static_files_but_never_sources_or_solutions(client: TestClient) -> None:
    image = client.get("/api/content/static/challenges/touch/diagram.png")

    assert image.status_code == 200 and image.content == b"png"
    assert "sandbox" in image.headers["content-security-policy"]
    for path in [
        "index.md",
        "solution.md",
        "solution.sh",
        ".hidden/x.png",
        "../p/index.md",
        "%2e%2e/%2e%2e/skill-paths/p/index.md",
    ]:
        response = client.get(f"/api/content/static/challenges/touch/{path}")
        assert response.status_code == 404, path


def test_the_watcher_reloads_only_after_a_change(content: Path) -> None:
    now = [0.0]
    watcher = ContentWatcher(content, interval_s=1.0, clock=lambda: now[0])
    index_md = content / "challenges/touch/index.md"

    assert watcher.tree().get("challenges/touch").front.title == "Touch"
    index_md.write_text(index_md.read_text().replace("title: Touch", "title: Touched"))
    assert watcher.version == 1  # not looked at again within the interval
    assert watcher.tree().get("challenges/touch").front.title == "Touch"
    now[0] = 1.5
    assert watcher.tree().get("challenges/touch").front.title == "Touched"
    assert watcher.version == 2
    now[0] = 3.0
    assert watcher.check() is False and watcher.version == 2
    (content / "challenges/touch/new.png").write_text("new file")
    now[0] = 4.5
    assert watcher.check() is True and watcher.version == 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def test_preview_serves_the_content_and_reloads_on_save(content: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "LABYARD_DATA_DIR": str(tmp_path / "data")}
    env.pop("LABYARD_DATABASE_URL", None)
    process = subprocess.Popen(
        [str(REPO / ".venv/bin/labyard"), "content", "preview", str(content), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api/content"
    try:
        first = _wait_for(lambda: _get(f"{base}/version")["version"], "the preview server")
        index_md = content / "challenges/touch/index.md"
        index_md.write_text(index_md.read_text().replace("title: Touch", "title: Saved"))

        _wait_for(lambda: _get(f"{base}/version")["version"] > first, "a new version")
        assert _get(f"{base}/challenges/touch")["title"] == "Saved"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "skill-paths/p/index.md:4: steps.0: no item challenges/gone" in err
