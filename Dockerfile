# iot-bridge container image.
#
# Classic builder syntax only (no "# syntax=" line, no RUN --mount, no heredocs): it builds with
# BuildKit and with the legacy builder alike.
#
#   docker build --network host -t iot-bridge:0.1.0 .
#
# (--network host is only needed where the daemon's default network has no route out, as on a
# daemon started with --bridge=none; pip fetches the wheels in the first stage.)

# ---- stage 1: wheels, then a self-contained virtualenv -------------------------------------
FROM python:3.11-slim AS build

# Lets a CI job remove this stage's untagged image after a build (docker image prune --filter).
LABEL iot-bridge.stage=build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/

# Wheels for the project and its dependencies (orjson, aiohttp, ...), built or downloaded here
# so that the runtime stage never sees a compiler, a build backend or a download cache.
RUN python -m pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-index --find-links /wheels iot-bridge \
 && /opt/venv/bin/python -m pip uninstall -y pip setuptools \
 && /opt/venv/bin/iot-bridge --help >/dev/null

# ---- stage 2: runtime -----------------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="iot-bridge" \
      org.opencontainers.image.description="MQTT smart plugs to Odoo 18 machine-usage sessions" \
      org.opencontainers.image.licenses="LGPL-3.0-only"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DATA_DIR=/data \
    HEALTH_HOST=127.0.0.1 \
    HEALTH_PORT=8080

# uid 1000 like the original; /data belongs to it, so a fresh named volume does too.
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin bridge \
 && mkdir -p /data \
 && chown bridge:bridge /data

COPY --from=build /opt/venv /opt/venv

USER bridge
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# No curl in slim images: ask /health with the interpreter that is already there. 200 = healthy,
# 503 (problems listed in the body) or no answer = unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os,sys,urllib.request as u;sys.exit(0 if u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HEALTH_PORT','8080'),timeout=4).status==200 else 1)" >/dev/null 2>&1 || exit 1

STOPSIGNAL SIGTERM
CMD ["iot-bridge", "run"]
