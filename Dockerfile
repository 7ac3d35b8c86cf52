# The base: the official image by default; any image with the same Python 3.13 serves
# (docker build --build-arg PYTHON_IMAGE=...), such as one made where no registry is reachable.
# No `# syntax=` line either: the engine's own Dockerfile frontend builds it, with no download.
ARG PYTHON_IMAGE=python:3.13.13-slim-trixie

# --- builder: the dependencies from the lock, then the source and the collected static files
FROM ${PYTHON_IMAGE} AS builder

ENV PATH="/app/.venv/bin:$PATH" \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app

# The dependencies change less often than the code: their layer is reused until the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

COPY . .
# The settings refuse DEBUG off without a SECRET_KEY; this one exists only during the build
# and signs nothing. collectstatic reads no database.
RUN chmod 0755 docker/entrypoint.sh \
    && DEBUG=false SECRET_KEY=collectstatic-at-build-time-only \
       python manage.py collectstatic --noinput

# --- runtime: the same Python, the virtual environment and the app, run by an unprivileged user
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    PORT=8000 \
    DEBUG=false

# /data belongs to the app: a volume mounted there starts with that owner, so it can hold a
# SQLite file (DATABASE_URL=sqlite:////data/db.sqlite3) when there is no PostgreSQL.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app \
    && install -d -o app -g app -m 0750 /data

WORKDIR /app
# Owned by root: the app can read its code and static files but not change them.
COPY --from=builder /app /app

# Numeric, so that a runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# Liveness: /healthz touches no database, so a database outage does not mark the web
# container unhealthy. Roles that serve no HTTP (worker, migrate) turn it off in compose.yaml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
