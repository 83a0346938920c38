"""How every process logs: uvicorn's lines, trackyard's, the access log; as text or JSON lines.

``--log-format json`` prints one JSON object a line: ``ts`` (ISO 8601, UTC), ``level``,
``logger``, ``msg``, and the record's fields (an access-log line's method, path, status...;
an exception's ``exc``). Text keeps uvicorn's familiar ``INFO:     message``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

from trackyard.config import LogFormat

#: The loggers trackyard's processes print: uvicorn's own and trackyard's (the access log included).
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "trackyard")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line).decode()


def logging_config(
    level: str, fmt: LogFormat, *, access_log: bool = False, prefix: str = ""
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn (its ``log_config``) and trackyard's loggers.

    ``access_log`` shows ``trackyard.access`` at INFO whatever ``level`` is: asking for the
    access log is asking to see it. ``prefix`` goes before each text message (a consumer's
    ``[name pid]``).
    """
    loggers: dict[str, Any] = {
        name: {"handlers": ["stderr"], "level": level.upper(), "propagate": False} for name in _LOGGERS
    }
    if access_log:
        loggers["trackyard.access"] = {"level": "INFO"}
    if fmt == "json":
        formatter: dict[str, Any] = {"()": JSONFormatter}
    else:
        formatter = {"()": "uvicorn.logging.DefaultFormatter", "fmt": f"%(levelprefix)s {prefix}%(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"trackyard": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "trackyard",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": loggers,
    }
