"""Facts about the filesystem a watched folder lives on: its type, and room for more watches.

Network and FUSE filesystems (NFS, SMB, sshfs, rclone ...) deliver no change notifications for
changes made elsewhere, so folders on them are polled. On Linux the kernel's mount table
(/proc/self/mountinfo, else /proc/mounts) names each mount's filesystem type; elsewhere the type is
unknown and native events are used.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

# Filesystems whose changes made by other machines never reach inotify (or its peers).
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "ncpfs", "afs", "9p", "v9fs", "drvfs",
    "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "vboxsf", "vmhgfs", "virtiofs",
    "fuse", "sshfs",
})

# The kernel's and the system's own file systems: processes, devices, kernel settings. Never
# photos; walking them can be endless (/proc/*/root leads back to the whole disk) or hang.
SYSTEM_FILESYSTEMS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "devfs", "cgroup", "cgroup2", "securityfs", "debugfs",
    "tracefs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc",
    "efivarfs", "selinuxfs", "rpc_pipefs", "nsfs", "fdescfs", "procfs", "linprocfs", "linsysfs",
    "kernfs",
})
# Where no mount table can be read: the usual places of those file systems.
SYSTEM_FOLDERS = {"/proc": "proc", "/sys": "sysfs", "/dev": "devfs"}

MOUNT_TABLES = ("/proc/self/mountinfo", "/proc/mounts")

_IN_DELETE_SELF = 0x400


def _unescape(field: str) -> str:
    r"""Mount tables write space, tab, newline and backslash as octal escapes (\040 ...)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) for each line of a mountinfo or /proc/mounts table."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if " - " in line:  # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - TYPE SRC OPTS
            after = line.split(" - ", 1)[1].split()
            if len(fields) >= 5 and after:
                mounts.append((_unescape(fields[4]), after[0]))
        elif len(fields) >= 3:  # /proc/mounts: SOURCE MOUNTPOINT TYPE OPTS 0 0
            mounts.append((_unescape(fields[1]), fields[2]))
    return mounts


def _read_mount_table() -> str | None:
    for table in MOUNT_TABLES:
        try:
            with open(table, encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
        except OSError:
            continue
    return None


def filesystem_type(path: str | os.PathLike, table: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` ("ext4", "nfs4", "fuse.sshfs" ...), or None."""
    text = table if table is not None else _read_mount_table()
    if not text:
        return None
    real = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for point, fstype in parse_mounts(text):  # later lines win: they are mounted on top
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def mount_table(table: str | None = None) -> list[tuple[str, str]]:
    """(mount point, type) of every mount; where no table can be read, the usual system folders."""
    text = table if table is not None else _read_mount_table()
    if not text:
        return list(SYSTEM_FOLDERS.items()) if os.name == "posix" else []
    return parse_mounts(text)


def system_filesystem(path: str | os.PathLike, mounts: list[tuple[str, str]] | None = None,
                      resolved: bool = False) -> str | None:
    """The type of the system file system (proc, sysfs, devtmpfs ...) holding ``path`` after
    links (``resolved``: it has none), or None for any other file system (a tmpfs mounted
    inside /dev is not one)."""
    real = os.fspath(path) if resolved else os.path.realpath(path)
    best: tuple[int, str] | None = None
    for point, fstype in mount_table() if mounts is None else mounts:
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return best[1] if best and best[1] in SYSTEM_FILESYSTEMS else None


def needs_polling(fstype: str | None) -> bool:
    """True for filesystems that deliver no native change events (network, FUSE)."""
    if not fstype:
        return False
    return fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse.")


def inotify_room() -> bool | None:
    """Can this user add one more inotify watch right now? None where inotify does not exist.

    watchdog skips subfolders it cannot watch without saying so, so after watching a large tree
    this probe is how a reached limit is noticed.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return ctypes.get_errno() not in (errno.EMFILE, errno.ENFILE)
    try:
        wd = libc.inotify_add_watch(fd, b"/", _IN_DELETE_SELF)
        return wd >= 0 or ctypes.get_errno() != errno.ENOSPC
    finally:
        os.close(fd)


def watch_limit_message(err: OSError) -> str:
    """What a person needs to know when the system refuses more folder watches."""
    if err.errno == errno.EMFILE:
        return ("the system's limit on inotify instances is reached (fs.inotify.max_user_instances;"
                " watches are also capped by fs.inotify.max_user_watches)")
    return ("the system's limit on watched folders is reached (fs.inotify.max_user_watches; raise "
            "it with `sudo sysctl fs.inotify.max_user_watches=524288`)")
