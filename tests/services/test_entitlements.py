"""Entitlements: grants with a source and an end, the best one in force as the account's
plan, admins' plans as manual grants (and the `users.plan` column migrated to them), and
earned premium granted once per threshold. On SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from labyard.errors import InvalidInput, NotFound
from labyard.manifest.source import parse_yaml
from labyard.services import Entitlements
from labyard.services.accounts import Accounts
from labyard.services.plans import plans_from_source
from labyard.store import AttemptRow, Database, EntitlementRow
from labyard.store.db import make_engine
from labyard.types import AttemptState, EntitlementKind
from tests.services.fake_driver import World
from tests.store.databases import upgrade_to

DAY = timedelta(days=1)
THREE_PLANS = """\
plans:
  free: {title: Free, rank: 0, limits: &l {concurrent_playgrounds: 1, lifetime: 1h,
         machines_per_playground: 1, cpus_per_machine: 1, memory_per_machine: 1GiB}}
  plus: {title: Plus, rank: 5, limits: *l}
  pro: {title: Pro, rank: 9, limits: *l}
earned: {plan: plus, challenges: 3, days: 7}
"""


def test_the_best_entitlement_in_force_is_the_plan(world: World) -> None:
    user = world.account()
    grants = world.entitlements
    assert grants.effective(user.id).name == "free" and grants.list(user.id) == []
    now = datetime.now(UTC)
    trial = grants.grant(user.id, "premium", EntitlementKind.TRIAL, source="t", ends_at=now + DAY)
    assert grants.effective(user.id).name == "premium"
    assert world.accounts.get(user.id).plan == "premium"  # what requests see
    assert grants.effective(user.id, now + 2 * DAY).name == "free"  # after it ends
    assert grants.effective(user.id, now - DAY).name == "free"  # before it starts
    later = grants.grant(
        user.id, "premium", "subscription", source="sub_9", starts_at=now + 3 * DAY
    )
    assert grants.effective(user.id, now + 2 * DAY).name == "free"
    assert grants.effective(user.id, now + 4 * DAY).name == "premium"
    revoked = grants.revoke(trial.id)
    assert revoked.revoked_at is not None and not revoked.in_force(now)
    assert grants.revoke(trial.id) == revoked  # once
    assert grants.effective(user.id).name == "free"
    assert [(g.kind, g.source) for g in grants.list(user.id)] == [
        ("trial", "t"),
        ("subscription", "sub_9"),
    ]
    assert later.to_json()["in_force"] is False

    for bad in [
        lambda: grants.grant(user.id, "gold", "manual"),
        lambda: grants.grant(user.id, "premium", "gift"),
        lambda: grants.grant(user.id, "premium", "manual", ends_at=now - DAY),
    ]:
        with pytest.raises(InvalidInput):
            bad()
    with pytest.raises(NotFound):
        grants.grant(user.id + 100, "premium", "manual")
    with pytest.raises(NotFound):
        grants.revoke(10_000)


def test_ranks_decide_between_plans(world: World) -> None:
    plans = plans_from_source(parse_yaml(THREE_PLANS, "plans.yaml"))
    grants = Entitlements(world.db, plans)
    user = world.account()
    grants.grant(user.id, "pro", "seat", source="team 4")
    grants.grant(user.id, "plus", "subscription", source="sub_1")
    assert grants.effective(user.id).name == "pro"
    with world.db.session() as session:
        session.execute(  # a plan the operator has removed since counts for nothing
            EntitlementRow.__table__.update()
            .where(EntitlementRow.kind == "seat")
            .values(plan="retired")
        )
    assert grants.effective(user.id).name == "plus"


def test_an_admins_plan_is_a_manual_grant(world: World) -> None:
    user = world.account("premium")
    [manual] = world.entitlements.list(user.id)
    assert (manual.kind, manual.plan, manual.source, manual.ends_at) == (
        "manual",
        "premium",
        "admin",
        None,
    )
    assert user.plan == "premium" and user.plan_limits.concurrent_playgrounds == 5
    assert world.accounts.set_plan(user.id, "free").plan == "free"
    assert world.entitlements.list(user.id)[0].revoked_at is not None
    assert world.accounts.set_plan(user.id, "premium").plan == "premium"
    assert world.accounts.set_plan(user.id, "premium").plan == "premium"
    in_force = [g for g in world.entitlements.list(user.id) if g.revoked_at is None]
    assert len(in_force) == 1  # setting it again replaces, never piles up

    # A paid grant is not the admin's to take away with set_plan.
    world.entitlements.grant(user.id, "premium", "subscription", source="sub_2")
    assert world.accounts.set_plan(user.id, "free").plan == "premium"
    with pytest.raises(InvalidInput):
        world.accounts.set_plan(user.id, "gold")
    with pytest.raises(NotFound):
        world.accounts.set_plan(user.id + 100, "free")


def test_a_once_key_grants_once(world: World) -> None:
    user = world.account()
    first = world.entitlements.grant(user.id, "premium", "lifetime", once_key="order:1")
    again = world.entitlements.grant(user.id, "premium", "lifetime", once_key="order:1")
    assert again == first and len(world.entitlements.list(user.id)) == 1


def solve(world: World, owner: str, *keys: str) -> None:
    with world.db.session() as session:
        for key in keys:
            session.add(
                AttemptRow(
                    id="a" + secrets.token_hex(7),
                    owner=owner,
                    content_key=key,
                    state=AttemptState.SOLVED,
                    spec={},
                    inputs={},
                    started_at=datetime.now(UTC),
                    finished_at=datetime.now(UTC),
                )
            )


def test_solving_ten_challenges_earns_thirty_days_once(world: World) -> None:
    user = world.account()
    grants = world.entitlements
    challenges = [f"challenges/c{i}" for i in range(25)]
    solve(world, user.owner, *challenges[:9], "tutorials/t1", "courses/k/lesson", challenges[0])
    assert grants.challenge_solved(user.owner, challenges[0]) == []  # 9 distinct challenges

    solve(world, user.owner, challenges[9])
    [earned] = grants.challenge_solved(user.owner, challenges[9])
    assert (earned.kind, earned.plan, earned.source) == (
        "earned",
        "premium",
        "10 challenges solved",
    )
    assert earned.ends_at is not None
    assert earned.ends_at - earned.starts_at == timedelta(days=30)
    assert grants.effective(user.id).name == "premium"

    solve(world, user.owner, challenges[9], challenges[3])  # solved again: nothing new
    assert grants.challenge_solved(user.owner, challenges[9]) == []
    assert grants.challenge_solved(user.owner, "tutorials/t1") == []
    restarted = Accounts(world.db, world.plans).entitlements  # a new process
    assert restarted.challenge_solved(user.owner, challenges[9]) == []

    solve(world, user.owner, *challenges[10:20])
    [second] = restarted.challenge_solved(user.owner, challenges[19])
    assert second.source == "20 challenges solved"
    assert second.starts_at == earned.ends_at  # stacked after the first
    assert [g.kind for g in grants.list(user.id)] == ["earned", "earned"]

    assert grants.challenge_solved("test-owner", challenges[0]) == []  # not an account
    assert grants.challenge_solved("user:99999", challenges[0]) == []  # no such account


def test_earned_grants_follow_the_file(world: World) -> None:
    plans = plans_from_source(parse_yaml(THREE_PLANS, "plans.yaml"))
    grants = Entitlements(world.db, plans)
    user = world.account()
    solve(world, user.owner, "challenges/a", "challenges/b", "challenges/c", "challenges/d")
    [earned] = grants.challenge_solved(user.owner, "challenges/d")
    assert (earned.plan, earned.source) == ("plus", "3 challenges solved")
    assert earned.ends_at is not None and earned.ends_at - earned.starts_at == timedelta(days=7)
    off = plans.model_copy(update={"earned": None})
    assert Entitlements(world.db, off).challenge_solved(user.owner, "challenges/d") == []


def test_migration_0004_turns_users_plan_into_manual_grants(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade_to(engine, "0003")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for user_id, plan in [(1, "free"), (2, "premium")]:
            connection.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, role, plan, created_at) "
                    "VALUES (:id, :email, 'x', 'learner', :plan, :at)"
                ),
                {"id": user_id, "email": f"u{user_id}@example.org", "plan": plan, "at": now},
            )
            connection.execute(
                text(
                    "INSERT INTO tokens (hash, user_id, kind, name, created_at) "
                    "VALUES (:hash, :id, 'api', 'cli', :at)"
                ),
                {"hash": f"h{user_id}", "id": user_id, "at": now},
            )
    engine.dispose()

    db = Database(database_url)
    try:
        db.migrate()
        accounts = Accounts(db)
        assert (accounts.get(1).plan, accounts.get(2).plan) == ("free", "premium")
        [grant] = accounts.entitlements.list(2)
        assert (grant.kind, grant.ends_at, grant.revoked_at) == ("manual", None, None)
        assert accounts.entitlements.list(1) == []
        assert "plan" not in {c["name"] for c in inspect(db.engine).get_columns("users")}
        with db.session() as session:  # dropping the column kept every token
            assert len(session.execute(text("SELECT hash FROM tokens")).all()) == 2
            assert (
                session.scalar(select(EntitlementRow.source)) == "users.plan before migration 0004"
            )
    finally:
        db.close()
