"""End to end: the store's environment under other processes (issue 16, items
1, 4 and 12's store parts).

- `gc --compact` while other commands start, before, during and after it,
  and while a program outside modelfs (a raw LMDB reader) has the store open:
  no committed repo is ever lost, and a compaction that cannot run safely
  refuses, exits 1 and changes nothing.
- A truncated data.mdb (a partial copy) is refused by every command with
  "damaged or incomplete", never a SIGBUS.
- A store the user may not read says "permission denied".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import multiprocessing as mp
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELFS_FAST, Modelfs, repo_visible
from test_corruption import write_safetensors


def drop_caches():
    """Make the next read of the store come from disk (root only; else a no-op)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def small_model(folder: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    w = (rng.standard_normal(64 * 1024) * 0.02).astype(np.float32)
    write_safetensors(folder / "model.safetensors",
                      {"w": ("F32", [256, 256], w.tobytes())})
    (folder / "config.json").write_text('{"seed": %d}' % seed)
    return folder


def big_model(folder: Path, mib: int) -> Path:
    """mib MiB of incompressible bytes (stored raw: compaction copies them all)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    with open(folder / "weights.bin", "wb") as f:
        for _ in range(mib // 16):
            f.write(rng.integers(0, 256, 16 << 20, dtype=np.uint8).tobytes())
    (folder / "config.json").write_text('{"big": true}')
    return folder


def sha256_tree(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def popen(mfs: Modelfs, *args) -> subprocess.Popen:
    return subprocess.Popen(mfs.argv(*args), env=mfs.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


@pytest.fixture(scope="module")
def big_src(tmp_path_factory):
    return big_model(tmp_path_factory.mktemp("big") / "m", 320)


def test_commands_started_during_compaction_lose_nothing(tmp_path, big_src):
    """The issue's reproduction: a store with a 300 MB repo; gc --compact; an
    ingest started as soon as the compact copy exists, then a few more: every
    repo is there afterwards, verify is clean, the big repo exports exact.
    Compaction copies the index only (the payloads are in packs): the repo is
    cut into 4 KiB chunks, 80k chunk records, so the index (about 13 MB) takes
    the copy long enough for the ingest to start during it."""
    fast = Modelfs(tmp_path / "store", binary=MODELFS_FAST)
    fast.ingest(big_src, "org/big", "--quiet", "--chunk-size", "4K")
    mfs = Modelfs(tmp_path / "store")
    smalls = [small_model(tmp_path / f"s{i}", i) for i in range(4)]
    tmp_copy = mfs.store / "compact.tmp" / "data.mdb"
    drop_caches()
    gc = popen(mfs, "gc", "--compact")
    t0 = time.monotonic()
    while not tmp_copy.exists() and gc.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.001)
    assert gc.poll() is None and tmp_copy.exists(), \
        "gc --compact finished before its compact copy was seen: the test needs a slower copy"
    during = popen(mfs, "ingest", smalls[0], "--repo", "org/during", "--quiet")
    listing = popen(mfs, "ls")
    rc, out, err = finish(gc)
    assert rc == 0, f"gc --compact failed:\n{out}\n{err}"
    rc, out, err = finish(during)
    assert rc == 0, f"the ingest started during compaction failed:\n{out}\n{err}"
    rc, ls_out, ls_err = finish(listing)
    assert rc == 0 and repo_visible(ls_out, "org/big"), \
        f"ls started during compaction did not list the store:\n{ls_out}\n{ls_err}"
    assert "waiting for it to finish" in ls_err + err, (ls_err, err)
    for i, src in enumerate(smalls[1:], 1):
        mfs.ingest(src, f"org/after{i}", "--quiet")
    listing = mfs.ls()
    for repo in ["org/big", "org/during", "org/after1", "org/after2", "org/after3"]:
        assert repo_visible(listing, repo), f"{repo} lost:\n{listing}"
    mfs.verify()
    out = tmp_path / "out"
    fast.export("org/big", out)
    assert sha256_tree(out) == sha256_tree(big_src)


def test_compaction_then_ingests_keep_every_repo(tmp_path):
    """Compaction while nothing else runs, then more ingests and a second
    compaction: the lock region must describe the new file each time."""
    mfs = Modelfs(tmp_path / "store")
    for i in range(3):
        mfs.ingest(small_model(tmp_path / f"a{i}", 10 + i), f"org/a{i}", "--quiet")
    mfs.ok("gc", "--compact")
    for i in range(3):
        mfs.ingest(small_model(tmp_path / f"b{i}", 20 + i), f"org/b{i}", "--quiet")
    mfs.ok("gc", "--compact")
    mfs.ingest(small_model(tmp_path / "c", 30), "org/c", "--quiet")
    listing = mfs.ls()
    for r in ["org/a0", "org/a1", "org/a2", "org/b0", "org/b1", "org/b2", "org/c"]:
        assert repo_visible(listing, r), f"{r} lost:\n{listing}"
    mfs.verify()


def _hold_lmdb(store: str, ready, release):
    """A program outside modelfs holding the environment open with a read
    transaction (what mdb_dump does while it runs)."""
    lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
    env = ctypes.c_void_p()
    assert lib.mdb_env_create(ctypes.byref(env)) == 0
    lib.mdb_env_set_maxdbs(env, 16)
    lib.mdb_env_set_mapsize(env, ctypes.c_size_t(1 << 40))
    lib.mdb_env_set_maxreaders(env, 1024)
    rc = lib.mdb_env_open(env, store.encode(), 0x20000, 0o600)  # MDB_RDONLY
    assert rc == 0, rc
    txn = ctypes.c_void_p()
    assert lib.mdb_txn_begin(env, None, 0x20000, ctypes.byref(txn)) == 0
    ready.set()
    release.wait(120)
    lib.mdb_txn_abort(txn)
    lib.mdb_env_close(env)


def test_compaction_refuses_while_another_lmdb_program_has_the_store(tmp_path):
    mfs = Modelfs(tmp_path / "store")
    for i in range(2):
        mfs.ingest(small_model(tmp_path / f"m{i}", i), f"org/m{i}", "--quiet")
    mfs.ok("rm", "org/m0")
    data = mfs.store / "data.mdb"
    before = (data.stat().st_ino, hashlib.sha256(data.read_bytes()).hexdigest())
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lmdb, args=(str(mfs.store), ready, release))
    holder.start()
    try:
        assert ready.wait(60), "the LMDB holder did not start"
        res = mfs.run("gc", "--compact")
        assert res.rc == 1, f"compaction ran beside another LMDB program:\n{res!r}"
        assert f"process {holder.pid}" in res.err and "nothing was changed" in res.err, res
        # the sweep ran (its own transaction), the file was not replaced
        assert data.stat().st_ino == before[0]
    finally:
        release.set()
        holder.join(60)
    listing = mfs.ls()
    assert repo_visible(listing, "org/m1") and not repo_visible(listing, "org/m0")
    mfs.ok("gc", "--compact")
    assert data.stat().st_ino != before[0]
    mfs.ingest(small_model(tmp_path / "m2", 2), "org/m2", "--quiet")
    listing = mfs.ls()
    assert repo_visible(listing, "org/m1") and repo_visible(listing, "org/m2"), listing
    mfs.verify()


def test_compaction_refuses_while_mounted_or_in_use(tmp_path):
    """A modelfs process with the store open (a mount holds it the same way)
    makes compaction refuse, naming what to do; the store is unchanged."""
    mfs = Modelfs(tmp_path / "store")
    mfs.ingest(small_model(tmp_path / "m", 1), "org/m", "--quiet")
    lock = mfs.store / "users.lock"
    import fcntl
    with open(lock, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        ino = (mfs.store / "data.mdb").stat().st_ino
        res = mfs.run("gc", "--compact")
        assert res.rc == 1 and "in use by another process" in res.err, res
        assert (mfs.store / "data.mdb").stat().st_ino == ino
        assert not (mfs.store / "compact.tmp").exists()


def test_failed_compaction_exits_1_and_changes_nothing(tmp_path):
    mfs = Modelfs(tmp_path / "store")
    mfs.ingest(small_model(tmp_path / "m", 1), "org/m", "--quiet")
    (mfs.store / "compact.tmp").write_text("in the way")
    ino = (mfs.store / "data.mdb").stat().st_ino
    res = mfs.run("gc", "--compact")
    assert res.rc == 1 and "nothing was changed" in res.err, res
    assert (mfs.store / "data.mdb").stat().st_ino == ino
    (mfs.store / "compact.tmp").unlink()
    assert repo_visible(mfs.ls(), "org/m")
    mfs.verify()


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    base = tmp_path_factory.mktemp("trunc")
    mfs = Modelfs(base / "store", binary=MODELFS_FAST)
    for i in range(3):
        mfs.ingest(small_model(base / f"m{i}", 40 + i), f"org/m{i}", "--quiet")
    return mfs.store


@pytest.mark.parametrize("cut", ["0", "100", "4096", "8192", "half", "minus-page",
                                 "minus-1"])
def test_truncated_store_is_refused_not_a_signal(tmp_path, full_store, cut):
    store = tmp_path / "store"
    shutil.copytree(full_store, store)
    data = store / "data.mdb"
    size = data.stat().st_size
    new = {"half": size // 2, "minus-page": size - 4096, "minus-1": size - 1}.get(cut)
    new = int(cut) if new is None else new
    os.truncate(data, new)
    mfs = Modelfs(store)
    for args in (["ls"], ["ls", "org/m1"], ["verify"], ["info", "org/m1/model.safetensors"],
                 ["export", "org/m1", str(tmp_path / "out")], ["gc"],
                 ["ingest", str(tmp_path), "--repo", "org/x"],
                 ["mount", "-f", str(tmp_path / "mnt")]):
        (tmp_path / "mnt").mkdir(exist_ok=True)
        res = mfs.run(*args, timeout=120)
        assert res.rc == 1, f"{args} on a store cut to {new} of {size} bytes:\n{res!r}"
        assert "damaged or incomplete" in res.err, res
    assert data.stat().st_size == new, "a command wrote to the damaged store"


def test_unreadable_store_says_permission_denied(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as another user")
    mfs = Modelfs(tmp_path / "store", binary=MODELFS_FAST)
    mfs.ingest(small_model(tmp_path / "m", 1), "org/m", "--quiet")
    os.chmod(mfs.store, 0o700)
    tmp_path.chmod(0o755)
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            str(Modelfs(mfs.store).binary), "--store", str(mfs.store), "ls"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                       env=mfs.env({"HOME": "/nonexistent"}))
    assert p.returncode == 1, p
    assert "permission denied" in p.stderr and "no modelfs store" not in p.stderr, p.stderr
