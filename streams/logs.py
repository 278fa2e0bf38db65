"""Log output: text for people, or one JSON object per line for log shippers
(`CEMI_LOG_FORMAT=text|json`), the same for the worker, its ingest child and the CLI."""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import orjson

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "process", "message"[, "exception"]}` per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "time_ms": int(record.created * 1000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(log_format: str, level: str | int) -> dict[str, Any]:
    """A `logging.config.dictConfig` of the root logger on stderr in the chosen format."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"cemi": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "cemi",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {
            "level": level if isinstance(level, int) else level.upper(),
            "handlers": ["stderr"],
        },
    }


def configure_logging(log_format: str, level: str | int = "WARNING") -> None:
    logging.config.dictConfig(logging_config(log_format, level))
