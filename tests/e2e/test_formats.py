"""End to end: PyTorch zip checkpoints, GGUF and ONNX files laid out as tensors (issue 21).

The fixture (tests/e2e/fixtures.py, ``minilm-formats``) holds the real
all-MiniLM-L6-v2 weights as model.safetensors and, written by ``torch.save``,
as pytorch_model.bin; a BF16 training checkpoint with a tied weight and
views; a legacy pickle; a zip whose pickle calls os.system; and F16 and Q8_0
GGUF files (checked here against the ``gguf`` package's reader when it is
installed); ``minilm-onnx`` holds a torch.onnx.export of the same encoder
(built only where the ``onnx`` package is installed).

Checked: the .bin shares its tensors' chunks with the .safetensors (a second
repo holding only the .bin stores next to nothing new), float storages get a
float codec, every file is sha256-exact through export and the mount,
``torch.load(weights_only=True)`` through the mount equals the original, the
hostile and legacy pickles are stored as plain bytes with a note, and the
ratios of each file type are measured and printed (before: the same bytes
under a name no parser claims; zstd -3 of the whole file for reference).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import fixtures
from conftest import assert_same_tree
from mount_fixtures import mounted  # noqa: F401  (fixture)

REPO = "test/minilm-formats"
DEDUP_RE = re.compile(r"(\d+) bytes new in (\d+) chunks, (\d+) chunks deduplicated")


@pytest.fixture(scope="module")
def formats():
    return fixtures.model("minilm-formats")


def folder_with(tmp: Path, name: str, src: Path, files: list[str]) -> Path:
    """A plain folder holding @p files of @p src (hard links where possible)."""
    d = tmp / name
    d.mkdir()
    for rel in files:
        out = d / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            out.hardlink_to(src / rel)
        except OSError:
            shutil.copyfile(src / rel, out)
    return d


def new_and_dedup(res) -> tuple[int, int, int]:
    m = DEDUP_RE.search(res.out + res.err)
    assert m, res
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def file_info(mfs, repo: str, path: str) -> dict:
    doc = mfs.info_json(f"{repo}/{path}")
    (f,) = [f for f in doc["files"] if f["path"] == path]
    return f


def zstd3(path: Path) -> int | None:
    """Bytes of `zstd -3` of the file, or None without the zstd tool."""
    if not shutil.which("zstd"):
        return None
    out = subprocess.run(["zstd", "-3", "-c", "-q", str(path)], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, check=True).stdout
    return len(out)


def test_bin_shares_chunks_with_safetensors(make_mfs, formats, tmp_path):
    """model.safetensors in one repo, then pytorch_model.bin of the same
    weights in another: every storage of the .bin is a chunk the store
    already has, so it costs only its zip headers and pickle; and one repo
    holding both takes at most 3% more than the safetensors alone."""
    mfs = make_mfs("store")
    st = folder_with(tmp_path, "st", formats, ["config.json", "model.safetensors"])
    pt = folder_with(tmp_path, "pt", formats, ["config.json", "pytorch_model.bin"])
    r1 = mfs.ingest(st, "test/st-only", "--no-base")
    r2 = mfs.ingest(pt, "test/bin-only", "--no-base")
    new1, chunks1, _ = new_and_dedup(r1)
    new2, chunks2, dedup2 = new_and_dedup(r2)
    binf = file_info(mfs, "test/bin-only", "pytorch_model.bin")
    size = (formats / "pytorch_model.bin").stat().st_size
    tensors = binf["tensors"]
    assert len(tensors) == 104, [t["name"] for t in tensors]
    # each storage gets the codec its tensor gets in the safetensors file
    # (the float ones mostly bitplane-huff), and its chunks are shared
    stf = {t["name"]: t for t in file_info(mfs, "test/st-only", "model.safetensors")["tensors"]}
    assert {t["name"]: t["codec"] for t in tensors} == {k: t["codec"] for k, t in stf.items()}
    floats = [t for t in tensors if t["dtype"] == "F32"]
    assert sum(t["codec"] == "bitplane-huff" for t in floats) >= 0.9 * len(floats)
    tensor_bytes = sum(t["raw_bytes"] for t in tensors)
    assert binf["shared_bytes"] >= tensor_bytes, binf
    assert dedup2 >= len([t for t in tensors if t["raw_bytes"]]), r2
    assert new2 < 0.01 * size, (new2, size, r2.out)
    print(f"\npytorch_model.bin after model.safetensors: {dedup2} chunks deduplicated, "
          f"{chunks2} new ({new2} bytes, {100.0 * new2 / size:.2f}% of {size})")

    both = make_mfs("both")
    pair = folder_with(tmp_path, "pair", formats,
                       ["config.json", "model.safetensors", "pytorch_model.bin"])
    r3 = both.ingest(pair, "test/pair", "--no-base")
    new3, _, _ = new_and_dedup(r3)
    extra = (new3 - new1) / new1
    print(f"repo with .bin + .safetensors: {new3} bytes vs {new1} for .safetensors alone "
          f"(+{100 * extra:.2f}%)")
    assert extra <= 0.03, (new3, new1)


def test_formats_exact_through_export_and_mount(make_mfs, formats, mounted, tmp_path):
    """The whole fixture in one repo (the sanitizer build): notes for the
    legacy and the hostile pickle, verify clean, export and the mount
    sha256-exact, torch.load(weights_only=True) through the mount equal to the
    original, and the GGUF files readable by the gguf package there."""
    import torch
    mfs = make_mfs("store")
    res = mfs.ingest(formats, REPO, "--no-base")
    err = res.err
    assert re.search(r"extra/hostile-os-system\.pt: .*global posix\.system.*"
                     r"stored as plain bytes", err), err
    assert re.search(r"extra/legacy\.pt: a legacy .*stored as plain bytes", err), err
    for p in ("pytorch_model.bin", "extra/tied-bf16.pt", "extra/model-f16.gguf",
              "extra/model-q8_0.gguf"):
        assert p not in err, err  # parsed: no note
    info = {f["path"]: f for f in mfs.info_json(REPO)["files"]}
    assert not info["extra/hostile-os-system.pt"].get("tensors")
    assert len(info["extra/tied-bf16.pt"]["tensors"]) == 104
    q8 = [t for t in info["extra/model-q8_0.gguf"]["tensors"] if t["dtype"] == "U8"]
    assert len(q8) == 40, len(q8)
    mfs.verify(REPO)

    dest = tmp_path / "export"
    mfs.export(REPO, dest)
    assert_same_tree(formats, dest)

    m = mounted(mfs)
    snap = m.snapshot(REPO)
    assert fixtures.tree_sha256(snap) == fixtures.tree_sha256(formats)
    for rel in ("pytorch_model.bin", "extra/tied-bf16.pt"):
        want = torch.load(formats / rel, weights_only=True)
        have = torch.load(snap / rel, weights_only=True)
        flat_w = want if rel == "pytorch_model.bin" else want["model"]
        flat_h = have if rel == "pytorch_model.bin" else have["model"]
        assert flat_w.keys() == flat_h.keys()
        assert all(torch.equal(flat_w[k], flat_h[k]) for k in flat_w), rel
    try:
        import gguf
    except ImportError:
        gguf = None
    if gguf is not None:  # the reference reader, through the mount
        for rel in ("extra/model-f16.gguf", "extra/model-q8_0.gguf"):
            r = gguf.GGUFReader(snap / rel)
            assert len(r.tensors) == 103 and r.alignment == 32, rel


def test_ratios(make_mfs, formats, tmp_path):
    """Per file type: stored bytes laid out as tensors vs the same bytes
    under a name no parser claims (the generic zstd path, what ingest did
    before), and zstd -3 of the file; printed for the record."""
    files = ["pytorch_model.bin", "extra/tied-bf16.pt", "extra/model-f16.gguf",
             "extra/model-q8_0.gguf", "model.safetensors"]
    now = make_mfs("now")
    before = make_mfs("before")
    d_now = folder_with(tmp_path, "now", formats, files)
    d_before = folder_with(tmp_path, "before", formats, [])
    for rel in files:
        out = d_before / (rel.replace("/", "_") + ".dat")
        out.hardlink_to(formats / rel)
    now.ingest(d_now, "test/now", "--no-base")
    before.ingest(d_before, "test/before", "--no-base")
    rows = []
    for rel in files:
        size = (formats / rel).stat().st_size
        a = file_info(now, "test/now", rel)["stored_bytes"]
        b = file_info(before, "test/before", rel.replace("/", "_") + ".dat")["stored_bytes"]
        z = zstd3(formats / rel)
        rows.append((rel, size, b, a, z))
        # laid out as tensors never costs more than plain bytes (1% slack)
        assert a <= b * 1.01, (rel, a, b)
    print()
    print(f"{'file':28} {'size':>10} {'plain':>8} {'tensors':>8} {'zstd -3':>8}")
    for rel, size, b, a, z in rows:
        zs = f"{100.0 * z / size:7.1f}%" if z else "      -"
        print(f"{rel:28} {size:10d} {100.0 * b / size:7.1f}% {100.0 * a / size:7.1f}% {zs}")
    bin_row = rows[0]
    st_row = rows[-1]
    # the same F32 weights: the .bin stores as small as the .safetensors
    assert bin_row[3] <= st_row[3] * 1.01, (bin_row, st_row)


def test_onnx_initializers_share_chunks(make_mfs, formats, mounted, tmp_path):
    """model.onnx (torch.onnx.export of the same encoder) after
    model.safetensors: its inline initializers are tensor spans, so the
    weights the exporter keeps as they are (embeddings, LayerNorms, biases)
    are chunks the store already has, and the transposed MatMul weights get
    a float codec; the file is exact through export and the mount."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        pytest.skip("the onnx package is not installed: no ONNX export to test")
    onnx_dir = fixtures.model("minilm-onnx")
    mfs = make_mfs("store")
    st = folder_with(tmp_path, "st", formats, ["config.json", "model.safetensors"])
    mfs.ingest(st, "test/st-only", "--no-base")
    res = mfs.ingest(onnx_dir, "test/onnx", "--no-base")
    assert "model.onnx" not in res.err, res.err  # parsed: no note
    f = file_info(mfs, "test/onnx", "model.onnx")
    size = (onnx_dir / "model.onnx").stat().st_size
    assert len(f["tensors"]) == 101
    assert f["shared_bytes"] > 0.5 * size, f
    before = make_mfs("before")
    plain = folder_with(tmp_path, "plain", onnx_dir, [])
    (plain / "model.onnx.dat").hardlink_to(onnx_dir / "model.onnx")
    before.ingest(plain, "test/plain", "--no-base")
    b = file_info(before, "test/plain", "model.onnx.dat")["stored_bytes"]
    z = zstd3(onnx_dir / "model.onnx")
    print(f"\nmodel.onnx: {size} bytes; plain {100.0 * b / size:.1f}%, as tensors "
          f"{100.0 * f['stored_bytes'] / size:.1f}%"
          + (f", zstd -3 {100.0 * z / size:.1f}%" if z else "")
          + f"; {f['shared_bytes']} bytes in chunks shared with model.safetensors")
    assert f["stored_bytes"] < 0.95 * b
    dest = tmp_path / "export"
    mfs.export("test/onnx", dest)
    assert_same_tree(onnx_dir, dest)
    m = mounted(mfs)
    assert fixtures.tree_sha256(m.snapshot("test/onnx")) == fixtures.tree_sha256(onnx_dir)


def test_broken_containers_stored_as_bytes(make_mfs, formats, mounted, tmp_path):
    """A truncated zip checkpoint, one whose central directory lies, and a GGUF
    file whose tensors run past its end: each ingested as plain bytes with a
    note naming the file and the fault (never an error, never a crash), and
    served back exact."""
    src = tmp_path / "broken"
    src.mkdir()
    data = (formats / "pytorch_model.bin").read_bytes()
    (src / "pytorch_model-cut.bin").write_bytes(data[: len(data) // 3])
    lying = bytearray(data)
    z64 = lying.rindex(b"PK\x06\x06")  # torch.save writes zip64 end records
    lying[z64 + 24:z64 + 40] = (10**9).to_bytes(8, "little") * 2  # 10^9 entries claimed
    (src / "lying.pt").write_bytes(bytes(lying))
    g = (formats / "extra" / "model-f16.gguf").read_bytes()
    (src / "cut.gguf").write_bytes(g[: len(g) - 4096])
    mfs = make_mfs("store")
    res = mfs.ingest(src, "test/broken", "--no-base")
    err = res.err
    assert re.search(r"pytorch_model-cut\.bin: no zip end of central directory.*plain bytes",
                     err), err
    assert re.search(r"lying\.pt: .*(claims|entries).*plain bytes", err), err
    assert re.search(r"cut\.gguf: tensor .* past the end of the file.*plain bytes", err), err
    info = {f["path"]: f for f in mfs.info_json("test/broken")["files"]}
    assert all(not f.get("tensors") for f in info.values()), info
    mfs.verify("test/broken")
    dest = tmp_path / "export"
    mfs.export("test/broken", dest)
    assert_same_tree(src, dest)
    m = mounted(mfs)
    assert fixtures.tree_sha256(m.snapshot("test/broken")) == fixtures.tree_sha256(src)
