"""The scale-out topology of deploy/compose/scaleout.yaml, run as local processes: each service's command and
environment are read from the Compose file (its variables interpolated as `docker compose` does, the image's ENV
from the Dockerfile underneath), and only what a container gives for free is mapped: service host names
(postgres, rabbitmq, s3) to 127.0.0.1, each container's private data folder and ports to its own
(scaleout_topology.py). No service mounts a volume: the roles share nothing but the S3 bucket (moto here).

The topology completes, submitted over HTTP, a raster job (a GeoTIFF in the bucket's bronze zone, a COG in silver)
and a vector job (input class: a zipped shapefile in the bronze zone, named by its s3:// URI; 67 polygons loaded
into PostGIS, its GeoParquet chunks passed from prepare to the upload tasks through the bucket's silver zone, none
left in a role's local folder), each task run by a worker process of the role geomill routes it to."""

from __future__ import annotations

from pathlib import Path

from scaleout_topology import complete_a_raster_and_a_vector_job, scaleout


def test_the_scaleout_compose_topology_completes_a_raster_and_a_vector_job_from_the_bucket(tmp_path: Path) -> None:
    with scaleout(tmp_path) as top:
        done = complete_a_raster_and_a_vector_job(top)
    assert done["ran_by"] == {"worker_raster": {"worker_raster"}, "worker_vector": {"worker_vector"}}
