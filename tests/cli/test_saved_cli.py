"""`labyard playground save|saved|start --saved|fork` and `labyard image import|list`, run as
the real command against the test instance."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from labyard.images import find_image
from labyard.services import Labyard
from labyard.settings import Settings
from tests.conftest import IMAGES_DIR, run_cli
from tests.images.archive_files import docker_archive, member, members_layer


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout.strip()


async def test_save_start_saved_and_fork(settings: Settings, labyard: Labyard) -> None:
    original = ok(run_cli(settings, "playground", "start", "linux"))
    made = [original]
    try:
        ok(run_cli(settings, "exec", original, "--", "echo saved-by-cli > /root/cli.txt"))
        refused = run_cli(settings, "playground", "save", original, "cli-box")
        assert refused.returncode == 4 and "stop it first" in refused.stderr
        ok(run_cli(settings, "playground", "stop", original))
        assert ok(run_cli(settings, "playground", "save", original, "cli-box")) == "cli-box"
        listed = json.loads(ok(run_cli(settings, "playground", "saved", "--json")))
        assert [s["name"] for s in listed] == ["cli-box"]

        copy = ok(run_cli(settings, "playground", "start", "--saved", "cli-box"))
        made.append(copy)
        assert ok(run_cli(settings, "exec", copy, "--", "cat /root/cli.txt")) == "saved-by-cli"
        fork = ok(run_cli(settings, "playground", "fork", copy))
        made.append(fork)
        assert ok(run_cli(settings, "exec", fork, "--", "cat /root/cli.txt")) == "saved-by-cli"
        missing = run_cli(settings, "playground", "start", "--saved", "no-such-box")
        assert missing.returncode == 3 and "no saved playground 'no-such-box'" in missing.stderr
    finally:
        for playground_id in made:
            run_cli(settings, "playground", "destroy", playground_id)
        for saved in labyard.saved.list(""):
            labyard.saved.remove("", saved.name)
        labyard.saved.prune()


def test_image_import_and_list(settings: Settings, tmp_path: Path) -> None:
    # No sshd: refused with what is missing, exit 2, nothing kept.
    layer = members_layer([member("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")], tmp_path / "l")
    archive = docker_archive([layer], tmp_path / "a.tar")
    refused = run_cli(settings, "image", "import", "cli-refused", str(archive))
    assert refused.returncode == 2
    assert "cannot boot as a labyard machine; it lacks: systemd as /sbin/init" in refused.stderr
    names = [i["name"] for i in json.loads(ok(run_cli(settings, "image", "list", "--json")))]
    assert "cli-refused" not in names and "linux" in names
    assert find_image(IMAGES_DIR, "linux").origin == "recipe"
