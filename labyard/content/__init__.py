"""Content: challenges, tutorials, courses and skill paths written as Markdown files.

    models.py       front matter models (Task, Challenge, Tutorial, Lesson, Course, SkillPath)
    frontmatter.py  split index.md into front matter and body; validate with line numbers
    compat.py       fields labyard does not use (iximiuz Labs'): kept and noted; typos caught
    blocks.py       the body's ::blocks (tasks, hints, images) with their lines
    checks.py       cross-checks of one item (needs, machines, env, blocks, files)
    layout.py       the folder layout; course lessons and skill-path steps
    playgrounds.py  playground names an item may use (playgrounds/*.yaml, built-ins)
    solutions.py    solution.md / solution-NN.md and the solution script
    loader.py       Item, ContentTree, load_tree(), load_item()
    markdown.py     render_markdown(), render_item(): body -> HTML
    watch.py        ContentWatcher: reload a tree when its files change
    scaffold.py     new_item(): `labyard content new`
    killercoda/     import_killercoda(): a Killercoda scenario -> a tutorial

The format is documented in docs/content-format.md.
"""
