"""The fixtures themselves: the HF cache layout that fixtures.hf_cache() builds
is one huggingface_hub and transformers read as their own, offline; the
converted models are what they claim to be. (No modelfs binary needed.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import fixtures


def test_hf_cache_layout_reads_as_huggingface_hubs_own(tmp_path, minilm_f32):
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    lay = fixtures.hf_cache(minilm_f32, repo, tmp_path / "hub", refs=("main", "v1"))
    from huggingface_hub import scan_cache_dir
    info = scan_cache_dir(tmp_path / "hub")
    assert not info.warnings, info.warnings
    (r,) = list(info.repos)
    assert r.repo_id == repo and r.repo_type == "model"
    (rev,) = list(r.revisions)
    assert rev.commit_hash == lay["commit"]
    assert set(rev.refs) == {"main", "v1"}
    files = {str(f.file_path.relative_to(rev.snapshot_path)): f for f in rev.files}
    assert set(files) == set(fixtures.list_files(minilm_f32))
    for rel, f in files.items():
        assert f.blob_path.name == lay["files"][rel]
    # Symlinks are relative, one ../ more per subfolder, as huggingface_hub makes them.
    snap = lay["repo_dir"] / "snapshots" / lay["commit"]
    assert os.readlink(snap / "config.json") == f"../../blobs/{lay['files']['config.json']}"
    assert os.readlink(snap / "1_Pooling" / "config.json").startswith("../../../blobs/")
    assert (lay["repo_dir"] / "refs" / "main").read_bytes() == lay["commit"].encode()
    # LFS files by sha256, others by git blob sha1.
    assert lay["files"]["model.safetensors"] == fixtures.sha256_file(minilm_f32 / "model.safetensors")
    assert len(lay["files"]["config.json"]) == 40


def test_hf_cache_layout_loads_offline_with_transformers(tmp_path, minilm_f32):
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    fixtures.hf_cache(minilm_f32, repo, tmp_path / "hub")
    code = (
        "import sys, torch\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({repo!r})\n"
        f"m = AutoModel.from_pretrained({repo!r})\n"
        "b = tok(['hello world'], return_tensors='pt')\n"
        "print(m(**b).last_hidden_state.shape)\n")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "384" in p.stdout


def test_converted_models(minilm_bf16, minilm_fp16, minilm_sharded):
    from safetensors import safe_open
    for folder, dt in ((minilm_bf16, "BF16"), (minilm_fp16, "F16")):
        with open(folder / "model.safetensors", "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            hdr = json.loads(f.read(n))
        assert hdr["__metadata__"] == {"format": "pt"}
        dts = {v["dtype"] for k, v in hdr.items() if k != "__metadata__"}
        assert dts == {dt, "I64"}, dts
        assert json.loads((folder / "config.json").read_text())["torch_dtype"] in (
            "bfloat16", "float16")
    idx = json.loads((minilm_sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(idx["weight_map"].values()))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for sh in shards:
        with safe_open(str(minilm_sharded / sh), "pt") as f:
            assert len(list(f.keys())) > 0


def test_big_file_generator_small_pieces(tmp_path, monkeypatch):
    """The 4 GiB generator's layout, checked on a small instance."""
    monkeypatch.setattr(fixtures, "BIG_TENSOR_ELEMS", (3 << 19) + 5)
    info = fixtures.big_safetensors(tmp_path / "b.safetensors")
    assert info["sha256"] == fixtures.sha256_file(tmp_path / "b.safetensors")
    from safetensors.torch import load_file
    t = load_file(str(tmp_path / "b.safetensors"))
    assert tuple(t["big"].shape) == ((3 << 19) + 5,)
    assert tuple(t["tail"].shape) == (fixtures.BIG_TAIL_ELEMS,)
    data = (tmp_path / "b.safetensors").read_bytes()
    blocks = {data[i:i + (1 << 20)] for i in range(0, len(data) - (1 << 20), 1 << 20)}
    assert len(blocks) == len(range(0, len(data) - (1 << 20), 1 << 20)), "1 MiB blocks repeat"
    assert data.count(b"\0" * 64) == 0


# ---------------------------------------------------------------- quantized twins
#
# Each twin of minilm-bf16 (fixtures.QUANT_SCHEMES) is checked against the BF16
# weights with arithmetic of its own (numpy, and a search over the whole E4M3FN
# grid for FP8), not by re-running the builder's code.

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# twin -> (code dtype, scale tensor suffix, scale dtype, scale shape for rows x cols)
QUANT_TWINS = {
    "minilm-int8-channel": ("I8", "weight_scale", "F32", lambda r, c: [r, 1]),
    "minilm-int8-group": ("I8", "weight_scale", "BF16", lambda r, c: [r, c // 128]),
    "minilm-fp8-tensor": ("F8_E4M3", "weight_scale", "F32", lambda r, c: []),
    "minilm-fp8-channel": ("F8_E4M3", "weight_scale", "F32", lambda r, c: [r, 1]),
    "minilm-fp8-block": ("F8_E4M3", "weight_scale_inv", "F32",
                         lambda r, c: [-(-r // 128), -(-c // 128)]),
    "minilm-int8-badscale": ("I8", "weight_scale", "F32", lambda r, c: [r, 1]),
}
NP_DTYPE = {"BF16": np.uint16, "F32": np.float32, "I8": np.int8, "F8_E4M3": np.uint8,
            "I64": np.int64}


def _st_read(path):
    """(header without __metadata__, metadata, {name: raw bytes})."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    hdr = json.loads(data[8:8 + n])
    meta = hdr.pop("__metadata__", None)
    body = data[8 + n:]
    raw = {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in hdr.items()}
    return hdr, meta, raw


def _arr(hdr, raw, name):
    """A tensor as numpy: BF16 as float32 values, F8 as its uint8 codes."""
    info = hdr[name]
    a = np.frombuffer(raw[name], dtype=NP_DTYPE[info["dtype"]]).reshape(info["shape"])
    if info["dtype"] == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a


def _grid_expand(scale, rows, cols):
    """A scale of shape [], [r', c'] spread over rows x cols (cell = ceil sizes)."""
    s = np.asarray(scale, dtype=np.float32)
    if s.ndim == 0:
        return np.full((rows, cols), s, dtype=np.float32)
    br, bc = -(-rows // s.shape[0]), -(-cols // s.shape[1])
    return np.repeat(np.repeat(s, br, 0)[:rows], bc, 1)[:, :cols]


def _e4m3fn_values():
    """float32 value of each E4M3FN code 0..255 (NaN for 0x7f, 0xff), decoded
    from the bit layout: 1 sign, 4 exponent (bias 7), 3 mantissa bits."""
    v = np.empty(256, dtype=np.float64)
    for code in range(256):
        sign, e, m = -1.0 if code >> 7 else 1.0, (code >> 3) & 15, code & 7
        if e == 15 and m == 7:
            v[code] = np.nan
        elif e == 0:
            v[code] = sign * (m / 8) * 2.0 ** -6  # subnormal; code 0x80 is -0.0
        else:
            v[code] = sign * (1 + m / 8) * 2.0 ** (e - 7)
    return v.astype(np.float32)


@pytest.fixture(scope="module")
def bf16_model(minilm_bf16):
    return _st_read(minilm_bf16 / "model.safetensors")


@pytest.mark.parametrize("twin", sorted(QUANT_TWINS))
def test_quantized_twin_layout(twin, minilm_bf16, bf16_model):
    """Names, dtypes and shapes as the scheme's checkpoints have them; every
    tensor that is not quantized bit-identical to minilm-bf16; the other files
    copied; config.json = minilm-bf16's plus a quantization_config."""
    folder = fixtures.model(twin)
    code_dt, scale_sfx, scale_dt, scale_shape = QUANT_TWINS[twin]
    bh, _, braw = bf16_model
    qh, meta, qraw = _st_read(folder / "model.safetensors")
    assert meta == {"format": "pt"}
    quantized = [k for k, v in bh.items() if k.endswith(".weight") and len(v["shape"]) == 2
                 and not k.startswith("embeddings.")]
    assert len(quantized) == 6 * 6 + 1  # 6 Linear per layer + the pooler
    expect = set(bh) - set(quantized)
    for k in expect:
        assert qh[k]["dtype"] == bh[k]["dtype"] and qh[k]["shape"] == bh[k]["shape"], k
        assert qraw[k] == braw[k], f"{k} is not bit-identical to minilm-bf16's"
    for k in quantized:
        p = k[: -len("weight")]
        rows, cols = bh[k]["shape"]
        assert qh[k]["dtype"] == code_dt and qh[k]["shape"] == [rows, cols], k
        assert qh[p + scale_sfx]["dtype"] == scale_dt, k
        assert qh[p + scale_sfx]["shape"] == scale_shape(rows, cols), k
        expect |= {k, p + scale_sfx}
        if twin == "minilm-fp8-tensor":
            assert qh[p + "input_scale"]["dtype"] == "F32" and qh[p + "input_scale"]["shape"] == []
            assert np.frombuffer(qraw[p + "input_scale"], np.float32)[0] > 0
            expect.add(p + "input_scale")
    assert set(qh) == expect, sorted(set(qh) ^ expect)
    # Embeddings, LayerNorm weights and biases stay BF16.
    for k in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
              "embeddings.token_type_embeddings.weight", "encoder.layer.3.output.LayerNorm.weight",
              "encoder.layer.3.output.dense.bias"):
        assert qh[k]["dtype"] == "BF16", k

    files = set(fixtures.list_files(folder))
    assert files == set(fixtures.list_files(minilm_bf16))
    for rel in files - {"model.safetensors", "config.json"}:
        assert (folder / rel).read_bytes() == (minilm_bf16 / rel).read_bytes(), rel
    cfg = json.loads((folder / "config.json").read_text())
    base_cfg = json.loads((minilm_bf16 / "config.json").read_text())
    qc = cfg.pop("quantization_config")
    assert cfg == base_cfg
    if twin == "minilm-fp8-block":
        assert qc == {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                      "weight_block_size": [128, 128]}
    elif twin == "minilm-fp8-tensor":
        assert qc["quant_method"] == "fp8" and qc["activation_scheme"] == "static"
    else:
        assert qc["quant_method"] == "compressed-tensors"
        w = qc["config_groups"]["group_0"]["weights"]
        assert w["num_bits"] == 8 and w["symmetric"] is True
        assert w["type"] == ("float" if "fp8" in twin else "int")
        assert w["strategy"] == ("group" if twin == "minilm-int8-group" else "channel")
        assert w["group_size"] == (128 if twin == "minilm-int8-group" else None)


@pytest.mark.parametrize("twin", ["minilm-int8-channel", "minilm-int8-group"])
def test_int8_twin_is_round_half_even_of_the_bf16(twin, bf16_model):
    """codes = clip(rint(w / scale), -128, 127) exactly (numpy's rint is half to
    even), q * scale within half a step of w where nothing was clipped, and
    only the one tensor meant to clip has clipped outliers."""
    bh, _, braw = bf16_model
    qh, _, qraw = _st_read(fixtures.model(twin) / "model.safetensors")
    clipped_total = {}
    for k in fixtures.quantized_names({n: v["shape"] for n, v in bh.items()}):
        w = _arr(bh, braw, k)
        q = _arr(qh, qraw, k).astype(np.float32)
        s = _grid_expand(_arr(qh, qraw, k[:-len("weight")] + "weight_scale"), *w.shape)
        assert (s > 0).all() and np.isfinite(s).all(), k
        x = w / s
        assert np.array_equal(q, np.clip(np.rint(x), -128, 127)), k
        clipped = (x > 127.5) | (x < -128.5)
        err = np.abs(q.astype(np.float64) * s - w)
        assert (err[~clipped] <= 0.5 * s[~clipped] * (1 + 1e-5)).all(), k
        clipped_total[k] = int(clipped.sum())
        if k != fixtures.QUANT_CLIPPED or twin != "minilm-int8-channel":
            # amax scales: nothing beyond the range but a code at +-127.
            assert clipped_total[k] == 0, k
            assert np.abs(q).max() == 127, k
    if twin == "minilm-int8-channel":
        c = clipped_total[fixtures.QUANT_CLIPPED]
        rows, cols = bh[fixtures.QUANT_CLIPPED]["shape"]
        # The 99th percentile of each row's |w| as its amax: about 1% beyond it.
        assert 0.003 * rows * cols < c < 0.02 * rows * cols, c


@pytest.mark.parametrize("twin", ["minilm-fp8-tensor", "minilm-fp8-channel", "minilm-fp8-block"])
def test_fp8_twin_is_nearest_even_on_the_e4m3fn_grid(twin, bf16_model):
    """Each code is the E4M3FN value nearest to w / scale (ties to the even
    code), searched over the whole grid; the sign of zero kept; the scale is
    amax / 448 of its tensor, row or 128x128 block; q * scale is within half an
    E4M3 step of w."""
    bh, _, braw = bf16_model
    qh, _, qraw = _st_read(fixtures.model(twin) / "model.safetensors")
    values = _e4m3fn_values()
    finite = np.flatnonzero(np.isfinite(values) & ~((values == 0) & (np.arange(256) >= 128)))
    order = finite[np.argsort(values[finite], kind="stable")]
    grid = values[order].astype(np.float64)
    sfx = "weight_scale_inv" if twin == "minilm-fp8-block" else "weight_scale"
    for k in fixtures.quantized_names({n: v["shape"] for n, v in bh.items()}):
        w = _arr(bh, braw, k)
        rows, cols = w.shape
        codes = _arr(qh, qraw, k)
        scale = _arr(qh, qraw, k[:-len("weight")] + sfx)
        s = _grid_expand(scale, rows, cols)
        # The scale: amax over its cell / 448, in float32.
        a = np.abs(w)
        if twin == "minilm-fp8-tensor":
            assert scale == np.float32(a.max()) / np.float32(448), k
        elif twin == "minilm-fp8-channel":
            assert np.array_equal(scale[:, 0], a.max(axis=1) / np.float32(448)), k
        else:
            nr, nc = scale.shape
            amax = np.array([[a[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].max()
                              for j in range(nc)] for i in range(nr)], dtype=np.float32)
            assert np.array_equal(scale, amax / np.float32(448)), k
        x = np.clip(w / s, -448, 448).astype(np.float64).ravel()
        i = np.clip(np.searchsorted(grid, x), 1, grid.size - 1)
        lo, hi = order[i - 1], order[i]
        dlo, dhi = np.abs(x - values[lo]), np.abs(values[hi] - x)
        best = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
        got = codes.ravel()
        assert np.array_equal(values[got], values[best]), k
        assert np.array_equal(np.signbit(values[got]), np.signbit(x)), k
        deq = values[got].reshape(rows, cols).astype(np.float64) * s
        tol = np.maximum(np.abs(w) * 2.0 ** -4, s * 2.0 ** -10) * (1 + 1e-5)
        assert (np.abs(deq - w) <= tol).all(), k


def test_badscale_twin_has_channel_codes_and_wrong_scales(bf16_model):
    """minilm-int8-badscale: minilm-int8-channel's codes, its scales times
    1.37, so that q * scale misses the BF16 weights far beyond rounding."""
    bh, _, braw = bf16_model
    gh, _, graw = _st_read(fixtures.model("minilm-int8-channel") / "model.safetensors")
    qh, _, qraw = _st_read(fixtures.model("minilm-int8-badscale") / "model.safetensors")
    for k in fixtures.quantized_names({n: v["shape"] for n, v in bh.items()}):
        sk = k[:-len("weight")] + "weight_scale"
        assert qraw[k] == graw[k], k
        good, bad = _arr(gh, graw, sk), _arr(qh, qraw, sk)
        assert np.array_equal(bad, good * np.float32(fixtures.QUANT_BAD_FACTOR)), k
        w = _arr(bh, braw, k)
        q = _arr(qh, qraw, k).astype(np.float32)
        err = np.abs(q * bad - w)
        # Half a step is the most rounding can miss by; the wrong scale misses
        # by more than that for most large weights.
        big = np.abs(q) >= 8
        assert (err[big] > 0.5 * np.broadcast_to(bad, w.shape)[big]).mean() > 0.9, k


def test_quantized_twins_rebuild_byte_identical(tmp_path, monkeypatch, minilm_bf16):
    """A second build of every twin (from the same minilm-bf16) gives the same bytes."""
    first = {twin: fixtures.tree_sha256(fixtures.model(twin)) for twin in QUANT_TWINS}
    monkeypatch.setattr(fixtures, "MODELS", tmp_path / "models")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "minilm-bf16").symlink_to(minilm_bf16)
    monkeypatch.setattr(fixtures, "DATA", tmp_path)
    for twin in QUANT_TWINS:
        again = fixtures.model(twin)
        assert again.parent == tmp_path / "models"
        assert fixtures.tree_sha256(again) == first[twin], twin
