"""The JSON documents of OGC API - Processes built from geomill's: landing page, process summaries and
descriptions (from each job type's parameter schema), status info, results. `base` is the API's own prefix
(``/ogc``, under GEOMILL_PUBLIC_URL or the proxy's root path)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from geomill import __version__
from geomill.api.ogc import vocabulary as v
from geomill.domain import JobStatus

OUTPUT_ID = "result"  # each process has one output: the job's result document
JOB_CONTROL = ["async-execute", "sync-execute", "dismiss"]


def link(href: str, rel: str, title: str, media_type: str = v.JSON) -> dict[str, str]:
    return {"href": href, "rel": rel, "type": media_type, "title": title}


def self_links(href: str, title: str) -> list[dict[str, str]]:
    """`self` as JSON and its HTML `alternate` (content negotiation also works without ``?f=``)."""
    return [link(f"{href}?f=json", "self", title), link(f"{href}?f=html", "alternate", f"{title} (HTML)", v.HTML)]


def landing(base: str) -> dict[str, Any]:
    return {
        "title": "geomill OGC API - Processes",
        "description": "geomill's job types as OGC processes: execute them, follow and dismiss their jobs.",
        "links": [*self_links(base, "this document"),
                  link(f"{base}/api", "service-desc", "the API definition (OpenAPI 3.0)", v.OPENAPI_JSON),
                  link(f"{base}/api?f=html", "service-doc", "the API documentation", v.HTML),
                  link(f"{base}/conformance", v.REL_CONFORMANCE, "conformance classes"),
                  link(f"{base}/processes", v.REL_PROCESSES, "processes"),
                  link(f"{base}/jobs", v.REL_JOB_LIST, "jobs")],
    }


def conformance(base: str) -> dict[str, Any]:
    return {"conformsTo": list(v.CONFORMANCE), "links": self_links(f"{base}/conformance", "conformance classes")}


def process_summary(base: str, job_type: dict[str, Any]) -> dict[str, Any]:
    """A process summary from a job type as `service.listing.job_types` gives it."""
    name = job_type["name"]
    href = f"{base}/processes/{name}"
    return {"id": name, "title": name.replace("_", " "), "description": job_type["description"],
            "version": __version__, "jobControlOptions": JOB_CONTROL, "outputTransmission": ["value"],
            "keywords": [s["name"] for s in job_type["stages"]],
            "links": [link(href, "self", "process description"),
                      link(f"{href}?f=html", "alternate", "process description (HTML)", v.HTML),
                      link(f"{href}/execution", v.REL_EXECUTE, "execute")]}


def input_schemas(parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One OGC input per parameter of the job type's JSON Schema: its schema (with the shared ``$defs`` it
    refers to), title, description and occurrence (required: minOccurs 1)."""
    required = set(parameters.get("required", []))
    defs = parameters.get("$defs")
    inputs = {}
    for name, prop in parameters.get("properties", {}).items():
        schema = copy.deepcopy(prop)
        if defs and "$ref" in repr(schema):
            schema["$defs"] = copy.deepcopy(defs)
        inputs[name] = {"title": prop.get("title", name), "description": prop.get("description", ""),
                        "schema": schema, "minOccurs": 1 if name in required else 0, "maxOccurs": 1}
    return inputs


def process_description(base: str, job_type: dict[str, Any]) -> dict[str, Any]:
    doc = process_summary(base, job_type)
    doc["description"] += " Stages: " + "; ".join(f"{s['name']} ({s['description']})" if s["description"]
                                                  else s["name"] for s in job_type["stages"]) + "."
    doc["inputs"] = input_schemas(job_type["parameters"])
    doc["outputs"] = {OUTPUT_ID: {"title": "result", "description": "the job's result document (what its "
                                  "finalizer aggregated: product URIs, counts, STAC items)",
                                  "schema": {"type": "object", "contentMediaType": v.JSON}}}
    return doc


def _updated(doc: dict[str, Any]) -> str | None:
    """The latest moment the job or one of its stages moved."""
    stamps = [doc.get(k) for k in ("created_at", "started_at", "finished_at")]
    stamps += [s.get(k) for s in doc.get("stages", []) for k in ("started_at", "completed_at")]
    present = [datetime.fromisoformat(s) for s in stamps if s]
    return max(present).isoformat() if present else None


def message(doc: dict[str, Any]) -> str:
    status = JobStatus(doc["status"])
    if status is JobStatus.COMPLETED_WITH_ERRORS:
        return "completed with errors: some tasks failed (their stage tolerates failures)"
    if status is JobStatus.FAILED and doc.get("error"):
        return str(doc["error"].get("message") or doc["error"])
    stage = f"stage {doc['stage']} of {doc['stage_count']}"
    return f"{status}, {stage}" + (f" ({doc['stage_name']})" if doc.get("stage_name") else "")


def status_info(base: str, doc: dict[str, Any]) -> dict[str, Any]:
    """statusInfo of a job from its status document (`service.status`) or listing document."""
    job_id, status = doc["job_id"], v.OGC_STATUS[JobStatus(doc["status"])]
    href = f"{base}/jobs/{job_id}"
    links = [link(href, "self", "job status"), link(f"{href}?f=html", "alternate", "job status (HTML)", v.HTML)]
    if status == "successful":
        links.append(link(f"{href}/results", v.REL_RESULTS, "results"))
    progress = doc.get("progress")
    if progress is None:  # a listing document has no stage counts: whole stages only
        done = doc["status"] in ("completed", "completed_with_errors")
        progress = 100.0 if done else 100.0 * max(doc["stage"] - 1, 0) / (doc["stage_count"] or 1)
    info = {"processID": doc["job_type"], "type": "process", "jobID": job_id, "status": status,
            "message": message(doc), "created": doc["created_at"], "started": doc.get("started_at"),
            "finished": doc.get("finished_at"), "updated": _updated(doc), "progress": int(progress),
            "links": links}
    return {k: value for k, value in info.items() if value is not None}  # the schema has no null times


def results(doc: dict[str, Any]) -> dict[str, Any]:
    """The results document: the one output, its value inline."""
    return {OUTPUT_ID: {"value": doc.get("result") or {}, "mediaType": v.JSON}}


def job_list(base: str, docs: list[dict[str, Any]], next_query: str | None) -> dict[str, Any]:
    links = self_links(f"{base}/jobs", "jobs")
    if next_query:
        links.append(link(f"{base}/jobs?{next_query}", "next", "older jobs"))
    return {"jobs": [status_info(base, d) for d in docs], "links": links}
