"""What the store's statement mixins (service state, container ledger) need of the store they are mixed into."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class StatementAccess:
    """One statement at a time, each in its own transaction: implemented by the SQL store."""

    def _read(self, sql: str, params: Any = ()) -> Sequence[Mapping[str, Any]]:
        raise NotImplementedError

    def _write(self, sql: str, params: Any = (), what: str = "write") -> int:
        """One statement in its own transaction (`what` names it in errors): the rows it changed."""
        raise NotImplementedError

    def _since(self, seconds: float) -> Any:
        raise NotImplementedError
