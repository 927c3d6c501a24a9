"""Host id ranges: one per machine, host-wide, kept until released, never handed out twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from labyard.errors import LimitExceeded
from labyard.runtime.local import idmap
from labyard.runtime.local.idmap import RANGE_SIZE, Registry


@pytest.fixture
def subids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private /etc/subuid and /etc/subgid, with a range another tool already holds."""
    for name in ("subuid", "subgid"):
        (tmp_path / name).write_text("alice:100000:65536\npodman:1073741824:131072\n")
    monkeypatch.setattr(idmap, "SUBUID", tmp_path / "subuid")
    monkeypatch.setattr(idmap, "SUBGID", tmp_path / "subgid")
    return tmp_path


def test_labyard_range_is_added_after_the_ranges_others_hold(subids: Path) -> None:
    first, count = idmap.subordinate_range()
    assert first == (1 << 30) + 131072 and count == 1 << 30
    assert f"labyard:{first}:{count}" in (subids / "subuid").read_text()
    assert f"labyard:{first}:{count}" in (subids / "subgid").read_text()
    assert idmap.subordinate_range() == (first, count)  # added once


def test_ranges_are_per_owner_and_kept_until_released(subids: Path, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "ranges")
    a = registry.allocate("i1/pg1/m1")
    b = registry.allocate("i1/pg1/m2")
    c = registry.allocate("i2/pg2/m1")
    assert len({a.start, b.start, c.start}) == 3
    assert all(r.start % RANGE_SIZE == 0 and r.size == RANGE_SIZE for r in (a, b, c))
    assert registry.allocate("i1/pg1/m1") == a  # the same machine, the same ids
    assert registry.owners("i1/") == ["i1/pg1/m1", "i1/pg1/m2"]
    registry.release("i1/pg1/")
    assert registry.owners("i1/") == []
    assert registry.allocate("i3/pg3/m1").start == a.start  # freed ranges are reused


def test_a_full_range_says_so(subids: Path, tmp_path: Path) -> None:
    for name in ("subuid", "subgid"):
        (subids / name).write_text(f"labyard:{1 << 30}:{2 * RANGE_SIZE}\n")
    registry = Registry(tmp_path / "ranges")
    registry.allocate("i/p/a")
    registry.allocate("i/p/b")
    with pytest.raises(LimitExceeded, match="no free id range"):
        registry.allocate("i/p/c")


def test_mismatched_subuid_and_subgid_are_refused(subids: Path) -> None:
    (subids / "subuid").write_text(f"labyard:{1 << 30}:{1 << 20}\n")
    (subids / "subgid").write_text(f"labyard:{1 << 31}:{1 << 20}\n")
    with pytest.raises(Exception, match="differ"):
        idmap.subordinate_range()
