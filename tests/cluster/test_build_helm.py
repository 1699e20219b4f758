"""cluster/build-helm.sh builds helm once per version into the cache and prints its path;
cluster/build-kwok.sh does the same for the KWOK controller, through the same lib/gobuild.sh.

The first test uses the real build (the session's helm fixture; a few minutes the first time
on a machine). The others drive the script with a stand-in go and a temporary cache, so they
need no network.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from fakego import SYSTEM_PATH, FakeGoBase

from helmlib import Helm

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "build-helm.sh"
GOMOD = REPO / "cluster" / "helm" / "go.mod"
KWOK_SCRIPT = REPO / "cluster" / "build-kwok.sh"
KWOK_GOMOD = REPO / "cluster" / "kwok" / "go.mod"


def pinned_in(gomod: Path, module: str) -> str:
    """The version a wrapper module requires of module: the one place it is pinned."""
    found: list[str] = re.findall(
        rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", gomod.read_text(), re.M
    )
    (version,) = found
    return version


def pinned() -> str:
    return pinned_in(GOMOD, "helm.sh/helm/v3")


def kwok_pinned() -> str:
    return pinned_in(KWOK_GOMOD, "sigs.k8s.io/kwok")


@functools.cache
def client_go_minor() -> int:
    (minor,) = re.findall(r"^\s*k8s\.io/client-go v0\.(\d+)\.", GOMOD.read_text(), re.M)
    return int(minor)


@functools.cache
def default_cache() -> Path:
    out = subprocess.run(
        ["bash", "-c", '. cluster/lib/common.sh; echo "$SIMDEV_CACHE"'],
        cwd=REPO,
        check=True,
        text=True,
        capture_output=True,
    )
    return Path(out.stdout.strip())


@pytest.mark.timeout(3600)
def test_make_helm_prints_the_cached_helm_of_the_pinned_version(helm: Helm, tmp_path: Path) -> None:
    assert helm.binary == str(default_cache() / "helm" / pinned() / "helm")
    assert helm.run("version", "--template", "{{.Version}}").stdout == pinned()

    # Warm: no build, no go.
    start = time.monotonic()
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), "helm"],
        env={**os.environ, "PATH": SYSTEM_PATH},
        check=True,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert out.stdout.strip() == helm.binary
    assert time.monotonic() - start < 5

    # Like helm's release builds, it assumes the Kubernetes version of its client-go.
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "kube.yaml").write_text("# {{ .Capabilities.KubeVersion.Version }}\n")
    rendered = helm.run("template", str(chart)).stdout
    assert f"# v1.{client_go_minor()}.0" in rendered, rendered


# Stands in for go: new enough for any go.mod, with client-go v0.37. Asked to build, it
# writes a "helm" that reports @REPORTS@ to the -o path, then fails when @FAIL@ is set.
# Each call's arguments are logged.
FAKE_GO = r"""#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1" in
  version) echo "go version go1.99.0 linux/amd64" ;;
  env) echo go1.99.0 ;;
  list) echo v0.37.0 ;;
  build)
    while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
    printf '#!/bin/sh\necho "@REPORTS@"\n' > "$out"
    chmod +x "$out"
    [ -z "@FAIL@" ] || exit 1 ;;
esac
"""


class FakeGo(FakeGoBase):
    def __init__(
        self, tmp_path: Path, reports: str = "", fail: bool = False, tool: str = "helm"
    ) -> None:
        script = FAKE_GO.replace("@REPORTS@", reports or pinned()).replace("@FAIL@", "x" * fail)
        super().__init__(tmp_path, script)
        self.script = KWOK_SCRIPT if tool == "kwok" else SCRIPT
        version = kwok_pinned() if tool == "kwok" else pinned()
        self.helm = self.cache / tool / version / tool

    def run(self) -> subprocess.CompletedProcess[str]:
        return self.run_script(self.script)

    def leftovers(self) -> list[str]:
        folder = self.helm.parent
        return [p.name for p in folder.iterdir() if p != self.helm] if folder.exists() else []


def test_a_cached_helm_is_printed_without_go(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path)
    fake.helm.parent.mkdir(parents=True)
    fake.helm.write_text("#!/bin/sh\n")
    fake.helm.chmod(0o755)
    out = fake.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(fake.helm)
    assert fake.calls() == []


def test_helm_is_built_to_a_temp_name_then_cached(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path)
    out = fake.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(fake.helm)
    assert fake.helm.is_file()
    assert fake.leftovers() == []
    (build,) = [c for c in fake.calls() if c.startswith("build ")]
    # go.sum is the pin: the build may not rewrite it.
    assert "-mod=readonly" in build
    assert f"helm.sh/helm/v3/internal/version.version={pinned()}" in build
    assert "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" in build
    assert build.endswith("helm.sh/helm/v3/cmd/helm")
    # A second run finds it.
    calls = len(fake.calls())
    assert fake.run().stdout.strip() == str(fake.helm)
    assert len(fake.calls()) == calls


def test_a_failed_build_leaves_nothing_that_looks_cached(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path, fail=True)
    out = fake.run()
    assert out.returncode != 0
    assert not fake.helm.exists()
    assert fake.leftovers() == []


def test_a_helm_reporting_another_version_is_refused(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path, reports="v3.0.0")
    out = fake.run()
    assert out.returncode != 0
    assert f"reports v3.0.0, not {pinned()}" in out.stderr
    assert not fake.helm.exists()
    assert fake.leftovers() == []


def test_kwok_is_built_with_its_version_stamp_then_cached(tmp_path: Path) -> None:
    fake = FakeGo(
        tmp_path, reports=f"kwok version {kwok_pinned()} go1.99.0 (linux/amd64)", tool="kwok"
    )
    out = fake.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(fake.helm)
    assert fake.leftovers() == []
    (build,) = [c for c in fake.calls() if c.startswith("build ")]
    assert "-mod=readonly" in build
    assert f"sigs.k8s.io/kwok/pkg/consts.Version={kwok_pinned()}" in build
    assert build.endswith("sigs.k8s.io/kwok/cmd/kwok")
    calls = len(fake.calls())
    assert fake.run().stdout.strip() == str(fake.helm)
    assert len(fake.calls()) == calls


def test_a_kwok_reporting_another_version_is_refused(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path, reports="kwok version v0.0.1 go1.99.0 (linux/amd64)", tool="kwok")
    out = fake.run()
    assert out.returncode != 0
    assert f"reports v0.0.1, not {kwok_pinned()}" in out.stderr
    assert not fake.helm.exists()
    assert fake.leftovers() == []
