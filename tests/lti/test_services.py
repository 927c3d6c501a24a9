"""The LTI services' bookkeeping on SQLite and PostgreSQL: registrations and their rules,
the nonce's single use, the tool key file, scores from attempts, teacher roles; and the
`labyard admin lti` commands."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from labyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from labyard.manifest import load_manifest
from labyard.services.accounts import Accounts
from labyard.services.lti import LaunchRefused, NewPlatform
from labyard.services.lti.grades import best_score
from labyard.services.lti.keys import KEY_FILE, PREVIOUS_KEY_FILE, ToolKeys
from labyard.services.lti.launch import Launches
from labyard.services.lti.registrations import Registrations
from labyard.services.lti.roles import is_teacher
from labyard.services.lti.targets import ClassLinks, ContentFinder
from labyard.services.lti.verify import PlatformKeys
from labyard.services.tasks.content import find_item
from labyard.services.tasks.records import AttemptRecord, TaskRecord
from labyard.services.tasks.spec import spec_of
from labyard.settings import Settings
from labyard.store import Database, UserRow
from labyard.store.models import LtiIdentityRow
from labyard.types import TaskState
from tests.api.learn_server import FIXTURE
from tests.conftest import IMAGES_DIR, run_cli
from tests.store.databases import KINDS, fresh_database_url


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database_url(request.param, tmp_path) as url:
        database = Database(url)
        database.migrate()
        yield database
        database.close()


def moodle(**changes: object) -> NewPlatform:
    fields: dict[str, object] = {
        "issuer": "https://moodle.uni.example",
        "client_id": "abc123",
        "deployment_ids": ("1",),
        "jwks_url": "https://moodle.uni.example/mod/lti/certs.php",
        "auth_url": "https://moodle.uni.example/mod/lti/auth.php",
        "token_url": "https://moodle.uni.example/mod/lti/token.php",
        **changes,
    }
    return NewPlatform(**fields)  # type: ignore[arg-type]


def test_registrations_are_checked_and_admins_only(db: Database) -> None:
    accounts = Accounts(db)
    learner = accounts.create_user("l@example.org", "a long password")
    admin = accounts.create_user("a@example.org", "a long password", role="admin")
    registrations = Registrations(db)
    with pytest.raises(Forbidden, match="only admins"):
        registrations.add(learner, moodle())
    with pytest.raises(Forbidden):
        registrations.list(learner)
    with pytest.raises(
        InvalidInput, match=r"jwks_url: 'http://moodle\.uni\.example/k' must use https"
    ):
        registrations.add(admin, moodle(jwks_url="http://moodle.uni.example/k"))
    with pytest.raises(InvalidInput, match="deployment_ids: give at least one"):
        registrations.add(admin, moodle(deployment_ids=()))
    with pytest.raises(InvalidInput, match="client_id: give 1 to 255 printable"):
        registrations.add(admin, moodle(client_id="a\x00b"))
    assert registrations.list(admin) == []

    first = registrations.add(admin, moodle(deployment_ids=("1", "2", "1")))
    assert first.deployment_ids == ("1", "2") and first.name == "moodle.uni.example"
    with pytest.raises(Conflict, match="is registered"):
        registrations.add(None, moodle())
    second = registrations.add(None, moodle(client_id="other"))
    assert [p.id for p in registrations.list(None)] == [first.id, second.id]
    # One issuer, two client ids: a login initiation must say which.
    assert registrations.find("https://moodle.uni.example", None) is None
    assert registrations.find("https://moodle.uni.example", "other") == second

    user = accounts.create_user("lms@example.org", "a long password")
    with db.session() as session:
        session.add(LtiIdentityRow(platform_id=first.id, sub="s", account_id=user.id,
                                   name="", email="", created_at=datetime.now(UTC),
                                   last_launch_at=datetime.now(UTC)))  # fmt: skip
    with pytest.raises(Forbidden):
        registrations.remove(learner, first.id)
    assert registrations.remove(admin, first.id).client_id == "abc123"
    with pytest.raises(NotFound):
        registrations.remove(admin, first.id)
    with db.session() as session:
        assert session.query(LtiIdentityRow).count() == 0  # the LMS links went with it
        assert session.get(UserRow, user.id) is not None  # the account stays


def test_a_nonce_is_used_once(db: Database, tmp_path: Path) -> None:
    registrations = Registrations(db)
    platform = registrations.add(None, moodle())
    keys = ToolKeys(tmp_path)
    launches = Launches(
        db, Accounts(db), registrations, PlatformKeys(), keys, ContentFinder(None), ClassLinks(None)
    )
    claims = {"nonce": "n-1"}
    with db.session() as session:
        launches._use_nonce(session, platform, claims)
    with db.session() as session, pytest.raises(LaunchRefused, match="used already"):
        launches._use_nonce(session, platform, claims)
    with db.session() as session:  # another nonce goes through, on the same connection pool
        launches._use_nonce(session, platform, {"nonce": "n-2"})


def test_the_tool_key_is_made_once_private_and_rotatable(tmp_path: Path) -> None:
    keys = ToolKeys(tmp_path)
    token = keys.sign({"aud": "me", "x": 1})
    path = tmp_path / "lti" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ToolKeys(tmp_path)
    assert again.kid == keys.kid
    assert again.verify_own(token, "me")["x"] == 1
    assert jwt.get_unverified_header(token)["kid"] == keys.kid

    path.rename(tmp_path / "lti" / PREVIOUS_KEY_FILE)  # rotation, as docs/lti.md says
    rotated = ToolKeys(tmp_path)
    published = [k["kid"] for k in rotated.jwks()["keys"]]
    assert published == [rotated.kid, keys.kid] and rotated.kid != keys.kid
    with pytest.raises(jwt.InvalidSignatureError):
        rotated.verify_own(token, "me")  # only the current key signs


def test_the_score_is_the_best_attempts_share_of_tasks() -> None:
    item = find_item(FIXTURE, "challenges/touch-done")
    spec = spec_of(item, load_manifest("linux"))

    def attempt(state: str, key: str = item.key) -> AttemptRecord:
        now = datetime.now(UTC)
        tasks = {name: TaskRecord(state) for name in spec.tasks}
        return AttemptRecord("a1", "user:1", key, None, "active", "", spec, {}, now, None, tasks)

    assert best_score([], item.key) is None
    assert best_score([attempt(TaskState.RUNNING)], item.key) == (0, 1)
    both = [attempt(TaskState.RUNNING), attempt(TaskState.COMPLETED)]
    assert best_score(both, item.key) == (1, 1)
    assert best_score([attempt(TaskState.COMPLETED, "challenges/other")], item.key) is None


def test_teacher_roles() -> None:
    lis = "http://purl.imsglobal.org/vocab/lis/v2/"
    assert is_teacher([lis + "membership#Instructor"])
    assert is_teacher([lis + "membership/Instructor#TeachingAssistant"])
    assert is_teacher(["Instructor"])
    assert not is_teacher([lis + "membership#Learner"])
    assert not is_teacher([lis + "institution/person#Administrator"])
    assert not is_teacher("Instructor")


def test_admin_lti_commands(tmp_path: Path) -> None:
    settings = Settings(tmp_path, IMAGES_DIR, f"sqlite:///{tmp_path}/labyard.db")
    add = [
        "admin", "lti", "add", "--issuer", "https://canvas.instructure.com",
        "--client-id", "10000000000001", "--deployment", "7:abc", "--deployment", "8:def",
        "--jwks-url", "https://sso.canvaslms.com/api/lti/security/jwks",
        "--auth-url", "https://sso.canvaslms.com/api/lti/authorize_redirect",
        "--token-url", "https://sso.canvaslms.com/login/oauth2/token", "--name", "Canvas",
    ]  # fmt: skip
    added = run_cli(settings, *add)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip().isdigit()
    assert "registered Canvas: https://canvas.instructure.com" in added.stderr
    twice = run_cli(settings, *add)
    assert twice.returncode == 4 and "is registered" in twice.stderr
    bad = run_cli(settings, *add[:-2], "--jwks-url", "ftp://x")
    listed = run_cli(settings, "admin", "lti", "list", "--json")
    (platform,) = json.loads(listed.stdout)
    assert platform["deployment_ids"] == ["7:abc", "8:def"]
    assert bad.returncode == 2, bad.stderr
    table = run_cli(settings, "admin", "lti", "list")
    assert "canvas.instructure.com" in table.stdout
    removed = run_cli(settings, "admin", "lti", "remove", str(platform["id"]))
    assert removed.returncode == 0, removed.stderr
    assert json.loads(run_cli(settings, "admin", "lti", "list", "--json").stdout) == []
    gone = run_cli(settings, "admin", "lti", "remove", str(platform["id"]))
    assert gone.returncode == 3 and "no LTI platform" in gone.stderr
