"""Helper of tests/bench/load.sh: one timed load per process, and the table.

    load_bench.py evict FILE...            drop FILE's pages from the page cache
                                           (posix_fadvise DONTNEED; no process may
                                           map it) and print the resident share left
    load_bench.py one KIND ARG... --label L  one load, as a JSON line:
        modelfs STORE REPO   modelfs.load_file(REPO, store=STORE)
        plain FILE           safetensors.torch.load_file(FILE)
        mount FILE           the same, of the file through a modelfs mount
    load_bench.py table RESULTS            medians of the JSON lines, as a table

A load's time is from the call to when every byte of every tensor has been
touched (a strided read of each page: safetensors maps the file, and a
mapped tensor is read only when it is used), after the imports.  Memory:
RssAnon after the load minus before (tensors in anonymous memory), and the
peak RSS growth (file pages mapped count there: the store's map, or the
safetensors file).
"""

from __future__ import annotations

import json
import mmap
import os
import resource
import statistics
import sys
import time


def rss_anon() -> int:
    with open("/proc/self/status") as st:
        for line in st:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def resident(path: str) -> float:
    """Share of @p path's pages in the page cache (mincore over a map of it)."""
    import ctypes
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return -1.0
        n = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * n)()
        ok = libc.mincore(addr, size, vec) == 0
        libc.munmap(addr, size)
        return sum(v & 1 for v in vec) / n if ok else -1.0
    finally:
        os.close(fd)


def evict(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    print(" ".join(f"{resident(p):.3f}" for p in paths))


def touch(tensors) -> int:
    import torch
    s = 0
    for v in tensors.values():
        if v.numel():
            b = v.reshape(-1).view(torch.uint8)
            s += int(b[::4096].sum()) + int(b[-1])
    return s


def one(kind: str, args: list[str], label: str):
    import torch  # noqa: F401 - imported before the clock starts
    import safetensors.torch
    import modelfs
    before = rss_anon()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    c0 = time.process_time()
    if kind == "modelfs":
        d = modelfs.load_file(args[1], store=args[0])
    elif kind in ("plain", "mount"):
        d = safetensors.torch.load_file(args[0])
    else:
        raise SystemExit(f"unknown kind {kind}")
    t1 = time.perf_counter()
    touch(d)
    t2 = time.perf_counter()
    c1 = time.process_time()
    nbytes = sum(v.numel() * v.element_size() for v in d.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak0
    print(json.dumps({"label": label, "kind": kind, "ms": (t2 - t0) * 1e3,
                      "call_ms": (t1 - t0) * 1e3, "cpu_ms": (c1 - c0) * 1e3,
                      "bytes": nbytes, "anon": rss_anon() - before, "peak_rss": peak}))


def table(path: str):
    rows: dict[str, list[dict]] = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.setdefault(r["label"], []).append(r)
    order = ["modelfs cold", "safetensors cold", "mount cold",
             "modelfs warm", "safetensors warm", "mount warm"]
    med = {k: statistics.median(r["ms"] for r in v) for k, v in rows.items()}
    print(f"{'load (BF16 all-MiniLM-L6-v2)':30} {'median ms':>10} {'min':>7} {'max':>7} "
          f"{'GB/s':>6} {'vs plain':>8} {'cpu ms':>7} {'anon MB':>8} {'peak MB':>8}  n")
    for k in order + sorted(set(rows) - set(order)):
        if k not in rows:
            continue
        v = rows[k]
        ms = [r["ms"] for r in v]
        ref = med.get("safetensors " + k.split()[-1])
        ratio = f"{med[k] / ref:8.2f}" if ref else f"{'':8}"
        print(f"{k:30} {med[k]:10.1f} {min(ms):7.1f} {max(ms):7.1f} "
              f"{v[0]['bytes'] / med[k] / 1e6:6.2f} {ratio} "
              f"{statistics.median(r['cpu_ms'] for r in v):7.1f} "
              f"{statistics.median(r['anon'] for r in v) / 1e6:8.1f} "
              f"{statistics.median(r['peak_rss'] for r in v) / 1e6:8.1f}  {len(v)}")
    print("vs plain: median time over safetensors.torch.load_file of the plain file in the "
          "same state (cold or warm); < 1 is faster")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "evict":
        evict(sys.argv[2:])
    elif cmd == "one":
        a = sys.argv[2:]
        label = a[a.index("--label") + 1]
        a = a[:a.index("--label")]
        one(a[0], a[1:], label)
    elif cmd == "table":
        table(sys.argv[2])
    else:
        raise SystemExit(__doc__)
