"""Device files on the host for the simulated devices.

The container runtime refuses to start a container whose device file is missing on
the host, so every device file we hand out must exist. We create character devices
with /dev/null's numbers: harmless to read and write, and always present in the
runtime's default device allow-list. Creating one needs CAP_MKNOD.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DEV_NULL = os.makedev(1, 3)
MODE = 0o666


class DeviceNodeError(Exception):
    """A device file could not be created or something else is in its place."""


def ensure_device_node(dev_dir: Path, file_name: str) -> bool:
    """Makes dev_dir/file_name a character device; returns True if it was created.

    An existing character device is left alone, whatever its numbers: it may be a
    real device the administrator chose to expose.
    """
    path = dev_dir / file_name
    created = False
    try:
        os.mknod(path, stat.S_IFCHR | MODE, DEV_NULL)
        created = True
    except FileExistsError:
        pass
    except OSError as err:
        raise DeviceNodeError(f"cannot create device file {path}: {err.strerror}") from err
    try:
        st = os.lstat(path)
        if not stat.S_ISCHR(st.st_mode):
            raise DeviceNodeError(f"{path} exists and is not a character device")
        if created:
            # mknod's mode is cut by the umask; containers expect read-write for all.
            os.chmod(path, MODE)
    except OSError as err:
        raise DeviceNodeError(f"cannot check device file {path}: {err.strerror}") from err
    return created
