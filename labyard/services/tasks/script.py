"""One bash script per machine per tick that runs every due check, and its parsed output.

Batching is what keeps checks cheap: a tick costs one SSH exec per machine, however many
tasks are due. The helper library and the runner functions are installed once per SSH
connection into `RUNNER` (tmpfs, named by its content hash), so a tick sends only a few
hundred bytes. In the machine the checks run side by side, each in its own process under
`timeout`, as its task's user, with the helpers sourced first. After the last one ends,
one line per check reports it:

    @@labyard <index> <exit code> <base64 stdout> <base64 stderr> <start>:<end>

(start and end are bash's `$EPOCHREALTIME`: how long the check took, for the authors' task
panel.) Base64 keeps any output (newlines, binary, our own marker) on one parseable line. Output is
cut to `MAX_STDOUT`/`MAX_STDERR` bytes inside the machine, so a chatty check cannot flood
the control plane. A batch whose runner is missing (deleted) exits `RUNNER_MISSING`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shlex
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

MAX_STDOUT = 16384
MAX_STDERR = 4096
MARKER = "@@labyard"
NO_EXIT_CODE = 255
"""Reported when a check's process left no exit code (the machine killed it)."""
RUNNER_MISSING = 98

CheckKind = Literal["run", "hint", "fail"]


@dataclass(frozen=True)
class Check:
    task: str
    kind: CheckKind
    script: str
    user: str
    env: dict[str, str]
    timeout_s: int


@dataclass(frozen=True)
class CheckResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float | None = None
    """Measured in the machine; None when its bash has no `$EPOCHREALTIME` (before 5.0)."""

    @property
    def timed_out(self) -> bool:
        return self.exit_code in (124, 137)  # `timeout`'s TERM, then its KILL


_RUNNER_FUNCTIONS = f"""
__ly_check() {{  # index, timeout, user, base64 script
  local body t0=$EPOCHREALTIME
  body=". {{runner}}"$'\\n'"$(base64 -d <<<"$4")"
  if [ "$3" = root ]; then
    timeout -k 2 "$2" bash -c "$body" </dev/null >"$__ly_dir/$1.out" 2>"$__ly_dir/$1.err"
  else
    timeout -k 2 "$2" su - "$3" -s /bin/bash -c "$body" \\
      </dev/null >"$__ly_dir/$1.out" 2>"$__ly_dir/$1.err"
  fi
  echo "$? $t0 $EPOCHREALTIME" >"$__ly_dir/$1.code"
}}
__ly_report() {{  # index; builtins where they do, as this runs for every check every tick
  local code={NO_EXIT_CODE} t0="" t1="" out="" err=""
  read -r code t0 t1 <"$__ly_dir/$1.code" 2>/dev/null
  [ -s "$__ly_dir/$1.out" ] && out=$(head -c {MAX_STDOUT} "$__ly_dir/$1.out" | base64 -w0)
  [ -s "$__ly_dir/$1.err" ] && err=$(head -c {MAX_STDERR} "$__ly_dir/$1.err" | base64 -w0)
  printf '{MARKER} %s %s %s %s %s:%s\\n' "$1" "$code" "$out" "$err" "$t0" "$t1"
}}
"""


@cache
def helpers() -> str:
    """The bash library of check helpers (see helpers.sh)."""
    return resources.files(__package__).joinpath("helpers.sh").read_text()


@cache
def runner() -> tuple[str, str]:
    """(path in the machine, content): the helpers plus the functions a batch calls."""
    body = helpers() + _RUNNER_FUNCTIONS
    path = f"/run/labyard/checks-{hashlib.sha256(body.encode()).hexdigest()[:12]}.sh"
    return path, body.replace("{runner}", path)


def install_command() -> tuple[str, str]:
    """(command, its stdin) that installs the runner, readable by every user."""
    path, content = runner()
    quoted = shlex.quote(path)
    # Written under a temporary name and renamed: two connections installing at once
    # never leave a half-written runner behind.
    command = (
        "mkdir -p /run/labyard && chmod 755 /run/labyard && "
        't=$(mktemp /run/labyard/.checks.XXXXXX) && cat > "$t" && chmod 644 "$t" && '
        f'mv -f "$t" {quoted}'
    )
    return command, content


def sourcing(script: str) -> str:
    """`script` with the helpers defined first (init tasks run this way)."""
    return f". {runner()[0]}\n{script}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _body(check: Check) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in check.env.items())
    return exports + check.script


def batch_script(checks: list[Check]) -> str:
    """The script that runs `checks` (in one machine) and reports each by its index."""
    lines = [
        f". {runner()[0]} 2>/dev/null || exit {RUNNER_MISSING}\n",
        "__ly_dir=$(mktemp -d) || exit 97\n",
        "trap 'rm -rf \"$__ly_dir\"' EXIT\n",
    ]
    for i, check in enumerate(checks):
        user = shlex.quote(check.user)
        lines.append(f"__ly_check {i} {check.timeout_s} {user} {_b64(_body(check))} &\n")
    lines.append("wait\n{\n")
    lines += [f"__ly_report {i}\n" for i in range(len(checks))]
    # Collected in a file and sent with one write: one SSH packet rather than one per check.
    lines.append('} >"$__ly_dir/report"\ncat "$__ly_dir/report"\n')
    return "".join(lines)


def batch_timeout(checks: list[Check]) -> float:
    """How long the whole batch may take: its slowest check, plus `timeout -k` grace."""
    return max(c.timeout_s for c in checks) + 5.0


def parse_results(output: str, count: int) -> dict[int, CheckResult]:
    """Results by check index; checks whose line is missing or garbled are left out."""
    results: dict[int, CheckResult] = {}
    for line in output.splitlines():
        fields = line.split(" ")
        if len(fields) not in (5, 6) or fields[0] != MARKER:
            continue
        try:
            index, code = int(fields[1]), int(fields[2])
            stdout, stderr = (base64.b64decode(f).decode("utf-8", "replace") for f in fields[3:5])
        except (ValueError, binascii.Error):
            continue
        if 0 <= index < count:
            results[index] = CheckResult(code, stdout, stderr, _duration(fields[5:]))
    return results


def _duration(field: list[str]) -> float | None:
    """Seconds from a `start:end` pair of `$EPOCHREALTIME`s (`,` in some locales)."""
    start, _, end = (field[0] if field else "").replace(",", ".").partition(":")
    try:
        return round(max(0.0, float(end) - float(start)), 6)
    except ValueError:
        return None
