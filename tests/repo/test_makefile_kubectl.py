"""make's KUBECTL: the local build's kubectl once it exists, else the kubectl on PATH.

`make deploy` must work on any cluster, a kind one included, on a machine that never built
the local cluster; `make -s cluster-kubectl` always names the local build's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRINT_KUBECTL = 'print-kubectl: ; @echo "$$KUBECTL"'


def make(cache: Path, *args: str, **extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KUBECTL"}
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), *args],
        env={**env, "SIMDEV_CACHE": str(cache), **extra},
        check=True,
        text=True,
        capture_output=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_without_a_local_build_scripts_get_kubectl_from_path(tmp_path: Path) -> None:
    local = Path(make(tmp_path, "cluster-kubectl"))
    assert local.is_relative_to(tmp_path), "cluster-kubectl names the cached build"
    assert not local.exists()
    assert make(tmp_path, "--eval", PRINT_KUBECTL, "print-kubectl") == "kubectl"


def test_with_a_local_build_scripts_get_it(tmp_path: Path) -> None:
    local = Path(make(tmp_path, "cluster-kubectl"))
    local.parent.mkdir(parents=True)
    local.write_text("#!/bin/sh\n")
    local.chmod(0o755)
    assert make(tmp_path, "--eval", PRINT_KUBECTL, "print-kubectl") == str(local)
    assert make(tmp_path, "cluster-kubectl") == str(local)


def test_kubectl_from_the_environment_wins(tmp_path: Path) -> None:
    chosen = make(tmp_path, "--eval", PRINT_KUBECTL, "print-kubectl", KUBECTL="/opt/x/kubectl")
    assert chosen == "/opt/x/kubectl"
    # cluster-kubectl still names the local build, whatever scripts are told to run.
    assert make(tmp_path, "cluster-kubectl", KUBECTL="/opt/x/kubectl").startswith(str(tmp_path))
