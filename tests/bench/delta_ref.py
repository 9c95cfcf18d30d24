#!/usr/bin/env python3
"""delta_ref.py - reference sizes for a fine-tune stored against its base.

Usage: delta_ref.py BASE.safetensors FT.safetensors [--json]

For every tensor of FT, in the bytes it would cost stored by each method:

  raw              the fine-tune's tensor bytes;
  xor+zstd3/chunk  BitX: the tensor's bytes XOR the base tensor's, zstd level 3
                   (libzstd's ZSTD_compress, i.e. `zstd -3` without checksum),
                   one frame per 1 MiB chunk cut from the tensor's start as
                   modelfs cuts tensors;
  xor+zstd3/tensor the same, one frame per whole tensor;
  xor+zipnn        the XOR given to ZipNN (0.5.4, byte input, the tensor's
                   dtype, threads=1), one call per tensor;
  zipnn            ZipNN on the fine-tune's tensor alone, no base;
  h0 <layout>      the order-0 bound of the XOR: the XOR'd elements are cut
                   into planes as the layout says and each plane costs
                   n * H0(plane) bits, H0 the empirical order-0 entropy of its
                   symbols within one 1 MiB chunk (/chunk) or one whole tensor
                   (/tensor). No code tables or headers are counted, so this is
                   a floor for a coder with one static model per plane and
                   chunk; it flatters wide symbols most (a 16-bit plane's table
                   would cost far more than a byte plane's).
  huff <layout>/chunk
                   what modelfs's bitplane codec would store with that layout
                   (a, b, c): per plane of each 1 MiB chunk the smallest of a
                   constant, the bit-packed plane and a canonical Huffman block
                   limited to 12-bit codes, its table and stream lengths
                   counted as codec/huff.h lays them out (chunk headers not
                   counted). Unlike h0 it pays at least one bit per symbol of
                   a plane that is not constant.

Plane layouts (element bits numbered from the top, rotl1 = rotate left by one
bit, which moves the sign to the bottom and puts the exponent on top):

  a bytes          little-endian byte planes (byte k of every element);
  b rotl1+bytes    rotl1, then byte planes;
  c rotl1+10/6...  modelfs bitplane-huff's split: rotl1, then planes cut
                   top-first, widths BF16 10,6 and F32 10,6,8,8 (the first
                   plane is the exponent and the top two mantissa bits);
  d 16/16          F32 only: the element's top and bottom 16-bit halves as two
                   16-bit-symbol planes (no rotation: the top half is the
                   element's bfloat16), to see whether joint symbols help.

Also counted: elements whose XOR is zero, and those whose XOR's first plane
of layout c is zero (sign and exponent unchanged, top 2 mantissa bits too).

Tensors: one that FT and BASE both hold under the same name, shape and dtype
is "matched" and measured as its XOR; "identical" ones (XOR all zero) are among
them. Any other tensor of FT is "unmatched" and counted stand-alone in every
row: zstd rows get zstd -3 of its own bytes (per chunk or per tensor as the
row says), ZipNN rows ZipNN on its own bytes, h0 and huff rows its own
planes. Layouts b, c, d are defined for BF16 and F32; tensors of any other
dtype (the I64 position_ids, F16, ...) use layout a in every h0 row, and ZipNN
rows use zstd -3 for dtypes ZipNN does not take (integers, F64).

Each row gives bytes and % of raw for all tensors, and % of raw over the
changed tensors only (matched and not identical: what a dedup does not already
remove); h0 d rows appear only for a fine-tune with F32 tensors. Below the
table, each layout's per-chunk bound is split by plane (top-first), as % of
the matched tensors' bytes of each of BF16 and F32. --json prints one JSON
object instead of the table (same figures: methods, plane_bound_per_chunk,
counts).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import struct
import sys

import numpy as np

MiB = 1 << 20

ELEM_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
             "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
ZIPNN_DTYPE = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
# Layout c: plane widths, top-first, after rotl1.
BITPLANE_WIDTHS = {"BF16": (10, 6), "F32": (10, 6, 8, 8)}

LAYOUTS = ("a", "b", "c", "d")
LAYOUT_NAMES = {"a": "bytes", "b": "rotl1+bytes", "c": "rotl1+bitplane-huff",
                "d": "16/16 halves"}


# ---------------------------------------------------------------- inputs

def read_safetensors(path: str):
    """(header dict without __metadata__, uint8 array of the data section)."""
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as e:
        raise SystemExit(f"delta_ref: cannot read {path}: {e}")
    if raw.size < 8:
        raise SystemExit(f"delta_ref: {path}: too short for a safetensors file")
    (hlen,) = struct.unpack("<Q", bytes(raw[:8]))
    if 8 + hlen > raw.size:
        raise SystemExit(f"delta_ref: {path}: header length {hlen} runs past the file's end")
    header = json.loads(bytes(raw[8:8 + hlen]))
    header.pop("__metadata__", None)
    for name, info in header.items():
        if info["dtype"] not in ELEM_SIZE:
            raise SystemExit(f"delta_ref: {path}: tensor {name} has dtype {info['dtype']}, "
                             "which this script does not know")
    return header, raw[8 + hlen:]


def tensor_bytes(data, info) -> np.ndarray:
    b, e = info["data_offsets"]
    return np.asarray(data[b:e])


# ---------------------------------------------------------------- zstd

class Zstd:
    """zstd level 3 through libzstd (ZSTD_compress: one frame, content size
    in the header, no checksum: the same bytes as `zstd -3 --no-check`)."""

    def __init__(self, level: int = 3):
        name = ctypes.util.find_library("zstd")
        if not name:
            raise SystemExit("delta_ref: libzstd not found (apt-get install libzstd1)")
        lib = ctypes.CDLL(name)
        lib.ZSTD_compressBound.restype = ctypes.c_size_t
        lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
        lib.ZSTD_compress.restype = ctypes.c_size_t
        lib.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                      ctypes.c_size_t, ctypes.c_int]
        lib.ZSTD_isError.restype = ctypes.c_uint
        lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
        self.lib, self.level = lib, level
        self.dst = ctypes.create_string_buffer(lib.ZSTD_compressBound(MiB))

    def size(self, buf: np.ndarray) -> int:
        buf = np.ascontiguousarray(buf)
        bound = self.lib.ZSTD_compressBound(buf.nbytes)
        if bound > len(self.dst):
            self.dst = ctypes.create_string_buffer(bound)
        n = self.lib.ZSTD_compress(self.dst, bound, buf.ctypes.data, buf.nbytes, self.level)
        if self.lib.ZSTD_isError(n):
            raise RuntimeError("ZSTD_compress failed")
        return int(n)


# ---------------------------------------------------------------- ZipNN

class ZipNN:
    def __init__(self):
        try:
            import zipnn
        except ImportError:
            raise SystemExit("delta_ref: the zipnn package is not installed "
                             "(pip install zipnn==0.5.4)")
        self.mod = zipnn
        self.coders = {}

    def size(self, buf: np.ndarray, dtype: str) -> int:
        """ZipNN's compressed size for buf; round trip checked."""
        if dtype not in self.coders:
            self.coders[dtype] = self.mod.ZipNN(input_format="byte",
                                                bytearray_dtype=ZIPNN_DTYPE[dtype], threads=1)
        z = self.coders[dtype]
        original = buf.tobytes()
        work = bytearray(original)  # ZipNN compresses its input buffer in place
        comp = bytes(z.compress(work))
        if bytes(z.decompress(comp)) != original:
            raise RuntimeError(f"ZipNN round trip mismatch ({dtype}, {len(original)} bytes)")
        return len(comp)


# ---------------------------------------------------------------- order-0 bounds

def h0_bits(sym: np.ndarray, nbins: int) -> float:
    """n * H0(sym) in bits: the empirical order-0 entropy of the symbols."""
    n = sym.size
    if n == 0:
        return 0.0
    c = np.bincount(sym.ravel(), minlength=nbins)
    c = c[c > 0].astype(np.float64)
    return float(n * math.log2(n) - np.dot(c, np.log2(c)))


def planes(elems: np.ndarray, dtype: str, layout: str):
    """[(symbols, nbins)] of the elements cut as the layout says; layout a for
    dtypes the others are not defined for."""
    esize = elems.dtype.itemsize
    bits = 8 * esize
    if dtype not in BITPLANE_WIDTHS or (layout == "d" and dtype != "F32"):
        layout = "a"
    if layout == "a":
        b = elems.view(np.uint8).reshape(-1, esize)
        return [(b[:, k], 256) for k in range(esize)]
    u = elems.astype(elems.dtype)
    rot = ((u << np.array(1, u.dtype)) | (u >> np.array(bits - 1, u.dtype))).astype(u.dtype)
    if layout == "b":
        b = rot.view(np.uint8).reshape(-1, esize)
        return [(b[:, k], 256) for k in range(esize)]
    if layout == "c":
        out, shift = [], bits
        for w in BITPLANE_WIDTHS[dtype]:
            shift -= w
            p = (rot >> np.array(shift, u.dtype)) & np.array((1 << w) - 1, u.dtype)
            out.append((p.astype(np.uint16), 1 << w))
        return out
    # d: F32 halves, unrotated
    return [((u >> np.uint32(16)).astype(np.uint16), 1 << 16),
            ((u & np.uint32(0xFFFF)).astype(np.uint16), 1 << 16)]


HUFF_MAX_BITS = 12      # codec/huff.h MFS_HUFF_MAX_BITS
HUFF_LAYOUTS = ("a", "b", "c")


def huff_lengths(counts: np.ndarray, max_bits: int = HUFF_MAX_BITS) -> np.ndarray:
    """Huffman code lengths for the (nonzero) counts, limited to max_bits:
    optimal lengths, then, if some exceed the limit, clamped, the rarest
    shorter codes lengthened until the Kraft sum is at most 1, and what slack
    is left spent shortening the commonest codes."""
    import heapq
    k = counts.size
    if k == 1:
        return np.ones(1, dtype=np.int64)
    depth = np.zeros(k, dtype=np.int64)
    heap = [(int(c), i, [i]) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    tie = k
    while len(heap) > 1:
        c1, _, m1 = heapq.heappop(heap)
        c2, _, m2 = heapq.heappop(heap)
        m = m1 + m2
        depth[m] += 1
        heapq.heappush(heap, (c1 + c2, tie, m))
        tie += 1
    if depth.max() <= max_bits:
        return depth
    depth = np.minimum(depth, max_bits)
    order = np.argsort(counts, kind="stable")  # rarest first
    kraft = int(np.sum(1 << (max_bits - depth)))
    while kraft > (1 << max_bits):
        for i in order:
            if depth[i] < max_bits:
                kraft -= 1 << (max_bits - depth[i] - 1)
                depth[i] += 1
                break
    for i in order[::-1]:  # then spend any slack on the commonest
        while depth[i] > 1 and kraft + (1 << (max_bits - depth[i])) <= (1 << max_bits):
            kraft += 1 << (max_bits - depth[i])
            depth[i] -= 1
    return depth


def huff_plane_bytes(sym: np.ndarray, width: int) -> float:
    """What modelfs's bitplane codec would store for one plane of one chunk:
    the smallest of a constant (nothing), the plane bit-packed (width bits a
    symbol) and a Huffman block as codec/huff.h lays it out (4 bytes of
    range, a nibble per code length over the symbols' range, 12 bytes of
    stream lengths, then the codes)."""
    n = sym.size
    c = np.bincount(sym.ravel(), minlength=1 << width)
    present = np.flatnonzero(c)
    if present.size <= 1:
        return 0.0
    lens = huff_lengths(c[present])
    table = 4 + (int(present[-1] - present[0]) + 2) // 2 + 12
    coded = table + math.ceil(float(np.dot(c[present], lens)) / 8)
    return float(min(coded, math.ceil(n * width / 8)))


def huff_bytes(elems: np.ndarray, dtype: str, layout: str) -> float:
    """huff_plane_bytes summed over the planes of the layout."""
    return sum(huff_plane_bytes(sym, (nbins - 1).bit_length())
               for sym, nbins in planes(elems, dtype, layout))


def plane_bound_bytes(elems: np.ndarray, dtype: str, layout: str) -> list[float]:
    """The order-0 bound of each plane of the layout, in bytes."""
    return [h0_bits(s, n) / 8.0 for s, n in planes(elems, dtype, layout)]


# ---------------------------------------------------------------- measurement

ROWS = (["raw", "xor+zstd3/chunk", "xor+zstd3/tensor", "xor+zipnn", "zipnn"]
        + [f"h0 {lay} {LAYOUT_NAMES[lay]}/{scope}" for lay in LAYOUTS
           for scope in ("chunk", "tensor")]
        + [f"huff {lay} {LAYOUT_NAMES[lay]}/chunk" for lay in HUFF_LAYOUTS])


def measure(base_path: str, ft_path: str) -> dict:
    bh, bdata = read_safetensors(base_path)
    fh, fdata = read_safetensors(ft_path)
    zstd, zipnn = Zstd(3), ZipNN()
    total = dict.fromkeys(ROWS, 0.0)
    changed = dict.fromkeys(ROWS, 0.0)
    counts = {"tensors": 0, "matched": 0, "identical": 0, "unmatched": 0,
              "matched_bytes": 0, "identical_bytes": 0, "unmatched_bytes": 0,
              "elements": 0, "xor_zero_elements": 0, "xor_top_plane_zero_elements": 0,
              "top_plane_counted_elements": 0}
    dtypes = {}
    unmatched = []
    plane_split = {}  # dtype -> {"raw": bytes, "layouts": {layout: [bytes per plane]}}
    for name, info in fh.items():
        dtype = info["dtype"]
        esize = ELEM_SIZE[dtype]
        ft = tensor_bytes(fdata, info)
        if ft.size == 0:
            continue
        counts["tensors"] += 1
        dtypes[dtype] = dtypes.get(dtype, 0) + ft.size
        binfo = bh.get(name)
        matched = (binfo is not None and binfo["dtype"] == dtype
                   and list(binfo["shape"]) == list(info["shape"]))
        if matched:
            x = np.bitwise_xor(ft, tensor_bytes(bdata, binfo))
        else:
            x = ft
            unmatched.append(name)
        elems = x.view(UINT[esize])
        is_identical = matched and not elems.any()
        row = dict.fromkeys(ROWS, 0.0)
        row["raw"] = ft.size
        if matched and dtype in BITPLANE_WIDTHS:
            per_dtype = plane_split.setdefault(dtype, {"raw": 0, "layouts": {}})
            per_dtype["raw"] += ft.size
        for off in range(0, ft.size, MiB):
            row["xor+zstd3/chunk"] += zstd.size(x[off:off + MiB])
            ce = elems[off // esize:(off + MiB) // esize]
            for lay in HUFF_LAYOUTS:
                row[f"huff {lay} {LAYOUT_NAMES[lay]}/chunk"] += huff_bytes(ce, dtype, lay)
            for lay in LAYOUTS:
                pb = plane_bound_bytes(ce, dtype, lay)
                row[f"h0 {lay} {LAYOUT_NAMES[lay]}/chunk"] += sum(pb)
                if matched and dtype in BITPLANE_WIDTHS and (lay != "d" or dtype == "F32"):
                    if lay in ("a", "b"):
                        pb = pb[::-1]  # top-first, as c and d
                    acc = per_dtype["layouts"].setdefault(lay, [0.0] * len(pb))
                    for i, v in enumerate(pb):
                        acc[i] += v
        row["xor+zstd3/tensor"] = zstd.size(x)
        for lay in LAYOUTS:
            row[f"h0 {lay} {LAYOUT_NAMES[lay]}/tensor"] = sum(plane_bound_bytes(elems, dtype, lay))
        if dtype in ZIPNN_DTYPE:
            row["xor+zipnn"] = zipnn.size(x, dtype)
            row["zipnn"] = zipnn.size(ft, dtype) if matched else row["xor+zipnn"]
        else:
            row["xor+zipnn"] = row["xor+zstd3/tensor"]
            row["zipnn"] = zstd.size(ft) if matched else row["xor+zipnn"]
        for k, v in row.items():
            total[k] += v
            if matched and not is_identical:
                changed[k] += v
        if matched:
            counts["matched"] += 1
            counts["matched_bytes"] += ft.size
            counts["elements"] += elems.size
            counts["xor_zero_elements"] += int(elems.size - np.count_nonzero(elems))
            if dtype in BITPLANE_WIDTHS:
                top, _ = planes(elems, dtype, "c")[0]
                counts["top_plane_counted_elements"] += elems.size
                counts["xor_top_plane_zero_elements"] += int(top.size - np.count_nonzero(top))
            if is_identical:
                counts["identical"] += 1
                counts["identical_bytes"] += ft.size
        else:
            counts["unmatched"] += 1
            counts["unmatched_bytes"] += ft.size
    rows = [k for k in ROWS if not k.startswith("h0 d ") or "F32" in dtypes]
    methods = {}
    for k in rows:
        methods[k] = {
            "bytes": int(round(total[k])),
            "pct": 100.0 * total[k] / total["raw"] if total["raw"] else 0.0,
            "changed_bytes": int(round(changed[k])),
            "changed_pct": 100.0 * changed[k] / changed["raw"] if changed["raw"] else 0.0,
        }
    return {"base": base_path, "finetune": ft_path, "dtype_bytes": dtypes,
            "counts": counts, "unmatched": unmatched, "methods": methods,
            "plane_bound_per_chunk": {
                dt: {lay: [100.0 * v / ps["raw"] for v in vals]
                     for lay, vals in ps["layouts"].items()}
                for dt, ps in plane_split.items()},
            "chunk_bytes": MiB}


def print_table(r: dict, out=sys.stdout):
    c = r["counts"]
    dts = ", ".join(f"{d} {n / 1e6:.1f} MB" for d, n in sorted(r["dtype_bytes"].items()))
    print(f"fine-tune {r['finetune']}", file=out)
    print(f"base      {r['base']}", file=out)
    print(f"tensors {c['tensors']} ({dts}): matched {c['matched']} "
          f"({c['matched_bytes'] / 1e6:.1f} MB), of them identical {c['identical']} "
          f"({c['identical_bytes'] / 1e6:.1f} MB); unmatched (stand-alone) {c['unmatched']} "
          f"({c['unmatched_bytes'] / 1e6:.1f} MB)", file=out)
    if c["matched"] == 0:
        print("note: no tensor of the fine-tune has the same name, shape and dtype in the "
              "base (a base of another dtype?): every tensor is counted stand-alone", file=out)
    if c["elements"]:
        line = (f"matched elements whose XOR is zero: "
                f"{100.0 * c['xor_zero_elements'] / c['elements']:.2f}%")
        if c["top_plane_counted_elements"]:
            line += (f"; whose XOR's top plane (sign, exponent, 2 mantissa bits) is zero: "
                     f"{100.0 * c['xor_top_plane_zero_elements'] / c['top_plane_counted_elements']:.2f}%")
        print(line, file=out)
    print(f"{'method':36s} {'bytes':>12s} {'% raw':>8s} {'% raw changed':>14s}", file=out)
    for k, m in r["methods"].items():
        print(f"{k:36s} {m['bytes']:12d} {m['pct']:7.2f}% {m['changed_pct']:13.2f}%", file=out)
    for dt, lays in sorted(r["plane_bound_per_chunk"].items()):
        print(f"order-0 bound per plane, 1 MiB chunks, % of the matched {dt} bytes "
              f"(planes top-first):", file=out)
        for lay, vals in lays.items():
            print(f"  {lay} {LAYOUT_NAMES[lay]:22s} {sum(vals):6.2f}% = "
                  + " + ".join(f"{v:.2f}" for v in vals), file=out)


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    if len(args) != 2 or any(a.startswith("-") for a in args):
        sys.stderr.write(__doc__)
        return 2
    r = measure(args[0], args[1])
    if as_json:
        json.dump(r, sys.stdout, indent=1)
        print()
    else:
        print_table(r)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
