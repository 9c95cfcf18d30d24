"""safetensors' API over a modelfs store: safe_open and load_file by repo id.

A loader switches by one import: ``modelfs.safe_open(repo_id, framework="pt")``
in place of ``safetensors.safe_open(path, framework="pt")``, and
``modelfs.load_file(repo_id)`` in place of ``safetensors.torch.load_file(path)``.
Each tensor is allocated once (``torch.empty`` / ``numpy.empty``) and the
library decodes the stored chunks straight into it: no bytes object, no second
copy. torch is imported only when framework="pt" is asked for.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import operator
import os

import numpy as np

from ._lib import (E_NOTENSOR, DeviceUnavailableError, EntryNotFoundError, File, FormatError,
                   InvalidArgumentError, ModelfsError, Store, TensorInfo,
                   TensorNotFoundError)

# safetensors dtype -> torch dtype attribute / numpy dtype
_TORCH = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool", "U16": "uint16", "U32": "uint32", "U64": "uint64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64",
}
_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?", "U16": "<u2", "U32": "<u4", "U64": "<u8",
    "C64": "<c8",
}

_FRAMEWORKS = {"pt": "pt", "torch": "pt", "pytorch": "pt", "np": "np", "numpy": "np"}


def _framework(name: str) -> str:
    fw = _FRAMEWORKS.get(str(name).lower())
    if fw is None:
        raise InvalidArgumentError(
            f"framework {name!r} is not supported by modelfs: use \"pt\" (torch) or "
            f"\"numpy\"")
    return fw


_HUGE = 2 << 20  # a transparent huge page (x86-64, arm64 with 4 KiB pages)
_MADV_HUGEPAGE = 14
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _madvise = _libc.madvise
    _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    _madvise.restype = ctypes.c_int
except (OSError, AttributeError):
    _madvise = None


def _huge_pages(ptr: int, nbytes: int):
    """Ask for transparent huge pages under a large tensor before it is filled:
    a fresh tensor is faulted in as it is decoded, and 4 KiB faults cost more
    than the decode of their bytes (a 2 MiB one replaces 512 of them). A hint:
    kernels with THP off or "always" ignore or need no such advice."""
    if _madvise is None or nbytes < 2 * _HUGE or os.environ.get("MODELFS_NO_HUGEPAGES"):
        return
    a = (ptr + _HUGE - 1) & ~(_HUGE - 1)
    e = (ptr + nbytes) & ~(_HUGE - 1)
    if e > a:
        _madvise(a, e - a, _MADV_HUGEPAGE)


# Tensors under this size that are loaded together (get_tensors) are carved
# from one arena per file; larger ones get memory of their own (and their own
# huge pages).
_ARENA_MAX = 4 << 20
_ALIGN = 64  # torch's own alignment of tensor memory


class _Arena:
    """One anonymous map, advised for transparent huge pages, that the small
    tensors of one file are carved from: a model's biases and norms (and a
    small model's every matrix) are each too small for a huge page of their
    own, and faulting their memory in 4 KiB pages costs as much as decoding
    it. Each tensor still has storage of its own (torch.from_numpy over its
    slot): nothing is shared between tensors, and saving one saves its bytes
    alone. The map lives while any of its tensors does."""

    def __init__(self, nbytes: int):
        self.map = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if not os.environ.get("MODELFS_NO_HUGEPAGES"):
            try:
                self.map.madvise(mmap.MADV_HUGEPAGE)
            except (AttributeError, OSError, ValueError):
                pass  # a hint
        self.buf = np.frombuffer(self.map, dtype=np.uint8)
        self.used = 0

    @staticmethod
    def size_for(infos) -> int:
        return sum(-(-t.nbytes // _ALIGN) * _ALIGN for t in infos)

    def take(self, nbytes: int) -> np.ndarray:
        a = self.used
        self.used += -(-nbytes // _ALIGN) * _ALIGN
        return self.buf[a:a + nbytes]


class _Alloc:
    """Makes empty tensors of one framework and gives their addresses.

    For a CUDA device: with torch's CUDA and a library whose GPU decoder has the
    device (bind), tensors are allocated on the device and decoded straight into
    it (``direct``: only the compressed bytes of rans chunks cross the bus); a
    library without a GPU decoder (or another CUDA device than the library's,
    device 0) decodes on the host and the tensors are moved with ``.to()``; torch
    without CUDA is DeviceUnavailableError."""

    def __init__(self, framework: str, device):
        self.fw = _framework(framework)
        self.device = device
        self.direct = False
        if self.fw == "pt":
            import torch
            self.torch = torch
            self.cpu = torch.device("cpu")
            self.target = torch.device(device if not isinstance(device, int)
                                       else f"cuda:{device}")
            if self.target.type == "cuda" and not torch.cuda.is_available():
                raise DeviceUnavailableError(
                    f"device {str(device)!r}: this torch ({torch.__version__}) has no CUDA "
                    f"device (torch.cuda.is_available() is False): load with device=\"cpu\", "
                    f"or install a CUDA build of torch on a machine with an NVIDIA GPU")
        else:
            if str(device) != "cpu":
                raise InvalidArgumentError(
                    f"device {device!r}: numpy arrays live in host memory; use "
                    f"device=\"cpu\" (or framework=\"pt\" to load onto a device)")

    def bind(self, store: Store):
        """Decide, for a CUDA target, whether the library decodes into the device."""
        if self.fw != "pt" or self.target.type != "cuda":
            return
        index = self.target.index if self.target.index is not None else \
            self.torch.cuda.current_device()
        if index != 0:
            return  # the library decodes on CUDA device 0: host decode + .to()
        try:
            store.gpu()
        except ModelfsError:
            return  # no GPU decoder in this library (or no device for it): .to()
        self.direct = True

    def empty(self, t: TensorInfo, arena: _Arena | None = None):
        """An uninitialised tensor for @p t and its address; from @p arena when
        given and the tensor is small."""
        if self.direct:
            name = _TORCH.get(t.dtype)
            dt = getattr(self.torch, name, None) if name else None
            if dt is None:
                raise TypeError(f"tensor {t.name!r}: dtype {t.dtype} has no torch "
                                f"equivalent in torch {self.torch.__version__}")
            x = self.torch.empty(t.shape, dtype=dt, device=self.target)
            if x.numel() * x.element_size() != t.nbytes:
                raise FormatError(f"tensor {t.name!r}: {t.dtype} {list(t.shape)} is "
                                  f"{x.numel() * x.element_size()} bytes in memory but "
                                  f"{t.nbytes} in the file")
            return x, x.data_ptr()
        slot = arena.take(t.nbytes) if arena is not None and 0 < t.nbytes < _ARENA_MAX \
            else None
        if self.fw == "pt":
            name = _TORCH.get(t.dtype)
            dt = getattr(self.torch, name, None) if name else None
            if dt is None:
                raise TypeError(f"tensor {t.name!r}: dtype {t.dtype} has no torch "
                                f"equivalent in torch {self.torch.__version__}")
            if slot is not None:
                x = self.torch.from_numpy(slot).view(dt).reshape(t.shape)
            else:
                x = self.torch.empty(t.shape, dtype=dt, device=self.cpu)
            ptr = x.data_ptr()
        else:
            name = _NUMPY.get(t.dtype)
            if name is None:
                raise TypeError(f"tensor {t.name!r}: data type {t.dtype} is not understood "
                                f"by numpy (use framework=\"pt\")")
            if slot is not None:
                x = slot.view(np.dtype(name)).reshape(t.shape)
            else:
                x = np.empty(t.shape, dtype=np.dtype(name))
            ptr = x.ctypes.data
        nbytes = x.numel() * x.element_size() if self.fw == "pt" else x.nbytes
        if nbytes != t.nbytes:
            raise FormatError(f"tensor {t.name!r}: {t.dtype} {list(t.shape)} is {nbytes} "
                              f"bytes in memory but {t.nbytes} in the file")
        if slot is None:
            _huge_pages(ptr, nbytes)
        return x, ptr

    def place(self, x):
        if self.fw == "pt" and self.target != self.cpu and not self.direct:
            return x.to(self.target)
        return x


def _open_store(store) -> tuple[Store, bool]:
    if isinstance(store, Store):
        return store, False
    return Store(store), True


def _pick_files(st: Store, repo_id: str, commit: str, filename: str | None):
    """The safetensors files to read, and for a sharded model (filename None
    and no model.safetensors, or an index.json named) (index path, its
    weight_map, the folder its shard names are relative to); else None."""
    if filename is None:
        paths = {f.path for f in st.files(repo_id, commit)}
        if "model.safetensors" in paths:
            return ["model.safetensors"], None
        if "model.safetensors.index.json" in paths:
            filename = "model.safetensors.index.json"
        else:
            cands = sorted(p for p in paths if p.endswith(".safetensors") and "/" not in p)
            if len(cands) == 1:
                return cands, None
            raise EntryNotFoundError(
                f"{repo_id}@{commit[:12]} has no model.safetensors nor "
                f"model.safetensors.index.json"
                + (f"; its safetensors files are {cands}: pass filename=" if cands else
                   " and no safetensors file at its top level"))
    if not filename.endswith(".json"):
        return [filename], None
    with st.open(repo_id, filename, commit) as f:
        raw = f.read()
    try:
        index = json.loads(raw)
        wmap = index["weight_map"]
        if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
            raise TypeError("weight_map is not an object of strings")
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{repo_id} {filename}: not a safetensors index ({e})") from None
    base = filename.rsplit("/", 1)[0] + "/" if "/" in filename else ""
    shards = sorted(set(wmap.values()))
    return [base + s for s in shards], (filename, wmap, base)


class _Slice:
    """What get_slice returns: the shape and dtype at once, the bytes only when
    indexed, and only the rows the index selects along the first dimension."""

    def __init__(self, owner: "safe_open", file: File, info: TensorInfo):
        self._owner, self._file, self._info = owner, file, info

    def get_shape(self) -> list[int]:
        return list(self._info.shape)

    def get_dtype(self) -> str:
        return self._info.dtype

    def __len__(self):
        if not self._info.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._info.shape[0]

    def __getitem__(self, key):
        info = self._info
        k = key if isinstance(key, tuple) else (key,)
        first = k[0] if k else slice(None)
        if not info.shape or not isinstance(first, (int, slice)) or \
                isinstance(first, bool):
            return self._owner._read(self._file, info)[key]
        rows = info.shape[0]
        row_bytes = info.nbytes // rows if rows else 0
        if isinstance(first, slice):
            start, stop, step = first.indices(rows)
            sel = range(start, stop, step)
        else:
            i = operator.index(first)
            if i < -rows or i >= rows:
                raise IndexError(f"index {i} is out of bounds for dimension 0 with size "
                                 f"{rows}")
            i %= rows
            sel = range(i, i + 1)
            start, stop, step = i, i + 1, 1
        if len(sel) == 0:
            lo = hi = 0
        else:
            lo, hi = min(sel[0], sel[-1]), max(sel[0], sel[-1]) + 1
        part = TensorInfo(info.name, info.dtype, info.dtype_bits,
                          (hi - lo,) + tuple(info.shape[1:]),
                          info.offset + lo * row_bytes, (hi - lo) * row_bytes)
        x = self._owner._read(self._file, part)
        if isinstance(first, slice):
            adj = slice(start - lo, stop - lo if stop - lo >= 0 else None, step)
        else:
            adj = first % rows - lo
        out = x[(adj,) + tuple(k[1:])]
        if self._owner._alloc.fw == "pt":
            if out.data_ptr() == x.data_ptr() and out.shape == x.shape:
                return out  # the rows read are the result: no copy
            # a copy of its own, with plain strides (what safetensors returns)
            return self._owner._alloc.torch.empty(out.shape, dtype=out.dtype,
                                                  device=out.device).copy_(out)
        return np.ascontiguousarray(out).copy() if out.base is not None else out


class safe_open:
    """``safetensors.safe_open`` over a store: the model file(s) of ``repo_id`` at
    ``revision``.

    ``filename`` None picks model.safetensors, else model.safetensors.index.json
    (a sharded model: its shards read as one), else the one top-level
    ``*.safetensors`` file. ``store`` is a store directory, a :class:`Store`, or
    None (the default store). A context manager; ``close()`` frees the read
    snapshot the files hold.

    ``device="cuda"`` (or "cuda:0", an index, a torch.device): with torch's CUDA
    and a library built with its GPU decoder, tensors are decoded straight into
    device memory (rans chunks on the device, other chunks on the host and
    copied); with a library without one, decoded on the host and moved with
    ``.to()``; torch without CUDA raises DeviceUnavailableError.
    """

    def __init__(self, repo_id: str, framework: str = "pt", revision: str | None = "main",
                 filename: str | None = None, store=None, device="cpu"):
        self._alloc = _Alloc(framework, device)
        self._store, self._own_store = _open_store(store)
        self._files: list[File] = []
        try:
            self._alloc.bind(self._store)
            self.repo_id = repo_id
            self.commit = self._store.resolve(repo_id, revision)
            paths, index = _pick_files(self._store, repo_id, self.commit, filename)
            self._where: dict[str, tuple[File, TensorInfo]] = {}
            for p in paths:
                f = self._store.open(repo_id, p, self.commit)
                self._files.append(f)
                for t in f.tensors():
                    if t.name in self._where:
                        raise FormatError(f"{repo_id}: tensor {t.name!r} is in both "
                                          f"{self._where[t.name][0].path} and {p}")
                    self._where[t.name] = (f, t)
            if index is not None:
                iname, wmap, base = index
                for name, shard in wmap.items():
                    got = self._where.get(name)
                    if got is None or got[0].path != base + shard:
                        raise FormatError(
                            f"{repo_id} {iname} names tensor {name!r} in {base + shard}, "
                            f"which does not hold it")
            self._keys = sorted(self._where)
        except BaseException:
            self.close()
            raise

    # -- the context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for f in getattr(self, "_files", []):
            f.close()
        self._files = []
        if getattr(self, "_own_store", False):
            self._store.close()
            self._own_store = False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- safetensors' methods
    def keys(self) -> list[str]:
        """Tensor names, sorted."""
        return list(self._keys)

    def offset_keys(self) -> list[str]:
        """Tensor names in file order (shard by shard)."""
        order = {id(f): i for i, f in enumerate(self._files)}
        return sorted(self._keys, key=lambda n: (order[id(self._where[n][0])],
                                                 self._where[n][1].offset))

    def metadata(self) -> dict | None:
        """The header's __metadata__ (of the first shard for a sharded model)."""
        return self._files[0].metadata() if self._files else None

    def _info(self, name: str) -> tuple[File, TensorInfo]:
        got = self._where.get(name)
        if got is None:
            raise TensorNotFoundError(f"{self.repo_id}@{self.commit[:12]} has no tensor "
                                      f"{name!r}", E_NOTENSOR)
        return got

    def _read(self, f: File, t: TensorInfo):
        x, ptr = self._alloc.empty(t)
        if self._alloc.direct:
            f.read_into_device(t.offset, ptr, t.nbytes)
        else:
            f.read_into(t.offset, ptr, t.nbytes)
        return x

    def get_tensor(self, name: str):
        f, t = self._info(name)
        return self._alloc.place(self._read(f, t))

    def get_slice(self, name: str) -> _Slice:
        f, t = self._info(name)
        return _Slice(self, f, t)

    def get_tensors(self) -> dict:
        """Every tensor, in file order (as safetensors' get_tensors), each file's
        decoded in one parallel call."""
        out = {}
        for f in self._files:
            ranges = []
            small = [t for t in f.tensors() if 0 < t.nbytes < _ARENA_MAX]
            arena = _Arena(_Arena.size_for(small)) if len(small) > 1 and \
                not self._alloc.direct else None
            for t in f.tensors():
                x, ptr = self._alloc.empty(t, arena)
                out[t.name] = x
                ranges.append((t.offset, t.nbytes, ptr))
            f.read_ranges(ranges, device=self._alloc.direct)
        # one tensor at a time onto the device: the host copies go as they are moved
        return {k: self._alloc.place(out.pop(k)) for k in self.offset_keys()}


def load_file(repo_id: str, revision: str | None = "main", filename: str | None = None,
              store=None, device="cpu", framework: str = "pt") -> dict:
    """What ``safetensors.torch.load_file`` returns for the model of ``repo_id``
    (a sharded model's shards merged by its index.json): name -> tensor. Peak
    memory is the tensors plus a decode window (a chunk per thread)."""
    with safe_open(repo_id, framework=framework, revision=revision, filename=filename,
                   store=store, device=device) as f:
        return f.get_tensors()
