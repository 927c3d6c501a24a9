"""Killercoda's `details.assets`: files of the scenario's `assets/` folder uploaded to its hosts.

    "assets": {"host01": [{"file": "wait.sh", "target": "/usr/local/bin", "chmod": "+x"},
                          {"file": "app1/**/*.yaml", "target": "~/app"},
                          {"file": "*", "target": "~/"}]}

- `file` is a file name or a glob in `assets/` (`*` and `?` within one path segment, `**`
  across segments, `[...]`); a matched directory brings its whole tree.
- `target` is the directory the files land in; `~` is root's home (`/root`), and so is a
  relative target's start. A file keeps its path below the pattern's leading plain
  directories: `app1/**/*.yaml` puts `assets/app1/x/a.yaml` at `~/app/x/a.yaml`, `*` puts
  `assets/conf/a.yaml` at `TARGET/conf/a.yaml`.
- `chmod` is `+x`, any symbolic mode chmod takes (`u+x`, `go-r`, `a=rw`, `+w`) applied to
  0644 the way chmod applies it (umask 022 when no `ugoa` is given), or an octal mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

HOME = "/root"
"""Killercoda runs scenarios as root; labyard machines' root has this home too."""
BASE_MODE = 0o644
UMASK = 0o022


@dataclass(frozen=True)
class Match:
    file: Path
    """In the scenario's assets folder."""
    destination: str
    """Absolute path in the machine."""


def target_dir(target: object) -> str:
    """The absolute directory a `target` names (`~` and relative ones are under /root)."""
    text = str(target or "~").strip()
    if text == "~" or text.startswith("~/"):
        text = HOME + text[1:]
    elif not text.startswith("/"):
        text = f"{HOME}/{text}"
    return str(PurePosixPath(text))


def matches(assets: Path, pattern: str, target: object) -> list[Match]:
    """Every file `pattern` matches in `assets`, with where it lands under `target`."""
    regex = _glob_regex(pattern)
    fixed = _fixed_prefix(pattern)
    directory = target_dir(target)
    found: dict[Path, Match] = {}
    for path in sorted(assets.rglob("*")) if assets.is_dir() else []:
        relative = path.relative_to(assets).as_posix()
        if not regex.fullmatch(relative):
            continue
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            below = PurePosixPath(file.relative_to(assets).as_posix()).relative_to(fixed)
            found.setdefault(file, Match(file, str(PurePosixPath(directory, below))))
    return list(found.values())


def _fixed_prefix(pattern: str) -> PurePosixPath:
    """The leading directories of `pattern` without wildcards (`app1` of `app1/**/*.json`);
    a plain file name's own directory."""
    parts = PurePosixPath(pattern.strip("/")).parts
    fixed = []
    for part in parts[:-1]:
        if re.search(r"[*?\[]", part):
            break
        fixed.append(part)
    return PurePosixPath(*fixed)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    text = pattern.strip("/")
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        elif text[i] == "[" and (end := text.find("]", i + 1)) > i:
            body = text[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out))


_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=][rwxX]*)+)")


def mode(chmod: object, is_dir: bool = False) -> int | None:
    """The mode `chmod` gives a new 0644 file, or None when it is not a mode chmod takes."""
    if chmod is None:
        return BASE_MODE
    text = str(chmod).strip()
    if re.fullmatch(r"0?[0-7]{3,4}", text):
        return int(text, 8)
    current = BASE_MODE
    for clause in text.split(","):
        found = _CLAUSE.fullmatch(clause)
        if found is None:
            return None
        who, actions = found.groups()
        for op, perms in re.findall(r"([-+=])([rwxX]*)", actions):
            current = _apply(current, who, op, perms, is_dir)
    return current


def _apply(current: int, who: str, op: str, perms: str, is_dir: bool) -> int:
    executable = is_dir or bool(current & 0o111)
    bits = 0
    for perm in perms:
        if perm == "r":
            bits |= 0o444
        elif perm == "w":
            bits |= 0o222
        elif perm == "x" or (perm == "X" and executable):
            bits |= 0o111
    scope = 0
    for letter in who or "a":
        scope |= {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}[letter]
    mask = scope & (~UMASK if not who else 0o7777)
    if op == "+":
        return current | (bits & mask)
    if op == "-":
        return current & ~(bits & mask)
    return (current & ~scope) | (bits & mask)
