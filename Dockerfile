# geomill: one image for every role (GEOMILL_APP_MODE picks it). GDAL comes inside the rasterio and pyogrio wheels,
# so the image installs no system GDAL. Build:  docker build -t geomill:0.1.0 .   (or podman build; see
# docs/deploy.md). The base is pinned by version; pin it by digest (BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:…)
# in a registry you trust. Any Debian-like base with python3 (>= 3.11) and its venv module works.
ARG BASE_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/geomill
# dependencies first (a layer that changes only with pyproject.toml), then the package itself
COPY pyproject.toml README.md /src/
RUN mkdir -p /src/src/geomill && touch /src/src/geomill/__init__.py \
 && /opt/geomill/bin/pip install /src && /opt/geomill/bin/pip uninstall -y geomill \
 && rm -rf /src/src /src/build  # setuptools' build/ would keep the stub __init__.py (newer than the real one)
COPY src /src/src
RUN /opt/geomill/bin/pip install --no-deps /src && rm -rf /src/build \
 && /opt/geomill/bin/python -c "import geomill, rasterio, pyogrio; print('geomill', geomill.__version__, \
    'GDAL', rasterio.__gdal_version__, pyogrio.__gdal_version_string__)"

FROM ${BASE_IMAGE} AS runtime
# a fixed, unprivileged user (uid 10001): Kubernetes' runAsNonRoot can check it, volumes can be chowned to it
RUN groupadd --system --gid 10001 geomill \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/geomill --create-home --shell /usr/sbin/nologin geomill \
 && install -d -o 10001 -g 10001 /var/lib/geomill/data
COPY --from=build /opt/geomill /opt/geomill
COPY --chmod=0755 deploy/docker/healthcheck.py /opt/geomill/bin/geomill-healthcheck
ENV PATH=/opt/geomill/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GEOMILL_DATA_DIR=/var/lib/geomill/data \
    GEOMILL_HOST=0.0.0.0 \
    GEOMILL_PORT=8000 \
    GEOMILL_PROBE_PORT=8081
USER 10001:10001
WORKDIR /var/lib/geomill
EXPOSE 8000 8081
# /livez of the API (API-bearing modes) or of the probe server (worker roles); see deploy/docker/healthcheck.py
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python3", "/opt/geomill/bin/geomill-healthcheck"]
ENTRYPOINT ["geomill"]
CMD ["serve"]
