"""Helpers for tests/bench/packs.sh (JSON on stdout).

    python packs_bench.py zipnn FOLDER     ZipNN 0.5.4's bytes of the folder's files:
                                           each float tensor of a safetensors file
                                           compressed alone (byte API, its dtype,
                                           threads=1, as bench_zipnn.py), the rest
                                           (safetensors headers, integer tensors,
                                           every other file) with zstd -3
    python packs_bench.py evict PATH...    posix_fadvise(POSIX_FADV_DONTNEED) on every
                                           file under each PATH (a cold read where
                                           drop_caches cannot be written)
    python packs_bench.py du PATH          {"disk": blocks * 512, "apparent": sizes,
                                           "files": {relpath: [disk, apparent]}}
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

ZIPNN_DTYPE = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def zstd_bytes(data: bytes) -> int:
    if not data:
        return 0
    r = subprocess.run(["zstd", "-q", "-3", "-c"], input=data, capture_output=True, check=True)
    return len(r.stdout)


def zipnn_folder(folder: Path) -> dict:
    import zipnn
    coders = {}
    total = raw = tensor_bytes = other = 0
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        raw += len(data)
        if p.suffix != ".safetensors":
            other += zstd_bytes(data)
            continue
        (hlen,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8:8 + hlen])
        base = 8 + hlen
        rest = bytearray(data[:base])
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            buf = data[base + a:base + b]
            dt = ZIPNN_DTYPE.get(info["dtype"])
            if dt is None or not buf:
                rest += buf
                continue
            zpn = coders.get(dt)
            if zpn is None:
                zpn = coders[dt] = zipnn.ZipNN(input_format="byte", bytearray_dtype=dt,
                                               threads=1)
            # ZipNN compresses its input in place: it gets a copy
            tensor_bytes += len(zpn.compress(bytearray(buf)))
        other += zstd_bytes(bytes(rest))
    total = tensor_bytes + other
    return {"bytes": total, "raw": raw, "zipnn_tensor_bytes": tensor_bytes,
            "zstd_other_bytes": other}


def evict(paths: list[str]) -> dict:
    n = 0
    for top in paths:
        for dirpath, _, files in os.walk(top):
            for f in files:
                try:
                    fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.fdatasync(fd)
                except OSError:
                    pass
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
                n += 1
    return {"evicted": n}


def du(path: str) -> dict:
    out = {"disk": 0, "apparent": 0, "files": {}}
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            out["disk"] += st.st_blocks * 512
            out["apparent"] += st.st_size
            out["files"][os.path.relpath(p, path)] = [st.st_blocks * 512, st.st_size]
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "zipnn":
        print(json.dumps(zipnn_folder(Path(argv[1]))))
        return 0
    if len(argv) >= 2 and argv[0] == "evict":
        print(json.dumps(evict(argv[1:])))
        return 0
    if len(argv) == 2 and argv[0] == "du":
        print(json.dumps(du(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
