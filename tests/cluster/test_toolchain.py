"""cluster/go-toolchain.sh finds or fetches a go new enough for cluster/k8s/go.mod.

A fresh Debian 12 has no go, or Debian's 1.19, which cannot read that go.mod. The first test
runs the script as `make setup` would there, with only the system's PATH, against the real
cache: it fetches the toolchain once (about 80 MB), then takes well under a second. The
others drive the script with stand-in go binaries, so they need no network and no root.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "go-toolchain.sh"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_VERSION = re.compile(r"(\d+)\.(\d+)(?:(beta|rc)(\d+)|\.(\d+))?")


def version_key(v: str) -> tuple[int, int, int, int, int]:
    """Orders Go versions the way go does: 1.21 < 1.21rc1 < 1.21.0 < 1.21.1."""
    m = _VERSION.fullmatch(v)
    if not m:
        raise ValueError(f"not a Go version: {v!r}")
    major, minor, pre_kind, pre, patch = m.groups()
    kind = {"beta": 1, "rc": 2}.get(pre_kind or "", 3 if patch else 0)
    return int(major), int(minor), kind, int(pre or 0), int(patch or 0)


@functools.cache
def required() -> str:
    """The version go.mod asks for: the newer of its go and toolchain lines."""
    found = []
    for line in (REPO / "cluster" / "k8s" / "go.mod").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "go":
            found.append(words[1])
        elif len(words) >= 2 and words[0] == "toolchain" and words[1] != "default":
            found.append(re.split(r"[-+]", words[1].removeprefix("go"))[0])
    return max(found, key=version_key)


def release() -> str:
    """The release the script fetches: since 1.21 a bare 1.N is the release 1.N.0."""
    v = required()
    bare = re.fullmatch(r"1\.(\d+)", v)
    return f"{v}.0" if bare and int(bare.group(1)) >= 21 else v


def reported_version(go: str) -> str:
    out = subprocess.run(
        [go, "version"],
        cwd="/",
        env={"PATH": SYSTEM_PATH, "GOTOOLCHAIN": "local"},
        check=True,
        text=True,
        capture_output=True,
        timeout=60,
    ).stdout
    m = re.match(r"go version go(\S+) ", out)
    assert m, f"{go} version printed {out!r}"
    return m.group(1)


@functools.cache
def default_cache() -> Path:
    """The cluster scripts' own cache directory, so the test never restates it."""
    out = subprocess.run(
        ["bash", "-c", '. cluster/lib/common.sh; echo "$SIMDEV_CACHE"'],
        cwd=REPO,
        check=True,
        text=True,
        capture_output=True,
    )
    return Path(out.stdout.strip())


def run_script(
    path: str, cache: Path, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "SIMDEV_CACHE": str(cache), **extra}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, text=True, capture_output=True, timeout=1800
    )


@pytest.mark.timeout(1800)
def test_fresh_debian_path_gets_a_go_new_enough_for_go_mod() -> None:
    cache = default_cache()
    system_go = shutil.which("go", path=SYSTEM_PATH)
    cached = cache / "go" / f"go{release()}" / "bin" / "go"
    if os.geteuid() != 0 and system_go is None and not cached.exists():
        pytest.skip(
            "no go on the system PATH and no cached toolchain: the script would install "
            "Debian's golang-go with apt, which needs root"
        )
    # The real cache, so the download happens once per machine (CI keeps it between runs).
    out = run_script(SYSTEM_PATH, cache)
    assert out.returncode == 0, out.stderr
    go = out.stdout.strip().splitlines()[-1]
    assert Path(go).is_file(), out.stdout
    if go != system_go:
        # A fetched toolchain stays in the cache, off PATH.
        assert Path(go).is_relative_to(cache / "go"), go
    assert version_key(reported_version(go)) >= version_key(required())


# Stand-ins for go. Each reports a version; asked to download a toolchain module, it
# unpacks one into GOMODCACHE whose go reports the version `fetches` (files without execute
# bits, as in a module zip), or fails when that is empty. Each call is logged with its cwd
# and GOROOT.
FAKE_GO = r"""#!/bin/sh
echo "cwd=$(pwd) goroot=${GOROOT:-} args=$*" >> "$FAKE_LOG"
case "$1" in
  version) echo "go version go@VERSION@ linux/amd64" ;;
  mod)
    for mod; do :; done
    [ -n "@FETCHES@" ] || { echo '{"Error": "no such module"}'; exit 1; }
    dir=$GOMODCACHE/$mod
    mkdir -p "$dir/bin" "$dir/pkg/tool/linux_amd64"
    printf '#!/bin/sh\necho "go version go%s linux/amd64"\n' "@FETCHES@" > "$dir/bin/go"
    : > "$dir/pkg/tool/linux_amd64/compile"
    chmod 0444 "$dir/bin/go" "$dir/pkg/tool/linux_amd64/compile"
    echo "{\"Dir\": \"$dir\"}" ;;
esac
"""


class Fake:
    def __init__(self, tmp_path: Path, version: str, fetches: str = "") -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.go = self.bin / "go"
        self.go.write_text(FAKE_GO.replace("@VERSION@", version).replace("@FETCHES@", fetches))
        self.go.chmod(0o755)
        self.log = tmp_path / "calls.log"
        self.cache = tmp_path / "cache"

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        path = f"{self.bin}:{SYSTEM_PATH}"
        return run_script(path, self.cache, *args, FAKE_LOG=str(self.log), **extra)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def cached_go(self) -> Path:
        return self.cache / "go" / f"go{release()}" / "bin" / "go"

    def leftovers(self) -> list[str]:
        """Whatever is in the cache's go dir besides finished toolchains."""
        root = self.cache / "go"
        return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


def neighbours() -> list[tuple[str, bool]]:
    """Versions around the required one, and whether each is new enough."""
    major, minor, kind, _, patch = version_key(required())
    older = [f"{major}.{minor - 1}.99", "1.19.8"]
    if kind == 3:  # a release: its own release candidates and earlier patches come before it
        older.append(f"{major}.{minor}rc1")
        if patch > 0:
            older.append(f"{major}.{minor}.{patch - 1}")
    newer = [required(), f"{major}.{minor}.{patch + 1}", f"{major}.{minor + 1}.0"]
    return [(v, False) for v in older] + [(v, True) for v in newer]


@pytest.mark.parametrize(("version", "enough"), neighbours())
def test_go_on_path_is_used_exactly_when_new_enough(
    tmp_path: Path, version: str, enough: bool
) -> None:
    fake = Fake(tmp_path, version, fetches=release())
    out = fake.run()
    assert out.returncode == 0, out.stderr
    chosen = out.stdout.strip().splitlines()[-1]
    if enough:
        assert chosen == str(fake.go)
        assert not fake.cache.exists(), "a new enough go needs no cache"
    else:
        assert chosen == str(fake.cached_go())


def test_fetched_toolchain_is_cached_runnable_and_fetched_once(tmp_path: Path) -> None:
    fake = Fake(tmp_path, "1.19.8", fetches=release())
    first = fake.run(GOROOT="/somewhere/else")
    assert first.returncode == 0, first.stderr
    go = fake.cached_go()
    assert first.stdout.strip().splitlines()[-1] == str(go)
    assert go.stat().st_mode & stat.S_IXUSR, "module zips carry no modes: the script sets them"
    assert fake.leftovers() == []

    downloads = [c for c in fake.calls() if "args=mod download" in c]
    assert len(downloads) == 1
    # Outside any module, with the module that go's own toolchain switch uses, and with
    # no GOROOT of another go.
    assert downloads[0].startswith("cwd=/ goroot= "), downloads[0]
    assert "-modcacherw" in downloads[0]
    module = rf"golang\.org/toolchain@v0\.0\.1-go{re.escape(release())}\.linux-\w+$"
    assert re.search(module, downloads[0]), downloads[0]

    second = fake.run()
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == str(go)
    assert len([c for c in fake.calls() if "args=mod download" in c]) == 1


def test_failed_download_leaves_nothing_that_looks_cached(tmp_path: Path) -> None:
    fake = Fake(tmp_path, "1.19.8", fetches="")
    out = fake.run()
    assert out.returncode != 0
    assert "could not fetch golang.org/toolchain@" in out.stderr
    assert not fake.cached_go().parent.parent.exists()
    assert fake.leftovers() == []


def test_toolchain_reporting_an_older_version_is_refused(tmp_path: Path) -> None:
    fake = Fake(tmp_path, "1.19.8", fetches="1.19.9")
    out = fake.run()
    assert out.returncode != 0
    assert "not " + required() + " or newer" in out.stderr
    assert not fake.cached_go().parent.parent.exists()
    assert fake.leftovers() == []


def test_broken_cached_toolchain_is_fetched_again(tmp_path: Path) -> None:
    fake = Fake(tmp_path, "1.19.8", fetches=release())
    # What an interrupted copy by other means might look like: no bin/go.
    (fake.cache / "go" / f"go{release()}" / "src").mkdir(parents=True)
    out = fake.run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(fake.cached_go())
    assert reported_version(str(fake.cached_go())) == release()


def test_a_go_mod_named_as_argument_sets_the_version(tmp_path: Path) -> None:
    """cluster/build-helm.sh asks for a go new enough for cluster/helm/go.mod instead."""
    gomod = tmp_path / "go.mod"
    gomod.write_text("module example.com/other\n\ngo 1.99.1\n")
    fake = Fake(tmp_path, required(), fetches="1.99.1")
    default = fake.run()
    assert default.stdout.strip().splitlines()[-1] == str(fake.go)
    out = fake.run(str(gomod))
    assert out.returncode == 0, out.stderr
    fetched = fake.cache / "go" / "go1.99.1" / "bin" / "go"
    assert out.stdout.strip().splitlines()[-1] == str(fetched)
    assert reported_version(str(fetched)) == "1.99.1"
    missing = fake.run(str(tmp_path / "nowhere" / "go.mod"))
    assert missing.returncode != 0
    assert "no such go.mod" in missing.stderr
