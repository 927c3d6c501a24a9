"""labyard as an LTI 1.3 tool (docs/lti.md): universities' LMSs launch its challenges.

registrations.py  the platforms an admin registered (issuer, client id, deployments, URLs)
keys.py           labyard's own RS256 key pair (data dir, 0600) and its JWKS
verify.py         id_token checks: signature (platform JWKS), iss, aud/azp, exp, nonce, LTI
launch.py         login initiation and launch: nonce used once, account from iss + sub
targets.py        what a link opens: a challenge or tutorial, or a class (by join code)
deep_linking.py   the teacher picks content; the signed LtiDeepLinkingResponse
service_tokens.py OAuth2 client credentials with a JWT assertion, for AGS and NRPS
grades.py         AGS: the score (tasks completed / tasks) sent to the line item
roster.py         NRPS: a course's members
courses.py        the courses seen in launches, and who may look at one
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from labyard.services.accounts import Accounts
from labyard.services.classes import Classes
from labyard.services.lti.courses import Courses
from labyard.services.lti.deep_linking import DeepLinking
from labyard.services.lti.grades import Grades
from labyard.services.lti.keys import ToolKeys
from labyard.services.lti.launch import Launches
from labyard.services.lti.registrations import NewPlatform, Platform, Registrations
from labyard.services.lti.roster import Roster
from labyard.services.lti.service_tokens import ServiceTokens
from labyard.services.lti.targets import ClassLinks, ContentFinder
from labyard.services.lti.verify import LaunchRefused, PlatformKeys
from labyard.services.tasks.records import AttemptRecord
from labyard.store import Database

__all__ = ["LaunchRefused", "Lti", "NewPlatform", "Platform"]
log = logging.getLogger(__name__)


class Lti:
    """The LTI tool of one labyard instance, wired together."""

    def __init__(
        self,
        data_dir: Path,
        db: Database,
        accounts: Accounts,
        content_dir: Path | None,
        classes: Classes | None = None,
    ) -> None:
        self.db = db
        self.registrations = Registrations(db)
        self.tool_keys = ToolKeys(data_dir)
        self.platform_keys = PlatformKeys()
        content = ContentFinder(content_dir)
        self.launches = Launches(
            db,
            accounts,
            self.registrations,
            self.platform_keys,
            self.tool_keys,
            content,
            ClassLinks(classes),
        )
        self.deep_linking = DeepLinking(self.tool_keys, self.registrations, content)
        tokens = ServiceTokens(self.tool_keys)
        self.grades = Grades(db, self.registrations, tokens)
        self.roster = Roster(db, self.registrations, tokens)
        self.courses = Courses(db)
        self._sending: set[asyncio.Task[object]] = set()

    def solved(self, record: AttemptRecord) -> None:
        """The task engine's solve hook: send the grade in the background (it calls the
        platform over HTTP, which must not hold the event loop up)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a CLI command): send it here and now
            self.grades.after_solve(record)
            return
        task: asyncio.Task[object] = loop.create_task(
            asyncio.to_thread(self.grades.after_solve, record)
        )
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[object]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("LTI grade passback failed", exc_info=error)

    async def settle(self) -> None:
        """Wait for grades being sent (a stopping server, tests)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
