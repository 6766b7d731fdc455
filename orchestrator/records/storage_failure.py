"""A full, read-only or forbidden disk, told apart from everything else. Pure: no Ray.

When the experiment's storage stops taking writes, every part of a sweep fails at once: the
journal's write in the results actor, Tune's checkpoint upload inside each trial, Tune's own state
files in the driver. Each shows up somewhere else (a remote call's error, a trial's traceback, a
torn pickle) and, read one by one, looks like a dead actor or a trial error. `storage_cause` finds
the OSError under any of them; `cause_in_text` finds it in a trial's error trace. The sweep then
stops once, with one message (orchestrator/tune/callbacks.py), and the trials it cut short are
`stopped`, never failures.

    errno    what the message says
    ENOSPC   no space left on the device
    EDQUOT   over the disk quota
    EROFS    the file system is read-only
    EACCES   permission denied (a folder whose permissions changed under the run)

A space reserve (`Reserve`) is held in the experiment while a local sweep runs: released at the
first ENOSPC, it gives the orderly stop room to write Tune's state and the records in flight, so
that `memlaw resume` continues cleanly once space is back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from dataclasses import dataclass

STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "over the disk quota",
                  errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied"}
#: How an OSError of STORAGE_ERRNOS reads in a traceback ("[Errno 28] No space left on device").
_TEXT = re.compile(r"\[Errno (%s)\] ([^:\n']*)(?:: '([^'\n]*)')?" % "|".join(str(n) for n in STORAGE_ERRNOS))
#: Where the reserve lives (under the experiment's record folder) and its default size.
RESERVE_FILE = "space-reserve.bin"
RESERVE_BYTES = 32 * 2**20
MIN_RESERVE_BYTES = 64 * 2**10


@dataclass(frozen=True)
class StorageFailure:
    """The first storage error of a run: which path, which errno, in words."""

    path: str | None
    errno: int
    reason: str

    @property
    def code(self) -> str:
        return errno.errorcode.get(self.errno, str(self.errno))

    def text(self) -> str:
        where = f" writing {self.path}" if self.path else ""
        return f"the experiment's storage failed{where}: {self.reason} ({self.code})"


def storage_cause(err: BaseException | None, depth: int = 0) -> StorageFailure | None:
    """The storage OSError under `err` (its cause, context, or a Ray task error's `cause`), if any."""
    if err is None or depth > 20:
        return None
    if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
        return StorageFailure(err.filename, err.errno, STORAGE_ERRNOS[err.errno])
    for inner in (getattr(err, "cause", None), err.__cause__, err.__context__):
        if isinstance(inner, BaseException) and inner is not err:
            found = storage_cause(inner, depth + 1)
            if found:
                return found
    return cause_in_text(str(err)) if depth == 0 else None


def cause_in_text(text: str | None) -> StorageFailure | None:
    """The storage error a trial's error trace names (its last one: the nearest to the failure)."""
    matches = list(_TEXT.finditer(text or ""))
    if not matches:
        return None
    last = matches[-1]
    number = int(last.group(1))
    return StorageFailure(last.group(3), number, STORAGE_ERRNOS[number])


class StorageFailed(RuntimeError):
    """A run stopped by its storage: the CLI prints `message` and exits EXIT_STORAGE (3)."""

    def __init__(self, failure: StorageFailure, experiment_uri: str):
        self.failure, self.experiment_uri = failure, experiment_uri
        super().__init__(f"{failure.text()}. The sweep stopped: the trials in flight were stopped, not failed, and "
                         f"the records written so far are intact. Free space (or restore write access), then "
                         f"`memlaw resume {experiment_uri}` continues it.")


class Reserve:
    """Space held back in a local experiment for the stop after a full disk (see the module doc)."""

    def __init__(self, folder: str, size: int = RESERVE_BYTES):
        self.path = os.path.join(folder, RESERVE_FILE)
        self.size = size

    def hold(self) -> bool:
        """Allocate the reserve (real blocks, not a sparse file): `size`, or an eighth of the free
        space when that is less; False when there is no room for even MIN_RESERVE_BYTES."""
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fs = os.statvfs(os.path.dirname(self.path))
            size = min(self.size, fs.f_bavail * fs.f_frsize // 8)
            if size < MIN_RESERVE_BYTES:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            return True
        except OSError:
            self.release()
            return False

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self.path)
