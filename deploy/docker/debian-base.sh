#!/usr/bin/env bash
# Make a Python base image from Debian packages, for hosts that cannot pull from a registry:
#
#   deploy/docker/debian-base.sh [TAG]          (default TAG: jem-serve/debian-python:bookworm)
#   docker build --build-arg PYTHON_IMAGE=jem-serve/debian-python:bookworm -t jem-serve .
#
# It stands in for python:3.11-slim-bookworm: Debian 12's Python 3.11 with venv support, CA
# certificates (plus this host's own, from /usr/local/share/ca-certificates, so that a
# TLS-intercepting proxy the host trusts is trusted inside the build too), and useradd. No
# compiler, no docs. Needs root (or podman/unshare rights), mmdebstrap and docker.
# Environment: SUITE (bookworm), MIRROR (http://deb.debian.org/debian), DOCKER (docker).
set -euo pipefail

TAG=${1:-jem-serve/debian-python:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}
DOCKER=${DOCKER:-docker}

mmdebstrap --variant=minbase --mode=auto --quiet \
    --include=python3,python3-venv,ca-certificates,passwd \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
        cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/";
        chroot "$1" update-ca-certificates >/dev/null; fi' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$SUITE" - \
    "deb $MIRROR $SUITE main" \
    "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY $SUITE-security main" </dev/null |
    "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --change "LABEL org.jem-serve.script-sha256=$(sha256sum "$0" | cut -d' ' -f1)" \
        --message "mmdebstrap $SUITE minbase + python3 (deploy/docker/debian-base.sh)" \
        - "$TAG"
