"""The manifest's `egress`: true, false or a list of destinations, with line-precise errors."""

from __future__ import annotations

import json

import pytest

from labyard.errors import ManifestError
from labyard.manifest import Manifest, json_schema, manifest_from_text
from labyard.manifest.models import parse_destination

BASE = "name: x\nmachines:\n  - name: a\n"  # lines 1-3; `egress` starts on line 4


def problems_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        manifest_from_text(text, "m.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [("true", True), ("false", False), ("yes", True), ("[]", ()), (None, True)],
)
def test_booleans_keep_working(yaml: str | None, expected: object) -> None:
    text = BASE if yaml is None else f"{BASE}egress: {yaml}\n"
    assert manifest_from_text(text, "m.yaml").egress == expected


def test_a_list_of_destinations() -> None:
    entries = ["10.1.2.3", "10.1.2.3:443", "10.0.0.0/8", "10.0.0.0/8:53", "registry.lan:5000"]
    manifest = manifest_from_text(BASE + f"egress: {json.dumps(entries)}\n", "m.yaml")
    assert manifest.egress == tuple(entries)


@pytest.mark.parametrize("egress", [True, False, ("203.0.113.10:443", "registry.lan")])
def test_egress_survives_the_database_round_trip(egress: bool | tuple[str, ...]) -> None:
    manifest = manifest_from_text(BASE, "m.yaml").model_copy(update={"egress": egress})
    again = Manifest.model_validate(json.loads(json.dumps(manifest.model_dump(mode="json"))))
    assert again.egress == egress


def test_each_bad_entry_is_reported_on_its_own_line() -> None:
    problems = problems_of(
        BASE
        + "egress:\n"  # 4
        + "  - 203.0.113.10:443\n"  # 5
        + "  - 10.1.2.3:0\n"  # 6
        + "  - 'bad host'\n"  # 7
        + "  - 10.1.2.3/8\n"  # 8
        + "  - '2001:db8::1'\n"  # 9
        + "  - 5\n"  # 10
    )
    assert problems == [
        "m.yaml:6: egress.1: '10.1.2.3:0': the port must be a number from 1 to 65535",
        "m.yaml:7: egress.2: 'bad host' is not a destination; "
        "write HOST, HOST:PORT or a CIDR such as 10.1.0.0/16",
        "m.yaml:8: egress.3: '10.1.2.3/8' is not an IPv4 address or network "
        "(10.1.2.3/8 has host bits set)",
        "m.yaml:9: egress.4: '2001:db8::1': IPv6 destinations are never reachable (no IPv6 egress)",
        "m.yaml:10: egress.5: 5 is not a destination; "
        "write HOST, HOST:PORT or a CIDR such as 10.1.0.0/16",
    ]


@pytest.mark.parametrize("value", ["maybe", "5", "203.0.113.10", "{a: b}"])
def test_anything_else_is_one_clear_error(value: str) -> None:
    assert problems_of(f"{BASE}egress: {value}\n") == [
        "m.yaml:4: egress: must be true, false or a list of destinations (HOST[:PORT] or CIDR)"
    ]


def test_the_list_is_bounded() -> None:
    entries = [f"203.0.113.{i}" for i in range(65)]
    problems = problems_of(f"{BASE}egress: {json.dumps(entries)}\n")
    assert problems == ["m.yaml:4: egress: at most 64 egress destinations"]


@pytest.mark.parametrize(
    ("text", "network", "port"),
    [
        ("10.1.2.3", "10.1.2.3/32", None),
        (" 10.1.2.3:443 ", "10.1.2.3/32", 443),
        ("10.0.0.0/8:53", "10.0.0.0/8", 53),
        ("Registry.LAN", None, None),
        ("registry.lan.:5000", None, 5000),
    ],
)
def test_parse_destination(text: str, network: str | None, port: int | None) -> None:
    parsed = parse_destination(text)
    assert (str(parsed.network) if parsed.network else None, parsed.port) == (network, port)
    if network is None:
        assert parsed.host == text.strip().split(":")[0].lower()


@pytest.mark.parametrize(
    "text", ["", ":443", "host:", "host:x", "host:65536", "1.2.3", "300.1.1.1", "-a.b", "[::1]:80"]
)
def test_parse_destination_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_destination(text)
    assert str(caught.value).startswith(repr(text.strip()))


def test_json_schema_says_bool_or_list() -> None:
    egress = json.loads(json_schema())["properties"]["egress"]
    assert {"type": "boolean"} in egress["anyOf"]
    assert {"type": "array", "items": {"type": "string"}, "maxItems": 64} in egress["anyOf"]
