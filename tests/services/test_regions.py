"""The operator's regions file, and where a start says it ran: a playground placed outside
the learner's region carries one sentence naming both regions by title. Placement itself
is the cluster driver's (tests/runtime/test_lxd_cluster.py, on a real two-member LXD
cluster); here the fake driver says which groups it ran in (`Behaviour.placed_in`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from labyard.errors import SettingsFileError
from labyard.runtime.fake import Behaviour
from labyard.services.cluster import load_regions
from labyard.services.usage import Launch
from tests.services.fake_driver import LINUX, World

REGIONS = """\
default_region: europe
regions:
  europe: {title: Europe, group: eu}
  india: {title: India}
countries:
  IN: india
  BD: india
"""
"""Two regions, Europe (group `eu`, the default) and India: the other tests' too."""


def test_without_a_file_there_is_one_region_of_every_server(tmp_path: Path) -> None:
    regions = load_regions(tmp_path)
    assert list(regions.regions) == [regions.default_region]
    assert regions.region_of("IN") == regions.default_region


def test_countries_map_to_regions_and_regions_to_groups(tmp_path: Path) -> None:
    (tmp_path / "regions.yaml").write_text(REGIONS)
    regions = load_regions(tmp_path)
    assert regions.region_of("IN") == "india" and regions.region_of("FR") == "europe"
    assert regions.region_of(None) == "europe"
    assert regions.group_of("europe") == "eu" and regions.group_of("india") == "india"


def test_a_bad_file_names_every_problem_with_its_line(tmp_path: Path) -> None:
    where = tmp_path / "regions.yaml"
    where.write_text(
        "default_region: mars\n"
        "regions:\n"
        "  europe: {title: Europe, group: 'not a group'}\n"
        "countries:\n"
        "  India: europe\n"
    )
    with pytest.raises(SettingsFileError) as caught:
        load_regions(tmp_path)
    problems = caught.value.problems
    assert any(p.startswith(f"{where}:3: regions.europe.group: ") for p in problems), problems
    assert any(p.startswith(f"{where}:5: countries.India") for p in problems), problems
    where.write_text(REGIONS.replace("countries:\n  IN: india", "countries:\n  IN: moon"))
    with pytest.raises(SettingsFileError) as caught:
        load_regions(tmp_path)
    assert caught.value.problems == [
        f"{where}:6: countries.IN: no region 'moon' (regions: europe, india)"
    ]


def test_the_notice_names_both_regions_by_title(tmp_path: Path) -> None:
    (tmp_path / "regions.yaml").write_text(REGIONS)
    regions = load_regions(tmp_path)
    notice = regions.elsewhere_notice("india", ("default", "eu"))
    assert "region India" in notice and "runs in Europe" in notice, notice
    assert regions.elsewhere_notice("india", ("default", "india")) == ""
    assert regions.elsewhere_notice("india", None) == ""  # a driver with one place
    assert "runs in another region" in regions.elsewhere_notice("india", ("default",))


async def test_a_start_outside_the_learners_region_says_so(world: World) -> None:
    world.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (world.settings.data_dir / "regions.yaml").write_text(REGIONS)
    world.playgrounds.regions = load_regions(world.settings.data_dir)
    world.driver.behaviour = Behaviour(placed_in=("default", "eu"))
    india = await world.playgrounds.start(LINUX, launch=Launch(country="IN"))
    assert "region India" in india.notice and india.to_json()["notice"] == india.notice
    # The control: a learner whose region it is gets no notice, and neither does a list.
    europe = await world.playgrounds.start(LINUX, launch=Launch(country="FR"))
    assert europe.notice == "" and "notice" not in europe.to_json()
    listed = {p.id: p for p in await world.playgrounds.list()}
    assert listed[india.id].notice == "" and dataclasses.asdict(listed[india.id])
