"""The chaos fault points (geomill/faults.py): inert without GEOMILL_FAULT_POINT, a SIGKILL where named, once per
GEOMILL_FAULT_ONCE file, only for the named task type."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CALL = "from geomill.faults import fault_point; fault_point('after_claim', 'demo.work'); print('passed')"


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_FAULT")}
    return subprocess.run([sys.executable, "-c", CALL], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_fault_point_is_inert_unless_named(tmp_path: Path) -> None:
    assert _run().stdout.strip() == "passed"
    assert _run(GEOMILL_FAULT_POINT="before_complete").stdout.strip() == "passed"
    assert _run(GEOMILL_FAULT_POINT="after_claim", GEOMILL_FAULT_TASK_TYPE="raster.create_cog").returncode == 0


def test_a_named_fault_point_kills_the_process_once_per_file(tmp_path: Path) -> None:
    once = str(tmp_path / "fired")
    first = _run(GEOMILL_FAULT_POINT="after_claim", GEOMILL_FAULT_ONCE=once)
    assert first.returncode == -signal.SIGKILL and first.stdout == ""
    assert Path(once).exists()
    assert _run(GEOMILL_FAULT_POINT="after_claim", GEOMILL_FAULT_ONCE=once).stdout.strip() == "passed"


HOLD = """
import signal, time
from geomill.faults import fault_point
def stop(signum, frame):
    raise TimeoutError('interrupted')
signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, {alarm})
started = time.monotonic()
try:
    fault_point('before_publish')
    print('held', round(time.monotonic() - started, 1))
except TimeoutError:
    print('interrupted', round(time.monotonic() - started, 1))
"""


def _hold(alarm: float, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GEOMILL_FAULT")}
    done = subprocess.run([sys.executable, "-c", HOLD.format(alarm=alarm)], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_hold_fault_point_sleeps_instead_of_killing_and_a_raising_signal_ends_it() -> None:
    hold = {"GEOMILL_FAULT_POINT": "before_publish", "GEOMILL_FAULT_HOLD_SECONDS": "1.5"}
    word, seconds = _hold(0, **hold).split()  # no alarm: the whole hold, then on
    assert word == "held" and 1.4 <= float(seconds) < 3
    word, seconds = _hold(0.3, **{**hold, "GEOMILL_FAULT_HOLD_SECONDS": "30"}).split()
    assert word == "interrupted" and float(seconds) < 5  # what a lost lease's interrupt does to a held task
