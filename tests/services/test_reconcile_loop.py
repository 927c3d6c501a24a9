"""The reconciler keeps going: a failing playground, runc or database is logged and retried.

Every fault here is real, made on a labyard instance of the test's own (own data dir, so own
runc root, database and host resource names): an immutable file that `rmtree` cannot remove,
a runc root that is a file instead of a directory, a PostgreSQL database that stops
accepting connections. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from labyard.logs import JsonFormatter
from labyard.runtime import new_playground_id
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard, reconcile
from labyard.services.reconciler import Heartbeat, reconcile_forever
from labyard.settings import Settings
from tests.conftest import IMAGES_DIR
from tests.services.test_reconcile import eventually
from tests.store.databases import fresh_database_url, postgres_base_url

INTERVAL_S = 0.1
RECONCILER = "labyard.services.reconciler"


@contextmanager
def own_labyard(database_url: str | None = None) -> Iterator[Labyard]:
    """A labyard instance with its own data dir (SQLite in it unless `database_url`)."""
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-loop-"))
    url = database_url or f"sqlite:///{data_dir / 'labyard.db'}"
    settings = Settings(data_dir=data_dir, images_dir=IMAGES_DIR, database_url=url)
    labyard = Labyard(settings)
    try:
        yield labyard
    finally:
        labyard.close()
        subprocess.run(["chattr", "-R", "-i", str(data_dir)], capture_output=True, check=False)
        subprocess.run(
            ["nft", "delete", "table", "inet", nft_table(settings.instance)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def looping() -> AsyncIterator[tuple[Labyard, Heartbeat]]:
    """An own instance with the server's reconcile loop running on it, every 0.1 s."""
    with own_labyard() as labyard:
        async with running_loop(labyard) as heartbeat:
            yield labyard, heartbeat


@asynccontextmanager
async def running_loop(labyard: Labyard) -> AsyncIterator[Heartbeat]:
    """The server's reconcile loop on `labyard` inside the block; it must still run at the end."""
    heartbeat = Heartbeat(INTERVAL_S)
    task = asyncio.create_task(reconcile_forever(labyard.playgrounds, heartbeat))
    try:
        yield heartbeat
        assert not task.done(), "the reconcile loop ended on its own"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def succeeded_after(heartbeat: Heartbeat, moment: float | None) -> bool:
    return heartbeat.last_success is not None and (
        moment is None or heartbeat.last_success > moment
    )


def failed_rounds(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == RECONCILER and r.getMessage().startswith("reconcile round failed")
    ]


def assert_logged_with_traceback(record: logging.LogRecord, exception: str) -> None:
    """The JSON log line of `record` carries the traceback of an `exception`."""
    assert record.levelname == "ERROR"
    assert record.exc_info is not None and record.exc_info[0] is not None
    assert record.exc_info[0].__name__ == exception
    line = JsonFormatter().format(record)
    assert '"exception": "Traceback (most recent call last)' in line, line
    assert exception in line


async def test_one_failing_playground_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with own_labyard() as labyard:
        stuck = "0" + new_playground_id()[1:]  # listed (sorted) before the other one
        other = "z" + new_playground_id()[1:]
        for orphan in (stuck, other):  # host-side leftovers that no playground row owns
            (labyard.settings.playgrounds_dir / orphan).mkdir(parents=True)
        immutable = labyard.settings.playgrounds_dir / stuck / "immutable"
        immutable.write_text("rmtree cannot unlink me\n")
        subprocess.run(["chattr", "+i", str(immutable)], check=True)
        assert await labyard.driver.list() == [stuck, other]

        report = await reconcile(labyard.playgrounds)

        assert report.orphans == [other], report
        assert [e.split(":")[0] for e in report.errors] == [stuck], report
        # A failure the runtime foresees: its message names the file, the log has the detail.
        assert "cannot remove" in report.errors[0] and "immutable" in report.errors[0]
        assert await labyard.driver.list() == [stuck]
        (record,) = [r for r in caplog.records if getattr(r, "playground", None) == stuck]
        assert "Operation not permitted" in record.getMessage()

        subprocess.run(["chattr", "-i", str(immutable)], check=True)
        report = await reconcile(labyard.playgrounds)
        assert (report.orphans, report.errors) == ([stuck], []), report
        assert await labyard.driver.list() == []


async def test_loop_goes_on_while_runc_fails_and_recovers(
    looping: tuple[Labyard, Heartbeat], caplog: pytest.LogCaptureFixture
) -> None:
    labyard, heartbeat = looping
    await eventually(lambda: succeeded_after(heartbeat, None), 10, "a first successful round")
    assert heartbeat.problem() is None
    # An unusable runc root: a file where its state directory should be.
    labyard.settings.runc_root.write_text("not a directory\n")
    broken_since = heartbeat.last_success

    async def failed_twice() -> bool:
        return heartbeat.failures >= 2

    await eventually(failed_twice, 10, "two failed rounds in a row")
    assert heartbeat.last_success == broken_since
    assert heartbeat.last_error is not None and "FileExistsError" in heartbeat.last_error
    records = failed_rounds(caplog)
    assert len(records) >= 2
    assert_logged_with_traceback(records[0], "FileExistsError")

    labyard.settings.runc_root.unlink()
    await eventually(lambda: succeeded_after(heartbeat, broken_since), 10, "a round to succeed")
    assert heartbeat.problem() is None
    report = heartbeat.to_json()
    assert (report["failed_rounds"], report["last_error"]) == (0, None)


async def test_loop_goes_on_while_the_database_refuses_connections(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with fresh_database_url("postgresql", tmp_path) as url:
        name = make_url(url).database
        admin = create_engine(make_url(postgres_base_url()), isolation_level="AUTOCOMMIT")

        def allow_connections(allow: bool) -> None:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {allow}'))
                if not allow:  # and cut the ones labyard's pool holds
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    )

        try:
            with own_labyard(url) as labyard:
                async with running_loop(labyard) as heartbeat:
                    await eventually(
                        lambda: succeeded_after(heartbeat, None), 10, "a first successful round"
                    )
                    allow_connections(False)
                    broken_since = heartbeat.last_success

                    async def failed_twice() -> bool:
                        return heartbeat.failures >= 2

                    await eventually(failed_twice, 20, "two failed rounds in a row")
                    assert "OperationalError" in (heartbeat.last_error or "")
                    assert_logged_with_traceback(failed_rounds(caplog)[0], "OperationalError")

                    allow_connections(True)
                    await eventually(
                        lambda: succeeded_after(heartbeat, broken_since), 20, "a round to succeed"
                    )
                    assert heartbeat.failures == 0
        finally:
            allow_connections(True)
            admin.dispose()
