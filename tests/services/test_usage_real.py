"""Usage sessions of a real playground (local driver): a start, stop, restart and destroy
each leave the record they should, and the account's plan is checked on the way."""

from __future__ import annotations

import pytest

from labyard.errors import LimitExceeded
from labyard.manifest import load_manifest
from labyard.services import Labyard


async def test_a_real_playground_is_metered_from_start_to_destroy(labyard: Labyard) -> None:
    user = labyard.accounts.create_user("metered@example.org", "a long password")
    playground = await labyard.playgrounds.start(load_manifest("linux"), launch=user.launch())
    try:
        with pytest.raises(LimitExceeded, match="1 playground"):
            await labyard.playgrounds.start(load_manifest("linux"), launch=user.launch())
        stopped = await labyard.playgrounds.stop(playground.id, owner=user.owner)
        assert stopped.state == "stopped"
        restarted = await labyard.playgrounds.restart(playground.id, user.owner, user.id)
        assert restarted.state == "running"
    finally:
        await labyard.playgrounds.destroy(playground.id)
    first, second = labyard.usage.sessions(account_id=user.id)
    assert (first.end_reason, second.end_reason) == ("stopped", "destroyed")
    assert (first.restart, second.restart, first.plan) == (False, True, "free")
    assert first.machine_minutes is not None and first.machine_minutes > 0
    assert first.ended_at is not None and second.started_at >= first.ended_at
    assert labyard.usage.used_today(user.id) == pytest.approx(
        first.machine_minutes + (second.machine_minutes or 0)
    )
