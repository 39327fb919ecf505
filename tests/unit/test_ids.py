"""Deterministic ids: the same request names the same job; task ids follow job, stage and key."""

from __future__ import annotations

import json
import re

from geomill.domain import canonical_json, make_job_id, make_task_id

HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_canonical_json_sorts_keys_at_every_level_and_drops_whitespace() -> None:
    a = {"b": 1, "a": {"z": [1, 2], "y": None}}
    b = {"a": {"y": None, "z": [1, 2]}, "b": 1}
    assert canonical_json(a) == canonical_json(b) == '{"a":{"y":null,"z":[1,2]},"b":1}'


def test_canonical_json_keeps_unicode_and_round_trips() -> None:
    value = {"name": "Zürich ±", "n": 1.5, "ok": True}
    text = canonical_json(value)
    assert "Zürich" in text
    assert json.loads(text) == value


def test_canonical_json_distinguishes_list_order_and_types() -> None:
    assert canonical_json([1, 2]) != canonical_json([2, 1])
    assert canonical_json({"n": 1}) != canonical_json({"n": "1"})


def test_job_id_is_a_sha256_stable_under_key_order() -> None:
    one = make_job_id("fanout", {"n": 3, "stages": 2, "opts": {"a": 1, "b": 2}})
    two = make_job_id("fanout", {"opts": {"b": 2, "a": 1}, "stages": 2, "n": 3})
    assert one == two
    assert HEX64.match(one)


def test_job_id_changes_with_params_job_type_and_lineage() -> None:
    base = make_job_id("fanout", {"n": 3})
    assert make_job_id("fanout", {"n": 4}) != base
    assert make_job_id("fanout", {"n": 3, "tag": "x"}) != base
    assert make_job_id("hello_world", {"n": 3}) != base
    rerun = make_job_id("fanout", {"n": 3}, lineage=base)
    assert rerun != base
    assert make_job_id("fanout", {"n": 3}, lineage=base) == rerun
    assert make_job_id("fanout", {"n": 3}, lineage=rerun) not in {base, rerun}


def test_task_ids_are_deterministic_and_distinct_across_job_stage_and_key() -> None:
    job = make_job_id("fanout", {"n": 3})
    other_job = make_job_id("fanout", {"n": 4})
    tid = make_task_id(job, 1, "s1-0000000")
    assert tid == make_task_id(job, 1, "s1-0000000")
    assert HEX32.match(tid)
    ids = {make_task_id(j, stage, key) for j in (job, other_job) for stage in (1, 2, 3)
           for key in ("a", "b", "s1-0000000", "s1-0000001")}
    assert len(ids) == 2 * 3 * 4


def test_task_id_does_not_collide_when_stage_and_key_are_shifted() -> None:
    job = "j"
    # "1" + ":" + "1:x" vs "11" + ":" + "x" style ambiguity must not produce equal ids.
    assert make_task_id(job, 1, "1:x") != make_task_id(job, 11, "x")
