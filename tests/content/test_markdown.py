"""Rendering a body: each block type, code buttons, Killercoda actions, escaped HTML."""

from __future__ import annotations

import textwrap
from pathlib import Path

from labyard.content.blocks import TaskBlock, escape, parse
from labyard.content.loader import Item, load_item
from labyard.content.markdown import render_item, render_markdown
from tests.content import write


def html(body: str, static: str = "/static/") -> str:
    return render_markdown(textwrap.dedent(body), lambda path: static + path).html


def test_simple_task_renders_both_sections() -> None:
    rendered = render_markdown(
        textwrap.dedent("""
        Intro.

        ::simple-task
        ---
        :tasks: tasks
        :name: file_exists
        ---
        #active
        Waiting for **the file**.

        #completed
        Found it.
        ::
        """),
        first_line=10,
    )

    assert rendered.html == (
        "<p>Intro.</p>\n"
        '<div class="task" data-task="file_exists" data-kind="simple">\n'
        '<div class="task-active">\n<p>Waiting for <strong>the file</strong>.</p>\n</div>\n'
        '<div class="task-completed">\n<p>Found it.</p>\n</div>\n'
        "</div>\n"
    )
    assert rendered.tasks == [TaskBlock(name="file_exists", kind="simple", line=13)]


def test_user_input_task_carries_its_regex_and_destination() -> None:
    rendered = render_markdown(
        textwrap.dedent("""
        ::user-input-task
        :tasks: tasks
        :name: answer
        :validateRegex: '^[0-9]+"$'
        :destination: /tmp/answer
        #active
        How many?
        #completed
        Right.
        ::
        """)
    )

    assert rendered.html.startswith(
        '<div class="task" data-task="answer" data-kind="input" '
        'data-validate-regex="^[0-9]+&quot;$" data-destination="/tmp/answer">\n'
    )
    assert '<div class="task-active">\n<p>How many?</p>' in rendered.html
    assert '<div class="task-completed">\n<p>Right.</p>' in rendered.html
    assert rendered.tasks == [TaskBlock("answer", "input", 2, '^[0-9]+"$', "/tmp/answer")]


def test_hint_box_is_a_details_element() -> None:
    assert html("""
        ::hint-box
        ---
        :summary: Stuck? Try `ls`
        ---
        Look in `/etc`.
        ::
        """) == (
        '<details class="hint"><summary>Stuck? Try <code>ls</code></summary>\n'
        "<p>Look in <code>/etc</code>.</p>\n</details>\n"
    )


def test_image_box_src_goes_through_static_url() -> None:
    assert html("""
        ::image-box
        :src: __static__/img/net.png
        :alt: The "network"
        :max-width: 600
        ::
        """) == (
        '<figure class="image-box"><img src="/static/__static__/img/net.png" '
        'alt="The &quot;network&quot;" style="max-width: 600px"></figure>\n'
    )


def test_markdown_images_beside_the_item_use_static_url_and_urls_stay() -> None:
    result = html("![a](a.png) ![b](https://example.com/b.png)")

    assert '<img src="/static/a.png" alt="a" />' in result
    assert '<img src="https://example.com/b.png" alt="b" />' in result


def test_blocks_nest_and_code_fences_hide_block_syntax() -> None:
    rendered = render_markdown(
        textwrap.dedent("""
        ::simple-task
        :name: t
        #active
        ::hint-box
        :summary: Hint
        inner
        ::
        #completed
        ```
        ::simple-task
        ```
        ::
        """)
    )

    assert rendered.html == (
        '<div class="task" data-task="t" data-kind="simple">\n<div class="task-active">\n'
        '<details class="hint"><summary>Hint</summary>\n<p>inner</p>\n</details>\n</div>\n'
        '<div class="task-completed">\n'
        "<pre data-copy data-run><code>::simple-task\n</code></pre>\n</div>\n</div>\n"
    )
    assert [t.name for t in rendered.tasks] == ["t"]


def test_code_blocks_get_copy_and_shell_ones_run() -> None:
    result = html("""
        ```bash
        ls -la
        ```

        ```
        whoami
        ```

        ```python
        print("hi")
        ```

        ```console
        $ id
        ```
        """)

    assert result == (
        '<pre data-copy data-run><code class="language-bash">ls -la\n</code></pre>\n'
        "<pre data-copy data-run><code>whoami\n</code></pre>\n"
        '<pre data-copy><code class="language-python">print(&quot;hi&quot;)\n</code></pre>\n'
        '<pre data-copy data-run><code class="language-console">$ id\n</code></pre>\n'
    )


def test_killercoda_actions_become_the_same_attributes() -> None:
    result = html("""
        Run `ls /`{{exec}}, copy `secret`{{copy}}, stop `top`{{exec interrupt}}.

        ```plain
        uname -a
        ```{{exec}}

        ```
        export X=1
        ```{{copy}}
        """)

    assert result == (
        '<p>Run <code data-copy="" data-run="">ls /</code>, copy <code data-copy="">secret</code>,'
        ' stop <code data-copy="" data-run="interrupt">top</code>.</p>\n'
        '<pre data-copy data-run><code class="language-plain">uname -a\n</code></pre>\n'
        "<pre data-copy><code>export X=1\n</code></pre>\n"
    )


def test_raw_html_and_script_urls_are_escaped() -> None:
    result = html("""
        <script>alert(1)</script>

        Text <img src=x onerror=alert(1)> and [link](javascript:alert(1)).

        ::simple-task
        :name: "x\\"><script>alert(1)</script>"
        ::

        ::hint-box
        :summary: <b onclick="alert(1)">hint</b>
        ::

        ::image-box
        :src: javascript:alert(1)
        :alt: x" onerror="alert(1)
        ::

        ```bash"><script>
        ls
        ```
        """)

    assert "<script" not in result
    assert "<b " not in result and "<img src=x" not in result
    assert 'href="javascript' not in result
    assert 'data-task="x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in result
    assert 'alt="x&quot; onerror=&quot;alert(1)"' in result
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in result


def test_render_item_passes_the_item_to_static_url(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "tutorials/t/index.md": """
            ---
            kind: tutorial
            title: T
            playground: linux
            ---
            ![net](net.png)
            """,
            "tutorials/t/net.png": "png",
        },
    )
    item = load_item(tmp_path / "tutorials/t")

    def static_url(owner: Item, path: str) -> str:
        return f"/files/{owner.key}/{path}"

    assert render_item(item, static_url).html == (
        '<p><img src="/files/tutorials/t/net.png" alt="net" /></p>\n'
    )


def test_props_between_dashes_accept_plain_keys_and_report_junk() -> None:
    parsed = parse(
        textwrap.dedent("""
        ::hint-box
        ---
        summary: "Quoted: \\"yes\\""

        not a prop
        ---
        Text.
        ::

        ::image-box
        ---
        :src: a.png
        """),
        first_line=1,
    )
    hint, image = list(parsed.blocks())

    assert hint.props == {"summary": 'Quoted: "yes"'}
    assert image.props == {"src": "a.png"}
    assert parsed.problems == [
        (6, "::hint-box", "expected a :key: value line or ---"),
        (11, "::image-box", "props are never closed with ---"),
        (11, "::image-box", "never closed with a :: line"),
    ]


def test_escaped_markdown_opens_no_block_and_reads_as_written() -> None:
    text = "::simple-task\n:name: x\n::\n::note{a}\n```\n::in code\n```\n  ::indented\n"

    escaped = escape(text)

    assert escaped.splitlines()[:4] == ["\\::simple-task", ":name: x", "\\::", "\\::note{a}"]
    assert parse(escaped).problems == []
    rendered = render_markdown(escaped).html
    assert "<p>::simple-task\n:name: x\n::\n::note{a}</p>" in rendered
    assert "<code>::in code\n</code>" in rendered
