"""The two layouts a remote mount's chunk cache could use (docs/remote.md,
"The chunk cache"): one file per entry (create, write, rename; read; unlink)
against one sparse file per pack (pwrite at the entry's offset; pread; punch
a hole to evict), per entry of 64 KiB and 1 MiB, in the directory given
(default: a temporary one).  Prints microseconds per entry and the blocks a
fully punched sparse file keeps.

    python tests/bench/cache_layout.py [DIR]
"""

import ctypes
import os
import random
import shutil
import sys
import tempfile
import time

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
HDR = 48  # entry header + trailer, as remote/chunkcache.c writes them


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    root = tempfile.mkdtemp(prefix="cache-layout.", dir=sys.argv[1] if len(sys.argv) > 1 else None)
    try:
        for size, n in ((64 * 1024, 3000), (1024 * 1024, 300)):
            data = os.urandom(size + HDR)
            d = f"{root}/files{size}"
            os.makedirs(d)
            t = time.perf_counter()
            for i in range(n):
                p = f"{d}/{i:032x}.entry"
                fd = os.open(p + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, data)
                os.close(fd)
                os.rename(p + ".tmp", p)
            w1 = time.perf_counter() - t
            t = time.perf_counter()
            for i in random.sample(range(n), n):
                fd = os.open(f"{d}/{i:032x}.entry", os.O_RDONLY)
                os.pread(fd, size + HDR, 0)
                os.close(fd)
            r1 = time.perf_counter() - t
            t = time.perf_counter()
            for i in range(n):
                os.unlink(f"{d}/{i:032x}.entry")
            e1 = time.perf_counter() - t

            fd = os.open(f"{root}/sparse{size}.pack", os.O_RDWR | os.O_CREAT, 0o600)
            t = time.perf_counter()
            for i in range(n):
                os.pwrite(fd, data, i * (size + HDR))
            w2 = time.perf_counter() - t
            t = time.perf_counter()
            for i in random.sample(range(n), n):
                os.pread(fd, size + HDR, i * (size + HDR))
            r2 = time.perf_counter() - t
            used = os.fstat(fd).st_blocks * 512
            t = time.perf_counter()
            for i in range(n):
                libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               ctypes.c_long(i * (size + HDR)), ctypes.c_long(size + HDR))
            e2 = time.perf_counter() - t
            left = os.fstat(fd).st_blocks * 512
            os.close(fd)

            def us(x):
                return x / n * 1e6
            print(f"entry {size // 1024} KiB x {n}: file per entry: write {us(w1):.0f} us, "
                  f"read {us(r1):.0f} us, evict {us(e1):.0f} us | sparse pack file: write "
                  f"{us(w2):.0f} us, read {us(r2):.0f} us, punch {us(e2):.0f} us, "
                  f"{100 * left / used:.1f}% of its blocks left after punching every entry")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
