"""helm for the tests: built by cluster/build-helm.sh (cached by version), run with config
directories of its own, so no test reads or changes the user's helm repositories or plugins.

Kept free of pytest so benchmarks and scripts can reuse it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


def build_helm(repo: Path) -> str:
    """The cached helm's path; the first call on a machine builds it (a few minutes)."""
    out = subprocess.run(
        ["bash", str(repo / "cluster" / "build-helm.sh")],
        check=True,
        text=True,
        stdout=subprocess.PIPE,
        timeout=3600,
    )
    return out.stdout.strip().splitlines()[-1]


@dataclass
class Helm:
    binary: str
    home: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for kind in ("cache", "config", "data"):
            env[f"HELM_{kind.upper()}_HOME"] = str(self.home / kind)
        return env

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Runs helm; env is the base environment (a cluster's, for commands that reach one)."""
        proc = subprocess.run(
            [self.binary, *args],
            env=self.env(env),
            text=True,
            capture_output=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc
