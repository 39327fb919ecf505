"""The scale-out Compose topology with the image itself: one podman container per service of
deploy/compose/scaleout.yaml (its command, environment and volumes), on this host's network, against the local
PostgreSQL, RabbitMQ and moto (the names postgres, rabbitmq and s3 mapped to 127.0.0.1 in the URLs, ports made
unique, as tests/deploy/test_scaleout_processes.py does with local processes). Then the same end-to-end check: a
raster job from S3 and a vector job from the inbox volume, submitted over HTTP, each task run by its role.

Needs an image built by check_image.sh (default localhost/geomill:check), podman with runc (crun refuses this
machine's cgroups), and the services of scripts/services.sh. Not part of the test suite (containers, minutes).

    python deploy/docker/check_scaleout.py [IMAGE]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "deploy"), str(ROOT / "tests"), str(ROOT / "src")]

from scaleout_topology import Topology, complete_a_raster_and_a_vector_job, scaleout  # noqa: E402


class PodmanTopology(Topology):
    """Each service as a container of `image`; volumes are mounted where Compose mounts them."""

    image = "localhost/geomill:check"

    def path_in(self, service: str, path: str) -> str:
        return path

    def argv(self, service: str, override: tuple[str, ...] = (), name: str | None = None) -> list[str]:
        spec = self.doc["services"][service]
        entrypoint = spec.get("entrypoint", ["geomill"])
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        args = ["podman", "--runtime", "runc", "run", "--rm", "--no-healthcheck", "--network", "host",
                "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096",
                "--hostname", _hostname(service), "--entrypoint", entrypoint[0]]
        args += ["--name", name] if name else []
        for key, value in self.service_env(service).items():
            args += ["-e", f"{key}={value}"]
        for target, (host, read_only) in self.volumes(service).items():
            args += ["-v", f"{host}:{target}" + (":ro" if read_only else "")]
        return [*args, self.image, *entrypoint[1:], *(override or spec["command"])]

    def run(self, service: str, *override: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(service, override), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (service, done.stderr[-2000:])
        return done

    def start(self, service: str) -> None:
        log = (self.root / f"{service}.log").open("wb")
        self.procs[service] = subprocess.Popen(self.argv(service, name=_hostname(service)), stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)

    def role_of(self, executed_by_app: str) -> str:
        """`geomill@<hostname>#pid`: each container has its service's hostname."""
        host = executed_by_app.split("@", 1)[1].rsplit("#", 1)[0]
        return next(s for s in self.procs if _hostname(s) == host)

    def stop(self) -> None:
        names = [_hostname(s) for s in self.procs]
        if names:
            subprocess.run(["podman", "--runtime", "runc", "stop", "-t", "60", *names], capture_output=True)
        super().stop()


def _hostname(service: str) -> str:
    return "geomill-" + service.replace("_", "-")


def main(argv: list[str]) -> int:
    PodmanTopology.image = argv[0] if argv else PodmanTopology.image
    with tempfile.TemporaryDirectory(prefix="geomill-scaleout-") as tmp, scaleout(Path(tmp), PodmanTopology) as top:
        done = complete_a_raster_and_a_vector_job(top)
    print(f"image {PodmanTopology.image}: raster {done['raster']['status']}, vector {done['vector']['status']}; "
          f"tasks ran by {done['ran_by']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
