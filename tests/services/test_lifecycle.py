"""Playground lifecycle: stop/restart keep the disk, lifetimes expire, init tasks, files."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labyard.errors import Conflict, InvalidInput, NotFound
from labyard.services import Labyard, reconcile
from labyard.settings import Settings
from tests.conftest import Starter
from tests.services.test_reconcile import eventually, host_traces, rows


async def test_stop_keeps_disk_and_restart_brings_it_back(start: Starter, labyard: Labyard) -> None:
    playground = await start("linux")
    code, _, err = await start.exec(playground, "echo kept > /root/kept.txt && sync")
    assert code == 0, err

    stopped = await labyard.playgrounds.stop(playground.id)
    assert stopped.state == "stopped"
    assert [(m.name, m.state) for m in stopped.machines] == [("linux", "stopped")]
    assert (await labyard.playgrounds.get(playground.id)).state == "stopped"
    with pytest.raises(Conflict, match="stopped"):
        await start.exec(playground, "true")
    assert playground.id in await labyard.driver.list()  # the disk is still there

    restarted = await labyard.playgrounds.restart(playground.id)
    assert restarted.state == "running"
    assert [(m.name, m.state) for m in restarted.machines] == [("linux", "running")]
    code, out, err = await start.exec(
        playground, "cat /root/kept.txt; systemctl is-system-running --wait"
    )
    assert (code, out.split()) == (0, ["kept", "running"]), err


async def test_restart_of_running_playground(start: Starter, labyard: Labyard) -> None:
    playground = await start("linux")
    # /run is a tmpfs: a marker there disappears exactly when the machine really restarts.
    code, _, err = await start.exec(playground, "touch /run/marker /root/marker")
    assert code == 0, err

    restarted = await labyard.playgrounds.restart(playground.id)

    assert restarted.state == "running"
    assert restarted.machines[0].address == playground.machines[0].address
    code, out, err = await start.exec(
        playground,
        "test -e /run/marker && echo run-kept; test -e /root/marker && echo disk-kept; "
        "systemctl is-system-running --wait",
    )
    assert (code, out.split()) == (0, ["disk-kept", "running"]), err


async def test_expired_playground_is_destroyed_by_reconcile(
    start: Starter, labyard: Labyard, settings: Settings
) -> None:
    playground = await start("linux", lifetime_s=2)
    assert (playground.expires_at - playground.created_at).total_seconds() == pytest.approx(2)
    first = await reconcile(labyard.playgrounds)
    if datetime.now(UTC) < playground.expires_at:
        assert playground.id not in first.expired, "destroyed before its time"

    async def expired() -> bool:
        report = await reconcile(labyard.playgrounds)
        assert report.errors == [], report
        return playground.id not in rows(settings)

    await eventually(expired, 20, "the expired playground to be destroyed", interval=0.2)
    assert datetime.now(UTC) >= playground.expires_at
    assert playground.id not in await labyard.driver.list()
    assert host_traces(settings, playground.id) == []
    with pytest.raises(NotFound):
        await labyard.playgrounds.get(playground.id)


async def test_extend_pushes_expiry(start: Starter, labyard: Labyard) -> None:
    playground = await start("linux", lifetime_s=120)
    extended = await labyard.playgrounds.extend(playground.id, 600)
    pushed = (extended.expires_at - playground.expires_at).total_seconds()
    assert pushed == pytest.approx(600, abs=1)
    assert (await labyard.playgrounds.get(playground.id)).expires_at == extended.expires_at
    report = await reconcile(labyard.playgrounds)
    assert playground.id not in report.expired
    with pytest.raises(NotFound):
        await labyard.playgrounds.extend("zzzzzzzz", 60)


INIT_ORDER = """\
name: init-order
machines:
  - name: box
init:
  # Listed backwards on purpose: only `needs` may decide the order.
  - name: c
    needs: [b]
    run: echo c >> /tmp/order
  - name: b
    needs: [a]
    user: learner
    run: sleep 0.3; echo "b $(id -un) $HOME" >> /tmp/order
  - name: a
    run: |
      useradd -m -s /bin/bash learner
      sleep 0.3
      echo a >> /tmp/order
      chmod 666 /tmp/order
"""


async def test_init_tasks_run_in_needs_order(start: Starter) -> None:
    playground = await start(INIT_ORDER)
    assert playground.state == "running"
    code, out, err = await start.exec(playground, "cat /tmp/order", machine="box")
    assert code == 0, err
    assert out.splitlines() == ["a", "b learner /home/learner", "c"]


async def test_failing_init_task_rolls_back(start: Starter, labyard: Labyard) -> None:
    before = set(await labyard.driver.list())
    manifest = "name: init-fails\nmachines: [{name: box}]\ninit:\n  - {name: bad, run: exit 7}\n"
    with pytest.raises(InvalidInput, match="init task 'bad' failed with exit code 7"):
        await start(manifest)
    assert set(await labyard.driver.list()) == before
    assert [p for p in await labyard.playgrounds.list() if p.name == "init-fails"] == []


STARTUP_FILES = """\
name: files
machines:
  - name: box
    files:
      - path: /etc/labyard/secret.conf
        content: "token=42\\n"
        mode: "0600"
      - path: /srv/www/index.html
        content: hello
        mode: "0640"
        owner: www-data:adm
      - path: /etc/skel/notes.txt
        content: as written
        owner: nobody
"""


async def test_startup_files_land_with_mode_and_owner(start: Starter) -> None:
    playground = await start(STARTUP_FILES)
    code, out, err = await start.exec(
        playground,
        "cd / && stat -c '%n %a %U %G' etc/labyard/secret.conf srv/www/index.html "
        "etc/skel/notes.txt && cat etc/labyard/secret.conf srv/www/index.html",
    )
    assert code == 0, err
    assert out.splitlines() == [
        "etc/labyard/secret.conf 600 root root",
        "srv/www/index.html 640 www-data adm",
        "etc/skel/notes.txt 644 nobody nogroup",
        "token=42",
        "hello",
    ]


async def test_stop_of_unknown_playground(labyard: Labyard) -> None:
    with pytest.raises(NotFound):
        await labyard.playgrounds.stop("zzzzzzzz")
    with pytest.raises(NotFound):
        await labyard.playgrounds.restart("zzzzzzzz")
