"""Logging set-up for entry points: plain text for people, JSON lines for services."""

from __future__ import annotations

import json
import logging
import sys

_FIELDS = ("job_id", "task_id", "attempt", "stage")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        doc.update({f: getattr(record, f) for f in _FIELDS if hasattr(record, f)})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = " ".join(f"{f}={getattr(record, f)}" for f in _FIELDS if hasattr(record, f))
        return f"{base} {extra}" if extra else base


def setup_logging(level: str = "WARNING", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
