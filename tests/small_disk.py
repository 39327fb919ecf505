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
    """Fill `folder`'s filesystem with one file until at most `leave_bytes` stay free (0: until ENOSPC)."""
    filler = folder / "filler.bin"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1024 * 1024, 65536, 4096):
            try:
                while _free(folder) >= leave_bytes + chunk:
                    f.write(b"\0" * chunk)
                if not leave_bytes:
                    while True:
                        f.write(b"\0" * chunk)
            except OSError:
                pass  # full at this chunk size: go on with a smaller one
    return filler


def _free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize
