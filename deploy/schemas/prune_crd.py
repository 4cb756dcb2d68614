"""Write the part of a KubeRay CRD's schema that deploy/*.yaml use, so tests can check them
against it without vendoring the whole CRD (about 1 MB each).

Every object the manifests use keeps the CRD's types, enums, formats and required fields,
with only the properties the manifests set, and ``additionalProperties: false`` where the
CRD has fixed properties: a field the CRD does not know (a typo, a field of another KubeRay
version) fails validation. Maps (``rayStartParams``, ``resources``) keep their value schema.

    python deploy/schemas/prune_crd.py ray.io_rayclusters.yaml deploy/raycluster.yaml \\
        > deploy/schemas/raycluster.schema.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

KEPT = ("type", "enum", "format", "pattern", "minimum", "maximum", "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields", "anyOf")


def prune(schema: dict[str, Any], used: list[Any]) -> dict[str, Any]:
    """``schema`` cut to what the values in ``used`` (every place it applies) set."""
    out = {k: schema[k] for k in KEPT if k in schema}
    objects = [u for u in used if isinstance(u, dict)]
    if "properties" in schema and objects:
        keys = sorted({k for u in objects for k in u})
        out["properties"] = {k: prune(schema["properties"][k], [u[k] for u in objects if k in u])
                             for k in keys if k in schema["properties"]}
        out["required"] = schema.get("required", [])
        out["additionalProperties"] = False
    elif isinstance(schema.get("additionalProperties"), dict):
        values = [v for u in objects for v in u.values()]
        out["additionalProperties"] = prune(schema["additionalProperties"], values)
    lists = [u for u in used if isinstance(u, list)]
    if "items" in schema:
        out["items"] = prune(schema["items"], [v for u in lists for v in u])
    return out


def main(crd_path: str, *manifests: str) -> None:
    crd = yaml.safe_load(open(crd_path))
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    docs = [yaml.safe_load(open(m)) for m in manifests]
    schema = prune(version["schema"]["openAPIV3Schema"], docs)
    schema["description"] = (f"{crd['spec']['names']['kind']} {version['name']} of KubeRay's "
                             f"CRD, the fields deploy/ uses (deploy/schemas/prune_crd.py)")
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
