#!/usr/bin/env python3
"""bench_zipnn.py - ZipNN on the same tensors bench_codecs measures.

Usage: bench_zipnn.py [--tsv] FILE.safetensors...

Groups every tensor of the given files by dtype (BF16, F16, F32) and, per
dtype, prints: stored % of raw, single-thread encode and decode MB/s for
ZipNN's byte-level API (zipnn 0.5.4, threads=1, its default method and
chunking).  Each tensor is one ZipNN call, as ZipNN is used on whole tensors;
ZipNN compresses its input buffer in place, so it is given a fresh copy and
the copy is not timed.  Times are process CPU time (as bench_codecs), so a
busy neighbour on a shared machine does not count; decode is the best of
REPEAT_DECODE passes per tensor.  --tsv prints machine-readable rows for codecs.sh.
"""
import json
import struct
import sys
import time

try:
    import zipnn
except ImportError:
    sys.stderr.write("bench_zipnn: the zipnn package is not installed "
                     "(pip install zipnn==0.5.4)\n")
    sys.exit(77)

# ZipNN's name for each safetensors float dtype it handles.
ZIPNN_DTYPE = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
REPEAT_DECODE = 7


def tensors(path):
    """Yield (dtype, bytes) for each tensor of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        yield info["dtype"], data[base + begin:base + end]


def main(argv):
    tsv = False
    if argv and argv[0] == "--tsv":
        tsv = True
        argv = argv[1:]
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    groups = {}
    for path in argv:
        for dtype, buf in tensors(path):
            if dtype in ZIPNN_DTYPE and len(buf) > 0:
                groups.setdefault(dtype, []).append(buf)
    if not tsv:
        print("ZipNN %s, threads=1, per tensor, process CPU time; decode best of %d"
              % (getattr(zipnn, "__version__", "0.5.4"), REPEAT_DECODE))
        print("%-6s %-10s %10s %9s %10s %10s" % ("dtype", "codec", "raw MB", "stored%",
                                               "enc MB/s", "dec MB/s"))
    for dtype in ("BF16", "F16", "F32"):
        bufs = groups.get(dtype)
        if not bufs:
            continue
        zpn = zipnn.ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPE[dtype],
                          threads=1)
        raw = stored = 0
        t_enc = t_dec = 0.0
        for buf in bufs:
            work = bytearray(buf)  # ZipNN compresses in place: give it a copy
            t0 = time.process_time()
            comp = bytes(zpn.compress(work))
            t_enc += time.process_time() - t0
            best = None
            for _ in range(REPEAT_DECODE):
                t0 = time.process_time()
                out = zpn.decompress(comp)
                dt = time.process_time() - t0
                best = dt if best is None else min(best, dt)
            if bytes(out) != buf:
                sys.stderr.write("bench_zipnn: %s round trip mismatch\n" % dtype)
                return 1
            t_dec += best
            raw += len(buf)
            stored += len(comp)
        row = (dtype, "zipnn", raw / 1e6, 100.0 * stored / raw, raw / t_enc / 1e6,
               raw / t_dec / 1e6)
        if tsv:
            print("%s\t%s\t%.3f\t%.2f\t%.0f\t%.0f" % row)
        else:
            print("%-6s %-10s %10.1f %8.2f%% %10.0f %10.0f" % row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
