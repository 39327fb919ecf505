"""Spawned worker processes do not re-import the parent's __main__ (the CLI), and __main__ is left as it was."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import textwrap
from pathlib import Path

from geomill.spawning import start_without_main


def _report(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    queue.put(sorted(name for name in sys.modules if name in ("fakecli", "typer", "rich"))
              + [getattr(sys.modules.get("__mp_main__"), "__file__", None) or "-"])


def test_main_is_restored_after_a_start() -> None:
    main = sys.modules["__main__"]
    before = (main.__dict__.get("__spec__"), main.__dict__.get("__file__"))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_report, args=(queue,))
    start_without_main(proc)
    queue.get(timeout=60)
    proc.join(60)
    assert (main.__dict__.get("__spec__"), main.__dict__.get("__file__")) == before


def test_a_child_started_from_a_cli_main_does_not_import_it(tmp_path: Path) -> None:
    """The parent is run as ``python -m <module>`` importing typer and rich, like ``python -m geomill.cli``: a child
    started plainly re-imports that module (and so typer and rich); one started by `start_without_main` does not."""
    (tmp_path / "fakecli.py").write_text(textwrap.dedent("""
        import multiprocessing as mp
        import sys
        import typer, rich  # noqa: F401  (what the CLI module imports)
        from geomill.spawning import start_without_main
        from test_spawning import _report

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            for plain in (True, False):
                queue = ctx.Queue()
                proc = ctx.Process(target=_report, args=(queue,))
                proc.start() if plain else start_without_main(proc)
                print("plain" if plain else "hidden", queue.get(timeout=60))
                proc.join(60)
    """))
    env_path = f"{tmp_path}:{Path(__file__).parent}:{':'.join(sys.path)}"
    out = subprocess.run([sys.executable, "-m", "fakecli"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert "'rich', 'typer'" in lines["plain"] and "fakecli.py" in lines["plain"]  # the premise: spawn re-imports it
    assert lines["hidden"] == "['-']"
