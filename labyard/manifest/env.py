"""`env` entries of tasks and init tasks: `NAME=value` strings whose values may use
`x(.needs.TASK.stdout)` (what a task it needs printed) and `x(.input)` (the learner's answer),
as iximiuz content writes them."""

from __future__ import annotations

import re
from collections.abc import Mapping

ENV_REFERENCE = re.compile(r"x\(\.(?:needs\.(?P<task>[A-Za-z0-9_-]+)\.stdout|(?P<input>input))\)")


def env_entry(entry: str) -> str:
    """Validate one `NAME=value` string."""
    name, sep, _ = entry.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"env entry {entry!r} is not NAME=value")
    return entry


def env_entries(entries: list[str]) -> list[str]:
    """Validate a task's `env`."""
    return [env_entry(entry) for entry in entries]


def expand_env(
    entries: list[str], stdouts: Mapping[str, str], answer: str | None
) -> dict[str, str]:
    """`stdouts` holds the stdout of completed tasks; `answer` what the learner submitted for
    this task. A reference to something not there yet expands to the empty string.

    Trailing newlines of a stdout are dropped: `echo $ID` prints `ID\\n`, and the author
    means `ID`, as with `$(...)` in the shell.
    """

    def value(match: re.Match[str]) -> str:
        if match.group("input"):
            return answer or ""
        return stdouts.get(match.group("task"), "").rstrip("\n")

    env: dict[str, str] = {}
    for entry in entries:
        name, _, raw = entry.partition("=")
        env[name] = ENV_REFERENCE.sub(value, raw)
    return env
