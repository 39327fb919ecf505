"""Hypothesis profiles, registered once for the whole suite (imported by tests/conftest.py).

``ci`` (the default): few examples, no deadline, so property tests stay small in the suite. ``long``: many more, for
manual or bench runs: ``HYPOTHESIS_PROFILE=long pytest tests/integration/test_vector_properties.py``.
Registering again is harmless (the same settings under the same names), so other modules may import this too.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}

settings.register_profile("ci", max_examples=20, derandomize=True, **COMMON)  # the same examples every CI run
settings.register_profile("long", max_examples=500, **COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
