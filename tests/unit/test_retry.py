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
