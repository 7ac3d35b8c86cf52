# A stand-in for the official postgres:17 image (same variables, data directory, port and
# tools), made from Debian's packages, for machines that reach no image registry.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}

# Debian's package would create a cluster of its own; the entrypoint makes the one used.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common \
    && sed -ri 's/^#?\s*create_main_cluster\s*=.*$/create_main_cluster = false/' \
       /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends postgresql-17 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql

COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh

ENV PATH="/usr/lib/postgresql/17/bin:$PATH" \
    PGDATA=/var/lib/postgresql/data

USER postgres
EXPOSE 5432
# PostgreSQL's fast shutdown, as the official image asks for it.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
