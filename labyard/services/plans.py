"""Plans: what an account may run at once, for how long, how big, and what it costs.

Plans are operator data: `<data dir>/plans.yaml` when it exists, else the built-in
`default_plans.yaml` beside this module (docs/plans.md has the format). A file that does
not validate names the file, line and field of every problem, like a manifest, and the
instance refuses to start. Which plan an account has comes from its entitlements
(entitlements.py); what a start may do is checked in admission.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labyard.errors import InvalidInput, ManifestError, SettingsFileError
from labyard.manifest.models import MAX_MACHINES, Bytes, Name, Seconds
from labyard.manifest.source import YamlSource, read_yaml

BUILTIN = Path(__file__).with_name("default_plans.yaml")
FILE_NAME = "plans.yaml"

Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
"""An amount in the currency's major unit with at most two decimals: `15`, `120.00`."""
Problems = list[tuple[tuple[int | str, ...], str]]
"""(field path, message) pairs: what a file's cross-references got wrong."""
M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Strict):
    """What a plan costs; an absent price is not for sale that way."""

    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    """ISO 4217 code."""
    monthly: Money | None = None
    yearly: Money | None = None
    lifetime: Money | None = None
    """Paid once, never ends."""


class Limits(_Strict):
    concurrent_playgrounds: int = Field(ge=0, le=1000)
    """Playgrounds an account may have at once, stopped ones included."""
    lifetime: Seconds
    """Longest a playground may live, extensions included (`1h`, `90m`, seconds)."""
    machines_per_playground: int = Field(ge=1, le=MAX_MACHINES)
    cpus_per_machine: float = Field(gt=0, le=64)
    """A machine whose manifest asks for more CPUs is refused (429)."""
    memory_per_machine: Bytes
    """Likewise for memory (`2GiB`, `512MiB`, bytes)."""
    custom_playgrounds: bool = False
    """Whether learners may start playgrounds from their own manifests (authors and admins
    always may)."""
    daily_machine_minutes: int | None = Field(None, gt=0)
    """Machine-minutes a day (UTC) an account may use; none: no allowance, no daily cap."""
    saved_playgrounds: int = Field(0, ge=0, le=1000)
    """Playgrounds an account may keep saved (save-as, services/saved.py); 0: none."""


class Plan(_Strict):
    name: str = ""
    """The plan's key in the file (filled in on loading)."""
    title: str = Field(min_length=1, max_length=60)
    rank: int = Field(ge=0, le=1_000_000)
    """Higher is better: of several entitlements in force, the best-ranked plan applies."""
    prices: Prices = Prices()
    limits: Limits

    @property
    def concurrent_playgrounds(self) -> int:
        return self.limits.concurrent_playgrounds

    @property
    def max_lifetime_s(self) -> int:
        return self.limits.lifetime

    @property
    def machines_per_playground(self) -> int:
        return self.limits.machines_per_playground

    @property
    def paid(self) -> bool:
        """Whether the plan is sold at all (a plan without prices is free or granted only)."""
        p = self.prices
        return any(x is not None and x > 0 for x in (p.monthly, p.yearly, p.lifetime))

    def limits_json(self) -> dict[str, object]:
        return {
            "concurrent_playgrounds": self.concurrent_playgrounds,
            "max_lifetime_s": self.max_lifetime_s,
            "machines_per_playground": self.machines_per_playground,
            "cpus_per_machine": self.limits.cpus_per_machine,
            "memory_per_machine": self.limits.memory_per_machine,
            "custom_playgrounds": self.limits.custom_playgrounds,
            "daily_machine_minutes": self.limits.daily_machine_minutes,
            "saved_playgrounds": self.limits.saved_playgrounds,
        }


class Earned(_Strict):
    """Earned premium: every `challenges` distinct challenges solved grant `days` of `plan`."""

    plan: Name
    challenges: int = Field(10, ge=1, le=100_000)
    days: int = Field(30, ge=1, le=3650)


class PlanBook(_Strict):
    """A whole plans file."""

    default: Name = "free"
    """The plan of an account with no entitlement in force; every account has at least it."""
    plans: dict[Name, Plan] = Field(min_length=1)
    earned: Earned | None = None
    """Left out (or null): nothing is earned by solving challenges."""

    def get(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            known = ", ".join(self.plans)
            raise InvalidInput(f"unknown plan {name!r} (plans: {known})") from None

    @property
    def default_plan(self) -> Plan:
        return self.plans[self.default]

    def best(self, names: list[str]) -> Plan:
        """The best-ranked of the named plans that exist, never below the default plan."""
        found = [self.plans[n] for n in names if n in self.plans]
        return max([self.default_plan, *found], key=lambda p: p.rank)

    def reference_problems(self) -> Problems:
        problems: Problems = []
        known = ", ".join(self.plans)
        if self.default not in self.plans:
            problems.append((("default",), f"unknown plan {self.default!r} (plans: {known})"))
        if self.earned is not None and self.earned.plan not in self.plans:
            message = f"unknown plan {self.earned.plan!r} (plans: {known})"
            problems.append((("earned", "plan"), message))
        ranks: dict[int, str] = {}
        for name, plan in self.plans.items():
            if plan.rank in ranks:
                message = f"plan {ranks[plan.rank]!r} has rank {plan.rank} too; ranks must differ"
                problems.append((("plans", name, "rank"), message))
            ranks.setdefault(plan.rank, name)
        return problems


def validate_source(
    source: YamlSource, model: type[M], what: str, references: Callable[[M], Problems]
) -> M:
    """Validate a parsed operator file (plans.yaml, pricing.yaml) as `model`, then its
    cross-references: every problem is reported at once, each with its line."""
    if not isinstance(source.data, dict):
        raise ManifestError([source.error((), f"a {what} is a mapping of fields")])
    try:
        book = model.model_validate(source.data)
    except ValidationError as exc:
        raise source.errors_from(exc) from exc
    problems = references(book)
    if problems:
        raise ManifestError([source.error(loc, message) for loc, message in problems])
    return book


def read_operator_file(
    data_dir: Path, name: str, what: str, builtin: Callable[[], M], parse: Callable[[YamlSource], M]
) -> M:
    """`<data_dir>/<name>` parsed when there is one, else the built-in. A file that does not
    validate raises SettingsFileError with every problem, each as file:line: field."""
    path = data_dir / name
    if not path.is_file():
        return builtin()
    try:
        return parse(read_yaml(path))
    except ManifestError as exc:
        raise SettingsFileError(what, exc.problems) from exc


def plans_from_source(source: YamlSource) -> PlanBook:
    """Validate a parsed plans file; every problem is reported at once, each with its line."""
    book = validate_source(source, PlanBook, "plans file", PlanBook.reference_problems)
    named = {name: plan.model_copy(update={"name": name}) for name, plan in book.plans.items()}
    return book.model_copy(update={"plans": named})


@functools.cache
def builtin_plans() -> PlanBook:
    return plans_from_source(read_yaml(BUILTIN))


def load_plans(data_dir: Path) -> PlanBook:
    """`<data_dir>/plans.yaml` when there is one, else the built-in plans. A file that does
    not validate raises SettingsFileError with every problem, each as file:line: field."""
    return read_operator_file(data_dir, FILE_NAME, "plans file", builtin_plans, plans_from_source)
