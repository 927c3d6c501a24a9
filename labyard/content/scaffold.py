"""`labyard content new`: a small, valid item to start from."""

from __future__ import annotations

from pathlib import Path

from labyard.content.layout import SLUG
from labyard.errors import Conflict, InvalidInput

KINDS = ("challenge", "tutorial", "course")

_TASK_BLOCK = """\
::simple-task
---
:tasks: tasks
:name: hello_file
---
#active
Waiting for `/root/hello.txt` to say hello...

#completed
Done: the file is there.
::
"""

_RUNNABLE = """\
---
kind: {kind}
title: {title}
description: Write a file and watch the check turn green.
categories: [linux]
difficulty: easy
playground: linux
tasks:
  hello_file:
    run: |
      [ "$(cat /root/hello.txt 2>/dev/null)" = "hello" ]
---

Create the file `/root/hello.txt` containing the word `hello`.

{task}
::hint-box
---
:summary: Stuck?
---
`echo` prints its arguments; `>` sends them to a file.
::
"""

_COURSE = """\
---
kind: course
title: {title}
description: What the learner will be able to do after this course.
categories: [linux]
difficulty: easy
modules:
  - name: basics
    title: The basics
    lessons: [first-lesson]
---

An overview of the course, shown on its page.
"""

_SOLUTION_MD = """\
Write the word with `echo` and redirect it into the file:

```sh
echo hello > /root/hello.txt
```
"""

_SOLUTION_SH = """\
#!/bin/bash
# Run by `labyard content test`: solves the challenge so every check must turn green.
set -euo pipefail
echo hello > /root/hello.txt
"""


def new_item(kind: str, name: str, content_dir: Path) -> Path:
    """Write a new item under `content_dir`; returns its index.md."""
    if kind not in KINDS:
        raise InvalidInput(f"cannot scaffold a {kind!r} (choose {', '.join(KINDS)})")
    if not SLUG.match(name):
        raise InvalidInput(f"{name!r} is not a slug: use lowercase letters, digits and dashes")
    folder = content_dir / f"{kind}s" / name
    if folder.exists():
        raise Conflict(f"{folder} already exists")
    files = _files(kind, name.replace("-", " ").capitalize())
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if kind == "challenge":
        (folder / "solution.sh").chmod(0o755)
    return folder / "index.md"


def _files(kind: str, title: str) -> dict[str, str]:
    if kind == "course":
        lesson = _RUNNABLE.format(kind="lesson", title="First lesson", task=_TASK_BLOCK)
        return {"index.md": _COURSE.format(title=title), "first-lesson/index.md": lesson}
    files = {"index.md": _RUNNABLE.format(kind=kind, title=title, task=_TASK_BLOCK)}
    if kind == "challenge":
        files |= {"solution.md": _SOLUTION_MD, "solution.sh": _SOLUTION_SH}
    return files
