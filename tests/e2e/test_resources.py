"""Resources: the store vanishes, becomes unreadable, or fills its disk.

- Store removed (rm -rf) while mounted, with files open and readers busy:
  every operation ends within OP_TIMEOUT with exact bytes or EIO/ENOENT
  (never wrong bytes, never a hang); once the daemon has noticed (at most
  ~1 s) a new open fails with ENOENT, a directory listing and a read of an
  already-open file with EIO; the daemon stays up and unmounts cleanly.
- Store made unreadable (chmod 000) under a daemon that is not root (root
  ignores file modes): the same errors; once the mode is restored, the mount
  serves exact bytes again.
- Disk full during ingest (a 64 MiB tmpfs holding the store, with a mount up):
  the ingest fails naming the problem ("No space left on device"), nothing of
  it is visible (ls, the mount), the store opens and verifies clean, the
  mount keeps serving what was there, and `gc` then runs fine.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import fixtures
from conftest import MODELFS_FAST, Modelfs
from mount_fixtures import Mount, fuse_mounted, mounted  # noqa: F401  (fixture)

OP_TIMEOUT = 30.0
GONE_ERRNOS = {errno.EIO, errno.ENOENT}
MiB = 1 << 20


def repo_dir(root: Path, repo: str) -> Path:
    return root / ("models--" + repo.replace("/", "--"))


def bounded(fn, timeout: float = OP_TIMEOUT):
    """Run fn() on a thread; its result, or the OSError it raised. A call
    that does not return within timeout fails the test (a hang)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except OSError as e:
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"operation {fn} hung for {timeout}s", pytrace=False)
    return box.get("error", box.get("value"))


def exact_or_gone(result, want: bytes | None, what: str):
    if isinstance(result, OSError):
        assert result.errno in GONE_ERRNOS, f"{what}: {result!r}"
    elif want is not None:
        assert result == want, f"{what}: wrong bytes"


def pread_dropped(fd: int, n: int, off: int) -> bytes:
    """pread after dropping the file's page cache: the bytes come from the daemon."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return os.pread(fd, n, off)


def ingest_two(mfs: Modelfs, model_path) -> dict[str, Path]:
    models = {"org/res-f32": model_path("minilm-f32"), "org/res-bf16": model_path("minilm-bf16")}
    for repo, src in models.items():
        mfs.ingest(src, repo)
    return models


def blob_of(root: Path, repo: str, rel: str) -> Path:
    rd = repo_dir(root, repo)
    commit = (rd / "refs" / "main").read_text()
    link = rd / "snapshots" / commit / rel
    return rd / "blobs" / os.path.basename(os.readlink(link))


def test_store_removed_while_mounted(make_mfs, model_path, mounted, tmp_path):
    mfs = make_mfs("store", binary=MODELFS_FAST)
    models = ingest_two(mfs, model_path)
    m = mounted(mfs, "--cache-bytes", "16M")
    data = {repo: (src / "model.safetensors").read_bytes() for repo, src in models.items()}
    blob = {repo: blob_of(m.root, repo, "model.safetensors") for repo in models}
    held = {repo: os.open(blob[repo], os.O_RDONLY) for repo in models}
    stop = threading.Event()
    gone = threading.Event()
    problems: list[str] = []

    def reader(tid: int):
        rnd = random.Random(tid)
        while not stop.is_set():
            repo = rnd.choice(list(models))
            off = rnd.randrange(len(data[repo]))
            try:
                got = pread_dropped(held[repo], MiB, off)
                want = data[repo][off:off + MiB]
                # a read that meets the error part-way returns its first pages
                # (a short read), which must be exact
                if got != want and not (gone.is_set() and want[:len(got)] == got):
                    problems.append(f"reader {tid}: {len(got)} bytes at {off}, "
                                    f"{len(want)} expected, differ")
                    return
            except OSError as e:
                if e.errno not in GONE_ERRNOS:
                    problems.append(f"reader {tid}: {e!r}")
                    return
            try:
                fd = os.open(blob[repo], os.O_RDONLY)
                os.close(fd)
            except OSError as e:
                if e.errno not in GONE_ERRNOS:
                    problems.append(f"reader {tid}: open: {e!r}")
                    return

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        gone.set()
        shutil.rmtree(mfs.store)
        # while the daemon may not have noticed yet: exact bytes or an error
        t_gone = time.monotonic()
        while time.monotonic() - t_gone < 3.0:
            r = bounded(lambda: pread_dropped(held["org/res-f32"], 4096, 0))
            exact_or_gone(r, data["org/res-f32"][:4096], "read of an open file")
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(OP_TIMEOUT)
        assert not any(t.is_alive() for t in threads), "a reader hung"
        assert not problems, problems
        # noticed by now (checked at most every second): errors, not hangs
        r = bounded(lambda: pread_dropped(held["org/res-bf16"], 4096, 12345))
        assert isinstance(r, OSError) and r.errno == errno.EIO, r
        r = bounded(lambda: os.listdir(m.root))
        assert isinstance(r, OSError) and r.errno == errno.EIO, r
        r = bounded(lambda: open(repo_dir(m.root, "org/res-f32") / "refs" / "main").read())
        assert isinstance(r, OSError) and r.errno in GONE_ERRNOS, r
        r = bounded(lambda: os.open(blob["org/res-f32"], os.O_RDONLY))
        assert isinstance(r, OSError) and r.errno == errno.ENOENT, r
        r = bounded(lambda: os.stat(m.root / "models--org--nope"))
        assert isinstance(r, OSError) and r.errno == errno.ENOENT, r
        assert m.proc.poll() is None, f"the daemon died:\n{m.log()}"
        assert "is gone" in m.log(), m.log()
        # a new store made at the same path is another store: the mount does
        # not start serving it (remount for that)
        mfs.ingest(model_path("wordllama"), "org/new")
        time.sleep(1.5)
        r = bounded(lambda: os.listdir(m.root))
        assert isinstance(r, OSError) and r.errno == errno.EIO, r
        r = bounded(lambda: pread_dropped(held["org/res-f32"], 4096, 0))
        assert isinstance(r, OSError) and r.errno == errno.EIO, r
    finally:
        stop.set()
        for fd in held.values():
            os.close(fd)
    rc = m.stop()
    assert rc == 0, f"daemon exit {rc}:\n{m.log()}"
    assert not fuse_mounted(m.mnt)


# ---------------------------------------------------------------- not root

NOBODY = 65534


class NobodyModelfs(Modelfs):
    """Runs modelfs as uid/gid 65534 with only CAP_SYS_ADMIN (to mount(2)):
    file modes apply to it, unlike to root."""

    def argv(self, *args, store: bool = True) -> list[str]:
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "--inh-caps=-all,+sys_admin", "--ambient-caps=+sys_admin"] + \
            super().argv(*args, store=store)


@pytest.fixture
def nobody_dir():
    """A directory uid 65534 can reach (pytest's tmp dirs are 0700 root's),
    removed at the end."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv (util-linux) to run the daemon as nobody")
    d = Path(tempfile.mkdtemp(prefix="mfs-nobody-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        if not fuse_mounted(d / "mnt"):
            shutil.rmtree(d, ignore_errors=True)


def start_as_nobody(mfs: Modelfs, mnt: Path, *flags: str) -> Mount:
    """Start a mount whose daemon runs as nobody (the caller stops it).
    libfuse opens /dev/fuse itself (this host has it 0600; Debian's default is
    0666): it is made 0666 for the moment the daemon opens it, then put back."""
    nb = NobodyModelfs(mfs.store, binary=mfs.binary, home=mfs.home)
    for p in (mfs.store, *mfs.store.rglob("*")):  # packs/ and its files too
        os.chown(p, NOBODY, NOBODY)
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    m = Mount(nb, mnt, *flags)
    try:
        os.chmod("/dev/fuse", 0o666)
        m.start()
    finally:
        os.chmod("/dev/fuse", mode)
    return m


def test_store_unreadable_while_mounted(nobody_dir, model_path):
    mfs = Modelfs(nobody_dir / "store", binary=MODELFS_FAST)
    models = ingest_two(mfs, model_path)
    m = start_as_nobody(mfs, nobody_dir / "mnt", "--allow-other", "--cache-bytes", "16M")
    try:
        want = (models["org/res-f32"] / "model.safetensors").read_bytes()
        blob = blob_of(m.root, "org/res-f32", "model.safetensors")
        fd = os.open(blob, os.O_RDONLY)
        try:
            assert pread_dropped(fd, 4096, 100) == want[100:4196]
            os.chmod(mfs.store, 0)
            try:
                time.sleep(1.5)
                r = bounded(lambda: pread_dropped(fd, 4096, 5 * MiB))
                assert isinstance(r, OSError) and r.errno == errno.EIO, r
                r = bounded(lambda: os.listdir(m.root))
                assert isinstance(r, OSError) and r.errno == errno.EIO, r
                r = bounded(lambda: os.open(repo_dir(m.root, "org/res-bf16") / "refs" / "main",
                                            os.O_RDONLY))
                assert isinstance(r, OSError) and r.errno in GONE_ERRNOS, r
                assert m.proc.poll() is None, m.log()
                assert "Permission denied" in m.log(), m.log()
            finally:
                os.chmod(mfs.store, 0o700)
            time.sleep(1.5)
            # readable again: served again, exact
            assert bounded(lambda: pread_dropped(fd, MiB, 5 * MiB)) == want[5 * MiB:6 * MiB]
            assert fixtures.sha256_file(blob) == fixtures.sha256_file(
                models["org/res-f32"] / "model.safetensors")
        finally:
            os.close(fd)
        rc = m.stop()
        assert rc == 0, f"daemon exit {rc}:\n{m.log()}"
    finally:
        m.stop()
        assert not fuse_mounted(m.mnt)


# ---------------------------------------------------------------- disk full

@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs (root only), always unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(d)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield d
    finally:
        r = subprocess.run(["umount", str(d)], capture_output=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def test_ingest_disk_full(small_disk, model_path, mounted):
    mfs = Modelfs(small_disk / "store", binary=MODELFS_FAST)
    small = model_path("wordllama")          # ~15 MB stored
    big = model_path("minilm-f32")           # ~75 MB stored: does not fit
    mfs.ingest(small, "org/small")
    m = mounted(mfs)
    free_before = shutil.disk_usage(small_disk).free
    res = mfs.run("ingest", str(big), "--repo", "org/big", timeout=300)
    assert res.rc != 0, f"ingest into a full disk succeeded?\n{res!r}"
    assert "No space left on device" in res.err or "disk full" in res.err.lower(), res
    # the failed transaction's pack bytes were given back (its pack removed or
    # truncated to what committed transactions wrote)
    assert shutil.disk_usage(small_disk).free >= free_before - 2 * MiB
    # nothing of it is visible, the store opens and verifies clean
    listing = mfs.ok("ls").out
    assert "org/small" in listing and "org/big" not in listing, listing
    mfs.verify()
    time.sleep(1.2)  # past the mount's refresh interval
    assert sorted(os.listdir(m.root)) == ["models--org--small"]
    assert not repo_dir(m.root, "org/big").exists()
    # the mount kept serving what was there
    snap = m.snapshot("org/small")
    assert fixtures.tree_sha256(snap) == fixtures.tree_sha256(small)
    assert m.proc.poll() is None
    # and the store still works on the full disk: gc runs, reads still exact
    mfs.ok("gc")
    mfs.verify()
    assert m.stop() == 0, m.log()
