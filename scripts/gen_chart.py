"""Generates the Helm chart's templates from the kustomize base: `make chart`.

manifests/base (with the CRD it includes) is the one source of the operator's objects. Each
of its files becomes charts/simdev/templates/<file>, kept as written (comments included)
but for what a chart needs: the operator's namespace is the release's, every object gets
the chart's labels, and helm uninstall keeps the CRD. `--check` writes nothing and fails
when a template is stale (tests/chart/test_chart.py runs it).

Two templates are written by hand, since values change them (see HAND_WRITTEN); the chart
tests prove that they render the base with the default values and the local overlay with
values-local.yaml. The Namespace is left out (see LEFT_OUT).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "manifests" / "base"
TEMPLATES = REPO / "charts" / "simdev" / "templates"
NAMESPACE = "simdev-system"
RELEASE_NAMESPACE = "{{ .Release.Namespace }}"
LABELS = '    {{- include "simdev.labels" . | nindent 4 }}'
MARK = "{{- /* Generated from "
HEADER = " by scripts/gen_chart.py (make chart): edit that file, not this one. */}}"

HAND_WRITTEN = {
    # Image, pull policy, resources and the local cluster's network settings come from values.
    "deployment.yaml",
    # The admission lists come from values.
    "admission_params.yaml",
}
# What the generator knows of a kustomization; anything more would be silently dropped.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "labels"}
LEFT_OUT = {
    # Helm stores the release in its namespace before creating anything, so a chart cannot
    # create its own: `helm install --namespace simdev-system --create-namespace` does.
    "namespace.yaml",
}
# Deleting the CRD deletes every SimulatedDevice, and those whose operator is already gone
# would hang on its finalizer: the CRD outlives the release, as with make undeploy's order.
KEEP = [
    "  annotations:",
    "    # helm uninstall keeps the CRD: delete the SimulatedDevices first, then the CRD.",
    "    helm.sh/resource-policy: keep",
]


def kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    content: dict[str, Any] = yaml.safe_load(path.read_text())
    unknown = content.keys() - KUSTOMIZATION_KEYS
    if unknown:
        raise SystemExit(f"{path}: {sorted(unknown)}: teach scripts/gen_chart.py to render them")
    for entry in content.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise SystemExit(f"{path}: labels beyond metadata: teach scripts/gen_chart.py them")
    return content


def resources(directory: Path) -> list[Path]:
    """The files a kustomization lists, its directories' files included, in order."""
    found: list[Path] = []
    for entry in kustomization(directory)["resources"]:
        path = (directory / entry).resolve()
        found += resources(path) if path.is_dir() else [path]
    return found


def kustomization_labels() -> dict[str, str]:
    """The label pairs the base's kustomization puts on every object."""
    pairs: dict[str, str] = {}
    for entry in kustomization(BASE).get("labels", []):
        pairs.update(entry["pairs"])
    return pairs


def block_end(lines: list[str], start: int, indent: str) -> int:
    """The end of the block under lines[start]: the lines indented by indent or more."""
    end = start + 1
    while end < len(lines) and lines[end].startswith(indent):
        end += 1
    return end


def document(text: str, source: str) -> str:
    obj = yaml.safe_load(text)
    if obj is None:  # only comments
        return text
    metadata = obj["metadata"]
    if metadata.get("annotations") and obj["kind"] == "CustomResourceDefinition":
        raise SystemExit(f"{source}: merge the CRD's annotations with the keep policy")
    labels = metadata.get("labels") or {}
    added = []
    for key, value in kustomization_labels().items():
        if key not in labels:
            added.append("    " + yaml.safe_dump({key: value}).strip())
        elif labels[key] != value:
            raise SystemExit(f"{source}: label {key} differs from the kustomization's")
    namespaced = re.sub(rf"(?<![\w.-]){re.escape(NAMESPACE)}(?![\w.-])", RELEASE_NAMESPACE, text)
    lines = namespaced.split("\n")
    start = lines.index("metadata:")
    end = block_end(lines, start, "  ")
    if "  labels:" in lines[start:end]:
        at = block_end(lines, lines.index("  labels:", start, end), "    ")
        lines[at:at] = [*added, LABELS]
    else:
        lines[end:end] = ["  labels:", *added, LABELS]
    if obj["kind"] == "CustomResourceDefinition":
        end = block_end(lines, start, "  ")
        lines[end:end] = KEEP
    return "\n".join(lines)


def generate(source: Path) -> str:
    relative = source.relative_to(REPO).as_posix()
    text = source.read_text()
    if "{{" in text:
        # Helm would take it for a template action.
        raise SystemExit(f"{relative}: '{{{{' in a base file; write it some other way")
    docs = re.split(r"(?m)^---\n", text)
    body = "---\n".join(document(d, relative) if d.strip() else d for d in docs)
    return MARK + relative + HEADER + "\n" + body


def expected() -> dict[str, str]:
    """Template file name -> content, for every base file that is generated."""
    sources = resources(BASE)
    names = {p.name for p in sources}
    for name in (*HAND_WRITTEN, *LEFT_OUT):
        if name not in names:
            raise SystemExit(f"{name} is not in the base any more: update scripts/gen_chart.py")
    made: dict[str, str] = {}
    for source in sources:
        if source.name in HAND_WRITTEN or source.name in LEFT_OUT:
            continue
        if source.name in made:
            raise SystemExit(f"two base files are named {source.name}")
        made[source.name] = generate(source)
    return made


def generated_files() -> set[str]:
    """Templates that carry the generator's mark, whether still expected or not."""
    return {
        p.name
        for p in TEMPLATES.glob("*.yaml")
        if p.read_text().startswith(MARK) and p.name not in HAND_WRITTEN
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Generates charts/simdev/templates.")
    parser.add_argument("--check", action="store_true", help="fail if a template is stale")
    args = parser.parse_args()
    made = expected()
    missing_hand = [n for n in HAND_WRITTEN if not (TEMPLATES / n).is_file()]
    if missing_hand:
        print(f"hand-written templates missing: {missing_hand}", file=sys.stderr)
        return 1
    stale = [
        n
        for n, text in made.items()
        if not (TEMPLATES / n).is_file() or (TEMPLATES / n).read_text() != text
    ]
    extra = sorted(generated_files() - made.keys())
    if args.check:
        for name in stale:
            print(f"charts/simdev/templates/{name} is stale", file=sys.stderr)
        for name in extra:
            print(f"charts/simdev/templates/{name} has no base file any more", file=sys.stderr)
        if stale or extra:
            print("run: make chart", file=sys.stderr)
            return 1
        return 0
    TEMPLATES.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (TEMPLATES / name).write_text(made[name])
        print(f"wrote charts/simdev/templates/{name}")
    for name in extra:
        (TEMPLATES / name).unlink()
        print(f"removed charts/simdev/templates/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
