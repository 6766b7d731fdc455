"""Atomic files in an experiment's storage: a local path or an fsspec URI (s3://, gs://, ...).

A file memlaw owns is always either its old version or its new one, never a torn mix:
- local paths: write a temp file in the same folder, give it the mode the umask says (mkstemp's
  0600 would follow it into place: trainables/file_modes.py), fsync it, `os.replace` it into place,
  fsync the folder (so the rename survives a power cut);
- object stores: one PUT of the whole object, which the store makes visible atomically.

Constructing a Store creates nothing: a folder is made by the first write into it, so the
read-only commands (law, export, plot, the reading half of resume) never leave a folder behind
at a mistyped path.

`memory://` works here but is private to each process: the results actor and the driver would
not see each other's files, so it cannot stand in for shared storage (we refuse it for sweeps).
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from typing import Any

from trainables.file_modes import file_mode

KNOWN_REMOTE_SCHEMES = ("s3", "gs", "gcs", "abfs", "az", "hdfs", "memory", "file")


class StorageError(ValueError):
    """A storage location memlaw cannot use."""


def split_uri(uri: str) -> tuple[str | None, str]:
    """('s3', 'bucket/path') for URIs, (None, absolute local path) for plain paths."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        if scheme == "file":
            return None, os.path.abspath("/" + rest.lstrip("/"))
        return scheme, rest
    return None, os.path.abspath(os.path.expanduser(uri))


def check_uri(uri: str) -> str | None:
    """An error message if `uri` has a scheme fsspec does not know, else None. No I/O."""
    scheme, _ = split_uri(uri)
    if scheme is None:
        return None
    import fsspec

    if scheme not in fsspec.available_protocols():
        return f"unknown storage scheme {scheme!r} in {uri!r} (use a local path or one of s3://, gs://, abfs://, ...)"
    return None


class Store:
    """A folder (local or remote) where memlaw reads and writes whole files atomically."""

    def __init__(self, uri: str):
        problem = check_uri(uri)
        if problem:
            raise StorageError(problem)
        self.uri = uri
        self.scheme, self.root = split_uri(uri)
        self._made = False  # remote stores: whether the first write made the folder (see _make_folder)
        if self.scheme is None:
            self.fs = None
        else:
            import fsspec

            self.fs = fsspec.filesystem(self.scheme)

    @property
    def is_local(self) -> bool:
        return self.fs is None

    def path(self, *parts: str) -> str:
        if self.is_local:
            return os.path.join(self.root, *parts)
        return posixpath.join(self.root, *parts)

    def child(self, *parts: str) -> Store:
        return Store(self.path(*parts) if self.is_local else f"{self.scheme}://{self.path(*parts)}")

    # -- reading ---------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return os.path.exists(self.path(name)) if self.is_local else self.fs.exists(self.path(name))

    def read_bytes(self, name: str) -> bytes:
        if self.is_local:
            with open(self.path(name), "rb") as fh:
                return fh.read()
        return self.fs.cat_file(self.path(name))

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def list(self, prefix: str = "") -> list[str]:
        """Names of files directly in this folder that start with `prefix`, sorted."""
        if self.is_local:
            names = os.listdir(self.root) if os.path.isdir(self.root) else []
        else:
            try:
                listed = self.fs.ls(self.root, detail=False)
            except FileNotFoundError:  # nothing written here yet
                listed = []
            names = [posixpath.basename(p.rstrip("/")) for p in listed]
        return sorted(n for n in names if n.startswith(prefix) and not n.startswith(".tmp-"))

    # -- writing ---------------------------------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace `name` with `data` atomically."""
        self._make_folder()
        if not self.is_local:
            self.fs.pipe_file(self.path(name), data)
            return
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fd, file_mode())  # before the fsync, so the mode is as durable as the bytes
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        _fsync_dir(self.root)

    def _make_folder(self) -> None:
        """Create this folder (and its parents) before the first write; reading never creates it."""
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)  # one stat when it exists
        elif not self._made:  # a remote call: once per Store
            self.fs.makedirs(self.root, exist_ok=True)
            self._made = True

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())

    def delete(self, name: str) -> None:
        if self.is_local:
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass
        elif self.fs.exists(self.path(name)):
            self.fs.rm_file(self.path(name))


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
