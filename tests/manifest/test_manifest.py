"""Manifest parsing and validation: pure, fast, no host resources."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from labyard.errors import ManifestError, NotFound
from labyard.manifest import (
    Manifest,
    builtin_names,
    json_schema,
    load_manifest,
    manifest_from_text,
)
from labyard.manifest.models import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("512MiB", 512 << 20),
        ("512M", 512 << 20),
        ("2G", 2 << 30),
        ("1gb", 1 << 30),
        ("1.5GiB", 3 << 29),
        ("10k", 10 << 10),
        (" 1 TiB ", 1 << 40),
    ],
)
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "12 parsecs", "-1G", "1.2.3G", "G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(42, 42), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), (" 5 m ", 300)],
)
def test_parse_duration(text: object, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "1.5h", "10w", "", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_sizes_and_durations_in_a_manifest() -> None:
    manifest = manifest_from_text(
        "name: x\nlifetime: 2h\nmachines:\n  - name: a\n    memory: 256MiB\n    disk: 1G\n",
        "x.yaml",
    )
    assert manifest.lifetime == 7200
    assert manifest.machines[0].memory == 256 << 20
    assert manifest.machines[0].disk == 1 << 30
    assert [n.name for n in manifest.networks] == ["default"]


def test_builtin_manifests_all_load() -> None:
    names = builtin_names()
    assert {"linux", "linux-cluster", "docker"} <= set(names)
    for name in names:
        manifest = load_manifest(name)
        assert manifest.name == name
        assert manifest.machines
    assert [m.name for m in load_manifest("linux-cluster").machines] == [
        "node-01",
        "node-02",
        "node-03",
    ]


def test_unknown_builtin_is_not_found() -> None:
    with pytest.raises(NotFound, match="linux-cluster"):
        load_manifest("nosuch")
    with pytest.raises(NotFound, match="does not exist"):
        load_manifest("/nonexistent/playground.yaml")


def problems_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        manifest_from_text(text, "m.yaml")
    return caught.value.problems


def test_field_errors_name_line_and_path() -> None:
    problems = problems_of(
        "name: x\n"  # 1
        "machines:\n"  # 2
        "  - name: a\n"  # 3
        "    image: linux\n"  # 4
        "    memory: lots\n"  # 5
        "    colour: red\n"  # 6
    )
    assert len(problems) == 2, problems
    memory = next(p for p in problems if "memory" in p)
    assert memory.startswith("m.yaml:5: machines.0.memory: "), memory
    assert "'lots' is not a size" in memory
    extra = next(p for p in problems if "colour" in p)
    assert extra.startswith("m.yaml:6: machines.0.colour: "), extra


def test_duplicate_machine_names() -> None:
    problems = problems_of("name: x\nmachines:\n  - name: a\n  - name: b\n  - name: a\n")
    assert problems == ["m.yaml:5: machines.2.name: name 'a' is used twice"]


def test_unknown_needs() -> None:
    problems = problems_of(
        "name: x\n"
        "machines:\n"
        "  - name: a\n"
        "init:\n"
        "  - name: one\n"  # 5
        "    run: 'true'\n"
        "    needs: [two]\n"  # 7
    )
    assert len(problems) == 1, problems
    assert problems[0].startswith("m.yaml:7: init.0.needs.0: unknown task 'two'"), problems


def test_needs_cycle() -> None:
    problems = problems_of(
        "name: x\n"
        "machines:\n"
        "  - name: a\n"
        "init:\n"
        "  - name: one\n"  # 5
        "    run: 'true'\n"
        "    needs: [three]\n"  # 7
        "  - name: two\n"
        "    run: 'true'\n"
        "    needs: [one]\n"  # 10
        "  - name: three\n"
        "    run: 'true'\n"
        "    needs: [two]\n"  # 13
    )
    assert len(problems) == 1, problems
    assert re.match(r"m\.yaml:(7|10|13): init\.\d\.needs: init tasks need each other", problems[0])
    assert "one" in problems[0] and "two" in problems[0] and "three" in problems[0]


def test_self_need_is_a_cycle() -> None:
    problems = problems_of(
        "name: x\nmachines: [{name: a}]\ninit:\n  - {name: t, run: x, needs: [t]}\n"
    )
    assert problems == ["m.yaml:4: init.0.needs: init tasks need each other: t -> t"]


def test_unknown_network_machine() -> None:
    problems = problems_of(
        "name: x\n"
        "machines:\n"
        "  - name: a\n"
        "networks:\n"
        "  - name: front\n"
        "    machines:\n"
        "      - a\n"
        "      - b\n"  # 8
    )
    assert problems == [
        "m.yaml:8: networks.0.machines.1: unknown machine 'b' (known: a)",
    ]


def test_unknown_task_machine() -> None:
    problems = problems_of(
        "name: x\nmachines:\n  - name: a\ninit:\n  - name: t\n    machine: zz\n    run: 'true'\n"
    )
    assert problems == ["m.yaml:6: init.0.machine: unknown machine 'zz' (known: a)"]


def test_invalid_yaml_reports_its_line() -> None:
    problems = problems_of("name: x\nmachines:\n  - name: a\n    memory: [1, 2\n  - name: b\n")
    assert len(problems) == 1
    match = re.match(r"m\.yaml:(\d+): invalid YAML: ", problems[0])
    assert match is not None, problems
    assert int(match.group(1)) in (4, 5), problems


def test_not_a_mapping() -> None:
    assert problems_of("- just\n- a list\n") == [
        "m.yaml:1: (top level): a manifest is a mapping of fields"
    ]


def test_no_machines() -> None:
    problems = problems_of("name: x\nmachines: []\n")
    assert len(problems) == 1 and problems[0].startswith("m.yaml:2: machines: "), problems


def test_manifest_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: Bad_Name\nmachines:\n  - name: a\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(str(path))
    assert caught.value.problems[0].startswith(f"{path}:1: name: "), caught.value.problems


def test_json_schema_export() -> None:
    schema = json.loads(json_schema())
    assert schema["title"] == "Manifest"
    assert "machines" in schema["properties"]
    assert "machines" in schema["required"] and "name" in schema["required"]
    assert schema == Manifest.model_json_schema()


def test_init_env_may_use_only_what_the_task_needs() -> None:
    problems = problems_of(
        "name: x\n"
        "machines:\n"
        "  - name: a\n"
        "init:\n"
        "  - name: token\n"
        "    run: echo secret\n"
        "  - name: join\n"
        "    needs: [token]\n"
        "    env:\n"
        "      - 'TOKEN=x(.needs.token.stdout)'\n"  # 10: fine
        "      - 'OTHER=x(.needs.join.stdout)'\n"  # 11: not needed
        "      - 'ANSWER=x(.input)'\n"  # 12: no learner here
        "      - 'not an entry'\n"  # 13
        "    run: echo $TOKEN\n"
    )
    assert problems == ["m.yaml:13: init.1.env.3: env entry 'not an entry' is not NAME=value"]
    problems = problems_of(
        "name: x\nmachines:\n  - name: a\ninit:\n  - name: token\n    run: echo secret\n"
        "  - name: join\n    needs: [token]\n    run: echo $TOKEN\n    env:\n"
        "      - 'TOKEN=x(.needs.token.stdout)'\n"  # 11
        "      - 'OTHER=x(.needs.join.stdout)'\n"  # 12
        "      - 'ANSWER=x(.input)'\n"  # 13
    )
    assert problems == [
        "m.yaml:12: init.1.env.1: uses the output of 'join', not in its needs",
        "m.yaml:13: init.1.env.2: init tasks take no x(.input)",
    ]
