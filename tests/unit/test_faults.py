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
