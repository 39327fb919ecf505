#!/usr/bin/env bash
# Build geomill's image with podman on a Debian base made by debootstrap (no registry with base images is needed),
# then run in it: `geomill demo`, `geomill health`, `geomill serve` (standalone) with the image's HEALTHCHECK
# command, and checks that it runs as uid 10001 and has no system GDAL. Needs root, podman, runc and debootstrap
# (apt-get install podman runc debootstrap). Not part of the test suite (it takes minutes and a container runtime);
# docs/deploy.md records its last result.
#   bash deploy/docker/check_image.sh [WORK_DIR]     (default /var/tmp/geomill-image)
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-/var/tmp/geomill-image}"
base=localhost/geomill-base:bookworm
image=localhost/geomill:check
mkdir -p "$work"

# This sandbox's limits: crun refuses cgroup v1/v2 hybrid hosts, and the default nofile/nproc limits are above the
# hard limits here; runc with explicit ulimits works. On a normal host `podman run IMAGE …` is enough.
run=(podman --runtime runc run --rm --no-healthcheck --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

if ! podman image exists "$base"; then
  echo "== debootstrap a Debian 12 base with python3 and its venv module"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs" \
    http://deb.debian.org/debian > "$work/debootstrap.log"
  rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/* \
    "$work/rootfs"/usr/share/doc/* "$work/rootfs"/usr/share/man/*
  tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base"
fi

# docker format: OCI images have no HEALTHCHECK; chroot isolation: RUN steps need no OCI runtime; pip gets the
# host's CA bundle (this sandbox's registries are reached through its own certificate authority)
echo "== build"
podman build --format docker --isolation chroot --network host \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg BASE_IMAGE="$base" -t "$image" . > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
podman image inspect "$image" | python3 -c 'import json, sys; i = json.load(sys.stdin)[0]
print("size", i["Size"] // 2**20, "MiB; user", i["Config"]["User"], "; healthcheck", i["Healthcheck"]["Test"])'

echo "== uid, and no system GDAL (rasterio's and pyogrio's wheels bring their own)"
"${run[@]}" --entrypoint sh "$image" -c 'id -u; if ls /usr/lib/x86_64-linux-gnu | grep -i gdal; then exit 1; fi;
  python3 -c "import rasterio, pyogrio; print(\"GDAL\", rasterio.__gdal_version__, pyogrio.__gdal_version_string__)"'

echo "== geomill demo (no network)"
"${run[@]}" --network none "$image" demo | tail -4

echo "== geomill health (SQLite, local zones)"
"${run[@]}" --network none --entrypoint sh "$image" -c 'geomill demo > /dev/null && geomill health'

echo "== geomill serve (standalone) + the image's HEALTHCHECK command, then a worker role's probe"
"${run[@]}" --network none --entrypoint sh "$image" -c 'set -e
  geomill serve --port 8000 > /tmp/serve.log 2>&1 & pid=$!
  for i in $(seq 1 60); do geomill-healthcheck 2> /dev/null && break; sleep 1; done
  geomill-healthcheck || { tail -20 /tmp/serve.log; exit 1; }
  echo "standalone: healthy"
  kill -TERM $pid; wait $pid
  GEOMILL_APP_MODE=worker_raster geomill serve > /tmp/worker.log 2>&1 & pid=$!
  for i in $(seq 1 60); do GEOMILL_APP_MODE=worker_raster geomill-healthcheck 2> /dev/null && break; sleep 1; done
  GEOMILL_APP_MODE=worker_raster geomill-healthcheck || { tail -20 /tmp/worker.log; exit 1; }
  echo "worker_raster: healthy (probe port)"
  kill -TERM $pid; wait $pid'
echo "== all checks passed"
