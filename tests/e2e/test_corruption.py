"""End to end: damaged chunk payloads are detected, named, contained and repaired.

A model whose big tensor is random bytes is stored raw (nothing compresses
it), so each of its chunks appears verbatim in a pack file (store/packs/):
the test finds one chunk's bytes there and flips some, with no process using
the store. Then:
`verify` exits 1 naming the chunk key and the damaged file; `export` of that
repo fails naming the file while the other repo exports byte-exact; through a
mount the damaged range reads EIO and every other file is sha256-exact; and
`verify --repair-from <original folder>` rewrites the chunk so that all is
clean and byte-exact again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import random
import shutil
import struct
from pathlib import Path

import pytest

import fixtures
from conftest import Modelfs, assert_same_tree
from mount_fixtures import fuse_mounted, mounted  # noqa: F401  (fixture)

MiB = 1 << 20
REPO_BAD = "org/randmodel"
REPO_GOOD = "org/minilm"
TENSOR_BYTES = 3 * MiB          # three 1 MiB chunks at the default chunk size
DAMAGED_CHUNK = 1               # the middle one
PAGE = 4096


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]):
    """A minimal safetensors writer: {name: (dtype, shape, raw bytes)}."""
    header, off, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    return 8 + len(h)


def make_random_model(folder: Path, seed: int = 1234) -> int:
    """A model whose main tensor is incompressible. Returns the file offset of
    that tensor's first byte (its chunks start there)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    data_start = write_safetensors(folder / "model.safetensors", {
        "noise": ("U8", [TENSOR_BYTES], rng.randbytes(TENSOR_BYTES)),
    })
    (folder / "config.json").write_text(json.dumps({"model_type": "noise", "seed": seed}))
    (folder / "README.md").write_text("random bytes: stored raw by modelfs\n" * 20)
    return data_start


def chunk_key_hex(data: bytes) -> str | None:
    """XXH3-128 of data as modelfs prints it (canonical: high64 then low64),
    through the system libxxhash; None when that library cannot be loaded."""
    name = ctypes.util.find_library("xxhash")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None

    class H128(ctypes.Structure):
        _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]

    lib.XXH3_128bits.restype = H128
    lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    h = lib.XXH3_128bits(data, len(data))
    return f"{h.high64:016x}{h.low64:016x}"


def payload_files(store: Path) -> list[Path]:
    """The files that hold a store's chunk payloads: its pack files."""
    return sorted((store / "packs").glob("*.pack"))


def find_in_store(store: Path, chunk: bytes) -> list[tuple[Path, int]]:
    """Every (pack file, offset) where `chunk` lies verbatim (a raw chunk's
    payload is its bytes)."""
    probe = chunk[4096:4096 + 64]   # a unique 64-byte window inside the chunk
    found = []
    for f in payload_files(store):
        blob = f.read_bytes()
        pos = blob.find(probe)
        while pos >= 0:
            start = pos - 4096
            if start >= 0 and blob[start:start + len(chunk)] == chunk:
                found.append((f, start))
            pos = blob.find(probe, pos + 1)
    return found


def flip_in_store(store: Path, probe: bytes, at: int = 10) -> bool:
    """Flip the byte `at` bytes into the first copy of `probe` in the store's
    pack files (payload bytes of a raw chunk lie there verbatim). Returns
    whether one was found."""
    for f in payload_files(store):
        blob = f.read_bytes()
        pos = blob.find(probe)
        if pos >= 0:
            with open(f, "r+b") as fh:
                fh.seek(pos + at)
                b = fh.read(1)
                fh.seek(pos + at)
                fh.write(bytes([b[0] ^ 0xFF]))
            return True
    return False


def damage_in_store(store: Path, chunk: bytes) -> int:
    """Flip bytes of every copy of `chunk` in the store's pack files (a raw
    chunk is stored verbatim). Returns how many copies were damaged."""
    n = 0
    for f, start in find_in_store(store, chunk):
        with open(f, "r+b") as fh:
            fh.seek(start + 100_000)
            b = bytearray(fh.read(16))
            fh.seek(start + 100_000)
            fh.write(bytes(x ^ 0xFF for x in b))
        n += 1
    return n


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory, minilm_f32):
    """Two repos ingested once per module (a template store each test copies)."""
    root = tmp_path_factory.mktemp("corruption")
    src = root / "randsrc"
    data_start = make_random_model(src)
    m = Modelfs(root / "store")
    m.ingest(src, REPO_BAD)
    m.ingest(minilm_f32, REPO_GOOD)
    m.verify()
    return m.store, src, data_start


@pytest.fixture
def damaged(mfs: Modelfs, clean_store, minilm_f32):
    """mfs's store: a copy of the template, one chunk of REPO_BAD's
    model.safetensors damaged inside its pack file."""
    template, src, data_start = clean_store
    shutil.copytree(template, mfs.store)
    raw = (src / "model.safetensors").read_bytes()
    c0 = data_start + DAMAGED_CHUNK * MiB
    chunk = raw[c0:c0 + MiB]
    copies = damage_in_store(mfs.store, chunk)
    assert copies >= 1, "the raw chunk was not found verbatim in a pack file"
    return {"src": src, "good": minilm_f32, "off": c0, "chunk": chunk,
            "key": chunk_key_hex(chunk)}


def test_verify_names_chunk_and_file(mfs, damaged):
    res = mfs.run("verify", "--quiet")
    assert res.rc == 1, res
    bad = [ln for ln in res.out.splitlines() if ln.startswith("BAD chunk ")]
    assert len(bad) == 1, res
    key = bad[0].split()[2].rstrip(":")
    assert len(key) == 32
    if damaged["key"]:
        assert key == damaged["key"], res
    # the extent that uses it, at the damaged offset, and the file it breaks
    assert f"uses damaged chunk {key} at offset {damaged['off']}" in res.out, res
    assert f"damaged file: models/{REPO_BAD}/model.safetensors" in res.out, res
    assert "1 damaged chunks, 1 damaged files" in res.out, res
    # the good repo alone verifies clean... except for the shared chunk scan,
    # which reports every damaged chunk of the store: the file check passes
    only = mfs.run("verify", "--quiet", REPO_GOOD)
    assert "0 damaged files" in only.out, only


def test_export_fails_on_damaged_repo_only(mfs, tmp_path, damaged):
    res = mfs.run("export", REPO_BAD, tmp_path / "out-bad")
    assert res.rc == 1, res
    assert "model.safetensors" in res.err and "damaged" in res.err, res
    assert not (tmp_path / "out-bad" / "model.safetensors").exists()
    mfs.export(REPO_GOOD, tmp_path / "out-good")
    assert_same_tree(damaged["good"], tmp_path / "out-good")


def test_mount_eio_at_damaged_range_only(mfs, damaged, mounted):
    m = mounted(mfs)
    snap_bad, snap_good = m.snapshot(REPO_BAD), m.snapshot(REPO_GOOD)
    src = damaged["src"]
    path = snap_bad / "model.safetensors"
    off = damaged["off"]
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as ei:
            os.pread(fd, 4096, off + 100_000)
        assert ei.value.errno == errno.EIO, ei.value
        # The kernel reads whole pages: the pages holding no damaged byte are
        # served exactly, before and after the damaged chunk.
        raw = (src / "model.safetensors").read_bytes()
        first, end = off // PAGE * PAGE, -(-(off + MiB) // PAGE) * PAGE
        for lo, n in ((0, 4096), (first - 8192, 8192), (end, 64 * 1024),
                      (len(raw) - 4096, 4096)):
            assert os.pread(fd, n, lo) == raw[lo:lo + n], (lo, n)
        # A read running into the damaged chunk stops short of it (or fails):
        # whatever it returns is the right bytes, never a damaged one.
        for lo in (off - 8192, off - 80, end - PAGE):
            try:
                got = os.pread(fd, 16384, lo)
            except OSError as e:
                assert e.errno == errno.EIO, e
                continue
            assert len(got) < 16384 and lo + len(got) <= off, (lo, len(got))
            assert got == raw[lo:lo + len(got)], lo
    finally:
        os.close(fd)
    with pytest.raises(OSError) as ei:
        fixtures.sha256_file(path)
    assert ei.value.errno == errno.EIO
    # every other file, of both repos, reads sha256-exact
    for rel, h in fixtures.tree_sha256(src).items():
        if rel != "model.safetensors":
            assert fixtures.sha256_file(snap_bad / rel) == h, rel
    assert fixtures.tree_sha256(snap_good) == fixtures.tree_sha256(damaged["good"])
    # the daemon names the chunk in its log
    if damaged["key"]:
        assert damaged["key"] in m.log(), m.log()


def test_repair_from_original_folder(mfs, tmp_path, damaged):
    res = mfs.run("verify", "--quiet", "--repair-from", damaged["src"])
    assert res.rc == 0, res
    assert "repaired chunk" in res.out, res
    assert "1 chunks rewritten, 0 could not be repaired" in res.out, res
    clean = mfs.verify("--quiet")
    assert "0 damaged chunks, 0 damaged files" in clean.out, clean
    mfs.export(REPO_BAD, tmp_path / "out-bad")
    assert_same_tree(damaged["src"], tmp_path / "out-bad")
    mfs.export(REPO_GOOD, tmp_path / "out-good")
    assert_same_tree(damaged["good"], tmp_path / "out-good")
    # a repaired chunk keeps its reference count: rm + gc still frees it exactly
    mfs.ok("rm", REPO_BAD)
    mfs.ok("gc")
    mfs.verify("--quiet")
    mfs.export(REPO_GOOD, tmp_path / "out-good2")
    assert_same_tree(damaged["good"], tmp_path / "out-good2")


def test_repair_from_hf_cache(mfs, tmp_path, hf_cache, damaged):
    """An HF cache holds the file under blobs/<etag>, linked from snapshots/."""
    lay = hf_cache(damaged["src"], REPO_BAD)
    res = mfs.run("verify", "--quiet", "--repair-from", lay["cache_dir"])
    assert res.rc == 0, res
    assert "1 chunks rewritten" in res.out, res
    mfs.verify("--quiet")


def test_repair_without_good_copy_fails(mfs, tmp_path, damaged):
    other = tmp_path / "other"
    other.mkdir()
    bad_copy = bytearray((damaged["src"] / "model.safetensors").read_bytes())
    bad_copy[damaged["off"] + 5] ^= 1     # same size, wrong content
    (other / "model.safetensors").write_bytes(bytes(bad_copy))
    res = mfs.run("verify", "--quiet", "--repair-from", other)
    assert res.rc == 1, res
    assert "no good copy of blob" in res.out, res
    assert "0 chunks rewritten, 1 could not be repaired" in res.out, res
    assert "the store is damaged" in res.out, res
    # nothing was changed: still exactly one damaged chunk
    again = mfs.run("verify", "--quiet")
    assert again.rc == 1 and "1 damaged chunks" in again.out, again
