#!/usr/bin/env python3
"""quant_ref.py - reference sizes for a high-precision model and its quantized twin.

Usage: quant_ref.py HP.safetensors Q.safetensors [--json]

HP holds the high-precision weights (BF16 or F16), Q a quantization of them
(int8 or FP8 E4M3 codes plus scales, as tests/e2e/fixtures.py's minilm-int8-*
and minilm-fp8-* twins and real checkpoints store them). A tensor W of HP is
"paired" when Q holds W under the same name and shape as I8, F8_E4M3 or
F8_E5M2 codes and a scale for it: W_scale (or W_scale_inv, the DeepSeek name;
both are multiplied: dequantized = code * scale) whose shape says the scheme:

  []  or [1]                 per tensor
  [rows, 1] or [rows]        per output channel
  [rows, g], g > 1           per group of ceil(cols / g) columns
  [r, c], r < rows           per block of ceil(rows / r) x ceil(cols / c)

A static activation scale (W's prefix + "input_scale") goes with the pair's
scales. Every other tensor of Q either equals HP's tensor of the same name
byte for byte ("shared": a store keeps it once) or is "unmatched" (stand-alone).

What one pair costs, in bytes, by each method (the "pair" columns: HP's paired
tensors + Q's codes and scales; raw is their plain bytes):

  zipnn+zstd3/chunk  HP's tensors with ZipNN (0.5.4, threads=1, their dtype),
                     Q's codes and scales with zstd -3 (libzstd ZSTD_compress,
                     i.e. `zstd -3 --no-check`), each cut in 1 MiB chunks from
                     the tensor's start as modelfs cuts tensors, one call per chunk;
  zipnn+zstd3/tensor the same, one call per whole tensor;
  zipnn both         ZipNN on each tensor of both (codes: F8 as float8_e4m3fn /
                     float8_e5m2; ZipNN has no int8 path, so I8 codes go through
                     its one-byte float path, which is lossless on any bytes;
                     scales as their float dtype);
  bound              the order-0 bound of "dequantize, then code the
                     high-precision value's distance from the dequantized one,
                     given the code": per 1 MiB chunk of HP, n * H(r | q) bits,
                     r the distance between the value and the prediction
                     bf16(q * scale) (float32 product, rounded to nearest even)
                     counted in the monotone integer order of the 16-bit
                     patterns (-0.0 and +0.0 one apart, NaNs beyond the
                     infinities), q the element's code; plus n * H0(codes)
                     bits per 1 MiB chunk of the codes; plus the scales raw.
                     No code tables are counted: a floor for coders with one
                     static model per code and chunk.
  bound | q,scale exp  the same, r conditioned on the code and the exponent of
                     the element's scale (what a coder keyed on the row scale
                     could reach; equal to bound for a per-tensor scale);
  bound, r alone     the same with r not conditioned at all: what the
                     conditioning on q is worth.

Also printed: how many elements quantizing HP with the twin's own scales
(float32 w / scale; I8 round half to even clamped to [-128, 127], F8 nearest
on its grid, ties to even) gives back the twin's codes: 100% confirms the
scheme, as ingest must before it codes HP as a residual.

Every coded figure is the smaller of the coder's output and the raw bytes (a
store keeps what does not shrink raw), so tiny scale tensors never cost more
than their bytes. The "files" columns add the rest of both files, as a store
that dedups tensors holds it: each shared tensor once, unmatched tensors
stand-alone, both headers raw; the rest is coded as the row's method codes
stand-alone tensors (ZipNN for floats, zstd -3 for the rest; the bound rows
count the order-0 bound of each byte plane per 1 MiB chunk), and the
percentage is of the two files' whole sizes.

--json prints one JSON object instead of the table (same figures).
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from delta_ref import ELEM_SIZE, Zstd, h0_bits, read_safetensors, tensor_bytes  # noqa: E402

MiB = 1 << 20
HP_DTYPES = ("BF16", "F16")
CODE_DTYPES = ("I8", "F8_E4M3", "F8_E5M2")
SCALE_DTYPES = ("F32", "BF16", "F16")
ZIPNN_DTYPE = {"BF16": "bfloat16", "F16": "float16", "F32": "float32",
               "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
               "I8": "float8_e4m3fn"}

METHODS = ("raw", "zipnn+zstd3/chunk", "zipnn+zstd3/tensor", "zipnn both",
           "bound", "bound | q,scale exp", "bound, r alone")


# ---------------------------------------------------------------- coders

class ZipNN:
    """ZipNN 0.5.4's byte API, one coder per dtype; every round trip checked."""

    def __init__(self):
        try:
            import zipnn
        except ImportError:
            raise SystemExit("quant_ref: the zipnn package is not installed "
                             "(pip install zipnn==0.5.4)")
        self.mod, self.coders = zipnn, {}

    def size(self, buf: np.ndarray, dtype: str) -> int:
        if dtype not in self.coders:
            self.coders[dtype] = self.mod.ZipNN(input_format="byte",
                                                bytearray_dtype=ZIPNN_DTYPE[dtype], threads=1)
        z = self.coders[dtype]
        original = np.ascontiguousarray(buf).tobytes()
        work = bytearray(original)  # ZipNN compresses its input buffer in place
        comp = bytes(z.compress(work))
        if bytes(z.decompress(comp)) != original:
            raise RuntimeError(f"ZipNN round trip mismatch ({dtype}, {len(original)} bytes)")
        return len(comp)


class Coders:
    def __init__(self):
        self.zstd, self.zipnn = Zstd(3), ZipNN()

    def zstd_size(self, buf: np.ndarray, chunked: bool) -> int:
        """zstd -3, per 1 MiB chunk or whole; each piece at most its raw size."""
        if buf.size == 0:
            return 0
        if not chunked:
            return min(self.zstd.size(buf), buf.size)
        return sum(min(self.zstd.size(buf[o:o + MiB]), buf[o:o + MiB].size)
                   for o in range(0, buf.size, MiB))

    def zipnn_size(self, buf: np.ndarray, dtype: str, chunked: bool) -> int:
        """ZipNN (dtypes it takes; zstd -3 for the others), whole or per 1 MiB."""
        if buf.size == 0:
            return 0
        if dtype not in ZIPNN_DTYPE:
            return self.zstd_size(buf, chunked)
        pieces = [buf[o:o + MiB] for o in range(0, buf.size, MiB)] if chunked else [buf]
        return sum(min(self.zipnn.size(p, dtype), p.size) for p in pieces)


def planes_h0_bytes(buf: np.ndarray, esize: int) -> float:
    """Order-0 bound of the byte planes of buf, per 1 MiB chunk, in bytes."""
    total = 0.0
    for o in range(0, buf.size, MiB):
        b = buf[o:o + MiB].reshape(-1, esize)
        total += sum(h0_bits(b[:, k], 256) for k in range(esize)) / 8.0
    return total


# ---------------------------------------------------------------- schemes

def to_f32(raw: np.ndarray, dtype: str, shape) -> np.ndarray:
    """A float tensor's bytes as float32 values (exact for BF16/F16/F32)."""
    if dtype == "F32":
        a = raw.view(np.float32)
    elif dtype == "F16":
        a = raw.view(np.float16).astype(np.float32)
    elif dtype == "BF16":
        a = (raw.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
    else:
        raise ValueError(dtype)
    return a.reshape(shape)


def f8_table(dtype: str) -> np.ndarray:
    """float32 value of every code 0..255 of E4M3FN or E5M2."""
    ebits, mbits = (4, 3) if dtype == "F8_E4M3" else (5, 2)
    bias = (1 << (ebits - 1)) - 1
    out = np.empty(256, dtype=np.float64)
    for code in range(256):
        sign = -1.0 if code >> 7 else 1.0
        e, m = (code >> mbits) & ((1 << ebits) - 1), code & ((1 << mbits) - 1)
        if dtype == "F8_E4M3" and e == 15 and m == 7:
            out[code] = math.nan
        elif dtype == "F8_E5M2" and e == 31:
            out[code] = sign * math.inf if m == 0 else math.nan
        elif e == 0:
            out[code] = sign * (m / (1 << mbits)) * 2.0 ** (1 - bias)
        else:
            out[code] = sign * (1 + m / (1 << mbits)) * 2.0 ** (e - bias)
    return out.astype(np.float32)


def requantize(w: np.ndarray, s: np.ndarray, dtype: str) -> np.ndarray:
    """The codes quantizing w with scale s gives (float32 w / s): I8 round half to
    even clamped to [-128, 127]; F8 the nearest finite value of the grid
    (clamped to its largest), ties to the even code, the sign of zero kept."""
    x = (w / s).astype(np.float32)
    if dtype == "I8":
        return np.clip(np.rint(x), -128, 127).astype(np.int8).view(np.uint8)
    table = f8_table(dtype)
    ok = np.flatnonzero(np.isfinite(table) & ~((table == 0) & (np.arange(256) >= 128)))
    order = ok[np.argsort(table[ok], kind="stable")]
    grid = table[order].astype(np.float64)
    xd = np.clip(x.astype(np.float64), grid[0], grid[-1]).ravel()
    i = np.clip(np.searchsorted(grid, xd), 1, grid.size - 1)
    lo, hi = order[i - 1], order[i]
    dlo, dhi = xd - grid[i - 1], grid[i] - xd
    best = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    best = np.where((table[best] == 0) & np.signbit(xd), 0x80, best)  # -0.0
    return best.astype(np.uint8).reshape(x.shape)


def scheme_of(scale_shape, rows: int, cols: int):
    """(scheme name, cell rows, cell cols) of a scale shape, or None."""
    s = list(scale_shape)
    if s in ([], [1], [1, 1]):
        return "tensor", rows, cols
    if s in ([rows], [rows, 1]):
        return "channel", 1, cols
    if len(s) == 2 and s[0] == rows and s[1] > 1 and -(-cols // -(-cols // s[1])) == s[1]:
        return f"group {-(-cols // s[1])}", 1, -(-cols // s[1])
    if len(s) == 2 and 0 < s[0] < rows and s[1] > 0:
        br, bc = -(-rows // s[0]), -(-cols // s[1])
        if -(-rows // br) == s[0] and -(-cols // bc) == s[1]:
            return f"block {br}x{bc}", br, bc
    return None


def expand_scale(scale: np.ndarray, rows: int, cols: int, br: int, bc: int) -> np.ndarray:
    """The scale of every element, [rows, cols] float32."""
    if scale.size == 1:
        return np.full((rows, cols), scale.reshape(()), dtype=np.float32)
    s = scale.reshape(-(-rows // br), -(-cols // bc))
    return np.repeat(np.repeat(s, br, 0)[:rows], bc, 1)[:, :cols]


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN -> 0x7fc0)."""
    u = x.view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    return np.where(np.isnan(x), np.uint32(0x7FC0), r).astype(np.uint16)


def to_f16_bits(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).view(np.uint16)


def order_key(bits: np.ndarray) -> np.ndarray:
    """16-bit float patterns -> their place in the monotone integer order."""
    b = bits.astype(np.int64)
    return np.where(b < 0x8000, b ^ 0x8000, (~b) & 0xFFFF)


def cond_entropy_bits(ctx: np.ndarray, r: np.ndarray) -> float:
    """n * H(r | ctx) in bits (empirical), ctx and r int64 of the same size."""
    key = (ctx << np.int64(18)) | (r + np.int64(1 << 17))
    _, joint = np.unique(key, return_counts=True)
    _, marg = np.unique(ctx, return_counts=True)
    joint, marg = joint.astype(np.float64), marg.astype(np.float64)
    return float(np.dot(marg, np.log2(marg)) - np.dot(joint, np.log2(joint)))


# ---------------------------------------------------------------- measurement

def find_pairs(hh: dict, qh: dict):
    """[(name, scale name, input scale name or None, scheme, br, bc)], and a note
    per HP tensor that looked like a pair but is not one."""
    pairs, notes = [], []
    for name, info in hh.items():
        q = qh.get(name)
        if info["dtype"] not in HP_DTYPES or len(info["shape"]) != 2 or q is None:
            continue
        if q["dtype"] not in CODE_DTYPES:
            continue
        rows, cols = info["shape"]
        if list(q["shape"]) != [rows, cols]:
            notes.append(f"{name}: codes of shape {q['shape']} vs {info['shape']}")
            continue
        prefix = name[: -len("weight")] if name.endswith("weight") else name + "."
        cands = [name + "_scale", name + "_scale_inv", prefix + "scale"]
        found = [c for c in cands if c in qh and c not in hh]
        if not found:
            notes.append(f"{name}: {q['dtype']} codes but no scale ({', '.join(cands)})")
            continue
        sname = found[0]
        if qh[sname]["dtype"] not in SCALE_DTYPES:
            notes.append(f"{name}: scale {sname} is {qh[sname]['dtype']}")
            continue
        sch = scheme_of(qh[sname]["shape"], rows, cols)
        if sch is None:
            notes.append(f"{name}: scale {sname} shape {qh[sname]['shape']} fits no scheme")
            continue
        iname = prefix + "input_scale"
        pairs.append((name, sname, iname if iname in qh and iname not in hh else None, *sch))
    return pairs, notes


def measure(hp_path: str, q_path: str) -> dict:
    hh, hdata = read_safetensors(hp_path)
    qh, qdata = read_safetensors(q_path)
    co = Coders()
    pairs, notes = find_pairs(hh, qh)
    if not pairs:
        raise SystemExit(f"quant_ref: no tensor of {hp_path} has a quantized twin in {q_path} "
                         "(codes of the same name and shape plus a scale)")
    pair = dict.fromkeys(METHODS, 0.0)
    parts = {"hp": 0, "codes": 0, "scales": 0, "residual_bits": 0.0,
             "residual_qexp_bits": 0.0, "residual_alone_bits": 0.0, "codes_bits": 0.0}
    schemes: dict[str, int] = {}
    exact_zero = elems = requant_same = 0
    used = set()
    for name, sname, iname, scheme, br, bc in pairs:
        info, qinfo = hh[name], qh[name]
        rows, cols = info["shape"]
        hp = tensor_bytes(hdata, info)
        codes = tensor_bytes(qdata, qinfo)
        scales = [tensor_bytes(qdata, qh[sname])] + ([tensor_bytes(qdata, qh[iname])]
                                                     if iname else [])
        used |= {name, sname} | ({iname} if iname else set())
        schemes[f"{qinfo['dtype']} {scheme}"] = schemes.get(f"{qinfo['dtype']} {scheme}", 0) + 1
        scale_bytes = sum(s.size for s in scales)
        parts["hp"] += hp.size
        parts["codes"] += codes.size
        parts["scales"] += scale_bytes
        pair["raw"] += hp.size + codes.size + scale_bytes
        # stand-alone coders
        sdt = qh[sname]["dtype"]
        for chunked, row in ((True, "zipnn+zstd3/chunk"), (False, "zipnn+zstd3/tensor")):
            pair[row] += (co.zipnn_size(hp, info["dtype"], chunked)
                          + co.zstd_size(codes, chunked)
                          + sum(co.zstd_size(s, chunked) for s in scales))
        pair["zipnn both"] += (co.zipnn_size(hp, info["dtype"], False)
                               + co.zipnn_size(codes, qinfo["dtype"], False)
                               + co.zipnn_size(scales[0], sdt, False)
                               + sum(co.zipnn_size(s, "F32", False) for s in scales[1:]))
        # the residual against the dequantized twin
        w_bits = hp.view(np.uint16).reshape(rows, cols)
        s = expand_scale(to_f32(scales[0], sdt, qh[sname]["shape"]), rows, cols, br, bc)
        if qinfo["dtype"] == "I8":
            qv = codes.view(np.int8).reshape(rows, cols).astype(np.float32)
            qsym = codes.view(np.uint8).reshape(rows, cols).astype(np.int64)
        else:
            qv = f8_table(qinfo["dtype"])[codes].reshape(rows, cols)
            qsym = codes.reshape(rows, cols).astype(np.int64)
        pred = (qv * s).astype(np.float32)
        p_bits = to_bf16_bits(pred) if info["dtype"] == "BF16" else to_f16_bits(pred)
        r = (order_key(w_bits) - order_key(p_bits)).ravel()
        qsym = qsym.ravel()
        sexp = ((s.view(np.uint32) >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int64).ravel()
        w32 = to_f32(hp, info["dtype"], (rows, cols))
        requant_same += int(np.count_nonzero(
            requantize(w32, s, qinfo["dtype"]) == codes.reshape(rows, cols)))
        exact_zero += int(np.count_nonzero(r == 0))
        elems += r.size
        per = MiB // ELEM_SIZE[info["dtype"]]
        for o in range(0, r.size, per):
            rc, qc = r[o:o + per], qsym[o:o + per]
            parts["residual_bits"] += cond_entropy_bits(qc, rc)
            parts["residual_qexp_bits"] += cond_entropy_bits((sexp[o:o + per] << 8) | qc, rc)
            parts["residual_alone_bits"] += cond_entropy_bits(np.zeros_like(rc), rc)
        for o in range(0, codes.size, MiB):
            parts["codes_bits"] += h0_bits(codes[o:o + MiB], 256)
    base = parts["codes_bits"] / 8 + parts["scales"]
    pair["bound"] = parts["residual_bits"] / 8 + base
    pair["bound | q,scale exp"] = parts["residual_qexp_bits"] / 8 + base
    pair["bound, r alone"] = parts["residual_alone_bits"] / 8 + base

    # the rest of both files: shared tensors once, unmatched ones alone, headers raw
    rest = {"zipnn+zstd3/chunk": 0.0, "zipnn+zstd3/tensor": 0.0, "zipnn both": 0.0,
            "h0": 0.0, "raw": 0.0}
    shared_bytes = 0
    shared, unmatched = [], []

    def add_rest(buf, dtype):
        esize = ELEM_SIZE[dtype]
        rest["raw"] += buf.size
        rest["zipnn+zstd3/chunk"] += co.zipnn_size(buf, dtype, True)
        rest["zipnn+zstd3/tensor"] += co.zipnn_size(buf, dtype, False)
        rest["zipnn both"] += co.zipnn_size(buf, dtype, False)
        rest["h0"] += planes_h0_bytes(buf, esize)

    for name, info in hh.items():
        if name not in used:
            add_rest(tensor_bytes(hdata, info), info["dtype"])
    for name, info in qh.items():
        if name in used:
            continue
        buf = tensor_bytes(qdata, info)
        h = hh.get(name)
        if (h is not None and h["dtype"] == info["dtype"] and h["shape"] == info["shape"]
                and np.array_equal(buf, tensor_bytes(hdata, h))):
            shared_bytes += buf.size
            shared.append(name)
            continue
        unmatched.append(name)
        add_rest(buf, info["dtype"])
    hp_size, q_size = os.path.getsize(hp_path), os.path.getsize(q_path)
    headers = (hp_size - hdata.size) + (q_size - qdata.size)
    files_raw = hp_size + q_size
    methods = {}
    for m in METHODS:
        rkey = "raw" if m == "raw" else ("h0" if m.startswith("bound") else m)
        fb = pair[m] + rest[rkey] + headers
        methods[m] = {"bytes": int(round(pair[m])), "pct": 100.0 * pair[m] / pair["raw"],
                      "files_bytes": int(round(fb)), "files_pct": 100.0 * fb / files_raw}
    return {
        "hp": hp_path, "twin": q_path, "pairs": len(pairs), "schemes": schemes,
        "pair_tensors": {"hp": [p[0] for p in pairs],
                         "twin": sorted(used)},
        "notes": notes, "shared": shared, "unmatched": unmatched,
        "raw": {"pair": int(pair["raw"]), "hp_tensors": parts["hp"], "codes": parts["codes"],
                "scales": parts["scales"], "hp_file": hp_size, "twin_file": q_size,
                "files": files_raw, "shared_tensor_bytes": shared_bytes,
                "files_deduped": files_raw - shared_bytes},
        "bound_parts_pct": {
            "residual | q": 100.0 * parts["residual_bits"] / 8 / pair["raw"],
            "residual | q,scale exp": 100.0 * parts["residual_qexp_bits"] / 8 / pair["raw"],
            "residual alone": 100.0 * parts["residual_alone_bits"] / 8 / pair["raw"],
            "codes h0": 100.0 * parts["codes_bits"] / 8 / pair["raw"],
            "scales raw": 100.0 * parts["scales"] / pair["raw"]},
        "residual_bits_per_element": parts["residual_bits"] / elems,
        "codes_bits_per_element": parts["codes_bits"] / elems,
        "residual_zero_elements_pct": 100.0 * exact_zero / elems,
        "requantized_same_pct": 100.0 * requant_same / elems,
        "methods": methods, "chunk_bytes": MiB}


def print_table(r: dict, out=sys.stdout):
    raw = r["raw"]
    print(f"high precision {r['hp']}", file=out)
    print(f"twin           {r['twin']}", file=out)
    sch = ", ".join(f"{k} x{n}" for k, n in sorted(r["schemes"].items()))
    print(f"pairs {r['pairs']} ({sch}); pair raw {raw['pair']} bytes = HP {raw['hp_tensors']} "
          f"+ codes {raw['codes']} + scales {raw['scales']}", file=out)
    print(f"files {raw['hp_file']} + {raw['twin_file']} = {raw['files']} bytes, of which "
          f"{raw['shared_tensor_bytes']} in tensors the twin shares byte for byte; "
          f"unmatched twin tensors: {len(r['unmatched'])}", file=out)
    for n in r["notes"]:
        print(f"note: {n}", file=out)
    print(f"{'method':22s} {'pair bytes':>12s} {'% pair':>8s} {'files bytes':>12s} "
          f"{'% files':>8s}", file=out)
    for k, m in r["methods"].items():
        print(f"{k:22s} {m['bytes']:12d} {m['pct']:7.2f}% {m['files_bytes']:12d} "
              f"{m['files_pct']:7.2f}%", file=out)
    b = r["bound_parts_pct"]
    print(f"bound = residual|q {b['residual | q']:.2f} + codes {b['codes h0']:.2f} + scales "
          f"{b['scales raw']:.2f} (% of the pair); residual|q,scale exp "
          f"{b['residual | q,scale exp']:.2f}, residual alone {b['residual alone']:.2f}", file=out)
    print(f"per element: residual|q {r['residual_bits_per_element']:.3f} bits, codes "
          f"{r['codes_bits_per_element']:.3f} bits; residual exactly 0 for "
          f"{r['residual_zero_elements_pct']:.2f}% of the elements", file=out)
    print(f"quantizing HP with the twin's scales gives its codes for "
          f"{r['requantized_same_pct']:.2f}% of the elements (the scheme is confirmed "
          f"only at 100%)", file=out)


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
