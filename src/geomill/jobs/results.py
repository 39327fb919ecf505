"""What a plan or a finalizer reads of earlier stages, by stage name: one helper for every job type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from geomill.domain.models import FinishedStage


def stage(previous: Sequence[FinishedStage], name: str) -> FinishedStage | None:
    """The finished stage named `name`, or None when it has not run."""
    return next((done for done in previous if done.name == name), None)


def stage_results(previous: Sequence[FinishedStage], name: str) -> dict[str, dict[str, Any]]:
    """All completed results of the stage named `name`, by task key ({} when it has not run)."""
    done = stage(previous, name)
    return done.results if done else {}


def stage_errors(previous: Sequence[FinishedStage], name: str) -> dict[str, dict[str, Any]]:
    """The errors of the failed tasks of the stage named `name`, by task key."""
    done = stage(previous, name)
    return done.errors if done else {}


def stage_result(previous: Sequence[FinishedStage], name: str, key: str) -> dict[str, Any] | None:
    """The result of task `key` of the stage named `name`, or None when it did not complete."""
    return stage_results(previous, name).get(key)
