"""Importing Killercoda scenarios: what maps where, and a warning for all that does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labyard.content.killercoda import import_killercoda
from labyard.content.loader import load_item
from labyard.content.markdown import render_item
from labyard.content.models import Tutorial
from labyard.errors import Conflict, ManifestError, NotFound
from labyard.manifest import Manifest
from tests.content import write

FIXTURE = Path(__file__).parent / "fixtures/killercoda/hello-scenario"


def scenario(root: Path, index: dict[str, object], files: dict[str, str] | None = None) -> Path:
    return write(root, {"index.json": json.dumps(index), **(files or {})})


def test_the_fixture_becomes_a_valid_tutorial(tmp_path: Path) -> None:
    imported = import_killercoda(FIXTURE, tmp_path)

    assert imported.index_md == tmp_path / "tutorials/hello-scenario/index.md"
    item = load_item(imported.index_md)  # raises on any problem
    front = item.front
    assert isinstance(front, Tutorial)
    assert (front.title, front.description, front.difficulty) == (
        "Hello files",
        "Create files and directories.",
        "easy",
    )


def test_verify_and_background_scripts_become_ordered_tasks(tmp_path: Path) -> None:
    front = load_item(import_killercoda(FIXTURE, tmp_path).index_md).front
    assert isinstance(front, Tutorial)
    tasks = front.tasks

    assert list(tasks) == ["intro_setup", "step_1", "step_2_setup", "step_2"]
    assert tasks["intro_setup"].init and tasks["intro_setup"].needs == []
    assert tasks["intro_setup"].run == (FIXTURE / "setup.sh").read_text()
    assert not tasks["step_1"].init and tasks["step_1"].needs == ["intro_setup"]
    assert tasks["step_1"].run == (FIXTURE / "step1/verify.sh").read_text()
    assert tasks["step_2_setup"].init and tasks["step_2_setup"].needs == ["step_1"]
    assert tasks["step_2_setup"].run == (FIXTURE / "step2/background.sh").read_text()
    assert tasks["step_2"].needs == ["step_2_setup"]


def test_assets_become_startup_files_of_the_linux_machine(tmp_path: Path) -> None:
    front = load_item(import_killercoda(FIXTURE, tmp_path).index_md).front
    assert isinstance(front, Tutorial)
    playground = front.playground

    assert isinstance(playground, Manifest)
    [machine] = playground.machines
    assert (machine.name, machine.image) == ("linux", "linux")
    [file] = machine.files
    assert (file.path, file.mode) == ("/usr/local/bin/greet.sh", "0755")
    assert file.content == (FIXTURE / "assets/greet.sh").read_text()


def test_texts_are_kept_in_order_with_task_blocks_and_actions(tmp_path: Path) -> None:
    item = load_item(import_killercoda(FIXTURE, tmp_path).index_md)
    rendered = render_item(item, lambda owner, path: path)
    html = rendered.html

    order = [
        "In this scenario",
        "<h2>Create a directory</h2>",
        'data-task="step_1"',
        "<h2>Write a file</h2>",
        'data-task="step_2"',
        "<h2>Finish</h2>",
    ]
    positions = [html.index(text) for text in order]
    assert positions == sorted(positions)
    assert [t.name for t in rendered.tasks] == ["step_1", "step_2"]
    assert '<code data-copy="" data-run="">mkdir -p /root/work</code>' in html
    assert '<code data-copy="">echo hello &gt; /root/work/hello.txt</code>' in html
    assert "<pre data-copy data-run><code>ls -ld /root/work\n</code></pre>" in html
    assert "echo &quot;Welcome&quot;" in html  # the foreground script, as a snippet


def test_every_unmapped_field_is_a_warning(tmp_path: Path) -> None:
    imported = import_killercoda(FIXTURE, tmp_path)

    assert imported.warnings == [
        "index.json: details.intro.foreground: labyard does not type scripts into the "
        "learner's terminal; added to the text as a snippet to run",
        "Markdown: {{open}} has no labyard equivalent; left in the text as is",
        "index.json: details.assets.host02: the linux playground has no machine for it "
        "(machines: linux); left out",
        "index.json: time: not mapped (labyard has no equivalent); left out",
        "index.json: interface.layout: not mapped (labyard has no equivalent); left out",
    ]


@pytest.mark.parametrize(
    ("imageid", "playground", "warning"),
    [
        ("ubuntu", "linux", None),
        ("ubuntu-4GB", "linux", None),
        ("debian", "linux", None),
        ("kubernetes-kubeadm-1node", "linux", "no k3s playground here"),
        ("kubernetes-kubeadm-2nodes", "linux-cluster", "no k3s-cluster playground here"),
        ("kubernetes-k3s-1node", "linux", "Kubernetes is not installed"),
        ("docker", "docker", None),
        ("centos", "linux", "'centos' is unknown here; using the linux playground"),
    ],
)
def test_backend_image_maps_to_a_catalog_playground(
    tmp_path: Path, imageid: str, playground: str, warning: str | None
) -> None:
    folder = scenario(
        tmp_path / "src",
        {
            "title": "Mini",
            "backend": {"imageid": imageid},
            "details": {
                "steps": [{"title": "One", "text": "one.md", "verify": "one.sh", "extra": 1}]
            },
        },
        {"one.md": "Do it.\n", "one.sh": "true\n"},
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="mini")

    front = load_item(imported.index_md).front
    assert isinstance(front, Tutorial) and front.playground == playground
    assert (
        "index.json: details.steps.0.extra: not mapped (labyard has no equivalent); "
        "left out" in imported.warnings
    )
    image_warnings = [w for w in imported.warnings if "backend.imageid" in w]
    if warning is None:
        assert image_warnings == []
    else:
        assert len(image_warnings) == 1 and warning in image_warnings[0]


def test_missing_files_and_odd_values_warn(tmp_path: Path) -> None:
    folder = scenario(
        tmp_path / "src",
        {
            "title": "Odd",
            "difficulty": "legendary",
            "details": {"intro": {"text": "missing.md"}},
        },
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="odd")

    load_item(imported.index_md)
    assert any(
        w.startswith("index.json: details.intro.text: cannot read") for w in imported.warnings
    )
    assert (
        "index.json: difficulty: 'legendary' has no labyard equivalent (easy, medium, "
        "hard); left out" in imported.warnings
    )
    assert "index.json: backend.imageid: missing; using the linux playground" in imported.warnings


def test_refuses_a_folder_without_index_json_and_an_existing_target(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        import_killercoda(tmp_path, tmp_path / "out")
    import_killercoda(FIXTURE, tmp_path / "out")
    with pytest.raises(Conflict):
        import_killercoda(FIXTURE, tmp_path / "out")


# -- assets: every form of Killercoda's `details.assets` ---------------------------------------

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(range(256))
"""A PNG's signature and header start, then every byte value (NULs included)."""


def _asset_scenario(root: Path, entries: list[dict[str, str]], imageid: str = "ubuntu") -> Path:
    folder = scenario(
        root,
        {
            "title": "Assets",
            "details": {"steps": [{"title": "Go", "text": "go.md"}], "assets": {"host01": entries}},
            "backend": {"imageid": imageid},
        },
        {
            "go.md": "Go.\n",
            "assets/wait.sh": "#!/bin/sh\nsleep 1\n",
            "assets/conf.yaml": "a: 1\n",
            "assets/app1/readme.md": "# app1\n",
            "assets/app1/cfg/one.json": "{}\n",
            "assets/app2/two.json": "[]\n",
        },
    )
    (folder / "assets/app1/logo.png").write_bytes(PNG)
    return folder


def _files(index_md: Path) -> dict[str, tuple[str, bytes]]:
    """Path in the machine -> (mode, bytes) of the imported tutorial's machine files."""
    front = load_item(index_md).front
    assert isinstance(front, Tutorial) and isinstance(front.playground, Manifest)
    [machine] = front.playground.machines
    return {f.path: (f.mode, f.data()) for f in machine.files}


def test_every_asset_form_lands_where_killercoda_puts_it(tmp_path: Path) -> None:
    folder = _asset_scenario(
        tmp_path / "src",
        [
            {"file": "wait.sh", "target": "/usr/local/bin/", "chmod": "+x"},
            {"file": "conf.yaml", "target": "~/", "chmod": "+w"},
            {"file": "conf.yaml", "target": "~", "chmod": "0600"},
            {"file": "conf.yaml", "target": "etc", "chmod": "u+x,g+w"},
            {"file": "app1/readme.md", "target": "/my/location"},
            {"file": "**/*.json", "target": "/all-json"},
            {"file": "app1/**/*.*", "target": "/app1"},
            {"file": "app*/*.json", "target": "/apps"},
            {"file": "*", "target": "/all"},
        ],
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="assets")

    files = _files(imported.index_md)
    assert files["/usr/local/bin/wait.sh"] == ("0755", b"#!/bin/sh\nsleep 1\n")
    assert files["/root/conf.yaml"] == ("0600", b"a: 1\n")  # the later upload wins
    assert files["/root/etc/conf.yaml"][0] == "0764"
    assert files["/my/location/readme.md"] == ("0644", b"# app1\n")
    assert {p for p in files if p.startswith("/all-json/")} == {
        "/all-json/app1/cfg/one.json",
        "/all-json/app2/two.json",
    }
    assert {p for p in files if p.startswith("/app1/")} == {
        "/app1/readme.md",
        "/app1/cfg/one.json",
        "/app1/logo.png",
    }
    assert {p for p in files if p.startswith("/apps/")} == {"/apps/app2/two.json"}
    assert {p for p in files if p.startswith("/all/")} == {
        "/all/wait.sh",
        "/all/conf.yaml",
        "/all/app1/readme.md",
        "/all/app1/cfg/one.json",
        "/all/app1/logo.png",
        "/all/app2/two.json",
    }
    assert files["/all/app1/logo.png"] == ("0644", PNG)
    assert "index.json: details.assets.host01.2: /root/conf.yaml given twice; the last wins" in (
        imported.warnings
    )


def test_binary_assets_are_copied_once_beside_the_tutorial(tmp_path: Path) -> None:
    folder = _asset_scenario(
        tmp_path / "src",
        [
            {"file": "app1/logo.png", "target": "/srv/a"},
            {"file": "app1/logo.png", "target": "/srv/b", "chmod": "+x"},
        ],
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="bin")

    tutorial = imported.index_md.parent
    text = imported.index_md.read_text()
    assert text.count("source: machine-files/app1/logo.png") == 2
    assert "content_base64" not in text
    assert (tutorial / "machine-files/app1/logo.png").read_bytes() == PNG
    assert _files(imported.index_md) == {
        "/srv/a/logo.png": ("0644", PNG),
        "/srv/b/logo.png": ("0755", PNG),
    }


@pytest.mark.parametrize(
    ("entry", "warning"),
    [
        ({"file": "wait.sh", "target": "/tmp"}, "/tmp is mounted fresh at boot"),
        ({"file": "wait.sh", "target": "/run/x"}, "/run is mounted fresh at boot"),
        ({"file": "nothing-*", "target": "/x"}, "'nothing-*' matches no file"),
        ({"file": "wait.sh", "target": "/x", "chmod": "+q"}, "'+q' is not a mode chmod takes"),
    ],
)
def test_assets_it_cannot_place_are_warned_about_and_left_out(
    tmp_path: Path, entry: dict[str, str], warning: str
) -> None:
    folder = _asset_scenario(tmp_path / "src", [entry, {"file": "conf.yaml", "target": "/ok"}])

    imported = import_killercoda(folder, tmp_path / "out", slug="odd")

    assert any(warning in w for w in imported.warnings), imported.warnings
    files = _files(imported.index_md)
    assert "/ok/conf.yaml" in files
    assert not any(p.startswith(("/tmp", "/run")) for p in files)


def test_an_asset_linking_out_of_the_scenario_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "private").write_text("not the scenario's")
    folder = _asset_scenario(tmp_path / "src", [{"file": "*", "target": "/all"}])
    (folder / "assets/leak.txt").symlink_to(tmp_path / "private")

    imported = import_killercoda(folder, tmp_path / "out", slug="leak")

    assert "/all/leak.txt" not in _files(imported.index_md)
    assert any("leak.txt links outside the scenario" in w for w in imported.warnings)


# -- multi-host backends ----------------------------------------------------------------------


def _hosts_scenario(root: Path, imageid: str, hosts: dict[str, object]) -> Path:
    return scenario(
        root,
        {
            "title": "Hosts",
            "details": {
                "steps": [{"title": "One", "text": "one.md", "verify": "one.sh"}],
                "assets": hosts,
            },
            "backend": {"imageid": imageid},
        },
        {"one.md": "`kubectl get nodes`{{exec}}\n", "one.sh": "true\n", "assets/a.txt": "a\n"},
    )


def test_a_multi_node_backend_becomes_a_multi_machine_playground(tmp_path: Path) -> None:
    folder = _hosts_scenario(
        tmp_path / "src",
        "kubernetes-kubeadm-2nodes",
        {
            "host01": [{"file": "a.txt", "target": "/srv/one"}],
            "host02": [{"file": "a.txt", "target": "/srv/two"}],
            "host07": [{"file": "a.txt", "target": "/srv/seven"}],
        },
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="hosts")

    front = load_item(imported.index_md).front
    assert isinstance(front, Tutorial) and isinstance(front.playground, Manifest)
    machines = {m.name: [f.path for f in m.files] for m in front.playground.machines}
    assert machines == {"node-01": ["/srv/one/a.txt"], "node-02": ["/srv/two/a.txt"], "node-03": []}
    assert any("no k3s-cluster playground here" in w for w in imported.warnings)
    assert any(
        w.startswith(
            "index.json: details.assets.host07: the linux-cluster playground has no machine for it"
        )
        for w in imported.warnings
    )


K3S = """
kind: playground
name: {name}
machines:
{machines}
"""


@pytest.mark.parametrize(
    ("imageid", "built", "expected"),
    [
        ("kubernetes-kubeadm-1node", True, "k3s"),
        ("kubernetes-k3s-1node", True, "k3s"),
        ("kubernetes-kubeadm-2nodes", True, "k3s-cluster"),
        ("kubernetes-kubeadm-2nodes", False, "linux-cluster"),
        ("kubernetes-kubeadm-1node", False, "linux"),
    ],
)
def test_kubernetes_maps_to_k3s_only_when_it_exists_and_is_built(
    tmp_path: Path, imageid: str, built: bool, expected: str
) -> None:
    out = write(
        tmp_path / "out",
        {
            "playgrounds/k3s.yaml": K3S.format(name="k3s", machines="  - {name: k3s, image: k3s}"),
            "playgrounds/k3s-cluster.yaml": K3S.format(
                name="k3s-cluster",
                machines="\n".join(f"  - {{name: node-0{i}, image: k3s}}" for i in (1, 2, 3)),
            ),
        },
    )
    folder = _hosts_scenario(tmp_path / "src", imageid, {})

    imported = import_killercoda(
        folder, out, slug="k8s", has_image=lambda image: built or image != "k3s"
    )

    front = load_item(imported.index_md).front
    assert isinstance(front, Tutorial) and front.playground == expected
    kubernetes_warnings = [w for w in imported.warnings if "Kubernetes is not installed" in w]
    assert len(kubernetes_warnings) == (0 if expected.startswith("k3s") else 1)


def test_ubuntu_scenarios_that_run_docker_get_the_docker_playground(tmp_path: Path) -> None:
    folder = scenario(
        tmp_path / "src",
        {
            "title": "D",
            "details": {"intro": {"text": "intro.md"}},
            "backend": {"imageid": "ubuntu"},
        },
        {"intro.md": "Start it: `docker run -d nginx`{{exec}}\n"},
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="d")

    front = load_item(imported.index_md).front
    assert isinstance(front, Tutorial) and front.playground == "docker"
    assert any("the scenario runs docker" in w for w in imported.warnings)


# -- Markdown actions -------------------------------------------------------------------------


def test_exec_copy_and_interrupt_actions_render_as_buttons(tmp_path: Path) -> None:
    text = (
        "`ls`{{exec}} `top`{{exec interrupt}} `htop`{{ execute  interrupt }} `cat x`{{copy}}\n"
        "`plain`{{}} `two`{{execute T2}}\n\n"
        "```\nuname -r\n```{{exec}}\n\n"
        "```\nwatch date\n```{{exec interrupt}}\n"
    )
    folder = scenario(
        tmp_path / "src",
        {
            "title": "A",
            "details": {"intro": {"text": "intro.md"}},
            "backend": {"imageid": "ubuntu"},
        },
        {"intro.md": text},
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="a")

    html = render_item(load_item(imported.index_md), lambda owner, path: path).html
    assert '<code data-copy="" data-run="">ls</code>' in html
    assert '<code data-copy="" data-run="interrupt">top</code>' in html
    assert '<code data-copy="" data-run="interrupt">htop</code>' in html
    assert '<code data-copy="">cat x</code>' in html
    assert "<code>plain</code>" in html and "{{" not in html.replace("{{.", "")
    assert '<code data-copy="" data-run="">two</code>' in html
    assert "<pre data-copy data-run><code>uname -r\n</code></pre>" in html
    assert '<pre data-copy data-run="interrupt"><code>watch date\n</code></pre>' in html
    assert any("{{execute T2}}" in w and "'T2' is not mapped" in w for w in imported.warnings)


# -- never invalid content --------------------------------------------------------------------


def test_text_that_looks_like_labyard_blocks_stays_text(tmp_path: Path) -> None:
    text = "::simple-task\n:name: nope\n\n::\n\n:::warning\nCareful\n:::\n\n```\n::kept\n```\n"
    folder = scenario(
        tmp_path / "src",
        {
            "title": "B",
            "details": {"steps": [{"title": "S", "text": "s.md"}]},
            "backend": {"imageid": "ubuntu"},
        },
        {"s.md": text},
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="b")

    item = load_item(imported.index_md, strict=True)
    html = render_item(item, lambda owner, path: path).html
    assert "::simple-task" in html and "::kept" in html and 'data-task="nope"' not in html


def test_an_import_that_would_not_validate_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labyard.content import killercoda

    real = killercoda.convert

    def broken(*args: object) -> tuple[dict[str, object], str]:
        front, body = real(*args)  # type: ignore[arg-type]
        return {**front, "tasks": {"step_1": {"run": "true", "needs": ["ghost"]}}}, body

    monkeypatch.setattr(killercoda, "convert", broken)
    out = tmp_path / "out"

    with pytest.raises(ManifestError) as raised:
        import_killercoda(FIXTURE, out)

    problem = raised.value.problems[0]
    assert problem.startswith(f"{out}/tutorials/hello-scenario/index.md:22: tasks.step_1.needs")
    assert "unknown task 'ghost'" in problem
    assert list(out.iterdir()) == []  # no tutorial, no staging folder


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    title=st.one_of(st.text(max_size=300), st.integers(), st.none(), st.lists(st.text())),
    texts=st.lists(
        st.text(alphabet=st.sampled_from(list(":#`{}-\n *_[]()!x:a")), max_size=80),
        min_size=1,
        max_size=3,
    ),
    chmod=st.sampled_from(["+x", "+w", "755", "u+rwx", "nonsense", "0", "a=r", ""]),
    target=st.sampled_from(["~/", "~", "/usr/local/bin", "rel/dir", "/tmp", "/", "/proc/x"]),
    imageid=st.sampled_from(["ubuntu", "kubernetes-kubeadm-2nodes", "docker", "weird", ""]),
)
def test_whatever_the_scenario_the_import_validates(
    tmp_path_factory: pytest.TempPathFactory,
    title: object,
    texts: list[str],
    chmod: str,
    target: str,
    imageid: str,
) -> None:
    root = tmp_path_factory.mktemp("any")
    files = {f"s{i}.md": text for i, text in enumerate(texts)}
    folder = scenario(
        root / "src",
        {
            "title": title,
            "details": {
                "steps": [{"title": t, "text": f"s{i}.md"} for i, t in enumerate(texts)],
                "assets": {
                    "host01": [{"file": "*", "target": target, "chmod": chmod}],
                    "host02": [{"file": "b.bin", "target": target}],
                },
            },
            "backend": {"imageid": imageid},
        },
        {**files, "assets/a.txt": "a\n"},
    )
    (folder / "assets/b.bin").write_bytes(PNG)

    imported = import_killercoda(folder, root / "out", slug="any")

    load_item(imported.index_md, strict=True)  # raises on any problem or note


@pytest.mark.parametrize(
    "raw",
    [
        b"plain\n",
        b"no final newline",
        b"windows\r\nline ends\r\n",
        b"trailing spaces  \n\ttabs\n",
        b" leading space\n",
        "NEL \u0085 and LS \u2028 read as line breaks by YAML\n".encode(),
        "\ufeffa BOM first\n".encode(),
        b"\xff\xfe not UTF-8",
    ],
)
def test_every_asset_arrives_byte_for_byte(tmp_path: Path, raw: bytes) -> None:
    folder = scenario(
        tmp_path / "src",
        {"title": "Bytes", "details": {"assets": {"host01": [{"file": "f", "target": "/srv"}]}}},
    )
    (folder / "assets").mkdir()
    (folder / "assets/f").write_bytes(raw)

    imported = import_killercoda(folder, tmp_path / "out", slug="bytes")

    assert _files(imported.index_md) == {"/srv/f": ("0644", raw)}


def test_files_outside_the_scenario_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "secret.md").write_text("the author's private notes\n")
    folder = scenario(
        tmp_path / "src",
        {"title": "Out", "details": {"intro": {"text": "../secret.md"}}},
    )

    imported = import_killercoda(folder, tmp_path / "out", slug="out")

    assert "private notes" not in imported.index_md.read_text()
    assert "index.json: details.intro.text: '../secret.md' is outside the scenario; left out" in (
        imported.warnings
    )
