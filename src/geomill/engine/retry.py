"""Retry policy: exponential backoff with a cap and a little jitter, up to max_attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_base_seconds: float = 2.0
    backoff_factor: float = 2.0
    backoff_max_seconds: float = 300.0
    jitter: float = 0.1  # +-10 %, so a burst of failures does not retry in lockstep

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def should_retry(self, attempt: int) -> bool:
        """True when the attempt that just failed (1-based) leaves attempts for a retry."""
        return attempt < self.max_attempts

    def next_delay(self, attempt: int, max_attempts: int | None = None) -> float | None:
        """Seconds until the retry of failed attempt `attempt`, or None when no attempt is left (under this policy
        and under the task's own `max_attempts`, which a manual retry raises)."""
        if not self.should_retry(attempt) or (max_attempts is not None and attempt >= max_attempts):
            return None
        return self.delay(attempt)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based) before the next."""
        raw = self.backoff_base_seconds * self.backoff_factor ** max(attempt - 1, 0)
        capped = min(raw, self.backoff_max_seconds)
        if not self.jitter:
            return capped
        r = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, capped * (1.0 + r))
