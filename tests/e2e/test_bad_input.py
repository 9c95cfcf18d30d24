"""Bad input gets a clear error and leaves the store as it was.

Each case: a store already holding a good repo; ingest of the bad source exits
1 with a message on stderr that names the file and the problem; `verify`
still passes; nothing of the bad repo is visible in `ls`; the good repo still
exports byte-exact.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import fixtures
from conftest import Modelfs, assert_same_tree, repo_visible

GOOD_REPO = "good/model"
BAD_REPO = "bad/model"


def safetensors_bytes(tensors: dict, data: bytes | None = None, header: bytes | None = None,
                      header_len: int | None = None, metadata: dict | None = None) -> bytes:
    """A safetensors file from {name: (dtype, shape, [begin, end])}; data
    defaults to a non-zero pattern as long as the largest end offset."""
    if header is None:
        h = {}
        if metadata is not None:
            h["__metadata__"] = metadata
        for name, (dtype, shape, offs) in tensors.items():
            h[name] = {"dtype": dtype, "shape": shape, "data_offsets": offs}
        header = json.dumps(h).encode()
        header += b" " * ((-len(header)) % 8)
    if data is None:
        end = max([offs[1] for _, _, offs in tensors.values()] or [0])
        data = bytes((i * 131 + 7) & 0xFF for i in range(end))
    n = len(header) if header_len is None else header_len
    return struct.pack("<Q", n) + header + data


VALID = {"a": ("F32", [4, 8], [0, 128]), "b": ("BF16", [16], [128, 160])}

# name -> (file bytes, regex the error message must match besides the file name)
CASES = {
    "truncated": (safetensors_bytes(VALID)[:-50],
                  r"truncat|short|end of file|eof|past|beyond|exceed|size|out of range|bounds"),
    "truncated-in-header": (safetensors_bytes(VALID)[:40],
                            r"truncat|short|end of file|eof|header|past|beyond|exceed|size"),
    "too-short-for-length": (b"\x10\x00\x00", r"truncat|short|small|header|length|size"),
    "header-length-past-end": (safetensors_bytes(VALID, header_len=1 << 20),
                               r"header|length|past|beyond|exceed|truncat|size"),
    "header-length-huge": (safetensors_bytes(VALID, header_len=(1 << 63) + 5),
                           r"header|length|past|beyond|exceed|large|size"),
    "invalid-json": (safetensors_bytes({}, header=b'{"a": {"dtype": "F32", "shape": [4]' + b" " * 4,
                                       data=b"\x01" * 16),
                     r"json|pars|syntax|invalid"),
    "header-not-object": (safetensors_bytes({}, header=b"[1, 2, 3]       ", data=b""),
                          r"json|object|header|invalid"),
    "overlapping-offsets": (safetensors_bytes({"a": ("F32", [8], [0, 32]),
                                               "b": ("F32", [8], [16, 48])}),
                            r"overlap"),
    "out-of-range-offsets": (safetensors_bytes({"a": ("F32", [8], [0, 32]),
                                                "b": ("F32", [8], [32, 64])},
                                               data=b"\x3f" * 48),
                             r"range|past|beyond|exceed|outside|bounds|end|size|truncat"),
    "reversed-offsets": (safetensors_bytes({"a": ("F32", [0], [32, 0])}, data=b"\x01" * 32),
                         r"offset|range|invalid|begin|start|end|revers|negative"),
    "unknown-dtype": (safetensors_bytes({"a": ("Q7", [8], [0, 8])}),
                      r"dtype|type|unknown|unsupported|Q7"),
    "shape-size-mismatch": (safetensors_bytes({"a": ("F32", [4, 4], [0, 60])}),
                            r"shape|size|mismatch|length|expected"),
    "missing-data-offsets": (safetensors_bytes({}, header=json.dumps(
        {"a": {"dtype": "F32", "shape": [2]}}).encode().ljust(48), data=b"\x01" * 8),
        r"data_offsets|offset|missing|field"),
    "shape-overflow": (safetensors_bytes({"a": ("F32", [1 << 40, 1 << 40], [0, 16])}),
                       r"shape|size|overflow|mismatch|large|expected"),
    "duplicate-names": (safetensors_bytes({}, header=(
        b'{"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}, '
        b'"a": {"dtype": "U8", "shape": [8], "data_offsets": [8, 16]}}').ljust(104),
        data=b"\x05" * 16), r"duplicate|twice|again"),
}


@pytest.fixture(scope="session")
def good_model(tmp_path_factory) -> Path:
    """A small valid repo (3 MiB of BF16/F32 weights over several chunks, a
    config, a tokenizer file) that every bad-input test's store holds first:
    it must come out byte-exact after the failed ingest. Small, so that the
    35-odd tests here spend their time on the bad input, not on ingesting."""
    src = tmp_path_factory.mktemp("good-model")
    seed = bytes(range(256)) * 64
    w1 = bytes((b * 7 + i // 251) & 0xFF for i, b in enumerate(seed)) * 40  # 640 KiB
    w2 = os.urandom(1 << 20) * 2                                            # 2 MiB
    (src / "model.safetensors").write_bytes(safetensors_bytes(
        {"emb.weight": ("BF16", [len(w1) // 2], [0, len(w1)]),
         "proj.weight": ("F32", [len(w2) // 16, 4], [len(w1), len(w1) + len(w2)])},
        data=w1 + w2, metadata={"format": "pt"}))
    (src / "config.json").write_text('{"model_type": "bert", "hidden_size": 16}\n')
    (src / "tokenizer.json").write_text(json.dumps({"vocab": {f"t{i}": i for i in range(5000)}}))
    return src


@pytest.fixture
def store_with_good_repo(mfs, good_model) -> Modelfs:
    mfs.ingest(good_model, GOOD_REPO)
    return mfs


def assert_store_unchanged(m: Modelfs, good_src: Path, tmp: Path, bad_repo: str = BAD_REPO):
    m.verify()
    listing = m.ls()
    assert not repo_visible(listing, bad_repo), f"{bad_repo} visible after a failed ingest:\n{listing}"
    assert repo_visible(listing, GOOD_REPO), listing
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "good-export"
    m.export(GOOD_REPO, out)
    assert_same_tree(good_src, out)


def bad_folder(tmp: Path, filename: str, content: bytes) -> Path:
    src = tmp / "bad-src"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "bert"}\n')
    (src / filename).write_bytes(content)
    return src


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_safetensors(store_with_good_repo, tmp_path, good_model, case):
    m = store_with_good_repo
    content, problem = CASES[case]
    fname = f"model-{case}.safetensors"
    src = bad_folder(tmp_path, fname, content)
    before = m.ls()
    res = m.run("ingest", src, "--repo", BAD_REPO, timeout=120)
    assert res.rc == 1, f"bad input ({case}) must exit 1:\n{res!r}"
    assert fname in res.err, f"message must name the file {fname}:\n{res.err}"
    assert re.search(problem, res.err, re.I), (
        f"message must say what is wrong ({case}, /{problem}/):\n{res.err}")
    assert m.ls() == before
    assert_store_unchanged(m, good_model, tmp_path)


def test_bad_safetensors_in_hf_cache(store_with_good_repo, tmp_path, hf_cache, good_model):
    """The same checks through the HF cache layout: the message names the file."""
    m = store_with_good_repo
    content, problem = CASES["overlapping-offsets"]
    src = bad_folder(tmp_path, "model.safetensors", content)
    lay = hf_cache(src, BAD_REPO)
    res = m.run("ingest", lay["cache_dir"], timeout=120)
    assert res.rc == 1, res
    assert "model.safetensors" in res.err, res.err
    assert re.search(problem, res.err, re.I), res.err
    assert_store_unchanged(m, good_model, tmp_path)


def test_bad_file_among_good_ones_rejects_whole_ingest(store_with_good_repo, tmp_path,
                                                       minilm_bf16, good_model):
    """A repo whose last shard is bad: none of the repo becomes visible, and
    the good shards' chunks are garbage that gc can remove."""
    m = store_with_good_repo
    src = tmp_path / "mixed"
    src.mkdir()
    for rel in ("config.json", "tokenizer.json", "vocab.txt"):
        (src / rel).write_bytes((minilm_bf16 / rel).read_bytes())
    (src / "model-00001-of-00002.safetensors").write_bytes(
        (minilm_bf16 / "model.safetensors").read_bytes())
    (src / "model-00002-of-00002.safetensors").write_bytes(CASES["unknown-dtype"][0])
    res = m.run("ingest", src, "--repo", BAD_REPO, timeout=300)
    assert res.rc == 1, res
    assert "model-00002-of-00002.safetensors" in res.err, res.err
    assert_store_unchanged(m, good_model, tmp_path)
    m.ok("gc")
    assert_store_unchanged(m, good_model, tmp_path / "after-gc")


BAD_NAMES = ["../x", "a/../../b", "a/b/c", "a--b/c", "/abs", "org/", "a/..", "./a",
             "org/na\nme", "org\\x/y"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n))
def test_bad_repo_names(store_with_good_repo, tmp_path, good_model, name):
    m = store_with_good_repo
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "bert"}\n')
    res = m.run("ingest", src, "--repo", name, timeout=60)
    # A bad --repo value is an error in a command-line argument: exit 1
    # (error) or 2 (usage error) both say so; the name from a cache folder
    # below is data, and must be 1.
    assert res.rc in (1, 2), f"repo name {name!r} must be refused:\n{res!r}"
    printable = name.split("\n")[0]
    assert printable in res.err, f"message must quote the bad name {name!r}:\n{res.err}"
    assert re.search(r"repo|name|invalid", res.err, re.I), res.err
    # Nothing escaped the store either.
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()
    assert_store_unchanged(m, good_model, tmp_path, bad_repo=name if "/" in name else "x/x")


def test_bad_repo_name_from_hf_cache_dir(store_with_good_repo, tmp_path, good_model):
    """A cache folder whose name decodes to a path trick (models--..--evil)."""
    m = store_with_good_repo
    cache = tmp_path / "cache"
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}\n")
    fixtures.hf_cache(src, "evil/x", cache)
    os.rename(cache / "models--evil--x", cache / "models--..--evil")
    res = m.run("ingest", cache / "models--..--evil", timeout=60)
    assert res.rc == 1, res
    assert "models--..--evil" in res.err or "../evil" in res.err, res.err
    assert_store_unchanged(m, good_model, tmp_path)


def test_hf_cache_with_missing_blob(store_with_good_repo, tmp_path, hf_cache, good_model):
    """A snapshot symlink whose blob was deleted: exit 1, the file named,
    nothing of the repo visible."""
    m = store_with_good_repo
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}\n")
    (src / "model.safetensors").write_bytes(safetensors_bytes(VALID))
    lay = hf_cache(src, BAD_REPO)
    (lay["repo_dir"] / "blobs" / lay["files"]["model.safetensors"]).unlink()
    res = m.run("ingest", lay["cache_dir"], timeout=60)
    assert res.rc == 1, res
    assert "model.safetensors" in res.err or lay["files"]["model.safetensors"] in res.err, res.err
    assert_store_unchanged(m, good_model, tmp_path)


def test_missing_source(store_with_good_repo, tmp_path, good_model):
    m = store_with_good_repo
    res = m.run("ingest", tmp_path / "does-not-exist", "--repo", BAD_REPO)
    assert res.rc == 1, res
    assert "does-not-exist" in res.err, res.err
    assert_store_unchanged(m, good_model, tmp_path)


def test_fifo_source_is_refused(store_with_good_repo, tmp_path, good_model):
    """A FIFO in the source (a file that is not a regular file) must not hang
    the ingest nor be half-ingested."""
    m = store_with_good_repo
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}\n")
    os.mkfifo(src / "model.safetensors")
    res = m.run("ingest", src, "--repo", BAD_REPO, timeout=60)
    assert res.rc == 1, f"a FIFO must be refused, not read:\n{res!r}"
    assert "model.safetensors" in res.err, res.err
    assert_store_unchanged(m, good_model, tmp_path)


def test_unreadable_file(store_with_good_repo, tmp_path, good_model):
    """A file that cannot be opened: exit 1, named. (Root reads anything, so a
    dangling symlink stands in for an unreadable file.)"""
    m = store_with_good_repo
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}\n")
    os.symlink(tmp_path / "nowhere.safetensors", src / "model.safetensors")
    res = m.run("ingest", src, "--repo", BAD_REPO, timeout=60)
    assert res.rc == 1, res
    assert "model.safetensors" in res.err, res.err
    assert_store_unchanged(m, good_model, tmp_path)


def _big_valid_safetensors(path: Path, mib: int = 128):
    """A valid BF16 safetensors of ~mib MiB with non-repeating data (slow-ish
    to ingest, so there is time to pull it away)."""
    n = mib << 20
    header = json.dumps({"w": {"dtype": "BF16", "shape": [n // 2],
                               "data_offsets": [0, n]}}).encode()
    header += b" " * ((-len(header)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        block = os.urandom(1 << 20)
        for i in range(mib):
            f.write(i.to_bytes(8, "little") + block[8:])


@pytest.mark.parametrize("how", ["truncate", "unlink", "replace"])
def test_source_changes_mid_ingest(store_with_good_repo, tmp_path, good_model, how):
    """Best effort: the source file is truncated / removed / replaced while
    ingest runs. Whatever the timing, the ingest either succeeds with bytes it
    can vouch for or fails with exit 1 naming the file, and the store verifies
    clean with nothing half-visible."""
    m = store_with_good_repo
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}\n")
    target = src / "model.safetensors"
    _big_valid_safetensors(target)
    original_sha = fixtures.sha256_file(target)

    def sabotage():
        time.sleep(0.15)
        if how == "truncate":
            os.truncate(target, 4096)
        elif how == "unlink":
            target.unlink()
        else:
            tmp = src / ".tmp"
            tmp.write_bytes(b"garbage" * 100)
            os.replace(tmp, target)

    t = threading.Thread(target=sabotage)
    argv = m.argv("ingest", src, "--repo", BAD_REPO)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=m.env())
    t.start()
    out, err = p.communicate(timeout=600)
    t.join()
    err = err.decode("utf-8", "replace")
    assert "Sanitizer" not in err and "runtime error:" not in err, err
    assert p.returncode in (0, 1), f"exit {p.returncode}:\n{err}"
    if p.returncode == 1:
        assert "model.safetensors" in err, err
        assert not repo_visible(m.ls(), BAD_REPO)
    else:
        # It read the file before the change (unlink keeps an open file
        # readable): what it stored must be the original, whole.
        out_dir = tmp_path / "exported"
        m.export(BAD_REPO, out_dir)
        assert fixtures.sha256_file(out_dir / "model.safetensors") == original_sha, (
            "ingest succeeded but stored bytes that are not the file as it was")
    m.verify()
    out_dir = tmp_path / "good-export"
    m.export(GOOD_REPO, out_dir)
    assert_same_tree(good_model, out_dir)


def test_not_a_store_is_refused(tmp_path):
    """A store directory that is not a modelfs store (a stray file where the
    LMDB environment should be) gets a clear error, and is not damaged."""
    store = tmp_path / "store"
    store.mkdir()
    junk = store / "data.mdb"
    junk.write_bytes(b"this is not an lmdb environment" * 100)
    m = Modelfs(store)
    res = m.run("ls")
    assert res.rc == 1, res
    assert str(store) in res.err or "data.mdb" in res.err or "store" in res.err.lower(), res.err
    assert junk.read_bytes() == b"this is not an lmdb environment" * 100


def test_header_over_100_mb_is_refused(store_with_good_repo, tmp_path, good_model):
    """A header length over 100 MB is refused before anything is read or
    allocated, even when the file really is that large (sparse here)."""
    m = store_with_good_repo
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}\n")
    big = src / "model.safetensors"
    n = 100 * 1000 * 1000 + 8 * 1024 * 1024
    with open(big, "wb") as f:
        f.write(struct.pack("<Q", n) + b"{")
        f.truncate(8 + n + 64)
    res = m.run("ingest", src, "--repo", BAD_REPO, timeout=120)
    assert res.rc == 1, res
    assert "model.safetensors" in res.err, res.err
    assert re.search(r"header|100|large|limit|exceed", res.err, re.I), res.err
    assert_store_unchanged(m, good_model, tmp_path)


def test_symlink_loop_is_refused(store_with_good_repo, tmp_path, good_model):
    """A symlink loop in a plain folder: refused with its name, no hang."""
    m = store_with_good_repo
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}\n")
    os.symlink("loop-b.json", src / "loop-a.json")
    os.symlink("loop-a.json", src / "loop-b.json")
    res = m.run("ingest", src, "--repo", BAD_REPO, timeout=60)
    assert res.rc == 1, res
    assert "loop-a.json" in res.err, res.err
    assert re.search(r"loop|too many", res.err, re.I), res.err
    assert_store_unchanged(m, good_model, tmp_path)
