"""Django settings. Every tunable value comes from the environment through ``config.env``."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path
from typing import Any

import dj_database_url

from config.env import (
    SettingsError,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
)
from config.logging import configure_structlog, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

# A key that is public by definition: it is in the source. The `timesheets` system check
# warns loudly while it is in use, and it is refused outright when DEBUG is off.
DEVELOPMENT_SECRET_KEY = "development-only-insecure-key-do-not-use-in-production"  # noqa: S105

DEBUG = env_bool(
    "DEBUG",
    default=True,
    description="Django's debug mode. Turn it off in production.",
)
SECRET_KEY = env_str(
    "SECRET_KEY",
    default="",
    description="Signs sessions and CSRF tokens. Required when DEBUG is off.",
)
if not SECRET_KEY:
    if not DEBUG:
        raise SettingsError(
            "SECRET_KEY is empty and DEBUG is off. Set SECRET_KEY to a long random value, e.g. "
            "the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS",
    default="localhost,127.0.0.1,[::1]",
    description="Comma-separated host names the service answers to.",
)
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS",
    default="",
    description="Comma-separated origins (scheme and host) trusted for unsafe browser requests.",
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",
    "django.contrib.staticfiles",
    "ninja",
    "timesheets",
    "events",
    "pages",
    "worker",
    "reports",
    "webhooks",
]

MIDDLEWARE = [
    # First, so that every response, static files included, is timed, counted and logged.
    "config.middleware.request_log_middleware",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.api_errors_middleware",
    "config.middleware.DatabaseProblemsMiddleware",
]
# The API's and the probes' stack (config/api_handler.py): async-capable middleware only, so
# that no request hops to a thread for it. The API authenticates by itself (timesheets/auth.py).
API_MIDDLEWARE = [
    "config.middleware.request_log_middleware",
    "config.middleware.django_hooks_middleware",
    "config.middleware.api_errors_middleware",
    "config.middleware.DatabaseProblemsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------

DATABASE_URL = env_str(
    "DATABASE_URL",
    default="sqlite:///db.sqlite3",
    allowed="`sqlite:///<path>` or `postgres://user:password@host:port/name`",
    description=(
        "Where data lives. The default is an embedded SQLite file in the project folder; "
        "postgres://user:password@host:port/name uses PostgreSQL with a connection pool."
    ),
)
DATABASE_POOL_SIZE = env_int(
    "DATABASE_POOL_SIZE",
    default=10,
    minimum=1,
    maximum=1000,
    description="PostgreSQL only: the most connections one process keeps open.",
)
REQUEST_THREADS = env_int(
    "REQUEST_THREADS",
    default=10,
    minimum=1,
    maximum=1000,
    description=(
        "Requests one server process runs at once; the next ones wait their turn (the probes "
        "never wait). On PostgreSQL more than DATABASE_POOL_SIZE only makes requests wait for "
        "a connection."
    ),
)


def _without_password(url: str) -> str:
    # Error messages end up in logs and terminals; the password must not.
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _database(url: str) -> dict[str, Any]:
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url))
    except ValueError as error:
        raise SettingsError(
            f"DATABASE_URL={_without_password(url)!r} is not usable: {error}"
        ) from None
    engine = config["ENGINE"]
    options: dict[str, Any] = dict(config.get("OPTIONS") or {})
    if engine == "django.db.backends.sqlite3":
        name = Path(config["NAME"])
        if not name.is_absolute():
            name = BASE_DIR / name
        config["NAME"] = str(name)
        # Several threads and processes write at once: WAL lets readers go on while one
        # writes, the busy timeout makes writers queue instead of failing, and immediate
        # transactions take the write lock up front so a transaction never has to upgrade
        # a read lock (which SQLite answers with "database is locked").
        options.setdefault(
            "init_command",
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("timeout", 20)  # seconds
        # Tests use a file too, so that other threads and processes can share it.
        config["TEST"] = {"NAME": str(name.with_name(f"test_{name.name}"))}
    elif engine == "django.db.backends.postgresql":
        from config.database import (
            CONNECT_TIMEOUT,
            POOL_TIMEOUT,
            WatchedConnection,
            check_connection,
        )

        # An unreachable host fails an attempt after this long instead of the system's
        # TCP timeout (minutes).
        options.setdefault("connect_timeout", CONNECT_TIMEOUT)
        options.setdefault(
            "pool",
            {
                "min_size": 1,
                "max_size": DATABASE_POOL_SIZE,
                "timeout": POOL_TIMEOUT,  # shortened while the database is unreachable
                # A failed attempt to connect is retried by the next caller, at once, rather
                # than in the background with an exponential backoff.
                "reconnect_timeout": 0,
                "connection_class": WatchedConnection,
                # A connection killed by a server restart is replaced, not handed out.
                "check": check_connection,
            },
        )
        config["CONN_MAX_AGE"] = 0
    else:
        raise SettingsError(
            f"DATABASE_URL={_without_password(url)!r} names an unsupported database; "
            "use sqlite:/// or postgres://."
        )
    config["OPTIONS"] = options
    return config


DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static files -------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "pages:my_time"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str(
    "TIME_ZONE",
    default="UTC",
    allowed="an IANA time zone name, such as `Europe/Paris`",
    check=lambda name: name in zoneinfo.available_timezones(),
    description="Time zone for display in the admin. Storage and the API are always UTC.",
)
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / env_str(
    "STATIC_ROOT",
    default="staticfiles",
    allowed="a path",
    description="Where collectstatic puts the files the app serves; relative to the project.",
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "servestatic.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_AUTOREFRESH = DEBUG

# Bodies larger than this are refused with 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024  # bytes

# --- E-mail (password reset) ---------------------------------------------------------------

# Django's MAILERS; the values come from variables named as Django's former e-mail settings.
# (Lower-case names: an upper-case EMAIL_HOST here would be a deprecated Django setting.)
_email_host = env_str(
    "EMAIL_HOST",
    default="localhost",
    allowed="a host name or address",
    description="The SMTP server password-reset e-mail goes through (DEBUG off only).",
)
_email_port = env_int(
    "EMAIL_PORT",
    default=25,
    minimum=1,
    maximum=65535,
    description="The SMTP server's port.",
)
_email_user = env_str(
    "EMAIL_HOST_USER",
    default="",
    description="The SMTP user name; empty: no authentication.",
)
_email_password = env_str(
    "EMAIL_HOST_PASSWORD",
    default="",
    description="The SMTP password. Never logged.",
)
_email_tls = env_bool(
    "EMAIL_USE_TLS",
    default=False,
    description="Talk to the SMTP server over STARTTLS.",
)
DEFAULT_FROM_EMAIL = env_str(
    "DEFAULT_FROM_EMAIL",
    default="webmaster@localhost",
    allowed="an e-mail address",
    description="The sender of the service's e-mail.",
)
EMAIL_TIMEOUT_SECONDS = 10  # an SMTP server that hangs must not hold a request longer
MAILERS: dict[str, dict[str, Any]] = {
    # While debugging, e-mail is printed by the process instead of being sent.
    "default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if DEBUG
    else {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": _email_host,
            "port": _email_port,
            "username": _email_user,
            "password": _email_password,
            "use_tls": _email_tls,
            "timeout": EMAIL_TIMEOUT_SECONDS,
        },
    }
}

# --- Logging ------------------------------------------------------------------------------

LOG_FORMAT = env_choice(
    "LOG_FORMAT",
    default="console",
    choices=("console", "json"),
    description="console: coloured lines for people; json: one JSON object per line.",
)
LOG_LEVEL = env_choice(
    "LOG_LEVEL",
    default="INFO",
    choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    description="The least severe level that is logged.",
)
configure_structlog()
# Tracebacks list local variables only while debugging: they may hold secrets.
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL, show_locals=DEBUG)

# --- Server -------------------------------------------------------------------------------

HTTP_HEADER_TIMEOUT_SECONDS = env_float(
    "HTTP_HEADER_TIMEOUT_SECONDS",
    default=10,
    # Beyond 30 s, slow clients would hold connections that long.
    minimum=1,
    maximum=30,
    description=(
        "A connection whose request headers are not all in after this many seconds is closed (408)."
    ),
)

# --- Timesheets ---------------------------------------------------------------------------

TIMESHEETS_MAX_RUNNING_PER_USER = env_int(
    "TIMESHEETS_MAX_RUNNING_PER_USER",
    default=1,
    minimum=1,
    maximum=1000,
    zero_means="no limit",
    description=(
        "How many timesheets one person may run at once; starting one more stops the "
        "longest-running one. 0 means no limit."
    ),
)
TIMESHEETS_MAX_RUNNING_HOURS = env_float(
    "TIMESHEETS_MAX_RUNNING_HOURS",
    default=12,
    # From one minute to 31 days: beyond, instants overflow what the databases can store.
    minimum=1 / 60,
    maximum=31 * 24,
    zero_means="no limit",
    description=(
        "A run longer than this is stopped at exactly this length and flagged for review. "
        "0 disables the limit."
    ),
)

# --- Events -------------------------------------------------------------------------------

EVENTS_RETENTION_HOURS = env_float(
    "EVENTS_RETENTION_HOURS",
    default=168,
    minimum=1,
    maximum=24 * 366,
    description=(
        "How long events are kept, in hours: a client of the event stream that reconnects "
        "later than this misses some and is told so."
    ),
)

# --- Worker -------------------------------------------------------------------------------

WORKER_AUTOSTART = env_bool(
    "WORKER_AUTOSTART",
    default=True,
    description="Run the periodic jobs inside the web process (ASGI lifespan).",
)
WORKER_TICK_SECONDS = env_float(
    "WORKER_TICK_SECONDS",
    default=5,
    minimum=0.05,
    maximum=3600,
    description="Interval of the accrual job, in seconds; fractions such as 0.2 are allowed.",
)
WORKER_METRICS_PORT = env_int(
    "WORKER_METRICS_PORT",
    default=0,
    minimum=1,
    maximum=65535,
    zero_means="none",
    description="runworker only: serve Prometheus metrics on this port; 0 serves none.",
)
WORKER_METRICS_HOST = env_str(
    "WORKER_METRICS_HOST",
    default="127.0.0.1",
    allowed="an address of this host",
    description=(
        "runworker only: the address its metrics port listens on; 0.0.0.0 for every "
        "interface, when only the scraper can reach it."
    ),
)
WORKER_ORM_MODE = env_choice(
    "WORKER_ORM_MODE",
    default="sync_to_async",
    choices=("sync_to_async", "native"),
    description=(
        "How the accrual job talks to the database: the sync ORM in the runner's thread, "
        "or Django's native async ORM."
    ),
)

# --- Webhooks -----------------------------------------------------------------------------

WEBHOOKS_INTERVAL_SECONDS = env_float(
    "WEBHOOKS_INTERVAL_SECONDS",
    default=1,
    minimum=0.05,
    maximum=3600,
    description="Interval of the webhook job (fan-out and delivery), in seconds.",
)
WEBHOOKS_CONCURRENCY = env_int(
    "WEBHOOKS_CONCURRENCY",
    default=100,
    minimum=1,
    maximum=1000,
    description="Webhook requests one runner has in flight at once.",
)
WEBHOOKS_BATCH_SIZE = env_int(
    "WEBHOOKS_BATCH_SIZE",
    default=1000,
    minimum=1,
    maximum=10000,
    description="Deliveries one run of the webhook job claims and sends.",
)
WEBHOOKS_TIMEOUT_SECONDS = env_float(
    "WEBHOOKS_TIMEOUT_SECONDS",
    default=10,
    minimum=0.1,
    maximum=60,
    description="A webhook request not answered within this many seconds has failed.",
)
WEBHOOKS_RETRY_HOURS = env_float(
    "WEBHOOKS_RETRY_HOURS",
    default=24,
    minimum=1 / 60,
    maximum=24 * 7,
    description="How long a failing delivery is retried, with backoff, before giving up.",
)
WEBHOOKS_DISABLE_AFTER_FAILURES = env_int(
    "WEBHOOKS_DISABLE_AFTER_FAILURES",
    default=100,
    minimum=1,
    maximum=100_000,
    description="A subscription whose deliveries failed this many times in a row is disabled.",
)
WEBHOOKS_ALLOWED_NETWORKS = env_list(
    "WEBHOOKS_ALLOWED_NETWORKS",
    default="",
    description=(
        "Comma-separated CIDRs webhooks may reach although they are not public (loopback, "
        "private); empty allows public addresses only."
    ),
)
try:
    for _network in WEBHOOKS_ALLOWED_NETWORKS:
        ipaddress.ip_network(_network)
except ValueError as _error:
    raise SettingsError(
        f"WEBHOOKS_ALLOWED_NETWORKS: {_error}; use CIDRs such as 10.0.0.0/8."
    ) from None

# --- Metrics ------------------------------------------------------------------------------

METRICS_TOKEN_MIN_LENGTH = 16  # characters
METRICS_TOKEN = env_str(
    "METRICS_TOKEN",
    default="",
    allowed="empty, or at least 16 characters",
    description=(
        "The bearer token a scraper sends for /metrics. Empty: no metrics are served over HTTP."
    ),
)
if METRICS_TOKEN and len(METRICS_TOKEN) < METRICS_TOKEN_MIN_LENGTH:
    # Not the generic range error: that would print the token.
    raise SettingsError(
        f"METRICS_TOKEN is {len(METRICS_TOKEN)} characters long; use at least "
        f"{METRICS_TOKEN_MIN_LENGTH}, e.g. the output of: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
