"""Regions: which servers a learner's playground should run on, by the learner's country.

Operator data, like plans and pricing: `<data dir>/regions.yaml` when it exists, else the
built-in `default_regions.yaml` beside this module (one region, every server). A region is
a cluster group of the runtime (LXD's or Incus's `lxc cluster group`); a country (ISO 3166-1
alpha-2, told from the learner's address as pricing tells it) is served by one region, and
every other country by `default_region`. A file that does not validate names the file, line
and field of every problem, and the instance refuses to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from labyard.manifest.models import Name
from labyard.manifest.source import YamlSource, read_yaml
from labyard.services.plans import Problems, _Strict, read_operator_file, validate_source
from labyard.services.pricing import Country, _norway

BUILTIN = Path(__file__).with_name("default_regions.yaml")
FILE_NAME = "regions.yaml"


class Region(_Strict):
    title: str = Field(min_length=1, max_length=100)
    group: str = Field("", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    """The cluster group of its servers; the region's own name when not given."""


class Regions(_Strict):
    """A whole regions file."""

    default_region: Name
    """The region of a country not listed, and of a learner whose country is not known."""
    regions: dict[Name, Region] = Field(min_length=1)
    countries: Annotated[dict[Country, Name], BeforeValidator(_norway)] = {}
    """Country -> the region that serves it."""

    def reference_problems(self) -> Problems:
        known = ", ".join(self.regions)
        problems: Problems = []
        if self.default_region not in self.regions:
            problems.append(
                (("default_region",), f"no region {self.default_region!r} (regions: {known})")
            )
        for country, region in self.countries.items():
            if region not in self.regions:
                problems.append(
                    (("countries", country), f"no region {region!r} (regions: {known})")
                )
        return problems

    def region_of(self, country: str | None) -> str:
        return self.countries.get(country or "", self.default_region)

    def group_of(self, region: str) -> str:
        found = self.regions[region]
        return found.group or region

    def elsewhere_notice(self, region: str, placed_in: tuple[str, ...] | None) -> str:
        """The sentence a learner reads when their playground, meant for `region`, runs on a
        server of other groups (`placed_in`, as the driver placed it); "" when it runs in
        its region or the driver has one place only."""
        if placed_in is None or self.group_of(region) in placed_in:
            return ""
        there = [r.title for name, r in self.regions.items() if self.group_of(name) in placed_in]
        return (
            f"The servers of region {self.regions[region].title} are full or unreachable, so "
            f"this playground runs in {' / '.join(there) or 'another region'}: it may feel "
            "slower."
        )


def regions_from_source(source: YamlSource) -> Regions:
    return validate_source(source, Regions, "regions file", Regions.reference_problems)


def load_regions(data_dir: Path) -> Regions:
    """`<data_dir>/regions.yaml` when there is one, else the built-in regions. A file that
    does not validate raises SettingsFileError with every problem, each as file:line: field."""
    return read_operator_file(
        data_dir,
        FILE_NAME,
        "regions file",
        lambda: regions_from_source(read_yaml(BUILTIN)),
        regions_from_source,
    )
