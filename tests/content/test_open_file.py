"""`::open-file` blocks and `open-file:` links: what they render to, and that a block
without a path is a problem with its line."""

from __future__ import annotations

from pathlib import Path

from labyard.content.loader import load_tree
from labyard.content.markdown import render_markdown
from tests.content import write

BODY = """\
::open-file
---
:path: /etc/nginx/nginx.conf
:machine: web
:user: www-data
---
::

::open-file
:path: /etc/motd
:label: The <motd>
::

See [the hosts file](open-file:web:/etc/hosts) or [this](open-file:/etc/motd).
"""


def test_blocks_render_as_buttons_and_links_stay_links() -> None:
    html = render_markdown(BODY).html
    assert (
        '<button type="button" class="button ghost small open-file" '
        'data-path="/etc/nginx/nginx.conf" data-machine="web" data-user="www-data">'
        "Open /etc/nginx/nginx.conf</button>"
    ) in html
    assert 'data-path="/etc/motd">The &lt;motd&gt;</button>' in html  # labels are escaped
    assert '<a href="open-file:web:/etc/hosts">the hosts file</a>' in html
    assert '<a href="open-file:/etc/motd">this</a>' in html


def test_a_block_needs_a_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "tutorials/t/index.md": """\
            ---
            kind: tutorial
            title: T
            playground: linux
            tasks:
              t:
                run: "true"
            ---
            Text.

            ::open-file
            :machine: web
            ::

            ::open-file
            :path: /etc/motd
            :colour: red
            ::
            """,
        },
    )
    p = tmp_path / "tutorials/t/index.md"
    assert sorted(load_tree(tmp_path).problems) == [
        f"{p}:11: ::open-file.path: missing: name the file to open",
        f"{p}:17: ::open-file.colour: unknown prop (known: :label:, :machine:, :path:, :user:)",
    ]
