"""The fake driver as if it ran on two servers (the `Cluster` capability), and a test
instance on it, for the cluster page's tests and the drain notices' tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from labyard.runtime.capabilities import ClusterMember
from labyard.runtime.fake import FakeDriver
from labyard.services import Labyard
from labyard.settings import Settings
from tests.conftest import IMAGES_DIR, dismantle
from tests.services.test_regions import REGIONS

GIB = 1 << 30


class TwoServers(FakeDriver):
    """m1 in group `eu`, m2 in `india`; m2 holds every playground but those a test puts on
    m1 (`on_m1`)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.states = {"m1": "online", "m2": "online"}
        self.on_m1: set[str] = set()

    async def members(self) -> list[ClusterMember]:
        on_m1, on_m2 = len(await self.playgrounds_on("m1")), len(await self.playgrounds_on("m2"))
        m2_memory = (None, None) if self.states["m2"] == "offline" else (GIB, 4 * GIB)
        return [
            ClusterMember("m1", ("default", "eu"), self.states["m1"], on_m1, 6 * GIB, 8 * GIB, ""),
            ClusterMember("m2", ("default", "india"), self.states["m2"], on_m2, *m2_memory, ""),
        ]

    async def playgrounds_on(self, member: str) -> list[str]:
        return [p for p in await self.list() if (p in self.on_m1) == (member == "m1")]

    async def set_evacuated(self, member: str, evacuated: bool) -> None:
        self.states[member] = "evacuated" if evacuated else "online"


async def instance(clustered: bool) -> AsyncIterator[Labyard]:
    """A labyard with the regions above, on TwoServers (`clustered`) or the plain fake
    driver; taken away after."""
    data_dir = Path(tempfile.mkdtemp(prefix="labyard-test-cluster-page-"))
    (data_dir / "regions.yaml").write_text(REGIONS)
    settings = Settings(
        data_dir=data_dir,
        images_dir=IMAGES_DIR,
        database_url=f"sqlite:///{data_dir}/labyard.db",
        driver="fake",
    )
    made = Labyard(settings, driver=TwoServers(data_dir / "fake-machines") if clustered else None)
    yield made
    await dismantle(made)
    shutil.rmtree(data_dir, ignore_errors=True)
