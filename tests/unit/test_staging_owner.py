"""Who owns a staging folder: the sweep removes at once only the folders of a gone process of this host and PID
namespace (a PID reused by a later process counts as gone); another host's, or an unreadable owner, waits for age."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from geomill.storage.objects import SCRATCH, SCRATCH_OWNER, ObjectStorage, _owner_gone, _this_process


def owner(tmp_path: Path, text: str) -> Path:
    path = tmp_path / SCRATCH_OWNER
    path.write_text(text)
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_owner_alive_gone_reused_foreign_or_unreadable(tmp_path: Path) -> None:
    assert not _owner_gone(owner(tmp_path, _this_process()))  # this process: alive
    host, namespace, _, _ = _this_process().split("\n")[:4]
    assert _owner_gone(owner(tmp_path, f"{host}\n{namespace}\n{dead_pid()}\n123\n"))  # exited
    assert _owner_gone(owner(tmp_path, f"{host}\n{namespace}\n{os.getpid()}\n1\n"))  # PID reused by this process
    assert not _owner_gone(owner(tmp_path, f"elsewhere-{socket.gethostname()}\n{namespace}\n{dead_pid()}\n1\n"))
    assert not _owner_gone(owner(tmp_path, f"{host}\npid:[1]\n{dead_pid()}\n1\n"))  # another PID namespace
    assert not _owner_gone(owner(tmp_path, ""))  # being written: judged by age
    assert not _owner_gone(tmp_path / "absent")


def test_sweep_removes_a_dead_owners_folder_keeps_a_foreign_young_one(tmp_path: Path) -> None:
    storage = ObjectStorage(tmp_path / "data", env={})
    scratch = tmp_path / "data" / SCRATCH
    host, namespace, _, _ = _this_process().split("\n")[:4]
    dead, foreign = scratch / "dead", scratch / "foreign"
    for folder, pid_host in ((dead, host), (foreign, "another-host")):
        folder.mkdir(parents=True)
        (folder / ".x.tif.tmp").write_bytes(b"partial")
        owner(folder, f"{pid_host}\n{namespace}\n{dead_pid()}\n1\n")
    assert storage.sweep_scratch() == 1
    assert not dead.exists() and foreign.exists()
    assert storage.sweep_scratch(older_than_seconds=-1) == 1  # the age rule still applies to it
    assert not foreign.exists()
