"""The README's settings table is the list of every setting the code reads (issue 25): one row per field of the
config model, and no row for a variable the code does not know."""

from __future__ import annotations

import re
from pathlib import Path

from geomill.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_variables(text: str) -> set[str]:
    """Every `GEOMILL_*` named in the first column of the table under '## Settings'."""
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `GEOMILL_"):
            names.update(re.findall(r"`(GEOMILL_[A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_every_setting_is_in_the_readme_table_and_every_row_is_a_setting() -> None:
    fields = {f"GEOMILL_{name.upper()}" for name in Settings.model_fields}
    documented = documented_variables(README.read_text(encoding="utf-8"))
    assert not fields - documented, f"settings missing from the README's table: {sorted(fields - documented)}"
    assert not documented - fields, f"README rows for unknown settings: {sorted(documented - fields)}"


def test_the_table_parser_sees_rows_with_several_variables() -> None:
    text = "intro\n## Settings\n\n| variable | d |\n|---|---|\n| `GEOMILL_A`, `GEOMILL_B_C` | 1 | `GEOMILL_X` |\n## Next\n"
    assert documented_variables(text) == {"GEOMILL_A", "GEOMILL_B_C"}
