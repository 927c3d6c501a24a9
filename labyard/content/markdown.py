"""Render an item's body to HTML: CommonMark (+ tables, strikethrough) and labyard's blocks.

Raw HTML in the Markdown is escaped, never passed through: authors are semi-trusted, and a
page that runs a learner's terminal must not run an author's script. Link URLs go through
markdown-it's validator (no `javascript:`).

What the page gets:
- `<div class="task" data-task="NAME" data-kind="simple|input" ...>` holding
  `<div class="task-active">` and `<div class="task-completed">`; the page shows one of them by
  the task's state. Input tasks add `data-validate-regex` and `data-destination`.
- `<details class="hint"><summary>...</summary>...</details>` for a hint box, and
  `<details class="details">` for a details box; `<aside class="remark remark-KIND">` for a
  remark box (KIND info, warning or error).
- `<figure class="image-box"><img src=STATIC_URL alt=...></figure>` for an image box.
- `<button class="open-file" data-path=P [data-machine=M] [data-user=U]>` for an open-file
  block; a link to `open-file:PATH` (or `open-file:MACHINE:PATH`) is left as a link: the
  page opens both in its editor tab.
- `<pre data-copy [data-run]><code class="language-X">` for fenced code: `data-run` for shell
  languages (sh, bash, shell, console or none) so the page adds a run-in-terminal button.
  Killercoda's `{{exec}}` / `{{copy}}` after inline or fenced code set the same attributes.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from labyard.content.blocks import TASK_BLOCKS, Block, Segment, TaskBlock, parse, static_path

if TYPE_CHECKING:
    from labyard.content.loader import Item

SHELL_LANGUAGES = frozenset({"", "sh", "bash", "shell", "console", "zsh"})
StaticUrl = Callable[[str], str]
_ACTION = re.compile(r"\{\{(exec|execute|copy)( interrupt)?\}\}")


@dataclass(frozen=True)
class Rendered:
    html: str
    tasks: list[TaskBlock]
    """Task blocks in the order they appear, nested ones included."""


def render_markdown(
    body: str, static_url: StaticUrl = lambda path: path, first_line: int = 1
) -> Rendered:
    """Render a body; `static_url` turns a file path beside the item into a URL."""
    parsed = parse(body, first_line)
    env = {"static_url": static_url}
    return Rendered(_segments(parsed.segments, env), parsed.tasks())


def render_item(item: Item, static_url: Callable[[Item, str], str]) -> Rendered:
    """Render an item's body; `static_url(item, path)` gives the URL of a file beside it."""
    return render_markdown(item.body, lambda path: static_url(item, path), item.body_line)


def render_inline(text: str) -> str:
    rendered: str = _md().renderInline(text)
    return rendered


def _segments(segments: Sequence[Segment], env: dict[str, Any]) -> str:
    parts = []
    for segment in segments:
        if isinstance(segment, Block):
            parts.append(_block(segment, env))
        elif segment.strip():
            parts.append(_md().render(segment, env))
    return "".join(parts)


def _block(block: Block, env: dict[str, Any]) -> str:
    inner = {name: _segments(segments, env) for name, segments in block.sections.items()}
    if block.name in TASK_BLOCKS:
        return _task(block, inner)
    if block.name == "hint-box":
        summary = render_inline(block.props.get("summary", "Hint"))
        return f'<details class="hint"><summary>{summary}</summary>\n{inner["default"]}</details>\n'
    if block.name == "details-box":
        summary = render_inline(block.props.get("summary", "Details"))
        return (
            f'<details class="details"><summary>{summary}</summary>\n{inner["default"]}</details>\n'
        )
    if block.name == "remark-box":
        kind = block.props.get("kind", "info")
        return f'<aside class="remark remark-{_attr(kind)}">\n{inner["default"]}</aside>\n'
    if block.name == "image-box":
        return _image_box(block, env)
    if block.name == "open-file":
        return _open_file(block)
    return f'<div class="block" data-block="{_attr(block.name)}">\n{inner["default"]}</div>\n'


def _task(block: Block, inner: dict[str, str]) -> str:
    attrs = {"data-task": block.props.get("name", ""), "data-kind": TASK_BLOCKS[block.name]}
    if "validateRegex" in block.props:
        attrs["data-validate-regex"] = block.props["validateRegex"]
    if "destination" in block.props:
        attrs["data-destination"] = block.props["destination"]
    active = inner["default"] + inner.get("active", "")
    return (
        f'<div class="task"{_attrs(attrs)}>\n'
        f'<div class="task-active">\n{active}</div>\n'
        f'<div class="task-completed">\n{inner.get("completed", "")}</div>\n'
        "</div>\n"
    )


def _image_box(block: Block, env: dict[str, Any]) -> str:
    src = block.props.get("src", "")
    attrs = {"src": _url(src, env), "alt": block.props.get("alt", "")}
    width = re.fullmatch(r"(\d+)(px|%|em|rem)?", block.props.get("max-width", ""))
    if width is not None:
        attrs["style"] = f"max-width: {width.group(1)}{width.group(2) or 'px'}"
    return f'<figure class="image-box"><img{_attrs(attrs)}></figure>\n'


def _open_file(block: Block) -> str:
    """A button the page wires to its editor tab (static/editor.js)."""
    path = block.props.get("path", "")
    attrs = {"type": "button", "class": "button ghost small open-file", "data-path": path}
    for prop in ("machine", "user"):
        if block.props.get(prop):
            attrs[f"data-{prop}"] = block.props[prop]
    label = html.escape(block.props.get("label") or f"Open {path}")
    return f'<p class="open-file-block"><button{_attrs(attrs)}>{label}</button></p>\n'


def _url(src: str, env: dict[str, Any]) -> str:
    path = static_path(src)
    return src if path is None else str(env["static_url"](path))


def _attrs(attrs: dict[str, str]) -> str:
    return "".join(f' {name}="{_attr(value)}"' for name, value in attrs.items())


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


@cache
def _md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.core.ruler.push("labyard_actions", _inline_actions)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("image", _image)
    return md


def _inline_actions(state: StateCore) -> None:
    """`code`{{exec}} -> <code data-copy data-run>code</code>."""
    for token in state.tokens:
        children = token.children or []
        for code, text in itertools.pairwise(children):
            if code.type != "code_inline" or text.type != "text":
                continue
            match = _ACTION.match(text.content)
            if match:
                text.content = text.content[match.end() :]
                for name, value in _action_attrs(match).items():
                    code.attrSet(name, value)


def _action_attrs(match: re.Match[str]) -> dict[str, str]:
    if match.group(1) == "copy":
        return {"data-copy": ""}
    return {"data-copy": "", "data-run": "interrupt" if match.group(2) else ""}


def _fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    info = unescapeAll(token.info).strip()
    action = _ACTION.search(info)
    words = _ACTION.sub("", info).split()
    language = words[0] if words else ""
    if action is not None:
        attrs = _action_attrs(action)
    else:
        attrs = {"data-copy": ""}
        if language.lower() in SHELL_LANGUAGES:
            attrs["data-run"] = ""
    code_class = f' class="language-{_attr(language)}"' if language else ""
    pre = "".join(
        f" {name}" if not value else f' {name}="{_attr(value)}"' for name, value in attrs.items()
    )
    return f"<pre{pre}><code{code_class}>{escapeHtml(token.content)}</code></pre>\n"


def _image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    if "static_url" in env:
        token.attrSet("src", _url(src, env))
    token.attrSet("alt", self.renderInlineAsText(token.children or [], options, env))
    result: str = self.renderToken(tokens, idx, options, env)
    return result
