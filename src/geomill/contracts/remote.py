"""Solving on an AppServer: `POST {GEOMILL_APPSERVER_URL}/gh/{definition}:{version}/solve` (docs/contracts.md).

Failures are classified here, where they are seen: no answer (connection refused, reset, timed out) and 5xx are
TransientError (the task retries with backoff); 422 is InvalidInput and any other 4xx a PermanentError (failed at
once); an answer that breaks the contract's outputs schema is a ContractViolation (failed at once). The outputs are
checked here against the worker's own copy of the contract, whichever server answered."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from geomill.contracts.catalog import Contracts
from geomill.contracts.model import ContractViolation
from geomill.contracts.runner import derived_artifacts
from geomill.domain import InvalidInput, PermanentError, TransientError

log = logging.getLogger(__name__)
READ_MARGIN_SECONDS = 5.0


def _detail(response: httpx.Response) -> str:
    """The server's explanation: a problem document's detail (and per-field errors), else the body's start."""
    try:
        doc = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(doc, dict) and "detail" in doc:
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in doc.get("errors") or [] if
                           isinstance(e, dict))
        return str(doc["detail"])[:500] + (f" ({fields[:500]})" if fields else "")
    return response.text[:500]


class AppServerSolver:
    """The Solver resource that calls an AppServer over HTTP (one httpx client per process)."""

    mode = "appserver"

    def __init__(self, base_url: str, contracts: Contracts, connect_timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.contracts = contracts
        self.connect_timeout = connect_timeout
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(headers={"user-agent": "geomill-worker"})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def solve(self, definition: str, version: str, inputs: dict[str, Any]) -> dict[str, Any]:
        contract = self.contracts.get(definition, version)
        url = f"{self.base_url}/gh/{definition}:{version}/solve"
        timeout = httpx.Timeout(contract.manifest.timeout_seconds + READ_MARGIN_SECONDS, connect=self.connect_timeout)
        try:
            response = self.client.post(url, json={"inputs": inputs}, timeout=timeout)
        except httpx.TransportError as exc:  # refused, reset, DNS, timed out: nothing was answered
            raise TransientError(f"AppServer {url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise TransientError(f"AppServer {url} answered {response.status_code}: {_detail(response)}")
        if response.status_code == 422:
            raise InvalidInput(f"AppServer refused the inputs of {contract.key}: {_detail(response)}")
        if response.status_code >= 400 or response.status_code < 200:
            raise PermanentError(f"AppServer {url} answered {response.status_code}: {_detail(response)}")
        try:
            outputs = response.json()
        except ValueError:
            raise ContractViolation(f"AppServer {url} answered {response.status_code} without JSON: "
                                    f"{response.text[:200]!r}") from None
        contract.check_outputs(outputs)
        return outputs

    def contract_digest(self, definition: str, version: str) -> str:
        return self.contracts.get(definition, version).digest

    def artifacts(self, definition: str, version: str, inputs: dict[str, Any],
                  outputs: dict[str, Any]) -> list[tuple[str, str, bytes]]:
        return derived_artifacts(self.contracts.get(definition, version), inputs, outputs)
