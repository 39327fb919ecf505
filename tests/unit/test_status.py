"""The transition table: every listed move is allowed, every other move raises, terminal statuses are final."""

from __future__ import annotations

import itertools

import pytest

from geomill.domain import IllegalTransition, JobStatus, TaskStatus, check_job_transition, check_task_transition
from geomill.domain.status import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    TASK_TERMINAL,
    TASK_TRANSITIONS,
    job_sources,
    task_sources,
)

# The lifecycle of DESIGN.md §3, written out independently of the code's table.
EXPECTED_JOB = {
    ("queued", "processing"), ("queued", "failed"), ("queued", "cancelled"),
    ("processing", "processing"), ("processing", "completed"), ("processing", "completed_with_errors"),
    ("processing", "failed"), ("processing", "cancelled"),
}
EXPECTED_TASK = {
    ("queued", "processing"), ("queued", "cancelled"), ("queued", "failed"),
    ("processing", "completed"), ("processing", "failed"), ("processing", "queued"), ("processing", "cancelled"),
}


def test_every_status_has_a_row_in_the_table() -> None:
    assert set(JOB_TRANSITIONS) == set(JobStatus)
    assert set(TASK_TRANSITIONS) == set(TaskStatus)


def test_job_table_is_the_documented_lifecycle() -> None:
    table = {(str(a), str(b)) for a, targets in JOB_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED_JOB


def test_task_table_is_the_documented_lifecycle() -> None:
    table = {(str(a), str(b)) for a, targets in TASK_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED_TASK


@pytest.mark.parametrize(("current", "new"), list(itertools.product(JobStatus, JobStatus)))
def test_job_transition_pairs(current: JobStatus, new: JobStatus) -> None:
    if (str(current), str(new)) in EXPECTED_JOB:
        check_job_transition(current, new)
    else:
        with pytest.raises(IllegalTransition, match=f"from {current} to {new}"):
            check_job_transition(current, new)


@pytest.mark.parametrize(("current", "new"), list(itertools.product(TaskStatus, TaskStatus)))
def test_task_transition_pairs(current: TaskStatus, new: TaskStatus) -> None:
    if (str(current), str(new)) in EXPECTED_TASK:
        check_task_transition(current, new)
    else:
        with pytest.raises(IllegalTransition, match=f"from {current} to {new}"):
            check_task_transition(current, new)


def test_checks_accept_plain_strings_as_stored_by_the_database() -> None:
    check_job_transition("queued", JobStatus.PROCESSING)  # type: ignore[arg-type]
    with pytest.raises(IllegalTransition):
        check_task_transition("completed", TaskStatus.QUEUED)  # type: ignore[arg-type]


def test_terminal_statuses_have_no_way_out() -> None:
    assert JOB_TERMINAL == {JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED,
                            JobStatus.CANCELLED}
    assert TASK_TERMINAL == {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
    for status in JobStatus:
        assert status.is_terminal == (not JOB_TRANSITIONS[status])
    for status in TaskStatus:
        assert status.is_terminal == (not TASK_TRANSITIONS[status])
    for terminal, new in itertools.product(JOB_TERMINAL, JobStatus):
        with pytest.raises(IllegalTransition):
            check_job_transition(terminal, new)
    for terminal, new in itertools.product(TASK_TERMINAL, TaskStatus):
        with pytest.raises(IllegalTransition):
            check_task_transition(terminal, new)


@pytest.mark.parametrize("new", list(JobStatus))
def test_job_sources_are_exactly_the_statuses_allowed_to_move_there(new: JobStatus) -> None:
    sources = job_sources(new)
    assert len(sources) == len(set(sources))
    assert set(sources) == {s for s in JobStatus if (str(s), str(new)) in EXPECTED_JOB}
    assert not set(sources) & JOB_TERMINAL


@pytest.mark.parametrize("new", list(TaskStatus))
def test_task_sources_are_exactly_the_statuses_allowed_to_move_there(new: TaskStatus) -> None:
    sources = task_sources(new)
    assert len(sources) == len(set(sources))
    assert set(sources) == {s for s in TaskStatus if (str(s), str(new)) in EXPECTED_TASK}
    assert not set(sources) & TASK_TERMINAL


def test_nothing_moves_back_to_queued_for_jobs() -> None:
    assert job_sources(JobStatus.QUEUED) == []
    assert task_sources(TaskStatus.QUEUED) == [TaskStatus.PROCESSING]  # a retry or a reclaimed lease
