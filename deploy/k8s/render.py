"""Render a Kustomize directory (deploy/k8s/overlays/*, base) without kustomize: the subset these manifests use.

    python deploy/k8s/render.py deploy/k8s/overlays/rabbitmq > geomill.yaml     # same objects as `kubectl kustomize`

Supported: `resources` (YAML files and directories with a kustomization.yaml, recursively), `patches` with `path`
(strategic merge by kind and metadata.name: maps merge, lists of maps with a `name` merge by it, other lists are
replaced), and `images` (`newName`, `newTag`, `digest`). Anything else in a kustomization.yaml is refused, so a
manifest cannot silently use a feature this renderer would ignore. The tests render every overlay with it; with
kubectl at hand, `kubectl kustomize` gives the same objects (docs/deploy.md).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}
Obj = dict[str, Any]


def render(folder: Path) -> list[Obj]:
    """The objects of the kustomization in `folder`, patches and image overrides applied."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise ValueError(f"{folder}/kustomization.yaml: unsupported fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        objects.extend(render(path) if path.is_dir() else load(path))
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{folder}: only `path` patches are supported, not {patch}")
        for doc in load(folder / patch["path"]):
            target = _find(objects, doc["kind"], doc["metadata"]["name"])
            objects[objects.index(target)] = merge(target, doc)
    for image in spec.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                container["image"] = _image(container["image"], image)
    return objects


def load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge, as kustomize does it for the fields these manifests patch."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        out_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = next((i for i, b in enumerate(out_list) if b["name"] == item["name"]), None)
            if match is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[match] = merge(out_list[match], item)
        return out_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, dict) and "name" in i for i in items)


def _find(objects: list[Obj], kind: str, name: str) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise ValueError(f"patch target {kind}/{name} is not among the resources")


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get(
        "spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _image(current: str, rule: dict[str, str]) -> str:
    name, tag = current.split("@", 1)[0], ""
    if ":" in name.rsplit("/", 1)[-1]:  # a tag, not a registry's port
        name, tag = name.rsplit(":", 1)
    if name != rule["name"]:
        return current
    name = rule.get("newName", name)
    if "digest" in rule:
        return f"{name}@{rule['digest']}"
    return f"{name}:{rule.get('newTag', tag)}" if rule.get("newTag", tag) else name


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: render.py KUSTOMIZATION_DIR", file=sys.stderr)
        return 2
    yaml.safe_dump_all(render(Path(argv[0])), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
