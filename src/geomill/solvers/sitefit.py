"""sitefit 1.0.0: fit a house footprint into a parcel (shapely).

A placement is a rotation of the house about its own origin (0, 0) by `value` degrees counter-clockwise, then a
translation by (x, y) into the parcel's CRS (z is 0: the solver is planar). The search tries the rotations 0, step,
2*step, ... below 360 and, for each, a grid of translations whose offset within one grid step comes from `seed`. A
placement is kept when the placed house lies inside the parcel buffered inwards by the setback and at least the
setback from every edge of the parcel (holes included).

Score (0..1), best first: ``0.6 * clearance + 0.4 * alignment``, where `clearance` is the placement's distance to the
parcel's boundary beyond the setback divided by the largest such distance among the kept placements, and `alignment`
is ``cos²`` of the angle between the placed house's longest edge and the parcel's longest edge (1 parallel, 0 at
right angles). Ties go to the smaller rotation, then x, then y. Placements whose centres lie within half the house's
shorter side of a better one are left out, so the list offers different spots.

`artifacts` (the contract's derived files): `placements.geojson`, the placed footprints as RFC 7946 GeoJSON (WGS 84
longitude/latitude, reprojected from the inputs' CRS), best first, with id, score and rotation.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from geomill.domain import InvalidInput

DEFINITION, VERSION = "sitefit", "1.0.0"
CLEARANCE_WEIGHT, ALIGNMENT_WEIGHT = 0.6, 0.4
MAX_CANDIDATES = 40_000  # translations x rotations tried at most: the solve time stays bounded


@dataclass(frozen=True)
class Problem:
    parcel: Polygon
    house: Polygon
    setback: float
    rotation_step: float
    translation_step: float | None
    max_placements: int
    seed: int


class Candidates:
    """The kept placements as columns: rotation, x, y, clearance (beyond the setback), alignment, centre x, y."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.rotation, self.x, self.y, self.clearance, self.alignment = (rows[:, k] for k in range(5))

    def centre(self, i: int) -> tuple[float, float]:
        return float(self.rows[i, 5]), float(self.rows[i, 6])


def polygon(doc: Mapping[str, Any], name: str) -> Polygon:
    """A valid polygon of positive area from GeoJSON-like `doc`; InvalidInput naming `name` and the fault."""
    rings = [[tuple(p[:2]) for p in ring] for ring in doc["coordinates"]]
    try:
        poly = Polygon(rings[0], rings[1:])
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{name}: not a polygon: {exc}", field=f"inputs.{name}") from None
    if not poly.is_valid:
        raise InvalidInput(f"{name}: invalid polygon: {explain_validity(poly)}", field=f"inputs.{name}")
    if poly.area <= 0:
        raise InvalidInput(f"{name}: the polygon has no area", field=f"inputs.{name}")
    return poly


@functools.lru_cache(maxsize=64)
def check_crs(crs: str) -> None:
    """InvalidInput unless `crs` is a projected CRS in metres (the setback and steps are metres)."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(crs)
    except CRSError:
        raise InvalidInput(f"crs: unknown CRS {crs!r}", field="inputs.crs") from None
    units = {a.unit_name for a in parsed.axis_info[:2]}
    if not parsed.is_projected or units != {"metre"}:
        raise InvalidInput(f"crs: {crs} is not a projected CRS in metres (e.g. EPSG:5514)", field="inputs.crs")


def read_problem(inputs: Mapping[str, Any]) -> Problem:
    """The problem the (schema-valid) inputs pose; InvalidInput for a bad CRS or polygon."""
    check_crs(inputs["crs"])
    step = inputs.get("translation_step")
    return Problem(polygon(inputs["parcel"], "parcel"), polygon(inputs["house"], "house"),
                   float(inputs.get("setback", 0.0)), float(inputs.get("rotation_step", 15.0)),
                   float(step) if step is not None else None, int(inputs.get("max_placements", 10)),
                   int(inputs.get("seed", 0)))


def check_inputs(inputs: Mapping[str, Any]) -> None:
    """The contract's `input_check`: run at submit, so bad polygons are refused before anything is stored."""
    read_problem(inputs)


def edge_angle(ring: Any) -> float:
    """Direction (degrees, 0..180) of the longest edge of `ring`."""
    xy = np.asarray(ring.coords)[:, :2]
    d = np.diff(xy, axis=0)
    i = int(np.argmax(np.hypot(d[:, 0], d[:, 1])))
    return math.degrees(math.atan2(d[i, 1], d[i, 0])) % 180.0


def rotations(step: float) -> list[float]:
    return [k * step for k in range(math.ceil(360.0 / step)) if k * step < 360.0]


def shorter_side(house: Polygon) -> float:
    """The shorter side of the house's minimum rotated rectangle."""
    xy = shapely.get_coordinates(shapely.minimum_rotated_rectangle(house))[:3]
    d = np.hypot(*np.diff(xy, axis=0).T)
    return float(max(min(d), 1e-6))


def grid_step(p: Problem, allowed: Any, n_rotations: int) -> float:
    """The translation step: as asked, or a quarter of the house's shorter side; never so fine that the search
    tries more than MAX_CANDIDATES placements."""
    bx0, by0, bx1, by1 = allowed.bounds
    per_rotation = max(MAX_CANDIDATES // n_rotations, 16)
    floor = math.sqrt(max((bx1 - bx0) * (by1 - by0), 1e-12) / per_rotation)
    return max(p.translation_step or shorter_side(p.house) / 4.0, floor)


def translations(rotated: Polygon, allowed: Any, step: float, offset: tuple[float, float]) -> np.ndarray:
    """(x, y) translations on the seeded grid that keep the rotated house's bounding box inside `allowed`'s."""
    rx0, ry0, rx1, ry1 = rotated.bounds
    ax0, ay0, ax1, ay1 = allowed.bounds
    xs = np.arange(ax0 - rx0 + offset[0] * step, ax1 - rx1 + 1e-9, step)
    ys = np.arange(ay0 - ry0 + offset[1] * step, ay1 - ry1 + 1e-9, step)
    if not len(xs) or not len(ys):
        return np.empty((0, 2))
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def _placed_many(rotated: Polygon, moves: np.ndarray) -> np.ndarray:
    """`rotated` translated by each row of `moves`, vectorised (shapely.transform over one coordinate array)."""
    n_coords = len(shapely.get_coordinates(rotated))
    shifts = np.repeat(moves, n_coords, axis=0)
    return shapely.transform(np.full(len(moves), rotated, dtype=object), lambda xy: xy + shifts)


def feasible(p: Problem) -> tuple[Candidates | None, str | None]:
    """Every kept placement of the search, or none and the reason."""
    allowed = p.parcel.buffer(-p.setback) if p.setback > 0 else p.parcel
    if allowed.is_empty:
        return None, f"a setback of {p.setback:g} m leaves no buildable area in the parcel"
    if p.house.area > allowed.area:
        return None, (f"the house ({p.house.area:.1f} m²) is larger than the buildable area ({allowed.area:.1f} m², "
                      f"the parcel minus a {p.setback:g} m setback)")
    shapely.prepare(allowed)
    boundary = p.parcel.boundary
    shapely.prepare(boundary)
    angles = rotations(p.rotation_step)
    step = grid_step(p, allowed, len(angles))
    rng = random.Random(p.seed)
    offset = (rng.random(), rng.random())
    parcel_dir, house_dir = edge_angle(p.parcel.exterior), edge_angle(p.house.exterior)
    parts: list[np.ndarray] = []  # per rotation: rows of (rotation, x, y, clearance, alignment, centre x, centre y)
    for angle in angles:
        rotated = affinity.rotate(p.house, angle, origin=(0.0, 0.0))
        moves = translations(rotated, allowed, step, offset)
        if not len(moves):
            continue
        houses = _placed_many(rotated, moves)
        inside = shapely.contains(allowed, houses)
        distances = np.full(len(moves), -1.0)
        distances[inside] = shapely.distance(boundary, houses[inside])
        keep = inside & (distances >= p.setback)
        if keep.any():
            n, centre = int(keep.sum()), rotated.centroid
            align = math.cos(math.radians(house_dir + angle - parcel_dir)) ** 2
            parts.append(np.column_stack([np.full(n, angle), moves[keep], distances[keep] - p.setback,
                                          np.full(n, align), moves[keep] + (centre.x, centre.y)]))
    if not parts:
        return None, (f"no rotation (every {p.rotation_step:g}°) and position (every {step:.3g} m) places the house "
                      f"inside the parcel{f' minus a {p.setback:g} m setback' if p.setback else ''}")
    return Candidates(np.concatenate(parts)), None


def scores(c: Candidates) -> np.ndarray:
    """The documented rule, rounded to 6 decimals: 0.6 * clearance (relative to the best) + 0.4 * alignment."""
    best = float(c.clearance.max())
    clearance = np.minimum(c.clearance / best, 1.0) if best > 0 else np.zeros(len(c.clearance))
    return np.round(CLEARANCE_WEIGHT * clearance + ALIGNMENT_WEIGHT * c.alignment, 6)


def choose(c: Candidates, p: Problem) -> list[tuple[float, int]]:
    """(score, row) of the best `max_placements`, each at least half the house's shorter side from the better ones;
    ties to the smaller rotation, then x, then y."""
    score = scores(c)
    order = np.lexsort((c.y, c.x, c.rotation, -score))
    apart = shorter_side(p.house) / 2.0
    chosen: list[tuple[float, int]] = []
    for i in order:
        if all(math.dist(c.centre(i), c.centre(j)) >= apart for _, j in chosen):
            chosen.append((float(score[i]), int(i)))
            if len(chosen) == p.max_placements:
                break
    return chosen


def solve(inputs: Mapping[str, Any], engine: Mapping[str, str]) -> dict[str, Any]:
    """The contract's solver: placements best first (empty, with the reason, when the house cannot fit)."""
    p = read_problem(inputs)
    found, reason = feasible(p)
    placements = [{
        "id": f"p{n:03d}", "score": score,
        "transform": {"rotation": {"axis": "z", "value": float(found.rotation[i])},
                      "translation": {"x": float(found.x[i]), "y": float(found.y[i]), "z": 0.0}},
    } for n, (score, i) in enumerate(choose(found, p), start=1)] if found is not None else []
    return {"placements": placements, "reason": reason,
            "metadata": {"definition": DEFINITION, "version": VERSION, "engine": dict(engine)}}


def footprint(house: Polygon, placement: Mapping[str, Any]) -> Polygon:
    """The house where `placement` puts it: rotated about (0, 0), then translated."""
    t = placement["transform"]
    rotated = affinity.rotate(house, t["rotation"]["value"], origin=(0.0, 0.0))
    return affinity.translate(rotated, t["translation"]["x"], t["translation"]["y"])


def artifacts(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> list[tuple[str, str, bytes]]:
    """`placements.geojson`: each placement's footprint in WGS 84 (RFC 7946), with its id, score and rotation."""
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(inputs["crs"], "EPSG:4326", always_xy=True)
    house = polygon(inputs["house"], "house")
    features = []
    for p in outputs["placements"]:
        placed = shapely.transform(footprint(house, p), lambda xy: np.column_stack(to_wgs84.transform(*xy.T)))
        features.append({"type": "Feature", "id": p["id"], "geometry": shapely.geometry.mapping(placed),
                         "properties": {"id": p["id"], "score": p["score"],
                                        "rotation": p["transform"]["rotation"]["value"]}})
    doc = {"type": "FeatureCollection", "features": features}
    return [("placements.geojson", "application/geo+json", json.dumps(doc, separators=(",", ":")).encode())]
