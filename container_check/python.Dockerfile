# A stand-in for the official python:3.13-slim-trixie image, made from Debian's own packages on
# a base made with debootstrap, for machines that reach Debian's archive but no image registry.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       python3 python3-pip python-is-python3 ca-certificates netbase tzdata \
    && rm -rf /var/lib/apt/lists/*

# HTTPS from the build goes through whatever the host trusts. uv reads only SSL_CERT_FILE,
# never the system store, so the host's bundle is named explicitly.
COPY host-ca-bundle.crt /usr/local/share/host-ca-bundle.crt
# Debian marks its Python as managed by apt; the project's build installs uv with pip.
ENV SSL_CERT_FILE=/usr/local/share/host-ca-bundle.crt \
    PIP_CERT=/usr/local/share/host-ca-bundle.crt \
    PIP_BREAK_SYSTEM_PACKAGES=1
