"""CDI spec files for prepared DRA claims: the pure builder and the folder that keeps them.

One spec file per claim, with one CDI device named after the claim's UID whose container
edits are exactly what Allocate gives a container holding the same devices (env vars and
device files). Allocate's annotations have no CDI equivalent that reaches the container,
so they are kept as the CDI device's own annotations. What the kubelet must hear again for
an already prepared claim (its devices, for a repeated call or after a restart) is kept in
the spec's annotations: the files on disk are the plugin's only state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simdev.plugin.allocation import ContainerAllocation

# The oldest CDI version with annotations on the spec and its devices.
CDI_VERSION = "0.6.0"
CDI_CLASS = "device"
CLAIM_ANNOTATION = "simdev.io/claim"
DEVICES_ANNOTATION = "simdev.io/devices"


@dataclass(frozen=True)
class PreparedDevice:
    """One device of a prepared claim, as the kubelet hears of it."""

    requests: tuple[str, ...]
    pool: str
    device: str
    cdi_ids: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": list(self.requests),
            "pool": self.pool,
            "device": self.device,
            "cdiIDs": list(self.cdi_ids),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PreparedDevice:
        return cls(
            tuple(raw["requests"]), str(raw["pool"]), str(raw["device"]), tuple(raw["cdiIDs"])
        )


def cdi_kind(driver: str) -> str:
    return f"{driver}/{CDI_CLASS}"


def cdi_id(driver: str, claim_uid: str) -> str:
    """The fully qualified CDI device ID of a claim: "<driver>/device=<claim UID>"."""
    return f"{cdi_kind(driver)}={claim_uid}"


def claim_spec(
    driver: str,
    claim: str,
    claim_uid: str,
    plan: ContainerAllocation,
    devices: Sequence[PreparedDevice],
) -> dict[str, Any]:
    """The CDI spec of one claim (claim is "namespace/name", for people reading the file)."""
    edits: dict[str, Any] = {"env": [f"{k}={v}" for k, v in sorted(plan.envs.items())]}
    if plan.device_nodes:
        edits["deviceNodes"] = [
            {"path": n.path, "hostPath": n.host_path, "permissions": n.permissions}
            for n in plan.device_nodes
        ]
    device: dict[str, Any] = {"name": claim_uid, "containerEdits": edits}
    if plan.annotations:
        device["annotations"] = dict(sorted(plan.annotations.items()))
    return {
        "cdiVersion": CDI_VERSION,
        "kind": cdi_kind(driver),
        "annotations": {
            CLAIM_ANNOTATION: claim,
            DEVICES_ANNOTATION: json.dumps([d.as_json() for d in devices], sort_keys=True),
        },
        "devices": [device],
    }


def recorded_devices(spec: Mapping[str, Any]) -> list[PreparedDevice]:
    """The devices a claim's spec file records; raises ValueError if it records none."""
    try:
        raw = json.loads(spec["annotations"][DEVICES_ANNOTATION])
        return [PreparedDevice.from_json(d) for d in raw]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"no prepared devices recorded: {err}") from err


class CdiStore:
    """The CDI folder's files of one driver, one per prepared claim, by claim UID."""

    def __init__(self, directory: Path, driver: str) -> None:
        self.directory = directory
        self._driver = driver

    def path(self, claim_uid: str) -> Path:
        # The runtime reads every *.json here; the driver (no "_" in a DNS name) keeps ours apart.
        return self.directory / f"{self._driver}_{claim_uid}.json"

    def read(self, claim_uid: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.path(claim_uid).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # half-written by a crash before the rename: prepare anew
        return data

    def write(self, claim_uid: str, spec: Mapping[str, Any]) -> None:
        """Atomically: the runtime never reads half a file (a dot file that is no *.json)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(claim_uid)
        temporary = final.with_name(f".{final.name}.tmp")
        temporary.write_text(json.dumps(spec, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(temporary, final)

    def remove(self, claim_uid: str) -> bool:
        try:
            self.path(claim_uid).unlink()
        except FileNotFoundError:
            return False
        return True

    def claims(self) -> Iterable[str]:
        """UIDs of the claims with a spec file (prepared and not yet unprepared)."""
        prefix = f"{self._driver}_"
        for path in sorted(self.directory.glob(f"{self._driver}_*.json")):
            yield path.name[len(prefix) : -len(".json")]
