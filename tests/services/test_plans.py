"""plans.yaml: the built-in default, an operator's file in the data dir, and a bad file's
problems, each with its file, line and field; a server with a bad file does not start."""

from __future__ import annotations

import os
import subprocess
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from labyard.errors import InvalidInput, SettingsFileError
from labyard.services.plans import builtin_plans, load_plans
from tests.conftest import IMAGES_DIR, REPO

OPERATOR = """\
default: basic
plans:
  basic:
    title: Basic
    rank: 0
    limits:
      concurrent_playgrounds: 2
      lifetime: 30m
      machines_per_playground: 2
      cpus_per_machine: 1
      memory_per_machine: 1GiB
      daily_machine_minutes: 60
  pro:
    title: Pro
    rank: 5
    prices: {currency: EUR, monthly: 9.50}
    limits:
      concurrent_playgrounds: 3
      lifetime: 4h
      machines_per_playground: 4
      cpus_per_machine: 2
      memory_per_machine: 4GiB
      custom_playgrounds: true
"""
BAD = """\
default: gold
plans:
  free:
    title: Free
    rank: 0
    limits:
      concurrent_playgrounds: -1
      lifetime: forever
      machines_per_playground: 3
      cpus_per_machine: 2
      memory_per_machine: 2GiB
  premium:
    title: Premium
    rank: 0
    prices: {monthly: 1.999}
    limits:
      concurrent_playgrounds: 5
      lifetime: 8h
      machines_per_playground: 5
      cpus_per_machine: 4
      memory_per_machine: 8GiB
      gpus: 1
"""


def test_the_builtin_plans_keep_free_and_premium() -> None:
    plans = builtin_plans()
    free, premium = plans.get("free"), plans.get("premium")
    assert plans.default_plan == free
    assert (free.concurrent_playgrounds, free.max_lifetime_s, free.machines_per_playground) == (
        1,
        3600,
        3,
    )
    assert (premium.concurrent_playgrounds, premium.max_lifetime_s) == (5, 8 * 3600)
    assert premium.machines_per_playground == 5
    assert free.limits.daily_machine_minutes == 120 and premium.limits.daily_machine_minutes is None
    assert premium.limits.memory_per_machine > free.limits.memory_per_machine
    assert premium.limits.cpus_per_machine > free.limits.cpus_per_machine
    assert (premium.prices.currency, premium.prices.monthly) == ("USD", Decimal("15.00"))
    assert premium.prices.yearly is not None and premium.prices.lifetime is not None
    assert not free.paid and premium.paid
    assert plans.earned is not None
    assert (plans.earned.plan, plans.earned.challenges, plans.earned.days) == ("premium", 10, 30)
    assert plans.best(["premium", "free", "gone"]) == premium and plans.best([]) == free
    with pytest.raises(InvalidInput, match="unknown plan 'gold'"):
        plans.get("gold")


def test_an_operators_file_in_the_data_dir_replaces_them(tmp_path: Path) -> None:
    assert load_plans(tmp_path) == builtin_plans()
    (tmp_path / "plans.yaml").write_text(OPERATOR)
    plans = load_plans(tmp_path)
    assert list(plans.plans) == ["basic", "pro"] and plans.default == "basic"
    pro = plans.get("pro")
    assert (pro.name, pro.max_lifetime_s, pro.limits.memory_per_machine) == (
        "pro",
        4 * 3600,
        4 << 30,
    )
    assert (pro.prices.currency, pro.prices.monthly, pro.prices.yearly) == (
        "EUR",
        Decimal("9.5"),
        None,
    )
    assert plans.earned is None  # left out: nothing is earned


def test_a_bad_file_names_every_problem_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "plans.yaml").write_text(BAD)
    with pytest.raises(SettingsFileError) as caught:
        load_plans(tmp_path)
    where = tmp_path / "plans.yaml"
    problems = caught.value.problems
    expected = [
        f"{where}:7: plans.free.limits.concurrent_playgrounds: ",
        f"{where}:8: plans.free.limits.lifetime: 'forever' is not a duration",
        f"{where}:15: plans.premium.prices.monthly: ",
        f"{where}:22: plans.premium.limits.gpus: Extra inputs are not permitted",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected)
    assert caught.value.message.startswith("invalid plans file:\n  ")

    # Once the fields are right, references are checked: the default, ranks, earned.plan.
    fixed = BAD.replace("-1", "1").replace("forever", "1h").replace("1.999", "2")
    fixed = fixed.replace("      gpus: 1\n", "") + "earned: {plan: platinum}\n"
    with pytest.raises(SettingsFileError) as caught:
        load_plans(_write(tmp_path, fixed))
    assert caught.value.problems == [
        f"{where}:1: default: unknown plan 'gold' (plans: free, premium)",
        f"{where}:22: earned.plan: unknown plan 'platinum' (plans: free, premium)",
        f"{where}:14: plans.premium.rank: plan 'free' has rank 0 too; ranks must differ",
    ]
    _write(tmp_path, "plans: [free, premium]\n")
    with pytest.raises(SettingsFileError, match=r"plans.yaml:1: plans: "):
        load_plans(tmp_path)
    _write(tmp_path, "plans:\n  free: {title: Free\n")
    with pytest.raises(SettingsFileError, match=r"plans.yaml:3: invalid YAML"):
        load_plans(tmp_path)


def _write(data_dir: Path, text: str) -> Path:
    (data_dir / "plans.yaml").write_text(textwrap.dedent(text))
    return data_dir


def test_the_server_refuses_to_start_with_a_bad_plans_file(tmp_path: Path) -> None:
    (tmp_path / "plans.yaml").write_text(BAD)
    env = {**os.environ, "LABYARD_DATA_DIR": str(tmp_path), "LABYARD_IMAGES_DIR": str(IMAGES_DIR)}
    env.pop("LABYARD_DATABASE_URL", None)
    served = subprocess.run(
        [str(REPO / ".venv/bin/labyard"), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert served.returncode == 2, served.stderr
    assert "labyard: invalid plans file:" in served.stderr
    assert f"{tmp_path / 'plans.yaml'}:8: plans.free.limits.lifetime:" in served.stderr
    assert "serving on" not in served.stderr
