"""OGC API - Processes - Part 1 (OGC 18-062r2) words: conformance classes, link relations, exception types,
media types, and how geomill's job statuses read as OGC job statuses."""

from __future__ import annotations

from geomill.domain import JobStatus

_CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
# claimed only because tests/api/test_ogc_processes.py checks each (docs/ogc.md says how)
CONFORMANCE = [_CONF + name for name in (
    "core", "ogc-process-description", "json", "html", "oas30", "job-list", "dismiss", "callback")]

_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
NO_SUCH_PROCESS = _EXC + "no-such-process"
NO_SUCH_JOB = _EXC + "no-such-job"
RESULT_NOT_READY = _EXC + "result-not-ready"
JOB_FAILED = "https://geomill.dev/problems/job-failed"  # the spec leaves a failed job's exception type open

_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
REL_CONFORMANCE = _REL + "conformance"
REL_PROCESSES = _REL + "processes"
REL_JOB_LIST = _REL + "job-list"
REL_EXECUTE = _REL + "execute"
REL_RESULTS = _REL + "results"

JSON = "application/json"
HTML = "text/html"
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"

# OGC statusCode by job status: a cancelled job reads as dismissed (DELETE /jobs/{id} cancels)
OGC_STATUS: dict[JobStatus, str] = {
    JobStatus.QUEUED: "accepted", JobStatus.PROCESSING: "running", JobStatus.COMPLETED: "successful",
    JobStatus.COMPLETED_WITH_ERRORS: "successful", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "dismissed",
}
# the job status an OGC status filter asks for (job list ?status=): "successful" lists completed jobs only
JOB_STATUS_FOR: dict[str, JobStatus] = {
    "accepted": JobStatus.QUEUED, "running": JobStatus.PROCESSING, "successful": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED, "dismissed": JobStatus.CANCELLED,
}
