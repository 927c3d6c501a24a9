"""The body's block syntax, parsed into Markdown text and blocks with their line numbers.

    ::simple-task              ::user-input-task             ::hint-box
    ---                        ---                           ---
    :tasks: tasks              :tasks: tasks                 :summary: Stuck?
    :name: check_file          :name: answer                 ---
    ---                        :validateRegex: ^[0-9]+$      Markdown...
    #active                    :destination: /tmp/answer     ::
    Markdown while unsolved    ---
    #completed                 #active ...                   ::image-box
    Markdown once solved       #completed ...                :src: __static__/a.png
    ::                         ::                            :alt: A diagram
                                                             ::

`::open-file` (`:path:`; optional `:machine:`, `:user:`, `:label:`) is a button that
opens the file in the lab's editor tab. The `---` lines around the props are optional.
Values may be quoted like YAML scalars. A block closes at the next line made only of colons
(`::`, `:::`), innermost block first, so blocks nest. Lines inside fenced code are never
read as blocks. Killercoda's ```` ```{{exec}} ```` closing fences are moved into the
opening fence's info string (```` ```bash {{exec}} ````), where the Markdown renderer picks
them up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

PROPS: dict[str, frozenset[str]] = {
    "simple-task": frozenset({"tasks", "name"}),
    "user-input-task": frozenset({"tasks", "name", "validateRegex", "destination"}),
    "hint-box": frozenset({"summary"}),
    "image-box": frozenset({"src", "alt", "max-width"}),
    # iximiuz Labs' boxes for side notes and collapsible details:
    "remark-box": frozenset({"kind"}),
    "details-box": frozenset({"summary"}),
    # a button that opens a machine's file in the lab's editor tab (docs/content-format.md)
    "open-file": frozenset({"path", "machine", "user", "label"}),
}
REMARK_KINDS = ("info", "warning", "error")
TASK_BLOCKS = {"simple-task": "simple", "user-input-task": "input"}
SECTIONS = ("active", "completed")

_OPEN = re.compile(r"^(:{2,})([a-z][a-z0-9-]*)\s*$")
_INLINE_PROPS = re.compile(r"^:{2,}[a-z][a-z0-9-]*[{\[ ]")
_CLOSE = re.compile(r"^:{2,}\s*$")
_PROP = re.compile(r"^(:?)([A-Za-z][A-Za-z0-9_-]*):(?:\s+(.*))?$")
_SECTION = re.compile(r"^#([a-z][a-z0-9-]*)\s*$")
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_ACTION = re.compile(r"\{\{(exec(?: interrupt)?|execute(?: interrupt)?|copy)\}\}\s*$")


@dataclass
class Block:
    name: str
    line: int
    """Line of the `::name` line in the file."""
    props: dict[str, str] = field(default_factory=dict)
    prop_lines: dict[str, int] = field(default_factory=dict)
    sections: dict[str, list[Segment]] = field(default_factory=dict)
    """`default`, and for tasks `active` and `completed`: text and nested blocks."""

    def prop_line(self, key: str) -> int:
        return self.prop_lines.get(key, self.line)


Segment = str | Block


@dataclass(frozen=True)
class TaskBlock:
    """A `::simple-task` or `::user-input-task` placed in the body."""

    name: str
    kind: str
    """`simple` or `input`."""
    line: int
    validate_regex: str | None = None
    destination: str | None = None


@dataclass
class Parsed:
    segments: list[Segment]
    problems: list[tuple[int, str, str]]
    """(line, field, message) for each syntax problem."""

    def blocks(self) -> Iterator[Block]:
        """Every block, nested ones included, in order."""
        yield from _walk(self.segments)

    def tasks(self) -> list[TaskBlock]:
        return [task_block(b) for b in self.blocks() if b.name in TASK_BLOCKS]


def task_block(block: Block) -> TaskBlock:
    return TaskBlock(
        name=block.props.get("name", ""),
        kind=TASK_BLOCKS[block.name],
        line=block.line,
        validate_regex=block.props.get("validateRegex"),
        destination=block.props.get("destination"),
    )


def _walk(segments: list[Segment]) -> Iterator[Block]:
    for segment in segments:
        if isinstance(segment, Block):
            yield segment
            for inner in segment.sections.values():
                yield from _walk(inner)


def parse(body: str, first_line: int = 1) -> Parsed:
    """Parse a body whose first line is line `first_line` of its file."""
    parser = _Parser(body.splitlines(), first_line)
    sections, _ = parser.segments(inside=None)
    return Parsed(sections["default"], parser.problems)


def static_path(src: str) -> str | None:
    """The path (relative to the item's folder) of a file that `src` names, or None for a URL.
    `__static__/x.png` stays as written: see layout.static_file for where it is found."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^/|^#", src):
        return None
    while src.startswith("./"):
        src = src[2:]
    return src


def escape(text: str) -> str:
    """Markdown written for elsewhere with each line outside fenced code that this syntax
    would read (`::name`, `::`, `::name{...}`) escaped as `\\::...`: it renders as the same
    text and opens no block."""
    lines = text.split("\n")
    parser = _Parser(lines, 1)
    out: list[str] = []
    while parser.i < len(lines):
        start, line = parser.i, lines[parser.i]
        if fence := _FENCE.match(line):
            parser.fenced(fence)  # only to find where it ends: the lines stay as written
            out += lines[start : parser.i]
            continue
        parser.i += 1
        syntax = _CLOSE.match(line) or _OPEN.match(line) or _INLINE_PROPS.match(line)
        out.append("\\" + line if syntax else line)
    return "\n".join(out)


class _Parser:
    def __init__(self, lines: list[str], first_line: int) -> None:
        self.lines = lines
        self.first = first_line
        self.i = 0
        self.problems: list[tuple[int, str, str]] = []

    def problem(self, line: int, where: str, message: str) -> None:
        self.problems.append((line, where, message))

    def segments(self, inside: Block | None) -> tuple[dict[str, list[Segment]], bool]:
        """Read until the line closing `inside` (or the end); True when it was closed."""
        sections: dict[str, list[Segment]] = {"default": []}
        current, text = sections["default"], []
        while self.i < len(self.lines):
            line, number = self.lines[self.i], self.first + self.i
            if fence := _FENCE.match(line):
                text += self.fenced(fence)
                continue
            self.i += 1
            if _CLOSE.match(line):
                if inside is not None:
                    _flush(current, text)
                    return sections, True
                self.problem(number, "body", f"{line.strip()} closes no block")
            elif opened := _OPEN.match(line):
                _flush(current, text)
                current.append(self.block(opened.group(2), number))
            elif _INLINE_PROPS.match(line):
                self.problem(number, "body", "write a block's props on their own :key: lines")
                text.append(line)
            elif inside is not None and inside.name in TASK_BLOCKS and _SECTION.match(line):
                _flush(current, text)
                current = self.section(sections, line.strip()[1:], number)
            else:
                text.append(line)
        _flush(current, text)
        return sections, False

    def section(self, sections: dict[str, list[Segment]], name: str, line: int) -> list[Segment]:
        if name not in SECTIONS:
            self.problem(line, "body", f"unknown section #{name} (use #active or #completed)")
        elif name in sections:
            self.problem(line, "body", f"section #{name} appears twice in one block")
        return sections.setdefault(name, [])

    def block(self, name: str, line: int) -> Block:
        block = Block(name, line)
        if name not in PROPS:
            self.problem(line, f"::{name}", f"unknown block (known: {', '.join(PROPS)})")
        self.props(block)
        block.sections, closed = self.segments(inside=block)
        if not closed:
            self.problem(line, f"::{name}", "never closed with a :: line")
        return block

    def props(self, block: Block) -> None:
        """`:key: value` lines right after the opening line, or any key lines between `---`."""
        fenced = self.i < len(self.lines) and self.lines[self.i].strip() == "---"
        self.i += fenced
        while self.i < len(self.lines):
            line, number = self.lines[self.i].strip(), self.first + self.i
            if fenced and line == "---":
                self.i += 1
                return
            match = _PROP.match(line)
            if match is not None and (fenced or match.group(1)):
                self.prop(block, match.group(2), match.group(3) or "", number)
            elif not fenced:
                return
            elif line:
                self.problem(number, f"::{block.name}", "expected a :key: value line or ---")
            self.i += 1
        if fenced:
            self.problem(block.line, f"::{block.name}", "props are never closed with ---")

    def prop(self, block: Block, key: str, raw: str, line: int) -> None:
        allowed = PROPS.get(block.name)
        if allowed is not None and key not in allowed:
            known = ", ".join(f":{k}:" for k in sorted(allowed))
            self.problem(line, f"::{block.name}.{key}", f"unknown prop (known: {known})")
        block.props[key] = _scalar(raw)
        block.prop_lines[key] = line

    def fenced(self, opening: re.Match[str]) -> list[str]:
        """A fenced code block, verbatim but for Killercoda actions on its closing line."""
        indent, fence, info = opening.groups()
        start, self.i = self.i, self.i + 1
        while self.i < len(self.lines):
            line = self.lines[self.i]
            self.i += 1
            stripped = line.strip()
            action = _ACTION.search(stripped)
            bare = stripped[: action.start()].rstrip() if action else stripped
            if bare.startswith(fence[0]) and set(bare) == {fence[0]} and len(bare) >= len(fence):
                if action is None:
                    return self.lines[start : self.i]
                head = f"{indent}{fence}{info} {action.group(0).strip()}"
                return [head, *self.lines[start + 1 : self.i - 1], line[: line.index("{{")]]
        return self.lines[start:]


def _flush(target: list[Segment], text: list[str]) -> None:
    if text:
        target.append("\n".join(text) + "\n")
        text.clear()


def _scalar(raw: str) -> str:
    """`value`, `'value'` or `"value"` -> value; quoted ones decode like YAML."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            return raw
        return value if isinstance(value, str) else raw
    return raw
