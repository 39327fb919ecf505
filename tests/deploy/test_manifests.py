"""deploy/ checked without a cluster: every Kubernetes overlay renders and each object validates against the
Kubernetes schemas (kubernetes-validate) or KEDA's CRD schemas (deploy/k8s/schemas), and the invariants that tie the
manifests to geomill hold: a Deployment per role, a ScaledObject per worker role on the queues geomill routes that
role's tasks to, probes on the ports the roles serve, grace periods above the drain grace, the same image, command
and environment as the Compose files."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy_manifests import (
    COMPOSE_ONLY_VARS,
    K8S,
    OVERLAYS,
    ROLES,
    ROOT,
    SCALED_OVERLAYS,
    SECRET_VARS,
    WORKER_ROLES,
    by_kind,
    compose,
    container,
    container_env,
    deployment,
    image_env,
    memory_mib,
    render,
    service_env,
)
from geomill.config import Settings
from geomill.engine.registry import JOBS_QUEUE
from geomill.roles import HTTP_MODES, physical_queue, process_layout, resolve_role

K8S_VERSIONS = ("1.29", "1.33")  # the oldest Kubernetes still common in managed offerings, and a recent one
WORKER_PROCESS_MIB = 512  # BENCHMARKS.md: a raster worker process peaks under 512 MB (267-387 MB measured)
SUPERVISOR_MIB = 256  # the supervisor process of `geomill serve` and its probe server


def _crd_schemas() -> dict[str, dict[str, Any]]:
    schemas = {}
    for path in sorted((K8S / "schemas").glob("keda.sh_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schemas[f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"] = (
                version["schema"]["openAPIV3Schema"])
    return schemas


CRDS = _crd_schemas()


def validate(obj: dict[str, Any]) -> None:
    """Raise unless `obj` is valid: a KEDA object against its CRD's schema, anything else against Kubernetes'."""
    key = f"{obj['apiVersion']}/{obj['kind']}"
    if obj["apiVersion"].startswith("keda.sh/"):
        assert key in CRDS, f"no CRD schema for {key}"
        jsonschema.Draft7Validator(CRDS[key]).validate(obj)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_every_overlay_is_valid(overlay: str) -> None:
    """Kubernetes objects against the Kubernetes schemas (strict: no unknown field), KEDA objects against KEDA's CRDs."""
    objects = render(overlay)
    assert objects
    for obj in objects:
        validate(obj)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "an object appears twice"


def test_the_validators_refuse_broken_objects() -> None:
    """Class: invalid manifests (a typo'd field, a wrong type, a bad KEDA trigger): each is refused."""
    objects = render("overlays/rabbitmq")
    bad_deployment = copy.deepcopy(deployment(objects, "worker_raster"))
    bad_deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # unknown field (case)
    bad_scaled = copy.deepcopy(by_kind(objects, "ScaledObject")[0])
    bad_scaled["spec"]["minReplicaCount"] = "zero"
    bad_trigger = copy.deepcopy(by_kind(objects, "ScaledObject")[0])
    bad_trigger["spec"]["triggers"][0]["metadata"]["value"] = 2  # trigger metadata are strings
    for broken in (bad_deployment, bad_scaled, bad_trigger):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


def test_the_keda_schemas_are_the_shared_copies_with_provenance() -> None:
    readme = (K8S / "schemas" / "README.md").read_text()
    assert "8b4f083" in readme and "Apache-2.0" in readme
    assert set(CRDS) == {"keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/TriggerAuthentication"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_has_a_deployment_running_its_mode(overlay: str) -> None:
    objects = render(overlay)
    for role in ROLES:
        env = container_env(objects, deployment(objects, role))
        mode = "platform_only" if role == "api" else role
        assert env["GEOMILL_APP_MODE"] == mode, role
        assert ("GEOMILL_NO_HTTP" in env) == (role == "platform_only"), role
    assert len(by_kind(objects, "Deployment")) == len(ROLES)
    assert [s["metadata"]["name"] for s in by_kind(objects, "Service")] == ["geomill-api"]


def _queues(env: dict[str, str]) -> list[str]:
    """The physical queues of the role this environment runs (geomill's roles and queue-name mapping)."""
    names = json.loads(env.get("GEOMILL_QUEUE_NAMES", "{}"))
    settings = Settings(queue_names=names)
    role = resolve_role(env["GEOMILL_APP_MODE"])
    return [physical_queue(settings, q) for q in role.queues if q != JOBS_QUEUE]


def _trigger_queue(trigger: dict[str, Any]) -> str:
    meta = trigger["metadata"]
    if trigger["type"] == "rabbitmq":
        return str(meta["queueName"])
    found = re.fullmatch(r"SELECT COALESCE\(SUM\((active|running)\), 0\) FROM geomill_queue_depth "
                         r"WHERE queue = '([^']+)'", meta["query"])
    assert found, meta["query"]
    return found.group(2)


@pytest.mark.parametrize("overlay", SCALED_OVERLAYS)
def test_every_worker_role_scales_on_the_queues_geomill_routes_to_it(overlay: str) -> None:
    """Class: KEDA ScaledObjects; their queue names are what routing + the role's queue mapping give, their
    per-pod targets the role's worker processes, and worker_long alone scales to zero."""
    objects = render(overlay)
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind(objects, "ScaledObject")}
    assert len(scaled) == len(WORKER_ROLES)
    for role in WORKER_ROLES:
        dep = deployment(objects, role)
        so = scaled[dep["metadata"]["name"]]
        env = container_env(objects, dep)
        expected = _queues(env)
        triggers = so["spec"]["triggers"]
        assert sorted({_trigger_queue(t) for t in triggers}) == sorted(expected), role
        per_pod = sum(json.loads(env["GEOMILL_CONCURRENCY"]).values())
        for t in triggers:
            target = t["metadata"].get("value") or t["metadata"]["targetQueryValue"]
            assert int(target) == per_pod, (role, t)
        kinds = sorted(t["type"] for t in triggers)
        assert kinds == (["postgresql", "rabbitmq"] if "rabbitmq" in overlay else ["postgresql"])
        assert so["spec"]["minReplicaCount"] == (0 if role == "worker_long" else 1), role
        assert "replicas" not in dep["spec"], f"{role}: KEDA owns the replica count"
        auth = {a["metadata"]["name"] for a in by_kind(objects, "TriggerAuthentication")}
        assert {t["authenticationRef"]["name"] for t in triggers} <= auth


def test_the_broker_url_is_only_in_the_rabbitmq_overlay() -> None:
    for overlay, has in (("overlays/rabbitmq", True), ("overlays/postgres", False), ("base", False)):
        secret = next(s for s in by_kind(render(overlay), "Secret") if s["metadata"]["name"] == "geomill-secrets")
        assert ("broker-url" in secret["stringData"]) == has, overlay
        assert "database-url" in secret["stringData"]


def test_probes_are_on_the_port_each_role_serves() -> None:
    """API-bearing roles: /livez and /readyz of the HTTP API; the others: the probe server (GEOMILL_PROBE_PORT)."""
    objects = render("base")
    image = image_env()
    for role in ROLES:
        dep = deployment(objects, role)
        c = container(dep)
        env = {**image, **container_env(objects, dep)}
        serves_api = env["GEOMILL_APP_MODE"] in HTTP_MODES and "GEOMILL_NO_HTTP" not in env
        port = int(env["GEOMILL_PORT"] if serves_api else env["GEOMILL_PROBE_PORT"])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in (c["livenessProbe"], c["readinessProbe"]):
            assert ports[probe["httpGet"]["port"]] == port, role


def test_termination_grace_is_above_the_drain_grace() -> None:
    """Kubernetes and Compose both wait longer than GEOMILL_SHUTDOWN_GRACE_SECONDS before SIGKILL."""
    objects = render("base")
    default = Settings().shutdown_grace_seconds
    for role in ROLES:
        dep = deployment(objects, role)
        drain = float(container_env(objects, dep).get("GEOMILL_SHUTDOWN_GRACE_SECONDS", default))
        assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= drain + 10, role
    for name in ("embedded.yaml", "postgres.yaml", "scaleout.yaml"):
        doc = compose(name)
        for service, spec in doc["services"].items():
            if spec.get("command") == ["serve"]:
                drain = float(service_env(doc, service).get("GEOMILL_SHUTDOWN_GRACE_SECONDS", default))
                assert float(spec["stop_grace_period"].removesuffix("s")) >= drain + 10, (name, service)


def test_memory_limits_cover_the_measured_peak_per_worker_process() -> None:
    objects = render("base")
    for role in ROLES:
        dep = deployment(objects, role)
        env = container_env(objects, dep)
        settings = Settings(concurrency=json.loads(env.get("GEOMILL_CONCURRENCY", "{}")), workers=1)
        processes = len(process_layout(resolve_role(env["GEOMILL_APP_MODE"]), settings))
        resources = container(dep)["resources"]
        limit = memory_mib(resources["limits"]["memory"])
        assert limit >= SUPERVISOR_MIB + processes * WORKER_PROCESS_MIB, (role, processes, limit)
        assert memory_mib(resources["requests"]["memory"]) <= limit


def test_every_deployment_has_a_disruption_budget_and_the_network_policy_covers_every_pod() -> None:
    objects = render("base")
    budgets = [p["spec"]["selector"]["matchLabels"] for p in by_kind(objects, "PodDisruptionBudget")]
    for dep in by_kind(objects, "Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert sum(all(labels.get(k) == v for k, v in sel.items()) for sel in budgets) == 1, dep["metadata"]["name"]
        c = container(dep)
        assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    policies = by_kind(objects, "NetworkPolicy")
    default = next(p for p in policies if p["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "geomill"})
    assert default["spec"]["ingress"] == [] and set(default["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    api = next(p for p in policies if p is not default)
    assert api["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_the_migration_job_runs_db_upgrade_from_the_same_image() -> None:
    objects = render("base")
    (job,) = by_kind(objects, "Job")
    c = container(job)
    assert c["args"] == ["db", "upgrade"]
    assert c["image"] == container(deployment(objects, "api"))["image"]
    assert container_env(objects, job)["GEOMILL_DATABASE_URL"] == "secret:database-url"
    assert compose("scaleout.yaml")["services"]["migrate"]["command"] == ["db", "upgrade"]


def test_kubernetes_roles_run_the_image_command_and_environment_of_the_compose_roles() -> None:
    """Each role of the scale-out Compose file and of the RabbitMQ overlay: the same image and command, the same
    variables; the same values except those Kubernetes takes from its Secret (credentials, URLs) and the S3
    emulator's endpoint (Compose only)."""
    doc = compose("scaleout.yaml")
    objects = render("overlays/rabbitmq")
    for role in ROLES:
        service = doc["services"][role]
        dep = deployment(objects, role)
        c = container(dep)
        assert c["image"] == service["image"] == "geomill:0.1.0", role
        assert c["args"] == service["command"] == ["serve"], role
        k8s_env = container_env(objects, dep)
        compose_env = {k: v for k, v in service_env(doc, role).items() if k not in COMPOSE_ONLY_VARS}
        assert set(k8s_env) == set(compose_env), (role, set(k8s_env) ^ set(compose_env))
        assert {k for k, v in k8s_env.items() if v.startswith("secret:")} == SECRET_VARS, role
        assert {k: v for k, v in k8s_env.items() if k not in SECRET_VARS} == {
            k: v for k, v in compose_env.items() if k not in SECRET_VARS}, role


ROLE_KEYS = {"image", "command", "environment", "depends_on", "stop_grace_period", "restart", "ports", "volumes"}


@pytest.mark.parametrize(("name", "roles"), [
    ("embedded.yaml", {"geomill": "standalone"}),
    ("postgres.yaml", {"platform": "platform_only", "worker_raster": "worker_raster",
                       "worker_vector": "worker_vector", "worker_long": "worker_long"}),
    ("scaleout.yaml", {"api": "platform_only", "platform_only": "platform_only", "worker_raster": "worker_raster",
                       "worker_vector": "worker_vector", "worker_long": "worker_long"}),
])
def test_compose_roles_are_one_image_differing_by_environment(name: str, roles: dict[str, str]) -> None:
    doc = compose(name)
    serving = {s: spec for s, spec in doc["services"].items() if spec.get("command") == ["serve"]}
    assert set(serving) == set(roles)
    images = {spec["image"] for s, spec in doc["services"].items() if "geomill" in spec["image"]}
    assert images == {"geomill:0.1.0"}
    for service, mode in roles.items():
        spec = serving[service]
        assert set(spec) <= ROLE_KEYS, (service, set(spec) - ROLE_KEYS)
        assert service_env(doc, service)["GEOMILL_APP_MODE"] == mode
        resolve_role(mode)  # a mode geomill knows
    if name != "embedded.yaml":
        assert doc["services"]["migrate"]["command"] == ["db", "upgrade"]
    if name == "scaleout.yaml":
        assert {"postgres", "rabbitmq", "s3"} <= set(doc["services"])
        env = service_env(doc, "api")
        assert env["GEOMILL_BROKER_URL"].startswith("amqp://") and env["GEOMILL_SILVER_URL"].startswith("s3://")


def test_the_image_is_multi_stage_slim_non_root_pinned_and_brings_no_system_gdal() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [s for _, s in stages] == ["build", "runtime"]
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    assert base and re.search(r":\d+\.\d+\.\d+-slim-", base.group(1)), "pin the base by an exact version"
    runtime = text.split(" AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r"^HEALTHCHECK .*geomill-healthcheck", runtime, re.M)
    assert "apt-get" not in text and "apk " not in text, "no system packages: GDAL comes in the wheels"
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*", "the build context is deny-all, then what the build needs"
    assert {r for r in rules if r.startswith("!")} == {"!pyproject.toml", "!README.md", "!src/", "!deploy/docker/"}


def test_the_renderer_merges_patches_as_kustomize_and_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    """Class: a user's own overlay on the base (patch an env value and add one, set the image), and one with a
    Kustomize feature render.py lacks (refused, never ignored)."""
    overlay = tmp_path / "mine"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(K8S / "base")], "patches": [{"path": "raster.yaml"}],
        "images": [{"name": "geomill", "newName": "registry.example.org:5000/geomill", "newTag": "1.2.3"}]}))
    (overlay / "raster.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "geomill-worker-raster"},
        "spec": {"template": {"spec": {"containers": [{"name": "geomill", "env": [
            {"name": "GEOMILL_CONCURRENCY", "value": '{"raster-tasks": 4}'},
            {"name": "GEOMILL_QUEUE_NAMES", "value": '{"raster-tasks": "prod-raster"}'}]}]}}}}))
    objects = render(str(overlay))
    dep = deployment(objects, "worker_raster")
    env = container_env(objects, dep)
    assert env["GEOMILL_CONCURRENCY"] == '{"raster-tasks": 4}' and env["GEOMILL_APP_MODE"] == "worker_raster"
    assert _queues(env) == ["prod-raster"]
    assert container(dep)["image"] == "registry.example.org:5000/geomill:1.2.3"
    assert container(dep)["livenessProbe"]["httpGet"]["path"] == "/livez"  # untouched fields kept
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [str(K8S / "base")],
                                                                "namePrefix": "x-"}))
    with pytest.raises(ValueError, match="namePrefix"):
        render(str(overlay))
