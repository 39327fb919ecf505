"""Solvers for test contracts (named by reference in their manifests): one that keeps its contract, one that breaks
it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def echo(inputs: Mapping[str, Any], engine: Mapping[str, str]) -> dict[str, Any]:
    """Keeps the echo contract: {"echo": <inputs.text>, "engine": ...}."""
    return {"echo": inputs["text"], "engine": dict(engine)}


def broken(inputs: Mapping[str, Any], engine: Mapping[str, str]) -> dict[str, Any]:
    """Breaks it: `echo` must be a string."""
    return {"echo": 42, "engine": dict(engine)}
