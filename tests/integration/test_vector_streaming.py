"""A GeoJSON of a few hundred MB is streamed by vector.prepare, not loaded: its peak RSS, measured in a child
process, stays far below the file size (the memory above the interpreter's own is bounded by the read batch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PREPARE = """
import sys
from pathlib import Path
from geomill.engine.context import TaskContext
from geomill.sinks.geopackage import GeoPackageSink
from geomill.storage.local import LocalStorage
from geomill.tasks.vector.prepare import PrepareVectorParams, prepare_vector
storage = LocalStorage(Path(sys.argv[2])); storage.ensure_zones()
ctx = TaskContext(task_id="t", job_id="j", stage=1, attempt=1, storage=storage, vector_sink=GeoPackageSink(storage))
if sys.argv[1] != "-":
    load = prepare_vector(PrepareVectorParams(source=sys.argv[1]), ctx).loads[0]
    print(load.feature_count, len(load.chunks))
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would include the forking pytest process
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) // 1024)
"""


def write_big_geojson(path: Path, n: int, pad: int = 2000) -> int:
    """`n` point features, each with a ~2 KB text property; written in pieces (this test never holds it)."""
    filler = "x" * pad
    with open(path, "w") as f:
        f.write('{"type": "FeatureCollection", "features": [\n')
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            f.write(",\n".join(
                f'{{"type": "Feature", "properties": {{"n": {i}, "note": "{filler}{i}"}}, "geometry": '
                f'{{"type": "Point", "coordinates": [{(i % 3600) / 10 - 180}, {(i % 1700) / 10 - 85}]}}}}'
                for i in range(start, stop)))
            f.write(",\n" if stop < n else "\n")
        f.write("]}\n")
    return path.stat().st_size


def run_prepare(source: str, root: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PREPARE, source, str(root)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


@pytest.mark.slow
def test_a_big_geojson_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "big.geojson"
    size_mb = write_big_geojson(source, 170_000) / 2**20
    assert size_mb > 300
    (baseline_mb,) = map(int, run_prepare("-", tmp_path / "s0"))  # the interpreter with geomill's imports
    features, chunks, peak_mb = map(int, run_prepare(str(source), tmp_path / "s1"))
    assert (features, chunks) == (170_000, 2)
    print(f"GeoJSON {size_mb:.0f} MB: prepare peak RSS {peak_mb} MB (interpreter alone {baseline_mb} MB)")
    assert peak_mb < 0.8 * size_mb
    assert peak_mb - baseline_mb < 0.35 * size_mb
