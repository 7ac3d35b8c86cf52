"""One logging pipeline for structlog and the standard library (Django, uvicorn, psycopg).

structlog events and foreign ``logging`` records share the same processors and end in one
handler, rendered for people in a console or as one JSON object per line.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor


def _drop_color_message(_: Any, __: str, event: EventDict) -> EventDict:
    # uvicorn attaches a coloured copy of its message as an extra; the renderer colours.
    event.pop("color_message", None)
    return event


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        # Several processes (uvicorn workers, runworker replicas) often share one log.
        structlog.processors.CallsiteParameterAdder(
            [structlog.processors.CallsiteParameter.PROCESS]
        ),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_structlog() -> None:
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def make_formatter(
    log_format: str, *, show_locals: bool = False
) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of the one handler: renders structlog events and foreign records alike.

    ``show_locals`` lets a console traceback list each frame's local variables (with rich
    installed), which helps while developing; elsewhere they may hold passwords, tokens and
    connection settings, so they stay out unless asked for.
    """
    renderer: list[Processor]
    if log_format == "json":
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        # structlog's default shows locals through rich or better-exceptions when installed.
        exceptions = (
            structlog.dev.default_exception_formatter
            if show_locals
            else structlog.dev.plain_traceback
        )
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=exceptions
            )
        ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )


def logging_config(*, log_format: str, level: str, show_locals: bool = False) -> dict[str, Any]:
    """The ``LOGGING`` dict for Django's ``dictConfig``."""
    # Django, uvicorn and friends log through the root handler, so their records are
    # rendered like ours instead of by their own handlers.
    foreign = {"handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            # By name, so that the whole dict can be written as JSON for uvicorn --log-config.
            "structlog": {
                "()": "config.logging.make_formatter",
                "log_format": log_format,
                "show_locals": show_locals,
            },
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "structlog",
            },
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "django": {**foreign, "level": level},
            # 4xx answers are logged once, by the request middleware; 5xx keep Django's
            # record with its traceback.
            "django.request": {**foreign, "level": "ERROR"},
            "django.server": {**foreign, "level": level},
            "uvicorn": {**foreign, "level": level},
            "uvicorn.error": {**foreign, "level": level},
            # The request middleware logs each request once, with its request id.
            "uvicorn.access": {**foreign, "level": "WARNING"},
            # The pool warns at every failed attempt to connect, several a second during an
            # outage; whoever needed the connection reports the failure once, with the reason.
            "psycopg.pool": {**foreign, "level": "ERROR"},
            # One line per webhook request would drown the rest; the job logs each run.
            "httpx": {**foreign, "level": "WARNING"},
        },
    }


if __name__ == "__main__":
    # `python -m config.logging` prints this configuration as JSON for `uvicorn --log-config`,
    # so that a uvicorn parent process, which logs before Django is loaded, logs alike.
    import json
    import os

    json.dump(
        logging_config(
            log_format=os.environ.get("LOG_FORMAT", "console"),
            level=os.environ.get("LOG_LEVEL", "INFO"),
        ),
        sys.stdout,
    )
