"""What a class is made of, as the API, the web form and `labyard class create FILE` give
it. A YAML file is validated like a manifest: every problem at once, each as file:line:
field (the same machinery as plans.yaml); content keys are checked against this server's
content and catalog, and the region against its regions file, by services/classes.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labyard.errors import InvalidInput, ManifestError
from labyard.manifest.source import YamlSource, parse_yaml, read_yaml

MAX_SEATS = 500
MAX_CONTENT = 50
ContentKey = str
RegionName = Annotated[str, Field(max_length=100)]


class ClassSpec(BaseModel):
    """A new class: `content` are content keys (`challenges/x`, `tutorials/x`, `courses/x`)
    or bare playground names from the catalog (`linux`)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    content: list[ContentKey] = Field(min_length=1, max_length=MAX_CONTENT)
    seats: int = Field(ge=1, le=MAX_SEATS)
    """Learners at once: each member who joins takes one, and runs one playground at a time."""
    starts_at: datetime
    ends_at: datetime
    guests: bool = False
    """Whether people may join with just a display name (a guest account for the class)."""
    region: RegionName = ""
    """A region of the operator's regions file every start of the class runs in, whatever
    the learner's country; "" (the default): each learner's own region. Checked against
    the regions file by services/classes.py."""

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError("a title is one line of text")
        return value.strip()

    @field_validator("content")
    @classmethod
    def _content(cls, value: list[str]) -> list[str]:
        for key in value:
            if not 1 <= len(key) <= 200 or any(ord(c) < 33 for c in key):
                raise ValueError(f"{key[:40]!r} is not a content key or playground name")
        if len(set(value)) != len(value):
            raise ValueError("a key is listed twice")
        return value

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # A moment without a zone is read as UTC, like every time labyard stores.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def date_problems(self) -> list[tuple[tuple[int | str, ...], str]]:
        if self.ends_at <= self.starts_at:
            return [(("ends_at",), "a class must end after it starts")]
        if self.ends_at.year > 9000 or self.starts_at.year < 2000:
            return [(("starts_at",), "dates must lie between the years 2000 and 9000")]
        return []


class ClassChanges(BaseModel):
    """What the instructor changes of a class later; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    region: RegionName | None = None
    """As in ClassSpec: a region of the regions file, or "" to let each learner's country
    decide again."""


def spec_from_source(source: YamlSource) -> ClassSpec:
    if not isinstance(source.data, dict):
        raise ManifestError([source.error((), "a class file is a mapping of fields")])
    try:
        spec = ClassSpec.model_validate(source.data)
    except ValidationError as exc:
        raise source.errors_from(exc) from exc
    problems = spec.date_problems()
    if problems:
        raise ManifestError([source.error(loc, message) for loc, message in problems])
    return spec


def read_class_file(path: Path) -> tuple[ClassSpec, YamlSource]:
    """A class file, validated (ManifestError: every problem with its line)."""
    return spec_from_source(source := read_yaml(path)), source


def parse_class_text(text: str, name: str) -> tuple[ClassSpec, YamlSource]:
    return spec_from_source(source := parse_yaml(text, name)), source


def checked(spec: ClassSpec) -> ClassSpec:
    """The API's spec with its dates checked (pydantic checked the fields)."""
    problems = spec.date_problems()
    if problems:
        raise InvalidInput("; ".join(f"{loc[0]}: {message}" for loc, message in problems))
    return spec
