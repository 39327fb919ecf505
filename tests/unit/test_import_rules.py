"""The import rules of docs/architecture.md, read off the source with ``ast``: a forbidden import fails the suite.

Every ``import`` and ``from ... import`` counts wherever it stands: at module level, inside a function, and under
``if TYPE_CHECKING:`` too. Type-only imports are not exempt on purpose: an engine that names an adapter's class in
an annotation still depends on that adapter's design, and the ports exist so that no such import is needed.
``importlib.import_module("...")`` and ``__import__("...")`` with a literal name count as imports as well.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "geomill"

# Today's violations, removed at the merge of issue 17 (the other streams are fixing them). The test fails when one
# of these no longer occurs, so the list can only shrink: delete an entry once its import is gone.
KNOWN_VIOLATIONS: frozenset[str] = frozenset({
})

ADAPTERS = ("store", "dispatch", "storage", "catalog", "sinks", "api", "cli", "worker", "service", "config", "tasks",
            "jobs", "runtime", "contracts", "solvers", "appserver")
HEAVY_LIBRARIES = ("fastapi", "psycopg", "psycopg_pool", "pika", "aio_pika", "rasterio", "pyogrio", "shapely",
                   "pyarrow")


@dataclass(frozen=True)
class Rule:
    """Modules under one of ``importers`` may not import ``forbidden``; with ``allowed`` set, only stdlib and it."""

    name: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None


def _geomill(*names: str) -> tuple[str, ...]:
    return tuple(f"geomill.{n}" for n in names)


RULES: tuple[Rule, ...] = (
    Rule("domain imports only the standard library and pydantic", ("geomill.domain",),
         allowed=("pydantic", "typing_extensions", "geomill.domain")),
    Rule("engine imports no adapter", ("geomill.engine",), forbidden=_geomill(*ADAPTERS) + HEAVY_LIBRARIES),
    Rule("domain and engine import no face", ("geomill.domain", "geomill.engine"),
         forbidden=_geomill("api", "cli", "ui") + ("fastapi", "starlette", "uvicorn", "typer", "rich")),
    Rule("handlers see no store, dispatch or config", ("geomill.tasks",),
         forbidden=_geomill("store", "dispatch", "config", "api", "cli", "worker", "service", "runtime")
         + ("psycopg", "psycopg_pool")),
    Rule("dispatch imports nothing from store", ("geomill.dispatch",), forbidden=_geomill("store")),
    Rule("cli imports nothing from api", ("geomill.cli",), forbidden=_geomill("api", "ui")),
    Rule("the console reads and acts through the API's auth and the service layer only", ("geomill.ui",),
         forbidden=_geomill("store", "dispatch", "worker", "cli", "runtime", "tasks", "jobs")),
    Rule("api imports nothing from worker", ("geomill.api",), forbidden=_geomill("worker")),
    Rule("store imports no dispatch, face, worker or service", ("geomill.store",),
         forbidden=_geomill("dispatch", "api", "cli", "worker", "service")),
    Rule("the service layer imports no face and no web framework", ("geomill.service",),
         forbidden=_geomill("api", "cli", "ui") + ("fastapi", "starlette", "uvicorn", "typer", "rich")),
    Rule("contracts and solvers see no store, dispatch, config, face or worker", ("geomill.contracts", "geomill.solvers"),
         forbidden=_geomill("store", "dispatch", "config", "api", "cli", "worker", "service", "runtime", "tasks",
                            "jobs", "appserver") + ("psycopg", "psycopg_pool", "fastapi", "starlette", "uvicorn")),
    Rule("the AppServer has no database, queue or worker", ("geomill.appserver",),
         forbidden=_geomill("store", "dispatch", "worker", "service", "runtime", "api", "cli", "config")
         + ("psycopg", "psycopg_pool", "pika", "aio_pika")),
)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    """Dotted name of a source file under the package folder ``root``, and whether it is a package's __init__."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from`` import names: ``from ..store import x`` in geomill.engine.y is geomill.store."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module a file imports, anywhere in it (``from geomill import config`` yields geomill.config)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            # From the root package, the names are its subpackages; elsewhere the module itself is the dependency.
            yield from ((f"{target}.{a.name}" for a in node.names) if "." not in target else (target,))
        elif isinstance(node, ast.Call) and (name := _dynamic_import(node)):
            yield name


def _dynamic_import(node: ast.Call) -> str | None:
    """The literal module name of ``importlib.import_module("x")`` or ``__import__("x")``, else None."""
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))
    first = node.args[0] if node.args else None
    if named and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def _breaks(rule: Rule, name: str) -> bool:
    if rule.allowed is not None:
        return not (name.split(".")[0] in sys.stdlib_module_names or _under(name, rule.allowed))
    return _under(name, rule.forbidden)


def violations(root: Path, rules: tuple[Rule, ...] = RULES) -> set[str]:
    """``module: imports X (rule)`` for every forbidden import in the package folder ``root``."""
    found: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        module, is_package = _module_name(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = set(imported_names(tree, module, is_package))
        for rule in rules:
            if _under(module, rule.importers):
                found.update(f"{module}: imports {name} ({rule.name})" for name in names if _breaks(rule, name))
    return found


def test_the_source_keeps_the_import_rules() -> None:
    found = violations(SRC)
    new, gone = sorted(found - KNOWN_VIOLATIONS), sorted(KNOWN_VIOLATIONS - found)
    message = []
    if new:
        message += ["forbidden imports (see docs/architecture.md, 'Import rules'):", *new]
    if gone:
        message += ["no longer violated: delete from KNOWN_VIOLATIONS in tests/unit/test_import_rules.py:", *gone]
    assert not message, "\n".join(message)


def test_every_rule_covers_existing_code() -> None:
    """A renamed package must not leave a rule checking nothing."""
    modules = {_module_name(SRC, p)[0] for p in SRC.rglob("*.py")}
    for rule in RULES:
        assert any(_under(m, rule.importers) for m in modules), f"no module under {rule.importers} ({rule.name})"


def _plant(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "geomill" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "geomill"


def test_the_checker_catches_planted_violations(tmp_path: Path) -> None:
    package = _plant(tmp_path, {
        "__init__.py": "",
        "domain/__init__.py": "import json\nfrom pydantic import BaseModel\nfrom . import models\nimport requests\n",
        "domain/models.py": "from typing_extensions import Self\nfrom geomill import config\n",
        "engine/__init__.py": "",
        "engine/run.py": "def f():\n    from ..store import sqlite\n    import rasterio.windows\n",
        "engine/types.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from geomill.api.app import App\n",
        "tasks/__init__.py": "",
        "tasks/raster/__init__.py": "import importlib\nimportlib.import_module('geomill.dispatch.stub')\n",
        "tasks/raster/cog.py": "from geomill.storage.local import LocalStorage\nimport psycopg\n",
        "cli/__init__.py": "import geomill.api.app\n",
        "api/__init__.py": "from geomill import worker\nfrom geomill.service import submit\n",
        "store/__init__.py": "from geomill.dispatch import outbox\n",
        "dispatch/__init__.py": "from geomill.engine.ports import Store\n",
    })
    assert violations(package) == {
        "geomill.domain: imports requests (domain imports only the standard library and pydantic)",
        "geomill.domain.models: imports geomill.config (domain imports only the standard library and pydantic)",
        "geomill.engine.run: imports geomill.store (engine imports no adapter)",
        "geomill.engine.run: imports rasterio.windows (engine imports no adapter)",
        "geomill.engine.types: imports geomill.api.app (engine imports no adapter)",
        "geomill.engine.types: imports geomill.api.app (domain and engine import no face)",
        "geomill.tasks.raster: imports geomill.dispatch.stub (handlers see no store, dispatch or config)",
        "geomill.tasks.raster.cog: imports psycopg (handlers see no store, dispatch or config)",
        "geomill.cli: imports geomill.api.app (cli imports nothing from api)",
        "geomill.api: imports geomill.worker (api imports nothing from worker)",
        "geomill.store: imports geomill.dispatch (store imports no dispatch, face, worker or service)",
    }


@pytest.mark.parametrize(("source", "expected"), [
    ("from . import x", "geomill.engine"),
    ("from .. import store", "geomill.store"),
    ("from ..store.sqlite import SqliteStore", "geomill.store.sqlite"),
    ("from geomill.engine import ports", "geomill.engine"),
])
def test_relative_imports_resolve_from_the_module(source: str, expected: str) -> None:
    tree = ast.parse(source)
    assert set(imported_names(tree, "geomill.engine.run", is_package=False)) == {expected}
