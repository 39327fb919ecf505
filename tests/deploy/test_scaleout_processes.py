"""The scale-out topology of deploy/compose/scaleout.yaml, run as local processes: each service's command and
environment are read from the Compose file (its variables interpolated as `docker compose` does, the image's ENV
from the Dockerfile underneath), and only what a container gives for free is mapped: service host names
(postgres, rabbitmq, s3) to 127.0.0.1, volumes to folders, each container's private data folder and ports to its
own (scaleout_topology.py). The topology then completes a raster job (bronze and silver in S3, on moto) and a
vector job (a Shapefile in the `inbox` volume, loaded into PostGIS) submitted over HTTP, each task run by a worker
process of the role geomill routes it to.

Vector input: a file in the `inbox` volume that the API and worker_vector mount, not S3: process_vector does not
read object storage yet (issue 18; docs/deployment.md)."""

from __future__ import annotations

from pathlib import Path

from scaleout_topology import complete_a_raster_and_a_vector_job, scaleout


def test_the_scaleout_compose_topology_completes_a_raster_and_a_vector_job(tmp_path: Path) -> None:
    with scaleout(tmp_path) as top:
        done = complete_a_raster_and_a_vector_job(top)
    assert done["ran_by"] == {"worker_raster": {"worker_raster"}, "worker_vector": {"worker_vector"}}
