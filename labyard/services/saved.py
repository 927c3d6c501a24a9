"""Save-as and fork: a playground's machines made into images, with the manifest that starts
them again.

Save (`labyard playground save ID NAME`) takes a stopped playground: each machine's
writable layer is merged over the image it ran on (images/saving.py) into a new image that
only its owner's playgrounds may use, and the saved playground appears in its owner's
catalog under NAME. How many an account keeps is its plan's `saved_playgrounds` (the
operator's local CLI, with no account, is not limited).

Fork (`labyard playground fork ID`) starts a copy of a running or stopped playground. A
running one is held still while its layers are read (the driver's `Snapshots` capability),
so the copy is consistent the way a power cut is, and the original runs on unchanged. A
fork's images are removed once the fork is gone (`prune`, at every save and fork).
"""

from __future__ import annotations

import asyncio
import builtins
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labyard.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from labyard.manifest import Manifest
from labyard.runtime.capabilities import Snapshots, lacks
from labyard.services.entitlements import effective_plan
from labyard.services.locks import playground_lock
from labyard.services.plans import PlanBook
from labyard.services.playgrounds import Playgrounds
from labyard.services.usage import Launch
from labyard.store import PlaygroundRow
from labyard.store.models import SavedPlaygroundRow
from labyard.types import Playground, PlaygroundState

NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
SAVED, FORK = "saved", "fork"


@dataclass(frozen=True)
class SavedPlayground:
    name: str
    title: str
    owner: str
    images: list[str]
    source_playground_id: str
    created_at: datetime
    manifest: Manifest

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "images": self.images,
            "source_playground_id": self.source_playground_id,
            "created_at": self.created_at.isoformat(),
            "machines": [{"name": m.name, "image": m.image} for m in self.manifest.machines],
        }


def _view(row: SavedPlaygroundRow) -> SavedPlayground:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    manifest = Manifest.model_validate(row.manifest)
    return SavedPlayground(
        row.name,
        row.title,
        row.owner,
        list(row.images),
        row.source_playground_id,
        created,
        manifest,
    )


class SavedPlaygrounds:
    def __init__(self, playgrounds: Playgrounds, plans: PlanBook) -> None:
        self.playgrounds = playgrounds
        self.plans = plans
        self.db = playgrounds.db

    def _snapshots(self) -> Snapshots:
        driver = self.playgrounds.driver
        if not isinstance(driver, Snapshots):
            raise lacks(driver, "save or fork playgrounds")
        return driver

    # -- reading -------------------------------------------------------------------------

    def list(self, owner: str) -> list[SavedPlayground]:
        """The owner's saved playgrounds (never anyone else's)."""
        with self.db.session() as session:
            query = (
                select(SavedPlaygroundRow)
                .where(SavedPlaygroundRow.owner == owner, SavedPlaygroundRow.kind == SAVED)
                .order_by(SavedPlaygroundRow.name)
            )
            return [_view(row) for row in session.scalars(query)]

    def get(self, owner: str, name: str) -> SavedPlayground:
        if not NAME.match(name):  # never looked up (PostgreSQL refuses NUL characters)
            raise NotFound(f"no saved playground {name[:60]!r}")
        with self.db.session() as session:
            row = _saved_row(session, owner, name)
            return _view(row)

    # -- save ----------------------------------------------------------------------------

    async def save(
        self,
        playground_id: str,
        name: str,
        owner: str | None = None,
        account_id: int | None = None,
        title: str = "",
    ) -> SavedPlayground:
        """Save a stopped playground of `owner` (None: anyone's, the operator) as `name`."""
        found = await self.playgrounds.get(playground_id, owner)  # someone else's: 404 first
        self._snapshots()
        if not NAME.match(name):
            raise InvalidInput(
                f"saved playground name {name!r}: lower-case letters, digits and '-', "
                "starting with a letter, at most 40 characters"
            )
        if found.state != PlaygroundState.STOPPED:
            raise Conflict(
                f"playground {playground_id} is {found.state}; stop it first "
                f"(labyard playground stop {playground_id}), then save it, or fork it instead"
            )
        self._admit(found.owner, name, account_id)
        await asyncio.to_thread(self.prune)
        row = await self._snapshot(found, SAVED, name, title or f"{name} (saved)", running=False)
        return _view(row)

    def _admit(self, owner: str, name: str, account_id: int | None) -> None:
        with self.db.session() as session:
            taken = session.scalar(
                select(func.count())
                .select_from(SavedPlaygroundRow)
                .where(SavedPlaygroundRow.owner == owner, SavedPlaygroundRow.name == name)
            )
            if taken:
                raise Conflict(f"you already have a saved playground {name!r}; remove it first")
            if account_id is None:
                return  # the operator's local CLI
            plan = effective_plan(session, self.plans, account_id, datetime.now(UTC))
            allowed = plan.limits.saved_playgrounds
            kept = session.scalar(
                select(func.count())
                .select_from(SavedPlaygroundRow)
                .where(SavedPlaygroundRow.owner == owner, SavedPlaygroundRow.kind == SAVED)
            )
            if int(kept or 0) >= allowed:
                raise LimitExceeded(
                    f"the {plan.title} plan keeps {allowed} saved playground(s)"
                    + ("; remove one first" if allowed else "; upgrade to save playgrounds"),
                    reason="saved_playgrounds",
                )

    async def _snapshot(
        self, playground: Playground, kind: str, name: str, title: str, running: bool
    ) -> SavedPlaygroundRow:
        manifest = self.playgrounds.manifest_of(playground.id)
        save_id = secrets.token_hex(4)
        images = [f"{kind}-{save_id}-{i}" for i in range(len(manifest.machines))]
        async with playground_lock(self.playgrounds.settings.locks_dir, playground.id):
            self.playgrounds.adopt(playground.id)
            await self._snapshots().save_images(
                playground.id,
                {m.name: image for m, image in zip(manifest.machines, images, strict=True)},
                running=running,
                owner=playground.owner,
                description=f"playground {playground.id}",
            )
        machines = [
            m.model_copy(update={"image": image})
            for m, image in zip(manifest.machines, images, strict=True)
        ]
        saved_manifest = manifest.model_copy(update={"machines": machines, "title": title})
        row = SavedPlaygroundRow(
            id=save_id,
            owner=playground.owner,
            kind=kind,
            name=name,
            title=title,
            manifest=saved_manifest.model_dump(mode="json"),
            images=images,
            source_playground_id=playground.id,
            created_at=datetime.now(UTC),
        )
        with self.db.session() as session:
            session.add(row)
        return row

    # -- start, fork, remove -------------------------------------------------------------

    async def start(
        self, owner: str, name: str, launch: Launch | None = None, lifetime_s: int | None = None
    ) -> Playground:
        """Start the owner's saved playground `name`, as it was saved."""
        saved = self.get(owner, name)
        return await self.playgrounds.start(
            saved.manifest, owner=owner, lifetime_s=lifetime_s, launch=launch
        )

    async def fork(
        self, playground_id: str, owner: str | None = None, launch: Launch | None = None
    ) -> Playground:
        """Start a copy of a running or stopped playground (see the module docstring)."""
        found = await self.playgrounds.get(playground_id, owner)
        self._snapshots()
        if found.state not in (PlaygroundState.RUNNING, PlaygroundState.STOPPED):
            raise Conflict(f"playground {playground_id} is {found.state}; wait until it runs")
        await asyncio.to_thread(self.prune)
        running = found.state == PlaygroundState.RUNNING
        name = f"fork-{secrets.token_hex(6)}"
        title = f"{found.title} (fork)"
        row = await self._snapshot(found, FORK, name, title, running=running)
        try:
            copy = await self.playgrounds.start(
                Manifest.model_validate(row.manifest), owner=found.owner, launch=launch
            )
        except BaseException:
            await asyncio.to_thread(self._remove_row, row.id)
            raise
        with self.db.session() as session:
            stored = session.get(SavedPlaygroundRow, row.id)
            if stored is not None:
                stored.playground_id = copy.id
        return copy

    def remove(self, owner: str, name: str) -> None:
        """Remove a saved playground and its images (refused while a playground uses them)."""
        self.get(owner, name)  # NotFound for a name that cannot be one, or someone else's
        with self.db.session() as session:
            row = _saved_row(session, owner, name)
            row_id = row.id
        self._remove_row(row_id)

    def _remove_row(self, row_id: str) -> None:
        with self.db.session() as session:
            row = session.get(SavedPlaygroundRow, row_id)
            if row is None:
                return
            if row.images:
                self._snapshots().remove_images(list(row.images))
            session.delete(row)

    def prune(self) -> builtins.list[str]:
        """Remove forks whose playground is gone (their images with them); their names."""
        with self.db.session() as session:
            forks = list(
                session.scalars(select(SavedPlaygroundRow).where(SavedPlaygroundRow.kind == FORK))
            )
            live = set(session.scalars(select(PlaygroundRow.id)))
            gone = [f.id for f in forks if f.playground_id and f.playground_id not in live]
        removed = []
        for row_id in gone:
            try:
                self._remove_row(row_id)
                removed.append(row_id)
            except Conflict:
                pass  # still mounted by a machine on its way out: next time
        return removed


def _saved_row(session: Session, owner: str, name: str) -> SavedPlaygroundRow:
    row = session.scalar(
        select(SavedPlaygroundRow).where(
            SavedPlaygroundRow.owner == owner,
            SavedPlaygroundRow.name == name,
            SavedPlaygroundRow.kind == SAVED,
        )
    )
    if row is None:
        raise NotFound(f"no saved playground {name!r}")
    return row
