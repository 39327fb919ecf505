"""The contracts one process knows: the ones geomill ships plus a folder of more (GEOMILL_CONTRACTS_DIR)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from geomill.contracts.model import Contract, UnknownContract, read_contract
from geomill.domain import RegistryError

SHIPPED = Path(__file__).parent / "shipped"


class Contracts:
    """Contracts by (definition, version). Versions are immutable: the same pair twice is refused at load."""

    def __init__(self, contracts: list[Contract]) -> None:
        self._by_key: dict[tuple[str, str], Contract] = {}
        for c in contracts:
            key = (c.manifest.definition, c.manifest.version)
            if key in self._by_key:
                raise RegistryError(f"contract {c.key} is defined twice ({self._by_key[key].path} and {c.path}); "
                                    "a version is immutable: publish a new version instead")
            self._by_key[key] = c

    def get(self, definition: str, version: str) -> Contract:
        try:
            return self._by_key[(definition, version)]
        except KeyError:
            raise UnknownContract(definition, version, self.keys()) from None

    def keys(self) -> list[str]:
        return [f"{d}:{v}" for d, v in sorted(self._by_key)]

    def __iter__(self) -> Iterator[Contract]:
        return iter(self._by_key[k] for k in sorted(self._by_key))

    def __len__(self) -> int:
        return len(self._by_key)


def contract_folders(root: Path) -> list[Path]:
    """Every ``<definition>/<version>`` folder under `root` that holds a manifest."""
    return sorted(p.parent for p in root.glob("*/*/manifest.json"))


def load_contracts(extra: Path | None = None) -> Contracts:
    """The shipped contracts and those under `extra`; RegistryError at start-up for a broken or duplicate one."""
    folders = contract_folders(SHIPPED)
    if extra is not None:
        if not extra.is_dir():
            raise RegistryError(f"GEOMILL_CONTRACTS_DIR {extra} is not a folder")
        folders += contract_folders(extra)
    return Contracts([read_contract(f) for f in folders])
