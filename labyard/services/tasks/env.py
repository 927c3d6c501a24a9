"""A task's `env`: `NAME=value` entries with `x(.needs.TASK.stdout)` and `x(.input)` filled in."""

from __future__ import annotations

import re
from collections.abc import Mapping

from labyard.content.models import ENV_REFERENCE


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
