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
