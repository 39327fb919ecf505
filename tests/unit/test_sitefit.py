"""sitefit 1.0.0, the real solver (shapely): the seed's sample, determinism, setbacks, houses that cannot fit,
refused polygons and CRSs, and properties over random convex and concave (star-shaped) parcels."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from shapely.geometry import MultiPoint, Polygon

import hypothesis_profiles  # noqa: F401 - the suite's profiles (ci: few examples, derandomized)
from compute_helpers import SAMPLE_INPUTS, X0, Y0, footprint, polygon
from geomill.contracts import load_contracts
from geomill.contracts.runner import run_contract
from geomill.domain import InvalidInput
from geomill.solvers.sitefit import solve

ENGINE = {"mode": "in_process", "name": "test"}
SITEFIT = load_contracts().get("sitefit", "1.0.0")


def run(**inputs: Any) -> dict[str, Any]:
    """sitefit under its contract (inputs and outputs checked) with the sample's inputs updated."""
    return run_contract(SITEFIT, {**SAMPLE_INPUTS, **inputs}, ENGINE)


def assert_inside(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
    """Every placement puts the house inside the parcel and at least the setback from its boundary."""
    parcel, house = polygon(inputs["parcel"]), polygon(inputs["house"])
    setback = inputs.get("setback", 0.0)
    for p in outputs["placements"]:
        placed = footprint(house, p)
        assert parcel.covers(placed), p
        assert parcel.boundary.distance(placed) >= setback - 1e-9, (p, parcel.boundary.distance(placed))
        assert math.isclose(placed.area, house.area, rel_tol=1e-9)
        assert p["transform"]["translation"]["z"] == 0.0


def test_the_seeds_sample_request_places_the_house_inside_the_parcel() -> None:
    """20 x 30 m parcel in EPSG:5514, 10 x 8 m house, seed 999: placements, best first, all inside."""
    out = run()
    placements = out["placements"]
    assert 1 <= len(placements) <= 10 and out["reason"] is None
    assert_inside(SAMPLE_INPUTS, out)
    scores = [p["score"] for p in placements]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert len({p["id"] for p in placements}) == len(placements)
    # the best is aligned with the parcel's longest edge (north-south): the 10 m side turned 90 (or 270) degrees
    assert placements[0]["transform"]["rotation"]["value"] % 180 == 90
    assert out["metadata"] == {"definition": "sitefit", "version": "1.0.0", "engine": ENGINE}


def test_the_same_seed_gives_the_same_answer_and_another_seed_another_grid() -> None:
    first, again, other = run(seed=999), run(seed=999), run(seed=7)
    assert first == again
    assert [p["transform"] for p in first["placements"]] != [p["transform"] for p in other["placements"]]
    assert_inside(SAMPLE_INPUTS, other)


def test_setback_is_kept_from_every_edge() -> None:
    inputs = {**SAMPLE_INPUTS, "setback": 3.0}
    out = run(setback=3.0)
    assert out["placements"]
    assert_inside(inputs, out)


def test_a_house_that_cannot_fit_gives_no_placement_and_the_reason() -> None:
    """Not a failure: an empty list and why (too big, or the setback leaves nothing)."""
    big = run(house={"type": "Polygon", "coordinates": [[[0, 0], [25, 0], [25, 25], [0, 25], [0, 0]]]})
    assert big["placements"] == [] and "larger than the buildable area" in big["reason"]
    no_room = run(setback=10.0)
    assert no_room["placements"] == [] and "leaves no buildable area" in no_room["reason"]
    tight = run(setback=6.5)  # room left (7 x 17 m), but not for an 8 m wide house
    assert tight["placements"] == [] and "no rotation" in tight["reason"]


@pytest.mark.parametrize("name, doc, reason", [
    ("parcel", {"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]},
     "Self-intersection"),
    ("house", {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 0], [0, 0]]]}, "Too few points|no area"),
    ("parcel", {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
                                                    [[5, 5], [15, 5], [15, 6], [5, 6], [5, 5]]]},
     "Hole lies outside shell|Self-intersection"),
])
def test_invalid_polygons_are_refused_with_the_reason(name: str, doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInput, match=f"{name}: .*({reason})"):
        solve({**SAMPLE_INPUTS, name: doc}, ENGINE)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:9999999"])
def test_a_crs_that_is_not_projected_in_metres_is_refused(crs: str) -> None:
    with pytest.raises(InvalidInput, match="crs: "):
        solve({**SAMPLE_INPUTS, "crs": crs}, ENGINE)


def test_a_parcel_with_a_hole_keeps_the_house_out_of_the_hole() -> None:
    """A courtyard parcel: placements avoid the hole (its ring is part of the boundary the setback applies to)."""
    outer = [[X0, Y0], [X0 + 40, Y0], [X0 + 40, Y0 + 40], [X0, Y0 + 40], [X0, Y0]]
    hole = [[X0 + 12, Y0 + 12], [X0 + 28, Y0 + 12], [X0 + 28, Y0 + 28], [X0 + 12, Y0 + 28], [X0 + 12, Y0 + 12]]
    inputs = {**SAMPLE_INPUTS, "parcel": {"type": "Polygon", "coordinates": [outer, hole]}, "setback": 1.0}
    out = run_contract(SITEFIT, inputs, ENGINE)
    assert out["placements"]
    assert_inside(inputs, out)


# properties: random parcels around the sample's origin, houses of random sizes


def star_parcel(radii: list[float], cx: float = X0, cy: float = Y0) -> list[list[float]]:
    """A star-shaped (generally concave) simple polygon: radii at evenly spaced angles around a centre."""
    ring = [[cx + r * math.cos(2 * math.pi * i / len(radii)), cy + r * math.sin(2 * math.pi * i / len(radii))]
            for i, r in enumerate(radii)]
    return [*ring, ring[0]]


def convex_parcel(points: list[tuple[float, float]]) -> list[list[float]] | None:
    hull = MultiPoint([(X0 + x, Y0 + y) for x, y in points]).convex_hull
    if not isinstance(hull, Polygon) or hull.area < 50:
        return None
    return [list(c) for c in hull.exterior.coords]


houses = st.tuples(st.floats(3, 15), st.floats(3, 12)).map(
    lambda wh: {"type": "Polygon", "coordinates": [[[0, 0], [wh[0], 0], [wh[0], wh[1]], [0, wh[1]], [0, 0]]]})
options = st.fixed_dictionaries({"setback": st.sampled_from([0.0, 0.5, 2.0]),
                                 "rotation_step": st.sampled_from([15, 30, 45, 90]),
                                 "seed": st.integers(0, 2**32 - 1)})


def check_properties(ring: list[list[float]], house: dict[str, Any], opts: dict[str, Any]) -> None:
    inputs = {**SAMPLE_INPUTS, "parcel": {"type": "Polygon", "coordinates": [ring]}, "house": house, **opts}
    out = run_contract(SITEFIT, inputs, ENGINE)  # outputs checked against the contract too
    assert_inside(inputs, out)
    event("placed" if out["placements"] else "no fit")
    assert (out["reason"] is None) == bool(out["placements"])
    scores = [p["score"] for p in out["placements"]]
    assert scores == sorted(scores, reverse=True)


@given(radii=st.lists(st.floats(8, 40), min_size=5, max_size=14), house=houses, opts=options)
def test_property_concave_parcels_every_placement_inside(radii: list[float], house: dict[str, Any],
                                                         opts: dict[str, Any]) -> None:
    check_properties(star_parcel(radii), house, opts)


@given(points=st.lists(st.tuples(st.floats(0, 60), st.floats(0, 60)), min_size=3, max_size=12), house=houses,
       opts=options)
def test_property_convex_parcels_every_placement_inside(points: list[tuple[float, float]], house: dict[str, Any],
                                                        opts: dict[str, Any]) -> None:
    ring = convex_parcel(points)
    assume(ring is not None)
    assert ring is not None
    check_properties(ring, house, opts)
