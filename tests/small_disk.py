"""A small tmpfs for disk-full tests (issue 25): mounted for one test, unmounted after.

Mounting needs root; where it is refused the test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(folder: Path, size: str = "8m") -> Iterator[Path]:
    """`folder` as a tmpfs of `size`."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        reason = f"cannot mount a tmpfs (needs root): {mount.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill `folder`'s filesystem up to `leave_bytes` free with one file."""
    filler = folder / "filler.bin"
    with filler.open("wb") as f:
        try:
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave_bytes + 65536:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass  # full
    return filler
