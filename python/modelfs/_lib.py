"""ctypes bindings of libmodelfs (include/modelfs.h) and the objects over them.

The shared library is the one installed inside this package
(``modelfs/lib/libmodelfs.so``), or ``$MODELFS_LIBRARY`` when that is set (a
build tree's copy, for development). ctypes releases the GIL around every call,
so reads from many Python threads run in parallel, and every read decodes
straight into memory the caller allocated (a numpy array, a torch tensor).
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from ctypes import (POINTER, Structure, byref, c_char, c_char_p, c_int, c_size_t,
                    c_uint, c_uint32, c_uint64, c_void_p)
from pathlib import Path

_HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- errors

E_INVAL, E_NOSTORE, E_NOREPO, E_NOREVISION, E_NOFILE, E_NOTENSOR = -1, -2, -3, -4, -5, -6
E_CORRUPT, E_FORMAT, E_NOSPACE, E_NOMEM, E_IO, E_VERSION, E_BUSY = (-7, -8, -9, -10, -11,
                                                                    -12, -13)
E_UNSUPPORTED = -14
GPU_OFF, GPU_AUTO, GPU_ON = 0, 1, 2


class ModelfsError(Exception):
    """An error from libmodelfs: ``code`` is its MODELFS_E_* value, ``str()`` its
    message (what failed, where, what to do)."""

    def __init__(self, message: str, code: int = E_IO):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(ModelfsError, ValueError):
    """A bad repo id, path, revision, range or argument."""


class StoreNotFoundError(ModelfsError, FileNotFoundError):
    """No store where one was looked for (or it cannot be opened)."""


class RepositoryNotFoundError(ModelfsError, FileNotFoundError):
    """The store has no such repo."""


class RevisionNotFoundError(ModelfsError, FileNotFoundError):
    """The repo has no such ref or commit."""


class EntryNotFoundError(ModelfsError, FileNotFoundError):
    """The snapshot has no such file."""


class TensorNotFoundError(ModelfsError, KeyError):
    """The file has no such tensor."""


class CorruptDataError(ModelfsError, OSError):
    """Stored data fails its check (a damaged or missing chunk or record): the
    message names the chunk; ``modelfs verify`` lists every damaged one."""


class FormatError(ModelfsError, ValueError):
    """Not a valid safetensors file (or a malformed index.json)."""


class StoreBusyError(ModelfsError, OSError):
    """The store is in use in a way that forbids the call."""


class StoreVersionError(ModelfsError, OSError):
    """The store was written by a modelfs with another store format."""


class DeviceUnavailableError(ModelfsError, RuntimeError):
    """A load onto a device this process cannot use: torch without CUDA, no
    usable CUDA device, or a library built without its GPU decoder (the
    message says which)."""


_BY_CODE = {
    E_INVAL: InvalidArgumentError, E_NOSTORE: StoreNotFoundError,
    E_NOREPO: RepositoryNotFoundError, E_NOREVISION: RevisionNotFoundError,
    E_NOFILE: EntryNotFoundError, E_NOTENSOR: TensorNotFoundError,
    E_CORRUPT: CorruptDataError, E_FORMAT: FormatError, E_NOSPACE: InvalidArgumentError,
    E_BUSY: StoreBusyError, E_VERSION: StoreVersionError,
    E_UNSUPPORTED: DeviceUnavailableError,
}


class _Error(Structure):
    _fields_ = [("code", c_int), ("message", c_char * 512)]


def _raise(rc: int, err: _Error):
    msg = err.message.decode("utf-8", "replace") or f"modelfs error {rc}"
    if rc == E_NOMEM:
        raise MemoryError(msg)
    raise _BY_CODE.get(rc, ModelfsError)(msg, rc)


# ---------------------------------------------------------------- the library

class _Entry(Structure):
    _fields_ = [("name", c_char_p), ("commit", c_char_p), ("etag", c_char_p),
                ("size", c_uint64), ("time", c_uint64), ("mode", c_uint32)]


class _Tensor(Structure):
    _fields_ = [("name", c_char_p), ("dtype", c_char_p), ("dtype_bits", c_uint32),
                ("ndim", c_uint32), ("shape", POINTER(c_uint64)), ("offset", c_uint64),
                ("nbytes", c_uint64)]


class _Range(Structure):
    _fields_ = [("offset", c_uint64), ("len", c_size_t), ("dst", c_void_p)]


def _library_path() -> str:
    env = os.environ.get("MODELFS_LIBRARY")
    if env:
        return env
    p = _HERE / "lib" / "libmodelfs.so"
    if p.is_file():
        return str(p)
    raise ImportError(f"libmodelfs.so is not installed in {_HERE / 'lib'}: install the package "
                      f"with `pip install .` from the modelfs checkout (or set "
                      f"MODELFS_LIBRARY to a built libmodelfs.so)")


def _load():
    lib = ctypes.CDLL(_library_path())
    E = POINTER(_Error)
    sig = {
        "modelfs_version_number": (c_uint, []),
        "modelfs_version_string": (c_char_p, []),
        "modelfs_strerror": (c_char_p, [c_int]),
        "modelfs_store_default_dir": (c_int, [c_char_p, c_size_t, E]),
        "modelfs_store_open": (c_int, [c_char_p, c_uint, POINTER(c_void_p), E]),
        "modelfs_store_close": (None, [c_void_p]),
        "modelfs_store_dir": (c_char_p, [c_void_p]),
        "modelfs_store_threads": (c_uint, [c_void_p]),
        "modelfs_list_count": (c_size_t, [c_void_p]),
        "modelfs_list_get": (POINTER(_Entry), [c_void_p, c_size_t]),
        "modelfs_list_free": (None, [c_void_p]),
        "modelfs_list_repos": (c_int, [c_void_p, POINTER(c_void_p), E]),
        "modelfs_list_refs": (c_int, [c_void_p, c_char_p, POINTER(c_void_p), E]),
        "modelfs_list_snapshots": (c_int, [c_void_p, c_char_p, POINTER(c_void_p), E]),
        "modelfs_list_files": (c_int, [c_void_p, c_char_p, c_char_p, POINTER(c_void_p), E]),
        "modelfs_resolve": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p, E]),
        "modelfs_file_open": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p,
                                      POINTER(c_void_p), E]),
        "modelfs_file_close": (None, [c_void_p]),
        "modelfs_file_size": (c_uint64, [c_void_p]),
        "modelfs_file_repo": (c_char_p, [c_void_p]),
        "modelfs_file_commit": (c_char_p, [c_void_p]),
        "modelfs_file_path": (c_char_p, [c_void_p]),
        "modelfs_file_etag": (c_char_p, [c_void_p]),
        "modelfs_file_sha256": (None, [c_void_p, c_char_p]),
        "modelfs_file_read": (c_int, [c_void_p, c_uint64, c_void_p, c_size_t, E]),
        "modelfs_file_read_ranges": (c_int, [c_void_p, POINTER(_Range), c_size_t, E]),
        "modelfs_file_tensor_count": (c_int, [c_void_p, POINTER(c_size_t), E]),
        "modelfs_file_tensor": (POINTER(_Tensor), [c_void_p, c_size_t]),
        "modelfs_file_metadata": (c_char_p, [c_void_p]),
        "modelfs_tensor_read": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t, E]),
        "modelfs_store_set_gpu": (c_int, [c_void_p, c_int, E]),
        "modelfs_store_gpu": (c_int, [c_void_p, c_char_p, c_size_t, E]),
        "modelfs_file_read_ranges_device": (c_int, [c_void_p, POINTER(_Range), c_size_t, E]),
        "modelfs_file_read_device": (c_int, [c_void_p, c_uint64, c_void_p, c_size_t, E]),
        "modelfs_tensor_read_device": (c_int, [c_void_p, c_char_p, c_void_p, c_size_t, E]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    major = lib.modelfs_version_number() // 10000
    if major != 0:
        raise ImportError(f"libmodelfs {lib.modelfs_version_string().decode()} at "
                          f"{_library_path()} is not ABI version 0, which this package needs")
    return lib


_lib = _load()


def library_version() -> str:
    """The loaded libmodelfs's version ("0.1.0")."""
    return _lib.modelfs_version_string().decode()


def _b(s) -> bytes | None:
    if s is None:
        return None
    if isinstance(s, os.PathLike):
        s = os.fspath(s)
    if isinstance(s, bytes):
        return s
    if not isinstance(s, str):
        raise TypeError(f"expected a string, got {type(s).__name__}")
    return s.encode("utf-8", "surrogateescape")


def _s(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "surrogateescape")


class _Guard:
    """Keeps a C handle alive while calls on it run: close() from one thread while
    another reads defers the real close to the end of the read, never a crash."""

    def __init__(self, handle, closer):
        self._h = handle
        self._closer = closer
        self._lock = threading.Lock()
        self._busy = 0
        self._closing = False

    def enter(self):
        with self._lock:
            if self._h is None or self._closing:
                raise ValueError("operation on a closed modelfs handle")
            self._busy += 1
            return self._h

    def leave(self):
        h = None
        with self._lock:
            self._busy -= 1
            if self._closing and self._busy == 0 and self._h is not None:
                h, self._h = self._h, None
        if h is not None:
            self._closer(h)

    def close(self):
        h = None
        with self._lock:
            if self._closing or self._h is None:
                return
            self._closing = True
            if self._busy == 0:
                h, self._h = self._h, None
        if h is not None:
            self._closer(h)

    @property
    def closed(self) -> bool:
        return self._h is None or self._closing


# ---------------------------------------------------------------- objects

class FileInfo:
    """One file of a snapshot (Store.files)."""

    __slots__ = ("path", "size", "etag", "commit", "mode")

    def __init__(self, path, size, etag, commit, mode):
        self.path, self.size, self.etag, self.commit, self.mode = path, size, etag, commit, mode

    def __repr__(self):
        return f"FileInfo({self.path!r}, size={self.size}, etag={self.etag!r})"


class TensorInfo:
    """A tensor of a safetensors file, as its header describes it."""

    __slots__ = ("name", "dtype", "dtype_bits", "shape", "offset", "nbytes")

    def __init__(self, name, dtype, dtype_bits, shape, offset, nbytes):
        self.name, self.dtype, self.dtype_bits = name, dtype, dtype_bits
        self.shape, self.offset, self.nbytes = shape, offset, nbytes

    def __repr__(self):
        return f"TensorInfo({self.name!r}, {self.dtype}, {list(self.shape)}, offset={self.offset})"


def default_store_dir() -> str:
    """$MODELFS_STORE, else $XDG_DATA_HOME/modelfs, else ~/.local/share/modelfs."""
    buf = ctypes.create_string_buffer(4096)
    err = _Error()
    rc = _lib.modelfs_store_default_dir(buf, len(buf), byref(err))
    if rc:
        _raise(rc, err)
    return _s(buf.value)


class Store:
    """A modelfs store opened for reading.

    ``Store(path=None, threads=0)``: ``path`` None means the default store
    (:func:`default_store_dir`); ``threads`` the decoding threads of its reads
    (0: one per CPU). A store directory open twice in one process is one handle
    inside the library. Usable from many threads; a context manager.
    """

    def __init__(self, path=None, threads: int = 0):
        h = c_void_p()
        err = _Error()
        rc = _lib.modelfs_store_open(_b(path), int(threads), byref(h), byref(err))
        if rc:
            _raise(rc, err)
        self._g = _Guard(h, _lib.modelfs_store_close)
        self.path = _s(_lib.modelfs_store_dir(h))
        self.threads = int(_lib.modelfs_store_threads(h))

    def close(self):
        self._g.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        g = getattr(self, "_g", None)
        if g is not None:
            g.close()

    def __repr__(self):
        return f"modelfs.Store({self.path!r})"

    def _list(self, fn, *args) -> list:
        h = self._g.enter()
        try:
            lst = c_void_p()
            err = _Error()
            rc = fn(h, *args, byref(lst), byref(err))
            if rc:
                _raise(rc, err)
            try:
                return [_copy_entry(_lib.modelfs_list_get(lst, i).contents)
                        for i in range(_lib.modelfs_list_count(lst))]
            finally:
                _lib.modelfs_list_free(lst)
        finally:
            self._g.leave()

    def repos(self) -> list[str]:
        """Repo ids ("models/org/name"), in order."""
        return [e["name"] for e in self._list(_lib.modelfs_list_repos)]

    def refs(self, repo_id: str) -> dict[str, str]:
        """The refs of a repo: name -> commit."""
        return {e["name"]: e["commit"] for e in self._list(_lib.modelfs_list_refs,
                                                            _b(repo_id))}

    def snapshots(self, repo_id: str) -> list[dict]:
        """The commits of a repo, newest first: {"commit", "time", "files"}."""
        return [{"commit": e["name"], "time": e["time"], "files": e["size"]}
                for e in self._list(_lib.modelfs_list_snapshots, _b(repo_id))]

    def files(self, repo_id: str, revision: str | None = "main") -> list[FileInfo]:
        """The files of a snapshot, by path."""
        return [FileInfo(e["name"], e["size"], e["etag"], e["commit"], e["mode"])
                for e in self._list(_lib.modelfs_list_files, _b(repo_id), _b(revision))]

    def resolve(self, repo_id: str, revision: str | None = "main") -> str:
        """The commit a ref (or a commit hash) names."""
        h = self._g.enter()
        try:
            buf = ctypes.create_string_buffer(41)
            err = _Error()
            rc = _lib.modelfs_resolve(h, _b(repo_id), _b(revision), buf, byref(err))
            if rc:
                _raise(rc, err)
            return _s(buf.value)
        finally:
            self._g.leave()

    def open(self, repo_id: str, path: str, revision: str | None = "main") -> "File":
        """Open a file of a snapshot: it reads the bytes it had now until closed."""
        return File(self, repo_id, path, revision)

    def set_gpu(self, mode: str):
        """Whether reads into host memory decode rans chunks on the GPU: "off" (the
        default), "auto" (when a device is usable) or "on" (raises
        DeviceUnavailableError when none is). Reads into device memory always do."""
        modes = {"off": GPU_OFF, "auto": GPU_AUTO, "on": GPU_ON}
        if mode not in modes:
            raise InvalidArgumentError(f"gpu mode {mode!r}: use \"off\", \"auto\" or \"on\"")
        h = self._g.enter()
        try:
            err = _Error()
            rc = _lib.modelfs_store_set_gpu(h, modes[mode], byref(err))
            if rc:
                _raise(rc, err)
        finally:
            self._g.leave()

    def gpu(self) -> str:
        """The CUDA device reads decode on (its name); raises DeviceUnavailableError,
        saying why, when there is none (no GPU decoder in this build, no device)."""
        h = self._g.enter()
        try:
            buf = ctypes.create_string_buffer(256)
            err = _Error()
            rc = _lib.modelfs_store_gpu(h, buf, len(buf), byref(err))
            if rc:
                _raise(rc, err)
            return _s(buf.value)
        finally:
            self._g.leave()


def _copy_entry(e: _Entry) -> dict:
    return {"name": _s(e.name), "commit": _s(e.commit), "etag": _s(e.etag),
            "size": int(e.size), "time": int(e.time), "mode": int(e.mode)}


class File:
    """A file of a snapshot, open for reading (Store.open). A context manager."""

    def __init__(self, store: Store, repo_id: str, path: str, revision: str | None = "main"):
        self.store = store  # the store outlives its files in the C library too
        sh = store._g.enter()
        try:
            h = c_void_p()
            err = _Error()
            rc = _lib.modelfs_file_open(sh, _b(repo_id), _b(revision), _b(path), byref(h),
                                        byref(err))
            if rc:
                _raise(rc, err)
        finally:
            store._g.leave()
        self._g = _Guard(h, _lib.modelfs_file_close)
        self.size = int(_lib.modelfs_file_size(h))
        self.repo = _s(_lib.modelfs_file_repo(h))
        self.commit = _s(_lib.modelfs_file_commit(h))
        self.path = _s(_lib.modelfs_file_path(h))
        self.etag = _s(_lib.modelfs_file_etag(h))
        sha = ctypes.create_string_buffer(32)
        _lib.modelfs_file_sha256(h, sha)
        self.sha256 = sha.raw.hex()
        self._tensors = None
        self._meta = None
        self._meta_read = False

    def close(self):
        self._g.close()

    @property
    def closed(self) -> bool:
        return self._g.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        g = getattr(self, "_g", None)
        if g is not None:
            g.close()

    def __repr__(self):
        return f"modelfs.File({self.repo!r}, {self.path!r}, commit={self.commit[:12]!r})"

    def tensors(self) -> list[TensorInfo]:
        """The tensors, in name order (an empty list for a file of another kind)."""
        if self._tensors is None:
            h = self._g.enter()
            try:
                n = c_size_t()
                err = _Error()
                rc = _lib.modelfs_file_tensor_count(h, byref(n), byref(err))
                if rc:
                    _raise(rc, err)
                out = []
                for i in range(n.value):
                    t = _lib.modelfs_file_tensor(h, i).contents
                    out.append(TensorInfo(_s(t.name), _s(t.dtype), int(t.dtype_bits),
                                          tuple(t.shape[:t.ndim]),
                                          int(t.offset), int(t.nbytes)))
                self._tensors = out
            finally:
                self._g.leave()
        return self._tensors

    def metadata(self) -> dict | None:
        """The header's __metadata__ (str -> str), or None."""
        if not self._meta_read:
            h = self._g.enter()
            try:
                m = _lib.modelfs_file_metadata(h)
                self._meta = None if m is None else json.loads(_s(m))
                self._meta_read = True
            finally:
                self._g.leave()
        return self._meta

    def read_into(self, offset: int, ptr: int, length: int):
        """Decode bytes [offset, offset + length) into memory at address ``ptr``
        (at least ``length`` bytes, owned by the caller: a numpy array's
        ``ctypes.data``, a torch tensor's ``data_ptr()``)."""
        if length == 0:
            return
        h = self._g.enter()
        try:
            err = _Error()
            rc = _lib.modelfs_file_read(h, int(offset), c_void_p(ptr), int(length), byref(err))
            if rc:
                _raise(rc, err)
        finally:
            self._g.leave()

    def read_ranges(self, ranges, device: bool = False):
        """Decode many (offset, length, ptr) ranges in one call, every chunk of all
        of them in parallel. ``device``: the pointers are CUDA device memory (a
        CUDA tensor's ``data_ptr()``), the rans chunks decoded on the device."""
        ranges = [r for r in ranges if r[1]]
        if not ranges:
            return
        arr = (_Range * len(ranges))()
        for i, (off, n, ptr) in enumerate(ranges):
            arr[i].offset, arr[i].len, arr[i].dst = int(off), int(n), ptr
        fn = _lib.modelfs_file_read_ranges_device if device else _lib.modelfs_file_read_ranges
        h = self._g.enter()
        try:
            err = _Error()
            rc = fn(h, arr, len(ranges), byref(err))
            if rc:
                _raise(rc, err)
        finally:
            self._g.leave()

    def read_into_device(self, offset: int, ptr: int, length: int):
        """read_into() with ``ptr`` CUDA device memory (read_ranges, device=True)."""
        self.read_ranges([(offset, length, ptr)], device=True)

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of the file (a copy: for small files such as config.json)."""
        if length is None:
            length = max(self.size - offset, 0)
        buf = ctypes.create_string_buffer(max(length, 1))
        self.read_into(offset, ctypes.addressof(buf), length)
        return buf.raw[:length]
