"""The plugin's DRA settings: the ``dra`` mapping of its --config file.

With ``enabled: true`` the plugin also serves the kubelet's DRA node service for
``driverName`` beside the classic device plugin. The paths are the kubelet's defaults and
settable, so tests run in temporary folders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRA_KEY = "dra"
DRIVER_NAME_MAX = 63
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
KEYS = ("enabled", "driverName", "pluginsDir", "registryDir", "cdiDir")


class DraConfigError(ValueError):
    """A DRA setting is invalid; the message names it."""


@dataclass(frozen=True)
class DraConfig:
    driver_name: str
    # The kubelet's plugin folder: the node service listens in <pluginsDir>/<driver>/.
    plugins_dir: Path = Path("/var/lib/kubelet/plugins")
    # Where the kubelet's plugin watcher looks for registration sockets.
    registry_dir: Path = Path("/var/lib/kubelet/plugins_registry")
    # Where the container runtime reads CDI specs (the transient, per-boot folder).
    cdi_dir: Path = Path("/var/run/cdi")

    @property
    def socket_path(self) -> Path:
        return self.plugins_dir / self.driver_name / "dra.sock"

    @property
    def registration_path(self) -> Path:
        return self.registry_dir / f"{self.driver_name}-reg.sock"


def parse_dra(raw: Any, where: str) -> DraConfig | None:
    """The DRA settings of a mapping; None when absent or not enabled."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise DraConfigError(f"invalid {DRA_KEY}{where}: must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise DraConfigError(
            f"unknown key(s) {', '.join(unknown)} in {DRA_KEY}{where} (known: {', '.join(KEYS)})"
        )
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise DraConfigError(f"invalid {DRA_KEY}.enabled{where}: must be a boolean")
    if not enabled:
        return None
    driver = raw.get("driverName")
    if (
        not isinstance(driver, str)
        or len(driver) > DRIVER_NAME_MAX
        or not _DNS_SUBDOMAIN.fullmatch(driver)
    ):
        raise DraConfigError(
            f"invalid {DRA_KEY}.driverName {driver!r}{where}: must be a DNS subdomain of at "
            f"most {DRIVER_NAME_MAX} characters"
        )
    paths: dict[str, Path] = {}
    for key, field in (
        ("pluginsDir", "plugins_dir"),
        ("registryDir", "registry_dir"),
        ("cdiDir", "cdi_dir"),
    ):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.startswith("/"):
            raise DraConfigError(
                f"invalid {DRA_KEY}.{key} {value!r}{where}: must be an absolute path"
            )
        paths[field] = Path(value)
    cfg = DraConfig(driver_name=driver, **paths)
    for key, path in (("pluginsDir", cfg.socket_path), ("registryDir", cfg.registration_path)):
        if len(str(path)) > MAX_SOCKET_PATH:
            raise DraConfigError(
                f"invalid {DRA_KEY}.{key}{where}: the socket path {path} is longer than "
                f"{MAX_SOCKET_PATH} bytes"
            )
    return cfg
