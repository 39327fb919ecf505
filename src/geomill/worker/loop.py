"""One worker's loop: handle orchestration events, claim a task, run it under a lease, record the outcome."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from geomill.domain import Event, NotFound, RegistryError, StoreError, Task
from geomill.engine.execution import Outcome, error_record, run_task
from geomill.engine.ports import TaskOutcome
from geomill.engine.registry import JOBS_QUEUE
from geomill.faults import fault_point
from geomill.logs import correlation_id_var
from geomill.runtime import Runtime
from geomill.worker.gdal_messages import NativeStderr, task_messages
from geomill.worker.heartbeat import Heartbeat
from geomill.worker.timeouts import soft_time_limit

log = logging.getLogger(__name__)

SlotSetter = Callable[[Task | None], None]
SHORT_TASK = 0.2  # seconds: tasks shorter than this are claimed `prefetch` at a time
EVENT_POLL = 0.05  # seconds between event polls while tasks keep a worker busy (one query saved per task)
FLUSH_AFTER = 0.05  # seconds a finished short task may wait for its batch's single completion commit


def release_events_of_silent_hosts(runtime: Runtime, *, log_it: bool = True) -> int:
    """Take back the events held by planners of other app names (hosts) whose supervisor has not reported in the
    workers table within three janitor intervals: the host or its supervisor is gone (a live supervisor restarts a
    dead planner, which takes its events back itself). Run when a planner starts and by the janitor."""
    window = runtime.settings.janitor_interval_seconds * 3
    own = f"{runtime.settings.app_name}#"
    others = [c for c in runtime.store.event_claimants() if not c.startswith(own)]
    if not others:
        return 0
    reporting = {str(w.get("app_name") or w["worker_id"].rpartition("#")[0]) for w in runtime.store.list_workers(window)}
    released = sum(runtime.store.release_claimed_events(c) for c in others if c.rpartition("#")[0] not in reporting)
    if released and log_it:  # the janitor's repair: logged and counted like the others
        log.warning("took back %d event(s) held by planners of hosts that stopped reporting", released)
        runtime.store.bump_counter("released_events", released)
    return released


class WorkerLoop:
    """Listens to `queues` (logical names); the ``jobs`` queue means this worker also plans stages."""

    def __init__(self, runtime: Runtime, queues: list[str], *, stop: threading.Event | None = None,
                 on_task: SlotSetter | None = None, on_lease_expired: Callable[[], None] | None = None) -> None:
        self.rt = runtime
        self.on_lease_expired = on_lease_expired  # a pool process: the supervisor kills a task that will not stop
        names = runtime.settings.queue_names
        self.handles_events = JOBS_QUEUE in queues
        self.task_queues = [names.get(q, q) for q in queues if q != JOBS_QUEUE]
        self.wait_queues = [names.get(q, q) for q in queues]
        self.stop = stop or threading.Event()
        self.on_task = on_task or (lambda task: None)
        self.app = f"{runtime.settings.app_name}#{os.getpid()}"
        self.orchestrator = runtime.orchestrator
        self._next_event_poll = 0.0  # while busy with tasks, look for events at most every EVENT_POLL seconds
        self._prefetched: deque[Task] = deque()
        self._last_task_seconds = float("inf")
        self._finished: list[tuple[Task, dict]] = []  # successes of prefetched short tasks, recorded in one commit
        self._finished_since = 0.0
        self.stages_completed = 0  # completions that emitted stage_complete (a broker consumer publishes then)
        self.native_stderr: NativeStderr | None = None  # a worker process's: raw stderr lines tied to the task

    def run(self) -> None:
        """Work until `stop` is set; a running task is always finished (or fenced) first."""
        if self.handles_events:
            self.release_orphaned_events()
        if self.rt.broker is not None:  # its messages say which task or event to claim; no database polling
            from geomill.worker.consumer import BrokerConsumer

            BrokerConsumer(self, self.rt.broker).run()
            return
        try:
            self._run_until_stopped()
        finally:
            self.release_prefetched()

    def release_orphaned_events(self) -> int:
        """On start, take back at once the events a dead planner held (e.g. killed in the middle of a chunked stage
        insert), instead of after their visibility timeout. A claimant is ``<app_name>#<pid>`` (the default app name
        names the host). One of this host is dead when that pid is gone here, or is ours (a previous process that had
        our pid: we hold nothing yet). One of another host is dead when no supervisor of its app name reported in the
        workers table within three janitor intervals (the host or its supervisor is gone; a live supervisor restarts a
        dead child, which then takes the events back itself). Releasing a live claim by mistake costs little: chunks
        are compare-and-set."""
        prefix = f"{self.rt.settings.app_name}#"
        released = 0
        try:
            mine = [c for c in self.rt.store.event_claimants() if c.startswith(prefix)]
            for claimant in mine:
                if claimant == self.app or _pid_gone(claimant[len(prefix):]):
                    released += self.rt.store.release_claimed_events(claimant)
            released += release_events_of_silent_hosts(self.rt, log_it=False)
        except StoreError:
            log.warning("could not look for events of dead planners; they return after their visibility timeout")
        if released:
            log.warning("took back %d event(s) held by dead planners", released)
        return released

    def release_prefetched(self) -> None:
        """Record finished tasks still buffered; give back claimed tasks that were never started (their attempt does
        not count)."""
        self.flush_finished()
        while self._prefetched:
            task = self._prefetched.popleft()
            self.rt.store.release_task(task.task_id, task.attempt)

    def _run_until_stopped(self) -> None:
        while not self.stop.is_set():
            try:
                busy = self.run_once()
            except StoreError:
                log.exception("store unavailable; backing off")
                busy = False
                time.sleep(1.0)
            if busy:
                self.rt.dispatch.found_work()
            else:
                self.rt.dispatch.wait(self.wait_queues, timeout=1.0)

    def run_once(self) -> bool:
        """Handle one event or one task; False when there was nothing to do."""
        if self.handles_events and time.monotonic() >= self._next_event_poll:
            if self.handle_one_event():
                return True
            self._next_event_poll = time.monotonic() + EVENT_POLL
        if not self.task_queues:
            self._next_event_poll = 0.0
            return False
        emitted = self.stages_completed
        task = self._next_task()
        if task is None:
            self._next_event_poll = 0.0  # idle: the next round looks for events first
            # a stage_complete we just committed (batched completions) is handled now, not after a wake-up
            return self.handles_events and self.stages_completed != emitted
        self.execute(task)
        return True

    def _next_task(self) -> Task | None:
        """The next prefetched task, or a new claim: several at once only while tasks are short, so a claimed but
        waiting task never sits long on its lease."""
        if not self._prefetched:
            self.flush_finished()
            s = self.rt.settings
            limit = s.prefetch if self._last_task_seconds < SHORT_TASK else 1
            self._prefetched.extend(self.rt.store.claim_tasks(self.task_queues, self.app, s.lease_seconds, limit))
        return self._prefetched.popleft() if self._prefetched else None

    @property
    def last_task_seconds(self) -> float:
        """How long the last task took (infinite before the first): short ones are taken several at a time."""
        return self._last_task_seconds

    def run_claimed(self, tasks: list[Task]) -> None:
        """Run tasks claimed by someone else for this worker (the broker consumer), in order, recording short ones'
        successes in one commit like prefetched tasks; on stop, the ones not started are given back."""
        self._prefetched.extend(tasks)
        try:
            while self._prefetched and not self.stop.is_set():
                self.execute(self._prefetched.popleft())
        finally:
            self.release_prefetched()

    def handle_one_event(self) -> bool:
        event = self.rt.store.claim_event(self.app, self.rt.settings.event_visibility_seconds)
        if event is None:
            return False
        self.handle_event(event)
        return True

    def handle_event(self, event: Event) -> None:
        """Run the orchestrator on a claimed event, then acknowledge it (delete it from the events table)."""
        try:
            self.orchestrator.handle_event(event)
        except NotFound:
            self.rt.store.add_dead_letter("jobs", f"event names an unknown job {event.job_id!r}",
                                          {"kind": str(event.kind), "stage": event.stage}, job_id=event.job_id)
        self.rt.store.ack_event(event.event_id)

    def execute(self, task: Task) -> None:
        try:
            self.rt.registry.task_type(task.task_type).resolve_all()  # a broken handler reference dead-letters too
        except RegistryError as exc:
            self._dead_letter(task, exc)
            return
        self.on_task(task)
        started = time.monotonic()
        token = correlation_id_var.set(task.correlation_id)  # every log line about the task carries it
        try:
            fault_point("after_claim", task.task_type)
            outcome, hb = self._run(task)
            fault_point("before_complete", task.task_type)
            self._record(task, outcome, fenced=hb.fenced, cancelled=hb.cancelled)
        finally:
            self.on_task(None)
            correlation_id_var.reset(token)
        self._last_task_seconds = time.monotonic() - started
        log.info("task %s in %.3f s", task.task_type, self._last_task_seconds,
                 extra={"task_id": task.task_id, "job_id": task.job_id})

    def _run(self, task: Task) -> tuple[Outcome, Heartbeat]:
        s = self.rt.settings
        with Heartbeat(self.rt.store, task, s.lease_seconds, s.heartbeat_seconds, self.on_lease_expired) as hb:
            ctx = self.rt.resources.context(task.task_id, task.job_id, task.stage, task.attempt,
                                            _progress=hb.report_progress, _cancelled=lambda: hb.cancelled)
            ids = {"task_id": task.task_id, "job_id": task.job_id}
            with task_messages(ids, self.native_stderr) as messages, soft_time_limit(task.timeout_seconds):
                outcome = run_task(self.rt.registry, task, ctx)
        if outcome.error is not None and messages:  # what GDAL and libtiff said, with the failure they explain
            outcome.error["gdal_messages"] = list(messages)
            log.warning("GDAL said: %s", " | ".join(messages), extra=ids)
        return outcome, hb

    def _record(self, task: Task, outcome: Outcome, *, fenced: bool, cancelled: bool) -> None:
        store = self.rt.store
        if fenced or outcome.fenced:
            log.warning("dropping the work of a fenced attempt", extra={"task_id": task.task_id})
            return
        if cancelled:  # seen by a heartbeat; a task that ended before any beat just completes (the job is over)
            store.cancel_task(task.task_id, task.attempt)
            log.info("task stopped: its job was cancelled", extra={"task_id": task.task_id})
            return
        if outcome.result is not None and self._prefetched:  # more short tasks in hand: one commit for the batch
            if not self._finished:
                self._finished_since = time.monotonic()
            self._finished.append((task, outcome.result))
            if time.monotonic() - self._finished_since >= FLUSH_AFTER:
                self.flush_finished()
            return
        if outcome.result is not None:
            self._recorded(task, store.complete_task(task.task_id, task.attempt, outcome.result))
        else:
            assert outcome.error is not None
            if outcome.dead_letter:  # its attempts are used up: kept where operators look for lost work
                store.add_dead_letter("worker", f"{task.task_type}: no attempts left: {outcome.error['message']}",
                                      {"task_type": task.task_type, "params": task.params}, job_id=task.job_id,
                                      task_id=task.task_id)
            self._recorded(task, store.fail_task(task.task_id, task.attempt, outcome.error, outcome.retry_in))

    def flush_finished(self) -> None:
        """Record the buffered successes in one transaction. Until then each task is still `processing` under its
        lease: a worker that dies here has them run again, exactly as if it had died before a single completion."""
        if not self._finished:
            return
        batch, self._finished = self._finished, []
        outcomes = self.rt.store.complete_tasks([(t.task_id, t.attempt, r) for t, r in batch])
        for (task, _), done in zip(batch, outcomes, strict=True):
            self._recorded(task, done)

    def _recorded(self, task: Task, done: TaskOutcome) -> None:
        if done.stage_done:
            self.stages_completed += 1
            self._next_event_poll = 0.0  # we emitted stage_complete: plan the next stage now if we orchestrate
        if not done.applied:
            log.warning("outcome refused: attempt %d was fenced", task.attempt, extra={"task_id": task.task_id})

    def _dead_letter(self, task: Task, exc: Exception) -> None:
        """A task this code base cannot run at all: recorded as a dead letter and failed, never retried."""
        reason = f"cannot run task type {task.task_type!r}: {exc}"
        self.rt.store.add_dead_letter("worker", reason, {"task_type": task.task_type, "params": task.params},
                                      job_id=task.job_id, task_id=task.task_id)
        self.rt.store.fail_task(task.task_id, task.attempt, error_record(exc, task.attempt, permanent=True), None)
        log.error(reason, extra={"task_id": task.task_id, "job_id": task.job_id})


def _pid_gone(pid: str) -> bool:
    """True when no process `pid` exists on this host (False for anything that is not a pid)."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False
