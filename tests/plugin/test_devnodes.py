"""Creating device files under HOST_DEV_DIR (mknod needs root or CAP_MKNOD)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from simdev.plugin.devnodes import DeviceNodeError, ensure_device_node

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating character devices (mknod) needs root / CAP_MKNOD"
)


@needs_root
def test_creates_a_dev_null_like_node_readable_by_all(tmp_path: Path) -> None:
    old = os.umask(0o077)  # the mode must not depend on the umask
    try:
        assert ensure_device_node(tmp_path, "simple-device-0") is True
    finally:
        os.umask(old)
    st = os.lstat(tmp_path / "simple-device-0")
    assert stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666


@needs_root
def test_existing_node_is_kept(tmp_path: Path) -> None:
    assert ensure_device_node(tmp_path, "d-0") is True
    inode = os.lstat(tmp_path / "d-0").st_ino
    assert ensure_device_node(tmp_path, "d-0") is False
    assert os.lstat(tmp_path / "d-0").st_ino == inode


def test_a_regular_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d-0").write_text("not a device")
    with pytest.raises(DeviceNodeError, match="exists and is not a character device"):
        ensure_device_node(tmp_path, "d-0")
    assert (tmp_path / "d-0").read_text() == "not a device"


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceNodeError, match=r"cannot create device file .*/nodir/d-0"):
        ensure_device_node(tmp_path / "nodir", "d-0")
