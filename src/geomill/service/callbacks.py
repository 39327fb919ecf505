"""Job callbacks: a client names URLs to be told when a job progresses, succeeds or fails (OGC API - Processes
`subscriber`). The subscribers live in the database (`SubscriberStore`), so a restart loses none; one process at a
time (the holder of the ``job-callbacks`` leadership) delivers them: `CallbackDeliverer.run` in a thread of every
HTTP process. A delivery is an HTTP POST of a JSON document; a failed one is tried again with backoff, up to
`MAX_ATTEMPTS` times. At least once: a process that dies between the POST and its record sends it again."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from geomill.domain import InvalidInput, NotFound
from geomill.engine.ports import Store, Subscriber
from geomill.engine.registry import Registry
from geomill.service.status import job_status

log = logging.getLogger(__name__)
LEADERSHIP = "job-callbacks"
MAX_ATTEMPTS = 8
POLL_SECONDS = 1.0  # how often due subscribers are looked at (and progress re-read)
POST_TIMEOUT_SECONDS = 10.0
STOP_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class Notice:
    """What to deliver now: `state` names it (a subscriber is not sent the same state twice), `final` closes it."""

    state: str
    uri: str | None  # None: nothing to send for this state (no URL given for it)
    body: dict[str, Any]
    final: bool


Compose = Callable[[Subscriber, dict[str, Any]], Notice | None]
Post = Callable[[str, dict[str, Any]], None]


def check_callback_uri(field: str, uri: object) -> str | None:
    """An absolute http(s) URL, or None; InvalidInput naming `field` otherwise."""
    if uri is None:
        return None
    if isinstance(uri, str) and len(uri) <= 2000:
        parts = urlsplit(uri)
        if parts.scheme in ("http", "https") and parts.netloc:
            return uri
    raise InvalidInput(f"{field}: an absolute http or https URL", field=field)


def subscribe(store: Store, job_id: str, success_uri: str | None, failed_uri: str | None,
              in_progress_uri: str | None) -> None:
    """Record callback URLs for a job (at least one); delivered from now on."""
    uris = {"successUri": success_uri, "failedUri": failed_uri, "inProgressUri": in_progress_uri}
    checked = {k: check_callback_uri(f"subscriber.{k}", v) for k, v in uris.items()}
    if not any(checked.values()):
        raise InvalidInput("subscriber: give at least one of successUri, failedUri, inProgressUri",
                           field="subscriber")
    store.add_subscriber(job_id, checked["successUri"], checked["failedUri"], checked["inProgressUri"])


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4 ... at most 5 minutes."""
    return float(min(2 ** max(attempts - 1, 0), 300))


def post_json(client: httpx.Client) -> Post:
    """A `Post` over `client`: any status but 2xx is a failure."""
    def post(uri: str, body: dict[str, Any]) -> None:
        client.post(uri, json=body).raise_for_status()
    return post


def deliver_due(store: Store, registry: Registry, compose: Compose, post: Post, limit: int = 100) -> int:
    """One pass over the due subscribers: POST what changed since the last delivery; the number delivered."""
    sent = 0
    for sub in store.due_subscribers(limit):
        try:
            doc = job_status(store, registry, sub.job_id)
        except NotFound:
            store.update_subscriber(sub.subscriber_id, sub.notified, sub.notified, sub.attempts, 0, close=True)
            continue
        notice = compose(sub, doc)
        if notice is None or notice.uri is None:  # nothing new, or nothing asked for: look again later
            state = notice.state if notice else sub.notified
            store.update_subscriber(sub.subscriber_id, sub.notified, state, 0, POLL_SECONDS,
                                    close=bool(notice and notice.final))
            continue
        try:
            post(notice.uri, notice.body)
        except Exception as exc:  # any failure to deliver (refused, timeout, non-2xx) is retried
            attempts = sub.attempts + 1
            give_up = attempts >= MAX_ATTEMPTS
            log.warning("callback %s of job %s to %s failed (try %d): %s%s", notice.state, sub.job_id, notice.uri,
                        attempts, exc, "; giving up" if give_up else "", extra={"job_id": sub.job_id})
            store.update_subscriber(sub.subscriber_id, sub.notified, sub.notified, attempts, backoff(attempts),
                                    close=give_up)
            continue
        store.update_subscriber(sub.subscriber_id, sub.notified, notice.state, 0, POLL_SECONDS, close=notice.final)
        sent += 1
    return sent


class CallbackDeliverer:
    """A daemon thread that delivers due callbacks while this process holds the ``job-callbacks`` leadership."""

    def __init__(self, store: Store, registry: Registry, compose: Compose, app_name: str) -> None:
        self.store, self.registry, self.compose = store, registry, compose
        self.holder = f"{app_name}:{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="job-callbacks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current pass, waiting a few seconds at most: a delivery cut short is not recorded, so
        the next holder of the leadership sends it again."""
        self._stop.set()
        self._thread.join(STOP_WAIT_SECONDS)

    def run(self) -> None:
        with httpx.Client(timeout=POST_TIMEOUT_SECONDS, follow_redirects=False) as client:
            post = post_json(client)
            while not self._stop.is_set():
                try:
                    if self.store.acquire_leadership(LEADERSHIP, self.holder, POLL_SECONDS * 30):
                        deliver_due(self.store, self.registry, self.compose, post)
                except Exception:  # never let the thread die: the next pass tries again
                    log.exception("job callback pass failed")
                self._stop.wait(POLL_SECONDS)
