"""Billing periods: when a month or a year from a moment ends, in calendar terms."""

from __future__ import annotations

import calendar
from datetime import datetime


def add_months(at: datetime, months: int) -> datetime:
    """`at`, `months` calendar months later (earlier when negative); a day the month does
    not have (the 31st) becomes its last day."""
    month0 = at.month - 1 + months
    year, month = at.year + month0 // 12, month0 % 12 + 1
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


def add_interval(start: datetime, interval: str) -> datetime | None:
    """When a period that starts at `start` ends: a month (`monthly`) or a year (`yearly`)
    on, or None for `lifetime`."""
    if interval == "lifetime":
        return None
    return add_months(start, 1 if interval == "monthly" else 12)
