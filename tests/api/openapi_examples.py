"""Requests built from the app's own OpenAPI spec, so tests cover new endpoints unasked."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def path_params(template: str) -> list[str]:
    return _PARAM.findall(template)


def fill(template: str, values: dict[str, Any]) -> str:
    """`/a/{x}/{y:path}` with values[x], values[y] (URL-quoted); fails on a missing one."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            pytest.fail(f"no test value for path parameter {name!r} in {template}: add one")
        return quote(str(values[name]), safe="")

    return _PARAM.sub(one, template)


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s and pick the first non-null `anyOf`/`oneOf`/`allOf` branch."""
    while True:
        if "$ref" in schema:
            target: Any = spec
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            schema = target
            continue
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [s for s in schema[key] if s.get("type") != "null"]
                schema = options[0]
                break
        else:
            return schema


def example(
    schema: dict[str, Any], spec: dict[str, Any], values: dict[str, Any], name: str = ""
) -> Any:
    """A small valid instance of a JSON schema: required fields only, `values` by name."""
    schema = resolve(schema, spec)
    if name in values:
        return values[name]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {k: example(properties[k], spec, values, k) for k in schema.get("required", [])}
    if kind in ("integer", "number"):
        if "minimum" in schema:
            return schema["minimum"]
        return schema.get("exclusiveMinimum", 0) + 1
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return "example-value"


def json_body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema: dict[str, Any] = content["application/json"]["schema"]
    return schema


def body_for(operation: dict[str, Any], spec: dict[str, Any], values: dict[str, Any]) -> Any:
    schema = json_body_schema(operation)
    return None if schema is None else example(schema, spec, values)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation in the spec."""
    return [
        (method.upper(), path, operation)
        for path, ops in spec["paths"].items()
        for method, operation in ops.items()
    ]
