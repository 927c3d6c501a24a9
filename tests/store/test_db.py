"""The store and the services' database side, on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, inspect, select, text

from labyard.access import generate_keypair
from labyard.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from labyard.manifest import load_manifest
from labyard.runtime import make_driver
from labyard.runtime.local.names import nft_table
from labyard.services import Labyard, Playgrounds
from labyard.services.accounts import SESSION_LIFETIME, Accounts
from labyard.settings import Settings
from labyard.store import Base, Database, MachineRow, PlaygroundRow, ShareRow, TokenRow, UserRow
from labyard.store.db import MIGRATIONS, make_engine
from labyard.store.models import UTCDateTime
from labyard.types import PlaygroundState
from tests.conftest import IMAGES_DIR
from tests.store.databases import fresh_database_url, upgrade_to

TABLES = {"alembic_version", "playgrounds", "machines", "users", "tokens", "shares"}
PLUS_TWO = timezone(timedelta(hours=2), "CEST")
CLIENT_KEY = generate_keypair("test-client")
HOST_KEY = generate_keypair("linux")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.close()


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _playground_row(
    playground_id: str, owner: str, created: datetime, **overrides: Any
) -> PlaygroundRow:
    manifest = load_manifest("linux")
    fields: dict[str, Any] = {
        "id": playground_id,
        "name": manifest.name,
        "title": manifest.title,
        "owner": owner,
        "state": PlaygroundState.STARTING,
        "manifest": manifest.model_dump(mode="json"),
        "driver": "local",
        "driver_state": {},
        "client_key": CLIENT_KEY.private_openssh,
        "created_at": created,
        "expires_at": created + timedelta(hours=1),
        "updated_at": created,
        **overrides,
    }
    row = PlaygroundRow(**fields)
    row.machines = [
        MachineRow(name="linux", position=0, image="linux", host_key=HOST_KEY.private_openssh)
    ]
    return row


# -- schema ------------------------------------------------------------------------------


def test_migrations_create_the_schema_and_run_again_as_a_no_op(database_url: str) -> None:
    first = Database(database_url)
    try:
        first.migrate()
        assert set(inspect(first.engine).get_table_names()) >= TABLES
        with first.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == [_head()]
        user = Accounts(first).create_user("keep@example.org", "a long password")
        first.migrate()
    finally:
        first.close()

    second = Database(database_url)  # what every CLI command and server start does
    try:
        second.migrate()
        second.migrate()
        assert Accounts(second).get(user.id) == user
        with second.engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == [_head()]
    finally:
        second.close()


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], f"models and migrations disagree: {differences}"


def test_migration_0017_gives_existing_playgrounds_no_notice(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_to(engine, "0016")
    at = datetime.now(UTC)
    when = UTCDateTime()
    playgrounds = sa.table(
        "playgrounds", *(sa.column(c) for c in ("id", "name", "title", "owner", "state")),
        *(sa.column(c) for c in ("driver", "client_key")),
        *(sa.column(c, sa.JSON) for c in ("manifest", "driver_state")),
        *(sa.column(c, when) for c in ("created_at", "expires_at", "updated_at")),
    )  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            sa.insert(playgrounds).values(
                id="before01", name="linux", title="Linux", owner="user:1", state="stopped",
                driver="lxd", client_key="x", manifest={}, driver_state={}, created_at=at,
                expires_at=at + timedelta(hours=1), updated_at=at,
            )
        )  # fmt: skip
    engine.dispose()

    db = Database(database_url)
    try:
        db.migrate()
        with db.session() as session:
            row = session.get_one(PlaygroundRow, "before01")
            assert (row.state, row.notice) == ("stopped", "")
            row.notice = "Stopped on 2026-12-08 14:03 UTC: …"  # and it keeps one from now on
        with db.session() as session:
            assert session.get_one(PlaygroundRow, "before01").notice.startswith("Stopped on")
    finally:
        db.close()


# -- rows --------------------------------------------------------------------------------


def test_playground_rows_round_trip_with_aware_datetimes(db: Database) -> None:
    created = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=PLUS_TWO)
    manifest = load_manifest("linux-cluster").model_dump(mode="json")
    manifest["description"] = 'Ünïcødé ✓ "quoted" \\ back'
    driver_state = {"nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}}
    with db.session() as session:
        row = _playground_row(
            "abcd2345", "user:1", created, manifest=manifest, driver_state=driver_state
        )
        row.state = PlaygroundState.RUNNING
        row.machines = [
            MachineRow(name=f"node-0{i}", position=i, image="linux", host_key=f"key {i}")
            for i in (3, 1, 2)
        ]
        session.add(row)
        session.flush()
        session.add(
            ShareRow(
                token="t1", playground_id="abcd2345", machine="node-01", port=80, created_at=created
            )
        )

    with db.session() as session:
        back = session.get(PlaygroundRow, "abcd2345")
        assert back is not None
        assert back.manifest == manifest
        assert back.driver_state == driver_state
        assert back.state == "running"
        assert [(m.name, m.position, m.host_key) for m in back.machines] == [
            ("node-01", 1, "key 1"),
            ("node-02", 2, "key 2"),
            ("node-03", 3, "key 3"),
        ]
        for moment in (back.created_at, back.expires_at, back.updated_at):
            assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
        # Same instant as written (in +02:00), and comparable with aware values.
        assert back.created_at == created
        assert back.created_at.hour == 5
        assert back.expires_at - back.created_at == timedelta(hours=1)
        assert back.expires_at > datetime.now(UTC)
        # Comparisons in SQL agree with the instants, whatever zone the parameter is in.
        later = select(PlaygroundRow.id).where(
            PlaygroundRow.expires_at > (created + timedelta(minutes=59)).astimezone(UTC)
        )
        assert session.scalars(later).all() == ["abcd2345"]
        earlier = select(PlaygroundRow.id).where(
            PlaygroundRow.expires_at < created + timedelta(minutes=59)
        )
        assert session.scalars(earlier).all() == []
        share = session.get(ShareRow, "t1")
        assert share is not None and share.created_at == created

    # The database itself cascades: machines and shares go with their playground.
    with db.session() as session:
        session.execute(delete(PlaygroundRow).where(PlaygroundRow.id == "abcd2345"))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(MachineRow)) == 0
        assert session.scalar(select(func.count()).select_from(ShareRow)) == 0


def test_naive_datetimes_are_taken_as_utc(db: Database) -> None:
    naive = datetime(2031, 1, 1, 12, 0, 0)
    with db.session() as session:
        session.add(_playground_row("naive234", "", naive))
    with db.session() as session:
        back = session.get(PlaygroundRow, "naive234")
        assert back is not None
        assert back.created_at == naive.replace(tzinfo=UTC)


# -- services ----------------------------------------------------------------------------


def test_accounts_on_the_database(db: Database) -> None:
    accounts = Accounts(db)
    user = accounts.create_user(
        "  Ada@Example.org ", "correct horse", role="author", plan="premium"
    )
    assert (user.email, user.role, user.plan) == ("ada@example.org", "author", "premium")
    with pytest.raises(Conflict):
        accounts.create_user("ADA@example.org", "another password")
    for email, password, kwargs in [
        ("not-an-email", "long enough", {}),
        ("bob@example.org", "short", {}),
        ("bob@example.org", "long enough", {"role": "root"}),
        ("bob@example.org", "long enough", {"plan": "gold"}),
        ("bob\x00@example.org", "long enough", {}),
    ]:
        with pytest.raises(InvalidInput):
            accounts.create_user(email, password, **kwargs)
    assert accounts.user_count() == 1

    assert accounts.authenticate("ADA@example.org", "correct horse", "c") == user
    for email in ("ada@example.org", "ada\x00@example.org", "\x00"):
        with pytest.raises(Unauthenticated):  # PostgreSQL cannot even compare a NUL
            accounts.authenticate(email, "wrong horse", "c")
    with db.session() as session:
        stored = session.scalar(select(UserRow.password_hash).where(UserRow.id == user.id))
        assert stored is not None and "correct horse" not in stored
        assert stored.startswith("$argon2")

    session_secret = accounts.issue(user, "session")
    api_secret = accounts.issue(user, "api", "laptop")
    assert accounts.user_for(session_secret) == user
    assert accounts.user_for(api_secret) == user
    with db.session() as session:
        tokens = {t.kind: t for t in session.scalars(select(TokenRow))}
        assert set(tokens) == {"session", "api"}
        assert session_secret not in {t.hash for t in tokens.values()}
        assert tokens["api"].name == "laptop" and tokens["api"].expires_at is None
        expires = tokens["session"].expires_at
        assert expires is not None
        left = expires - datetime.now(UTC)
        assert SESSION_LIFETIME - timedelta(minutes=1) < left <= SESSION_LIFETIME

    with db.session() as session:
        for token in session.scalars(select(TokenRow).where(TokenRow.kind == "session")):
            token.expires_at = datetime.now(PLUS_TWO) - timedelta(seconds=1)
    with pytest.raises(Unauthenticated, match="expired"):
        accounts.user_for(session_secret)
    accounts.revoke(api_secret)
    with pytest.raises(Unauthenticated):
        accounts.user_for(api_secret)

    assert accounts.set_plan(user.id, "free").plan == "free"
    assert accounts.get(user.id).plan == "free"
    with pytest.raises(NotFound):
        accounts.get(user.id + 1000)

    accounts.issue(user, "api", "second")
    with db.session() as session:
        session.execute(delete(UserRow).where(UserRow.id == user.id))
    with db.session() as session:  # tokens go with their user
        assert session.scalar(select(func.count()).select_from(TokenRow)) == 0


async def test_playgrounds_service_rows(db: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, images_dir=IMAGES_DIR, database_url="unused")
    playgrounds = Playgrounds(settings, db, make_driver("local", settings))
    t0 = datetime.now(UTC).replace(microsecond=0)
    with db.session() as session:
        session.add(_playground_row("second23", "user:2", t0 + timedelta(seconds=5)))
        session.add(_playground_row("first234", "user:1", t0))

    assert [p.id for p in await playgrounds.list()] == ["first234", "second23"]
    assert [p.id for p in await playgrounds.list(owner="user:1")] == ["first234"]
    assert await playgrounds.list(owner="user:3") == []
    for wrong_id, owner in [("first234", "user:2"), ("first\x00", None), ("x" * 500, None)]:
        with pytest.raises(NotFound):
            await playgrounds.get(wrong_id, owner=owner)

    first = await playgrounds.get("first234", owner="user:1")
    assert (first.state, first.created_at, first.owner) == ("starting", t0, "user:1")
    assert [(m.name, m.state) for m in first.machines] == [("linux", "pending")]
    assert playgrounds.manifest_of("first234") == load_manifest("linux")

    with pytest.raises(NotFound):
        await playgrounds.extend("first234", 600, owner="user:2")
    extended = await playgrounds.extend("first234", 600, owner="user:1")
    assert extended.expires_at == first.expires_at + timedelta(seconds=600)

    with pytest.raises(Conflict, match="still starting"):
        playgrounds.target("first234")
    with db.session() as session:  # as the driver's start records it (runtime/local/state.py)
        row = session.get(PlaygroundRow, "first234")
        assert row is not None
        row.driver_state = {"driver": "local", "version": "2", "machines": []}
    target = playgrounds.target("first234", "linux", owner="user:1")
    assert target.where == "linux.first234" and target.dial is not None
    assert target.host_public_key.split()[:2] == HOST_KEY.public_openssh.split()[:2]
    assert target.client_private_key == CLIENT_KEY.private_openssh
    with pytest.raises(NotFound):
        playgrounds.target("first234", "nope")
    with pytest.raises(NotFound):
        playgrounds.target("first234", owner="user:2")

    playgrounds.set_state("first234", PlaygroundState.FAILED)
    assert (await playgrounds.get("first234")).state == "failed"
    playgrounds.forget("first234")
    with pytest.raises(NotFound):
        await playgrounds.get("first234")
    assert [p.id for p in await playgrounds.list()] == ["second23"]


# -- a real playground, recorded in PostgreSQL -------------------------------------------


@pytest.fixture
async def postgres_labyard(tmp_path: Path) -> AsyncIterator[Labyard]:
    # A short data dir of its own (host resource names and socket paths derive from it).
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-pg-"))
    with fresh_database_url("postgresql", tmp_path) as url:
        labyard = Labyard(Settings(data_dir=data_dir, images_dir=IMAGES_DIR, database_url=url))
        try:
            yield labyard
        finally:
            for playground_id in await labyard.driver.list():
                await labyard.driver.destroy(playground_id)
            subprocess.run(
                ["nft", "delete", "table", "inet", nft_table(labyard.settings.instance)],
                capture_output=True,
                check=False,
            )
            labyard.close()
            shutil.rmtree(data_dir, ignore_errors=True)


async def test_a_real_playground_on_postgresql(postgres_labyard: Labyard) -> None:
    labyard = postgres_labyard
    assert labyard.db.engine.dialect.name == "postgresql"
    playground = await labyard.playgrounds.start(
        load_manifest("linux"), owner="user:7", lifetime_s=600
    )
    assert playground.state == "running"
    assert [(m.name, m.state) for m in playground.machines] == [("linux", "running")]
    assert playground.expires_at - playground.created_at == timedelta(seconds=600)
    assert playground.created_at <= datetime.now(UTC)

    async with await labyard.playgrounds.connect(playground.id, owner="user:7") as connection:
        result = await connection.run("echo $((6 * 7))", timeout=30)
    assert (result.exit_code, result.stdout.strip()) == (0, "42")

    with labyard.db.session() as session:
        row = session.get(PlaygroundRow, playground.id)
        assert row is not None
        assert (row.state, row.owner, row.driver) == ("running", "user:7", "local")
        assert row.machines[0].address != ""
    assert [p.id for p in await labyard.playgrounds.list(owner="user:7")] == [playground.id]
    assert await labyard.driver.list() == [playground.id]

    await labyard.playgrounds.destroy(playground.id, owner="user:7")
    assert await labyard.playgrounds.list() == []
    assert await labyard.driver.list() == []
    with labyard.db.session() as session:
        assert session.scalar(select(func.count()).select_from(MachineRow)) == 0
