"""Submission, stage planning, exactly-once stage advancement and finalization."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice
from typing import Any, overload

from pydantic import BaseModel, ValidationError

from geomill.domain import (
    Event,
    EventKind,
    FailurePolicy,
    FinishedStage,
    InvalidInput,
    Job,
    JobStatus,
    NewJob,
    NewTask,
    Stage,
    StageResults,
    StoreError,
    TaskSpec,
    TaskStatus,
    make_job_id,
    make_task_id,
)
from geomill.engine.ports import JobStore
from geomill.engine.registry import JobType, Registry
from geomill.engine.routing import Router
from geomill.faults import fault_point

log = logging.getLogger(__name__)

# A stage's tasks go in as one transaction up to FIRST_CHUNK tasks. A larger plan inserts FIRST_CHUNK tasks with the
# stage (workers start on them at once), then commits the rest CHUNK at a time: the gap between stages no longer
# grows with N. Plans may be generators; they are consumed chunk by chunk.
FIRST_CHUNK = 256
CHUNK = 2_000


def validation_message(exc: ValidationError) -> str:
    """One line per field problem, e.g. ``n: Input should be a valid integer (got 'abc')``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(parameters)"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"{loc}: {err['msg']}{got}")
    return "; ".join(lines)


def parse_params(model: type[BaseModel], params: dict[str, Any]) -> BaseModel:
    """Validate parameters with the model; a problem becomes InvalidInput naming each field."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise invalid_parameters(exc) from exc


def invalid_parameters(exc: ValidationError) -> InvalidInput:
    """A validation failure as InvalidInput: the message and one error per field (the API's 422 body)."""
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ())) or "(parameters)", "message": e["msg"]}
              for e in exc.errors()]
    return InvalidInput(f"invalid parameters: {validation_message(exc)}", errors=errors)


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool


def submitted(job: Job, created: bool) -> Submission:
    """A stored submission, logged (the store said whether it was new)."""
    log.info("job %s", "submitted" if created else "already exists", extra={"job_id": job.job_id})
    return Submission(job, created)


class Orchestrator:
    """Turns events into stage plans; every advance is a compare-and-set on the job's stage."""

    def __init__(self, registry: Registry, store: JobStore, router: Router | None = None) -> None:
        self.registry = registry
        self.store = store
        self.router = router or Router()

    # submission
    def validate(self, job_type: str, params: dict[str, Any]) -> tuple[JobType, dict[str, Any]]:
        """The job type and its canonical parameters; InvalidInput (or UnknownJobType) when they are wrong."""
        jt = self.registry.job_type(job_type)
        return jt, parse_params(jt.params_model, params).model_dump(mode="json")

    def new_job(self, job_type: str, params: dict[str, Any], *, resubmit_of: str | None = None,
                correlation_id: str | None = None) -> NewJob:
        """The job to store for a submission: validated, canonical parameters, its deterministic id."""
        jt, canonical = self.validate(job_type, params)
        job_id = make_job_id(job_type, canonical, lineage=resubmit_of)
        return NewJob(job_id, job_type, canonical, len(jt.stages), jt.deadline_seconds, resubmit_of, correlation_id)

    def submit(self, job_type: str, params: dict[str, Any], *, resubmit_of: str | None = None,
               correlation_id: str | None = None) -> Submission:
        """Validate and store a job; the same job type and parameters give back the existing job."""
        new = self.new_job(job_type, params, resubmit_of=resubmit_of, correlation_id=correlation_id)
        return submitted(*self.store.create_job(new))

    def resubmit(self, job_id: str, correlation_id: str | None = None) -> Submission:
        """A fresh run of a finished job, with an id derived from the one it re-runs."""
        job = self.store.get_job(job_id)
        if not job.status.is_terminal:
            raise InvalidInput(f"job {job_id} is {job.status}; only a finished job can be resubmitted")
        return self.submit(job.job_type, job.params, resubmit_of=job_id,
                           correlation_id=correlation_id or job.correlation_id)

    # events
    def handle_event(self, event: Event) -> None:
        """Advance the job the event names if, and only if, the database says it is due."""
        job = self.store.get_job(event.job_id)
        if job.status.is_terminal:
            return
        done = 0 if event.kind is EventKind.JOB_SUBMITTED else event.stage
        try:
            if job.stage == done + 1:
                self._resume_stage(job)  # a planner died between chunks: its event came back to finish the work
            elif job.stage == done and (done == 0 or self._stage_finished(job.job_id, done)):
                self._advance(job, done)
            # else: a duplicate or stale event, the compare-and-set already happened
        except StoreError:
            raise  # transient: the event is not acknowledged and comes back after its visibility timeout
        except Exception as exc:  # a plan or finalizer that raises is a job failure, not a retry loop
            if isinstance(exc, InvalidInput):  # refused input (e.g. incompatible rasters): the message says it all
                log.warning("job refused while planning: %s", exc, extra={"job_id": job.job_id})
            else:
                log.exception("advancing job failed", extra={"job_id": job.job_id})
            stage = self.store.get_job(job.job_id).stage  # a plan failing in a later chunk has started its stage
            cause = "invalid_input" if isinstance(exc, InvalidInput) else "platform"
            self._fail(job, stage, {"type": type(exc).__name__, "cause": cause, "message": str(exc), "stage": stage},
                       stage_done=stage == done)

    def _stage_finished(self, job_id: str, stage: int) -> bool:
        row = self.store.get_stage(job_id, stage)
        return row is not None and row.remaining == 0

    def _stage_failures(self, job_id: str, stage: int) -> int:
        """From the stage's counter row (O(1)); the failed tasks themselves are read only when there are some."""
        row = self.store.get_stage(job_id, stage)
        return row.failed if row is not None else 0

    def _previous(self, job: Job, jt: JobType, done: int) -> LazyStageResults:
        return LazyStageResults(
            [StageView(jt.stages[k - 1].name, partial(self.stage_results, job.job_id, k, jt),
                       partial(self.store.get_stage, job.job_id, k)) for k in range(1, done + 1)])

    def _advance(self, job: Job, done: int) -> None:
        jt = self.registry.job_type(job.job_type)
        params = jt.params_model.model_validate(job.params)
        previous = self._previous(job, jt, done)
        if done > 0 and self._stage_failed_job(job, done, jt, params, previous):
            return
        if done == len(jt.stages):
            self._finalize(job, jt, params, previous)
            return
        spec = jt.stages[done]
        plan = iter(spec.plan(params, previous))
        seen: set[str] = set()
        first = self._new_tasks(job.job_id, done + 1, list(islice(plan, FIRST_CHUNK)), seen)
        peek = next(plan, None)  # one more spec says "unsealed" without planning a whole chunk inside the gap
        if not self.store.start_stage(job.job_id, done + 1, spec.name, spec.policy_for(params), first,
                                      sealed=peek is None):
            return
        total = len(first)
        if peek is not None:
            fault_point("between_stage_chunks")
            rest = self._chunks(job.job_id, done + 1, chain([peek], plan), CHUNK, seen)
            total += self._insert_rest(job.job_id, done + 1, len(first), next(rest), rest)
        log.info("stage %d (%s) planned with %d tasks", done + 1, spec.name, total, extra={"job_id": job.job_id})

    def _resume_stage(self, job: Job) -> None:
        """Finish inserting a stage whose planner stopped between chunks (its plan is deterministic: skip what is
        in, insert the rest). Nothing to do when the stage is sealed, the normal case for a stale event."""
        row = self.store.get_stage(job.job_id, job.stage)
        if row is None or row.sealed:
            return
        jt = self.registry.job_type(job.job_type)
        params = jt.params_model.model_validate(job.params)
        plan = iter(jt.stages[job.stage - 1].plan(params, self._previous(job, jt, job.stage - 1)))
        rest = self._chunks(job.job_id, job.stage, islice(plan, row.total, None), CHUNK)
        log.warning("resuming the insert of stage %d after %d tasks", job.stage, row.total,
                    extra={"job_id": job.job_id})
        self._insert_rest(job.job_id, job.stage, row.total, next(rest, []), rest)

    def _insert_rest(self, job_id: str, stage: int, inserted: int, chunk: list[NewTask],
                     chunks: Iterator[list[NewTask]]) -> int:
        """Insert `chunk` and then every chunk of `chunks`, each in its own transaction; the last seals the stage.
        Returns how many were inserted; stops early when another planner got there first."""
        added = 0
        while True:
            following = next(chunks, None)
            if not self.store.add_stage_tasks(job_id, stage, chunk, expected_total=inserted + added,
                                              seal=following is None):
                log.info("stage %d: another planner is inserting it", stage, extra={"job_id": job_id})
                return added
            added += len(chunk)
            if following is None:
                return added
            chunk = following

    def _chunks(self, job_id: str, stage: int, plan: Iterable[TaskSpec], size: int,
                seen: set[str] | None = None) -> Iterator[list[NewTask]]:
        """The plan as validated, routed NewTask lists of `size` tasks; `seen` holds the keys already planned."""
        specs = iter(plan)
        seen = set() if seen is None else seen
        while batch := list(islice(specs, size)):
            yield self._new_tasks(job_id, stage, batch, seen)

    def _stage_failed_job(self, job: Job, done: int, jt: JobType, params: BaseModel,
                          previous: LazyStageResults) -> bool:
        spec = jt.stages[done - 1]
        if spec.policy_for(params) is FailurePolicy.TOLERATE or not self._stage_failures(job.job_id, done):
            return False
        results = previous[done - 1]
        if not results.errors:
            return False
        first_key = sorted(results.errors)[0]
        first = results.errors[first_key]
        error = {
            "type": "StageFailed",
            "cause": failure_cause(results.errors.values()),
            "message": f"stage {done} ({spec.name}): {len(results.errors)} task(s) failed; "
                       f"first, {first_key}: {first.get('type')}: {first.get('message')}",
            "stage": done,
            "failed_tasks": [make_task_id(job.job_id, done, k) for k in sorted(results.errors)],
        }
        self._fail(job, done, error)
        return True

    def _finalize(self, job: Job, jt: JobType, params: BaseModel, previous: Sequence[FinishedStage]) -> None:
        result = jt.finalize(params, previous)
        tolerated = sum(self._stage_failures(job.job_id, k) for k in range(1, len(previous) + 1))
        status = JobStatus.COMPLETED_WITH_ERRORS if tolerated else JobStatus.COMPLETED
        if self.store.finish_job(job.job_id, job.stage, status, result, None, stage_done=True):
            log.info("job %s", status, extra={"job_id": job.job_id})

    def _fail(self, job: Job, stage: int, error: dict[str, Any], stage_done: bool = True) -> None:
        if self.store.finish_job(job.job_id, stage, JobStatus.FAILED, None, error, stage_done=stage_done):
            log.warning("job failed: %s", error.get("message"), extra={"job_id": job.job_id})

    def _new_tasks(self, job_id: str, stage: int, plan: list[TaskSpec], seen: set[str]) -> list[NewTask]:
        keys = {s.key for s in plan}
        if len(keys) != len(plan) or not seen.isdisjoint(keys):
            raise InvalidInput(f"stage {stage} plan repeats task keys")
        seen.update(keys)
        tasks = []
        for spec in plan:
            tt = self.registry.task_type(spec.task_type)
            params = parse_params(tt.params_type, spec.params).model_dump(mode="json")
            tasks.append(NewTask(
                task_id=make_task_id(job_id, stage, spec.key), task_key=spec.key, task_type=tt.name,
                params=params, target_queue=self.router.queue_for(tt, spec),
                max_attempts=tt.retry.max_attempts, timeout_seconds=tt.timeout_seconds,
            ))
        return tasks

    def stage_results(self, job_id: str, stage: int, jt: JobType | None = None) -> StageResults:
        """Results of a stage's completed tasks and errors of its failed ones, read from the store."""
        if jt is None:
            jt = self.registry.job_type(self.store.get_job(job_id).job_type)
        results: dict[str, dict[str, Any]] = {}
        errors: dict[str, dict[str, Any]] = {}
        for key, status, result, error in self.store.stage_outcomes(job_id, stage):
            if status == TaskStatus.COMPLETED:
                results[key] = result or {}
            else:
                errors[key] = error or {}
        return StageResults(jt.stages[stage - 1].name, results, errors)


def failure_cause(errors: Iterable[Mapping[str, Any]]) -> str:
    """A failed job's cause: ``invalid_input`` when every failed task refused its input (exit 2 for `geomill run`),
    else ``platform`` (something a retry, an operator or a fix of geomill may cure)."""
    causes = [e.get("cause") or ("invalid_input" if e.get("type") == "InvalidInput" else "platform") for e in errors]
    return "invalid_input" if causes and all(c == "invalid_input" for c in causes) else "platform"


class StageView:
    """A finished stage as plans and finalizers see it (the StageResults interface): its counts come from the
    stage's counter row, its results and errors are read from the store only when first looked at."""

    def __init__(self, name: str, load: Callable[[], StageResults], row: Callable[[], Stage | None]) -> None:
        self.name = name
        self._load, self._row = load, row
        self._loaded: StageResults | None = None

    def _full(self) -> StageResults:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        return self._full().results

    @property
    def errors(self) -> dict[str, dict[str, Any]]:
        return self._full().errors

    @property
    def completed_count(self) -> int:
        row = self._row()
        return (row.total - row.remaining - row.failed) if row else self._full().completed_count

    @property
    def failed_count(self) -> int:
        row = self._row()
        return row.failed if row else self._full().failed_count


class LazyStageResults(Sequence[StageView]):
    """The previous stages, each read only when a plan or finalizer looks at it: a plan that ignores them (fan-out
    of N independent tasks) costs no read, and a finalizer that only counts reads the counter rows."""

    def __init__(self, stages: list[StageView]) -> None:
        self._stages = stages

    def __len__(self) -> int:
        return len(self._stages)

    @overload
    def __getitem__(self, index: int) -> StageView: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[StageView]: ...

    def __getitem__(self, index: int | slice) -> StageView | Sequence[StageView]:
        return self._stages[index]
