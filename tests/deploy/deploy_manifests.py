"""Reading deploy/: the Compose files (with Compose's variable interpolation), the image's environment (Dockerfile
ENV), the Kubernetes overlays (rendered by deploy/k8s/render.py) and each role's effective container environment."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
OVERLAYS = ("base", "overlays/rabbitmq", "overlays/postgres")
SCALED_OVERLAYS = ("overlays/rabbitmq", "overlays/postgres")

ROLES = ("api", "platform_only", "worker_raster", "worker_vector", "worker_long")
WORKER_ROLES = ("worker_raster", "worker_vector", "worker_long")
# Variables the Kubernetes roles take from the Secret (their values are the installation's, not Compose's)
SECRET_VARS = {"GEOMILL_DATABASE_URL", "GEOMILL_BROKER_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# Only in Compose: the S3 emulator's address (a real cluster's S3 needs no endpoint)
COMPOSE_ONLY_VARS = {"AWS_ENDPOINT_URL"}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's interpolation: ${VAR}, ${VAR:-default} (unset or empty), ${VAR-default} (unset), $$ = $."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        got = variables.get(name)
        if op == ":-":
            return got if got else default
        if op == "-":
            return default if got is None else got
        return got or ""

    return _VAR.sub(one, value)


def compose(name: str, variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Compose file (YAML merge keys resolved by the loader), variables interpolated."""
    doc = yaml.safe_load((COMPOSE / name).read_text())
    return dict(interpolate(doc, variables or {}))


def service_env(doc: Mapping[str, Any], service: str) -> dict[str, str]:
    env = doc["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's last stage (what every container starts with)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    last = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in last.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects of a kustomization: a folder relative to deploy/k8s, or an absolute one."""
    renderer = load_module(K8S / "render.py")
    return list(renderer.render(K8S / overlay))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def deployment(objects: list[dict[str, Any]], role: str) -> dict[str, Any]:
    found = [d for d in by_kind(objects, "Deployment")
             if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == role]
    assert len(found) == 1, f"{role}: {len(found)} Deployments"
    return found[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def container_env(objects: list[dict[str, Any]], workload: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then `env`; a Secret reference
    becomes `secret:<key>` (its value belongs to the installation)."""
    c = container(workload)
    maps = {m["metadata"]["name"]: m.get("data", {}) for m in by_kind(objects, "ConfigMap")}
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            env[var["name"]] = "secret:" + var["valueFrom"]["secretKeyRef"]["key"]
    return env


def memory_mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20
