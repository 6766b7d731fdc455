"""The permissions of what memlaw writes: what the user's umask says, as for any file made with open().

Why this exists: an atomic write makes a temp file with `tempfile.mkstemp` (always 0600) or a temp
folder with `tempfile.mkdtemp` (always 0700) and renames it into place, so the final file kept the
temp's private mode whatever the umask. Under the usual umask 022 colleagues on a shared machine
could not read results.parquet, law.png, the journal or a checkpoint's adapter. A file made with
open() gets 0666 & ~umask from the kernel; a renamed temp is given the same here, before the rename,
so the file appears with its final mode. A user who wants private results sets umask 077 and gets
0600, as with any other program.

Deliberate secrets do not come here: Ray's token (orchestrator/tune/ray_session.py) is made 0600
whatever the umask.

Reading the umask: os.umask can only read it by setting it, and the umask belongs to the whole
process, so a thread creating a file between the set and the restore would get the wrong mode (the
results actor and the driver write from several threads). Linux (4.7 and later) shows it read-only
in /proc/self/status ("Umask:"), current even if something changes it after import. Elsewhere it is
read once, at import, with set-and-restore: modules are imported before the threads that write start.
Pure Python, no torch: the orchestrator's storage and the trials use it alike.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROC_STATUS = "/proc/self/status"


def _umask_from_proc() -> int | None:
    """The umask as Linux shows it, read-only; None where /proc does not show it."""
    try:
        with open(PROC_STATUS, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    """The umask read the only portable way, by setting it and setting it back: at import only."""
    current = os.umask(0o022)
    os.umask(current)
    return current


_FROM_PROC = _umask_from_proc()
_UMASK_AT_IMPORT: int = _umask_by_setting() if _FROM_PROC is None else _FROM_PROC


def umask() -> int:
    """The process's umask now (from /proc where it can be read without changing it), else at import."""
    found = _umask_from_proc()
    return _UMASK_AT_IMPORT if found is None else found


def file_mode() -> int:
    """The mode open() would give a new file: 0666 & ~umask (0644 under umask 022)."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode mkdir would give a new folder: 0777 & ~umask (0755 under umask 022)."""
    return 0o777 & ~umask()


def temp_folder(parent: str | os.PathLike, prefix: str = ".tmp-") -> Path:
    """A new empty folder in `parent`, for a write renamed into place when complete, with the mode of
    a folder made by mkdir (mkdtemp's own 0700 would follow it into place: see the module doc)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, folder_mode())
    return folder
