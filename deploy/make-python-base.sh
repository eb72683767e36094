#!/bin/sh
# Build a local stand-in for python:3.11-slim (Debian 12 + Debian's python3 3.11.2)
# from Debian's apt mirror, and load it into the local docker daemon.
# No image registry is needed. Usage: sh make-python-base.sh [workdir]
#
# Used by deploy/smoke-test.sh when python:3.11-slim is neither present nor pullable (a machine
# without registry access). Copied from the team's ../shared/notes/make-python-base.sh (tested
# there). The image trusts this machine's extra CAs: it is for local builds only, never push it.
set -eu
W=${1:-/tmp/pybase}
R=$W/rootfs
# The Debian mirror this machine already uses (first URI in its apt sources).
MIRROR=${MIRROR:-$(grep -h "^URIs:" /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')}
[ -n "$MIRROR" ] || MIRROR=$(grep -h "^deb " /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
rm -rf "$R"; mkdir -p "$W"
debootstrap --variant=minbase \
  --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,tzdata \
  bookworm "$R" "$MIRROR"
# Same apt sources inside the image as on this machine.
cp /etc/apt/sources.list.d/*.sources "$R/etc/apt/sources.list.d/" 2>/dev/null || cp /etc/apt/sources.list "$R/etc/apt/sources.list" 
# Behave like the official image: `pip install` into the system interpreter is allowed.
rm -f "$R"/usr/lib/python3*/EXTERNALLY-MANAGED
# LOCAL-ONLY: trust this machine's extra CAs (egress TLS proxy) so RUN pip install works
# during `docker build` here. Never push an image built this way.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
  chroot "$R" update-ca-certificates >/dev/null
fi
chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* \
       "$R"/var/cache/debconf/*-old "$R"/var/log/*.log "$R"/var/log/apt/*
tar --numeric-owner -C "$R" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  - local/python:3.11-slim-bookworm
# Let unmodified Dockerfiles that say `FROM python:3.11-slim` build here without a pull.
docker tag local/python:3.11-slim-bookworm python:3.11-slim
docker tag local/python:3.11-slim-bookworm python:3.11-slim-bookworm
docker run --rm --network none python:3.11-slim python -c 'import sys, ssl, sqlite3; print(sys.version.split()[0], ssl.OPENSSL_VERSION, "sqlite", sqlite3.sqlite_version)'
