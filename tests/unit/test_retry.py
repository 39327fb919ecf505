"""Retry policy: exponential backoff, capped, with bounded jitter; attempts are 1-based."""

from __future__ import annotations

import random

import pytest

from geomill.engine.retry import RetryPolicy


def test_backoff_grows_exponentially_without_jitter() -> None:
    p = RetryPolicy(max_attempts=10, backoff_base_seconds=0.5, backoff_factor=3.0, backoff_max_seconds=1e6, jitter=0)
    assert [p.delay(a) for a in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 13.5]


def test_attempt_zero_or_below_uses_the_base_delay() -> None:
    p = RetryPolicy(backoff_base_seconds=2.0, jitter=0)
    assert p.delay(0) == 2.0
    assert p.delay(-3) == 2.0


def test_backoff_is_capped() -> None:
    p = RetryPolicy(max_attempts=50, backoff_base_seconds=2.0, backoff_factor=2.0, backoff_max_seconds=10.0,
                    jitter=0)
    assert [p.delay(a) for a in (1, 2, 3, 4, 5, 30)] == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    p = RetryPolicy(backoff_base_seconds=4.0, backoff_factor=2.0, backoff_max_seconds=1000.0, jitter=0.1)
    rng = random.Random(1234)
    for attempt in (1, 2, 3):
        nominal = 4.0 * 2 ** (attempt - 1)
        delays = [p.delay(attempt, rng) for _ in range(500)]
        assert all(nominal * 0.9 <= d <= nominal * 1.1 for d in delays)
        assert max(delays) - min(delays) > nominal * 0.1  # it really jitters (spread of at least half the band)


def test_jitter_applies_around_the_cap() -> None:
    p = RetryPolicy(backoff_base_seconds=1.0, backoff_max_seconds=5.0, jitter=0.2)
    rng = random.Random(7)
    delays = [p.delay(20, rng) for _ in range(200)]
    assert all(4.0 <= d <= 6.0 for d in delays)


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    p = RetryPolicy()
    assert [p.delay(2, random.Random(5)) for _ in range(3)] == [p.delay(2, random.Random(5))] * 3


def test_delay_is_never_negative_even_with_full_jitter() -> None:
    p = RetryPolicy(backoff_base_seconds=1.0, jitter=1.0)
    rng = random.Random(0)
    assert min(p.delay(1, rng) for _ in range(1000)) >= 0.0


@pytest.mark.parametrize(("max_attempts", "attempt", "expected"), [
    (1, 1, False),
    (3, 1, True),
    (3, 2, True),
    (3, 3, False),
    (3, 4, False),
])
def test_should_retry_boundaries(max_attempts: int, attempt: int, expected: bool) -> None:
    assert RetryPolicy(max_attempts=max_attempts).should_retry(attempt) is expected


@pytest.mark.parametrize("bad", [0, -1])
def test_max_attempts_below_one_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=bad)


def test_next_delay_is_none_when_the_policy_or_the_tasks_own_cap_is_used_up() -> None:
    p = RetryPolicy(max_attempts=3, backoff_base_seconds=1.0, jitter=0)
    assert [p.next_delay(a) for a in (1, 2, 3)] == [1.0, 2.0, None]
    assert p.next_delay(1, max_attempts=1) is None  # the task row allows fewer attempts than the policy
    assert p.next_delay(3, max_attempts=4) is None  # a manual retry raised the row's cap: the policy still ends it


def test_a_lost_lease_follows_its_task_types_policy_and_an_unknown_type_retries_at_once() -> None:
    from geomill.engine.ports import ExpiredLease
    from geomill.engine.registry import Registry
    from geomill.tasks import demo
    from geomill.worker.janitor import lease_retry

    registry = Registry()
    demo.register(registry)  # demo.work: 3 attempts, backoff from 0.2 s
    retry_in = lease_retry(registry)
    assert 0.15 < retry_in(ExpiredLease("t", "j", "demo.work", 1, 3)) < 0.25  # type: ignore[operator]
    assert retry_in(ExpiredLease("t", "j", "demo.work", 3, 3)) is None
    assert retry_in(ExpiredLease("t", "j", "elsewhere.task", 1, 2)) == 0.0
    assert retry_in(ExpiredLease("t", "j", "elsewhere.task", 2, 2)) is None
