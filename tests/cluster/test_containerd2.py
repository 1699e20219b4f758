"""containerd 2.x for the local cluster: cluster/build-containerd.sh, its config writer
(cluster/lib/containerd2.sh) and the smoke test of a private instance.

The build tests drive the script with a stand-in go and a temporary cache (no network). The
smoke test needs root and the real build (a few CPU minutes once per machine, then cached);
it never touches the local cluster: its instance has its own dirs and socket.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fakego import FakeGoBase

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "build-containerd.sh"
GOMOD = REPO / "cluster" / "containerd" / "go.mod"
PKG = "github.com/containerd/containerd/v2"
BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")


@functools.cache
def pinned() -> str:
    """The containerd version the wrapper module requires: the one place it is pinned."""
    (version,) = re.findall(rf"^\s*(?:require\s+)?{re.escape(PKG)} (v\S+)", GOMOD.read_text(), re.M)
    return str(version)


# Stands in for go: new enough for any go.mod. Asked to build, it writes each package's
# binary into the -o dir (a containerd that reports @REPORTS@), unless @FAIL@ is set.
# Each call's arguments are logged.
FAKE_GO = r"""#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1" in
  version) echo "go version go1.99.0 linux/amd64" ;;
  env) echo go1.99.0 ;;
  build)
    [ -z "@FAIL@" ] || exit 1
    for a; do case $prev in -o) out=$a ;; esac; prev=$a; done
    for a; do
      case $a in
        */cmd/*) printf '#!/bin/sh\necho "%s @PKG@ @REPORTS@ "\n' "${a##*/}" > "$out/${a##*/}"
                 chmod +x "$out/${a##*/}" ;;
      esac
    done ;;
esac
"""


class FakeGo(FakeGoBase):
    def __init__(self, tmp_path: Path, reports: str = "", fail: bool = False) -> None:
        script = (
            FAKE_GO.replace("@REPORTS@", reports or pinned())
            .replace("@PKG@", PKG)
            .replace("@FAIL@", "x" * fail)
        )
        super().__init__(tmp_path, script)
        self.top = self.cache / "containerd"
        self.bin_dir = self.top / pinned() / "bin"

    def run(self) -> subprocess.CompletedProcess[str]:
        return self.run_script(SCRIPT)

    def builds(self) -> list[str]:
        return [c for c in self.calls() if c.startswith("build ")]

    def entries(self) -> list[str]:
        return sorted(p.name for p in self.top.iterdir()) if self.top.exists() else []


def test_cached_binaries_are_printed_without_go(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path)
    fake.bin_dir.mkdir(parents=True)
    for name in BINARIES:
        (fake.bin_dir / name).write_text("#!/bin/sh\n")
        (fake.bin_dir / name).chmod(0o755)
    out = fake.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(fake.bin_dir)
    assert not fake.log.exists()


def test_binaries_are_built_with_the_release_tags_then_cached(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path)
    out = fake.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(fake.bin_dir)
    assert sorted(p.name for p in fake.bin_dir.iterdir()) == sorted(BINARIES)
    assert fake.entries() == [pinned()]
    daemon, shim = fake.builds()
    for build in (daemon, shim):
        assert "-mod=readonly" in build
        assert f"{PKG}/version.Version={pinned()}" in build
        assert "urfave_cli_no_docs" in build
    assert daemon.endswith(f"{PKG}/cmd/containerd {PKG}/cmd/ctr")
    assert "no_btrfs no_devmapper no_zfs no_tracing" in daemon
    assert shim.endswith(f"{PKG}/cmd/containerd-shim-runc-v2")
    assert "no_grpc" in shim
    # A second run finds them.
    assert fake.run().stdout.strip() == str(fake.bin_dir)
    assert len(fake.builds()) == 2


def test_a_failed_build_leaves_nothing_that_looks_cached(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path, fail=True)
    out = fake.run()
    assert out.returncode != 0
    assert fake.entries() == []


def test_a_containerd_reporting_another_version_is_refused(tmp_path: Path) -> None:
    fake = FakeGo(tmp_path, reports="v2.0.0")
    out = fake.run()
    assert out.returncode != 0
    assert f"not {pinned()}" in out.stderr
    assert fake.entries() == []


def write_config(tmp_path: Path, cdi_dirs: str) -> dict[str, Any]:
    state, run = tmp_path / "state", tmp_path / "run"
    script = (
        ". cluster/lib/common.sh; . cluster/lib/containerd2.sh; "
        f"NODE_STATE={state} NODE_RUN={run} CONTAINERD_SOCK={run}/c.sock "
        f"CDI_SPEC_DIRS='{cdi_dirs}' SIMDEV_CACHE={tmp_path}/cache write_containerd2_config"
    )
    subprocess.run(["bash", "-c", script], cwd=REPO, check=True, timeout=30)
    hosts = tomllib.loads((state / "containerd/certs.d/docker.io/hosts.toml").read_text())
    assert hosts == {"server": "http://127.0.0.1:1"}
    return tomllib.loads((state / "containerd/config.toml").read_text())


def test_the_config_keeps_the_cluster_settings_in_version_3(tmp_path: Path) -> None:
    config = write_config(tmp_path, "/etc/cdi /var/run/cdi")
    state, run = tmp_path / "state", tmp_path / "run"
    assert config["version"] == 3
    assert config["root"] == f"{state}/containerd/root"
    assert config["state"] == f"{run}/containerd/state"
    assert config["grpc"]["address"] == f"{run}/c.sock"
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["snapshotter"] == "overlayfs"
    assert images["pinned_images"]["sandbox"] == "localhost/pause:3.10"
    assert images["registry"]["config_path"] == f"{state}/containerd/certs.d"
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    assert runtime["enable_unprivileged_ports"] is False
    assert runtime["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runtime["containerd"]["default_runtime_name"] == "runc"
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["runtime_path"] == (
        f"{tmp_path}/cache/containerd/{pinned()}/bin/containerd-shim-runc-v2"
    )
    assert runc["options"] == {"SystemdCgroup": False, "Root": f"{run}/runc"}
    assert runtime["cni"] == {"bin_dirs": ["/usr/lib/cni"], "conf_dir": f"{state}/cni/net.d"}
    assert config["plugins"]["io.containerd.grpc.v1.cri"]["stream_server_address"] == "127.0.0.1"


def test_cdi_spec_dirs_are_settable(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"{tmp_path}/cdi")
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["cdi_spec_dirs"] == [f"{tmp_path}/cdi"]


@pytest.mark.skipif(os.geteuid() != 0, reason="runs containerd, as root")
@pytest.mark.timeout(3600)
def test_a_private_containerd2_runs_containers_under_cgroup_v1() -> None:
    """The smoke test, with crictl's CDI check when CRICTL names one."""
    # Short: containerd's socket paths under it must fit a unix socket address.
    parent = Path(tempfile.mkdtemp(prefix="c2s-", dir="/tmp"))
    smoke = parent / "s"
    try:
        out = subprocess.run(
            ["bash", str(REPO / "cluster" / "smoke-containerd2.sh"), str(smoke)],
            text=True,
            capture_output=True,
            timeout=3500,
        )
    finally:
        parent.rmdir()
    assert out.returncode == 0, out.stderr
    assert "smoke test passed" in out.stderr
    assert f"containerd {pinned()} answered" in out.stderr
    assert "hi, in v1 memory cgroup" in out.stderr
    assert str(smoke) not in Path("/proc/self/mounts").read_text()
    assert not processes_naming(str(smoke))


def processes_naming(text: str) -> list[str]:
    """Command lines of the live processes that contain text."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if text in args:
            found.append(args)
    return found
