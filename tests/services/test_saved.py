"""Save-as and fork with real machines (local driver), on SQLite and PostgreSQL: what a
learner installed from a local .deb and wrote is in the saved playground and in a fork; the
original and its image are unchanged; plans limit how many are kept; forks' images go."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labyard.errors import Conflict, LimitExceeded, NotFound
from labyard.images import find_image, list_images
from labyard.manifest import load_manifest
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard, Playground
from labyard.settings import Settings
from tests.conftest import IMAGES_DIR
from tests.store.databases import KINDS, fresh_database_url

# A Debian package built in the machine (offline), installed from its local .deb.
INSTALL_AND_WRITE = r"""set -e
mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/bin
printf '%s\n' 'Package: labyard-hello' 'Version: 1.0' 'Architecture: all' \
  'Maintainer: Test <test@example.org>' 'Description: a test package' > /tmp/pkg/DEBIAN/control
printf '#!/bin/sh\necho hello from the package\n' > /tmp/pkg/usr/bin/labyard-hello
chmod 755 /tmp/pkg/usr/bin/labyard-hello
dpkg-deb --build /tmp/pkg /root/labyard-hello.deb >/dev/null
dpkg -i /root/labyard-hello.deb >/dev/null
echo written by the learner > /root/notes.txt
rm /etc/motd
"""
FIND_BOTH = (
    "labyard-hello; cat /root/notes.txt; dpkg-query -W -f='${Status}\\n' labyard-hello; "
    "test ! -e /etc/motd && echo motd-gone"
)
FOUND = "hello from the package\nwritten by the learner\ninstall ok installed\nmotd-gone"


@pytest.fixture(params=KINDS)
async def labyard(request: pytest.FixtureRequest) -> AsyncIterator[Labyard]:
    """A labyard instance of its own on each database (the host's built images)."""
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-saved-"))
    with fresh_database_url(request.param, data_dir) as url:
        settings = Settings(data_dir=data_dir, images_dir=IMAGES_DIR, database_url=url)
        instance = Labyard(settings)
        try:
            yield instance
        finally:
            for playground_id in await instance.driver.list():
                await asyncio.shield(instance.driver.destroy(playground_id))
            for saved in instance.saved.list(""):
                instance.saved.remove("", saved.name)
            instance.saved.prune()
            subprocess.run(
                ["nft", "delete", "table", "inet", nft_table(settings.instance)],
                capture_output=True,
                check=False,
            )
            instance.close()
    shutil.rmtree(data_dir, ignore_errors=True)


async def run(labyard: Labyard, playground: Playground, command: str) -> str:
    async with await labyard.playgrounds.connect(playground.id) as connection:
        result = await connection.run(command, timeout=120)
    assert result.exit_code == 0, (command, result.stdout, result.stderr)
    return result.stdout.strip()


async def test_save_then_start_the_saved_playground(labyard: Labyard) -> None:
    original = await labyard.playgrounds.start(load_manifest("linux"))
    await run(labyard, original, INSTALL_AND_WRITE)
    with pytest.raises(Conflict, match="stop it first"):
        await labyard.saved.save(original.id, "my-box")
    await labyard.playgrounds.stop(original.id)

    saved = await labyard.saved.save(original.id, "my-box")
    assert [s.name for s in labyard.saved.list("")] == ["my-box"]
    assert labyard.saved.list("u:someone-else") == []
    (image,) = [i for i in list_images(IMAGES_DIR) if i.name == saved.images[0]]
    assert image.origin == "saved" and image.size_bytes > 0
    with pytest.raises(Conflict, match="already have a saved playground 'my-box'"):
        await labyard.saved.save(original.id, "my-box")

    copy = await labyard.saved.start("", "my-box")
    assert await run(labyard, copy, FIND_BOTH) == FOUND
    await run(labyard, copy, "echo only in the copy > /root/copy-only")

    # The original is as it was: its own layer, its image untouched.
    restarted = await labyard.playgrounds.restart(original.id)
    assert await run(labyard, restarted, FIND_BOTH) == FOUND
    assert await run(labyard, restarted, "test ! -e /root/copy-only && echo absent") == "absent"
    linux = find_image(IMAGES_DIR, "linux").rootfs
    assert not (linux / "root/notes.txt").exists() and (linux / "etc/motd").exists()

    with pytest.raises(Conflict, match="in use"):
        labyard.saved.remove("", "my-box")
    await labyard.playgrounds.destroy(copy.id)
    labyard.saved.remove("", "my-box")
    assert not [i for i in list_images(IMAGES_DIR) if i.name in saved.images]
    with pytest.raises(NotFound):
        await labyard.saved.start("", "my-box")


async def test_fork_a_running_playground(labyard: Labyard) -> None:
    original = await labyard.playgrounds.start(load_manifest("linux"))
    await run(labyard, original, "systemd-run --unit=keeper sleep 600 && echo forked > /root/f")
    copy = await labyard.saved.fork(original.id)
    assert copy.id != original.id and copy.state == "running"
    assert await run(labyard, copy, "cat /root/f; systemctl is-active keeper || true") == (
        "forked\ninactive"
    )
    # The original ran on through the fork: the same processes, still running.
    assert (await labyard.playgrounds.get(original.id)).state == "running"
    assert await run(labyard, original, "systemctl is-active keeper") == "active"
    assert labyard.saved.list("") == []  # a fork is not a saved playground

    forks = [i.name for i in list_images(IMAGES_DIR) if i.name.startswith("fork-")]
    await labyard.playgrounds.destroy(copy.id)
    labyard.saved.prune()
    left = [i.name for i in list_images(IMAGES_DIR) if i.name.startswith("fork-")]
    assert forks and not set(forks) & set(left)


async def test_plans_limit_saved_playgrounds_and_saved_images_stay_private(
    labyard: Labyard,
) -> None:
    free = labyard.accounts.create_user("free-saver@example.org", "a long password")
    premium = labyard.accounts.create_user(
        "premium-saver@example.org", "a long password", plan="premium"
    )
    other = labyard.accounts.create_user("other@example.org", "a long password", role="author")
    mine = await labyard.playgrounds.start(load_manifest("linux"), launch=free.launch())
    await labyard.playgrounds.stop(mine.id, owner=free.owner)
    with pytest.raises(LimitExceeded, match="Free plan keeps 0 saved"):
        await labyard.saved.save(mine.id, "kept", owner=free.owner, account_id=free.id)
    with pytest.raises(NotFound):  # someone else's playground
        await labyard.saved.save(mine.id, "kept", owner=premium.owner, account_id=premium.id)
    await labyard.playgrounds.destroy(mine.id)

    theirs = await labyard.playgrounds.start(load_manifest("linux"), launch=premium.launch())
    await labyard.playgrounds.stop(theirs.id, owner=premium.owner)
    saved = await labyard.saved.save(theirs.id, "kept", owner=premium.owner, account_id=premium.id)
    await labyard.playgrounds.destroy(theirs.id)
    assert [s.name for s in labyard.saved.list(premium.owner)] == ["kept"]
    assert labyard.saved.list(other.owner) == []
    with pytest.raises(NotFound):
        await labyard.saved.start(other.owner, "kept", launch=other.launch())
    # Nor by naming its image in an own manifest (an author may start those).
    manifest = load_manifest("linux")
    manifest = manifest.model_copy(
        update={"machines": [manifest.machines[0].model_copy(update={"image": saved.images[0]})]}
    )
    with pytest.raises(NotFound, match="no image"):
        await labyard.playgrounds.start(manifest, launch=other.launch(own_manifest=True))
    labyard.saved.remove(premium.owner, "kept")
