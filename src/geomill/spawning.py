"""Starting a process in the ``spawn`` context without re-importing the parent's ``__main__``.

``multiprocessing`` re-imports the parent's main module in every spawned child (by name under ``python -m``, by path
for a console script), so each worker process of ``geomill run`` imported the whole CLI (typer, rich, its views)
before it could claim a task. geomill's process targets live in importable modules, never in ``__main__``, so the
child does not need it: while a child is being started, ``__main__`` is made to look like an interactive session
(no ``__spec__``, no ``__file__``), which ``multiprocessing.spawn.get_preparation_data`` leaves alone.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

_lock = threading.Lock()  # two threads starting processes must not restore each other's half-hidden __main__
_HIDDEN = ("__spec__", "__file__")


def start_without_main(process: Any) -> None:
    """``process.start()``, the child importing only its target's module (and what that imports)."""
    main = sys.modules.get("__main__")
    if main is None:
        process.start()
        return
    with _lock:
        saved = {name: main.__dict__[name] for name in _HIDDEN if name in main.__dict__}
        main.__dict__["__spec__"] = None
        main.__dict__.pop("__file__", None)
        try:
            process.start()
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)
