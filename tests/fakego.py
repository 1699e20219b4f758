"""A stand-in go for the tests of the cluster's Go build scripts (build-helm.sh,
build-containerd.sh): they run against it with a temporary cache and need no network."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class FakeGoBase:
    """Installs SCRIPT as `go` in a bin dir of tmp_path; each call's arguments are logged."""

    def __init__(self, tmp_path: Path, script: str) -> None:
        self.bin = tmp_path / "go-bin"
        self.bin.mkdir()
        (self.bin / "go").write_text(script)
        (self.bin / "go").chmod(0o755)
        self.log = tmp_path / "calls.log"
        self.cache = tmp_path / "cache"

    def run_script(self, script: Path) -> subprocess.CompletedProcess[str]:
        """Runs a build script with only this go and the system's tools on PATH."""
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{SYSTEM_PATH}",
            "SIMDEV_CACHE": str(self.cache),
            "FAKE_LOG": str(self.log),
        }
        return subprocess.run(
            ["bash", str(script)], env=env, text=True, capture_output=True, timeout=120
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []
