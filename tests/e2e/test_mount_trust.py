"""The mount under a careless user (issue 16, items 6, 8, 11 and the mount
parts of 12).

- Removed files held open: each removed blob the kernel still has open keeps
  the store snapshot (an LMDB read transaction) it was looked up in, and
  every process of a store shares 1024 reader slots. Four mounts each hold
  300 removed files, looked up across 300 removals (1200 snapshots without a
  bound); with rm + gc between, another process's ingest, ls and gc still
  work, a fifth mount starts, each daemon holds at most its bound of slots,
  and every held file reads exact bytes after the freed pages were reused.
- lock.mdb deleted under a live mount: the mount notices, says what happened
  and what to do, and fails reads with EIO and lookups with ENOENT (never
  wrong bytes).
- A mount point that is already a FUSE mount is refused (no silent stack);
  a non-empty one is mounted over with one line saying what it hides.
- Boolean flags take yes/no as --help spells them (and alone mean yes);
  `--log FILE` gets a daemon's lines, among them a read's EIO with the
  SIGBUS warning for programs that map the file.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import os
import random
import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import MODELFS_FAST, Modelfs
from mount_fixtures import fuse_mounted, mounted, unmount_daemon, wait_for  # noqa: F401  (fixture)

MiB = 1 << 20
MAX_VIEWS = 32  # fs/ll.c: the store views one mount's blob entries may hold


def mounts_at(path: Path) -> int:
    """How many file systems are mounted at path now (/proc/mounts; never a stat)."""
    with open("/proc/mounts") as f:
        return sum(1 for line in f if line.split()[1:2] == [str(path)])


def reader_slots(store: Path, pid: int) -> int | None:
    """LMDB reader slots process pid holds with a transaction open (`mdb_stat -r`;
    a free slot shows txnid '-'). None when mdb_stat is not installed."""
    exe = shutil.which("mdb_stat")
    if not exe:
        return None
    r = subprocess.run([exe, "-r", str(store)], capture_output=True, text=True, timeout=30)
    # mdb_stat 0.9.24 exits 1 after printing the table: judge by its output
    assert "Reader Table Status" in r.stdout, f"mdb_stat -r failed: {r.stderr}"
    return sum(1 for line in r.stdout.splitlines()
               if len(line.split()) == 3 and line.split()[0] == str(pid)
               and line.split()[2] != "-")


def small_repo(cache: Path, i: int, prefix: str) -> tuple[str, str, bytes]:
    """models--org--<prefix><i> in an HF cache at cache: one 8 KiB file of its
    own (so gc frees its chunk). Returns (repo id, etag, bytes)."""
    data = random.Random(f"{prefix}{i}").randbytes(8192) + f"{prefix}{i}\n".encode()
    etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    commit = hashlib.sha1(f"commit {prefix}{i}".encode()).hexdigest()
    rd = cache / f"models--org--{prefix}{i:03d}"
    (rd / "blobs").mkdir(parents=True)
    (rd / "blobs" / etag).write_bytes(data)
    (rd / "snapshots" / commit).mkdir(parents=True)
    os.symlink(f"../../blobs/{etag}", rd / "snapshots" / commit / "w.bin")
    (rd / "refs").mkdir()
    (rd / "refs" / "main").write_text(commit)
    return f"org/{prefix}{i:03d}", etag, data


def blob_path(root: Path, repo: str, etag: str) -> Path:
    return root / ("models--" + repo.replace("/", "--")) / "blobs" / etag


def open_when_visible(path: Path, timeout: float = 10.0) -> int:
    """Open a file of a repo just ingested: a root lookup sees a new store
    generation at most 50 ms after the last check (fs/layout.c)."""
    t0 = time.monotonic()
    while True:
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.02)


def pread_dropped(fd: int, n: int, off: int = 0) -> bytes:
    """pread after dropping the file's page cache: the bytes come from the daemon."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return os.pread(fd, n, off)


# ---------------------------------------------------------------- item 6

# N_MOUNTS * (N_SHARED + N_COPIED) = 1200 snapshots without a bound, over the
# store's 1024 reader slots; more mounts and fewer files than 4 x 300 because
# each file costs an rm (and each copied one an ingest), each mount nothing
N_MOUNTS = 8
N_SHARED = 100   # in the store before the mounts: an old snapshot has them all
N_COPIED = 50    # each ingested just before it is opened: only its own snapshot has it
GAP = 0.06       # > the 50 ms between a root lookup's checks of the store


def test_removed_files_held_open_keep_the_store_usable(make_mfs, mounted, tmp_path):
    """N_MOUNTS mounts each hold N_SHARED + N_COPIED removed files, every one
    looked up after another removal (so without a bound each pins a snapshot
    of its own: 1200 reader slots of the 1024 the store has). Other
    processes keep working, each daemon holds at most its bound, and every
    held file reads exact bytes once the pages it came from were reused."""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    cache = tmp_path / "hf-cache"
    shared = [small_repo(cache, i, "r") for i in range(N_SHARED)]
    mfs.ingest(cache, None, "--quiet")
    later = tmp_path / "hf-later"
    copied = [small_repo(later, i, "s") for i in range(N_COPIED)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = N_MOUNTS * (N_SHARED + N_COPIED) + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"needs {need} open files (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    mounts = [mounted(mfs, "--cache-bytes", "8M", "--threads", "2", "--prefetch", "0")
              for _ in range(N_MOUNTS)]
    held: list[tuple[int, bytes]] = []
    # the mounts' lookups run side by side, as from processes of their own;
    # gc does not wait for old readers to let go of retired packs (the
    # mounts hold them open on purpose: a later gc removes them)
    pool = concurrent.futures.ThreadPoolExecutor(N_MOUNTS)

    def gc():
        mfs.ok("gc", "--reader-wait", "0")

    def open_on_every_mount(repo, etag, data, i, opener):
        def one(m):
            fd = opener(blob_path(m.root, repo, etag))
            if i % 2:  # its file open in the daemon, or not yet
                assert os.pread(fd, 64, 0) == data[:64]
            return fd
        for fd in pool.map(one, mounts):
            held.append((fd, data))

    try:
        last_change = 0.0

        def after_gap():
            # the next lookups see the last removal: a snapshot of their own
            time.sleep(max(0.0, last_change + GAP - time.monotonic()))

        for i, (repo, etag, data) in enumerate(shared):
            after_gap()
            open_on_every_mount(repo, etag, data, i, lambda p: os.open(p, os.O_RDONLY))
            mfs.ok("rm", repo)
            last_change = time.monotonic()
            if i % 25 == 24:
                gc()
        for i, (repo, etag, data) in enumerate(copied):
            # seen by a lookup only after the last removal: a snapshot of its own
            mfs.ingest(later / f"models--{repo.replace('/', '--')}", None, "--quiet")
            open_on_every_mount(repo, etag, data, i, open_when_visible)
            mfs.ok("rm", repo)
            if i % 12 == 11:
                gc()
        gc()

        # another process ingests (reusing the pages gc freed) and lists
        src = tmp_path / "after"
        src.mkdir()
        after = random.Random(6).randbytes(3 * MiB)
        (src / "after.bin").write_bytes(after)
        mfs.ingest(src, "org/after", "--quiet")
        listing = mfs.ls()
        assert "org/after" in listing, listing
        assert "org/r" not in listing and "org/s" not in listing, listing
        # each daemon lets go of the snapshots beyond its bound (the watcher)
        for m in mounts:
            if reader_slots(mfs.store, m.proc.pid) is None:
                break
            wait_for(lambda: reader_slots(mfs.store, m.proc.pid) <= MAX_VIEWS + 4,
                     timeout=60, what=f"the reader slots of {m.mnt} to come down "
                                      f"to {MAX_VIEWS} + 4:\n{m.log()}")
        gc()
        mfs.ingest(tmp_path / "after", "org/after2", "--quiet")
        # a fifth mount starts and serves
        m5 = mounted(mfs, "--cache-bytes", "8M")
        snap = m5.snapshot("org/after")
        assert (snap / "after.bin").read_bytes() == after
        # every held file reads exact bytes, from the daemon
        bad = [n for n, (fd, data) in enumerate(held) if pread_dropped(fd, len(data) + 1) != data]
        assert not bad, f"{len(bad)} held files read wrong bytes (first: #{bad[0]})"
        # and at least some of them through the spill file
        log = mounts[0].log()
        assert "copied to the spill file" in log, log
    finally:
        pool.shutdown()
        for fd, _ in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------- item 8

def test_lock_file_deleted_under_a_live_mount(mfs, mounted, tmp_path):
    """lock.mdb deleted, then another process opens the store (a fresh lock
    file, in which this mount's readers are unknown) and writes: the mount
    says what happened and what to do, reads fail with EIO and lookups with
    ENOENT, never wrong bytes; it still unmounts cleanly."""
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(8).randbytes(3 * MiB)
    (src / "w.bin").write_bytes(data)
    mfs.ingest(src, "org/lock", "--quiet")
    m = mounted(mfs)
    path = m.snapshot("org/lock") / "w.bin"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, MiB, 0) == data[:MiB]
        (mfs.store / "lock.mdb").unlink()
        other = tmp_path / "other"
        other.mkdir()
        (other / "o.bin").write_bytes(random.Random(9).randbytes(2 * MiB))
        mfs.ingest(other, "org/other", "--quiet")  # a fresh lock.mdb
        mfs.ok("rm", "org/lock")
        mfs.ok("gc")
        mfs.ingest(src, "org/again", "--quiet")

        def noticed():
            try:
                got = pread_dropped(fd, MiB, MiB)
                assert got == data[MiB:2 * MiB], "a held file read wrong bytes"
            except OSError as e:
                assert e.errno == errno.EIO, e
            return "its lock file lock.mdb was" in m.log()
        wait_for(noticed, timeout=15, what=f"the lock.mdb line in the log:\n{m.log()}")
        line = next(l for l in m.log().splitlines() if "lock file lock.mdb was" in l)
        assert str(mfs.store) in line and "unmount, and mount again" in line, line
        with pytest.raises(OSError) as ei:
            pread_dropped(fd, 4096, 0)
        assert ei.value.errno == errno.EIO
        with pytest.raises(FileNotFoundError):
            os.stat(m.root / "models--org--other")
    finally:
        os.close(fd)
    assert m.stop() == 0, m.log()


# ---------------------------------------------------------------- item 11

def test_mount_on_a_live_fuse_mount_is_refused(mfs, mounted, tmp_path):
    """A second mount on a live FUSE mount (directly, or through a link to
    it) is refused with a message; the first one keeps serving."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello\n")
    mfs.ingest(src, "org/one", "--quiet")
    m = mounted(mfs)
    link = tmp_path / "link-to-mnt"
    link.symlink_to(m.mnt)
    try:
        for target, extra in ((m.mnt, ["-f"]), (m.mnt, []), (link, [])):
            res = mfs.run("mount", *extra, str(target), timeout=30)
            assert res.rc != 0, f"a second mount on {target} was accepted:\n{res!r}"
            assert "already a FUSE mount" in res.err and "fusermount3 -u" in res.err, res
            assert str(m.mnt) in res.err, res
            assert mounts_at(m.mnt) == 1
        assert (m.snapshot("org/one") / "a.txt").read_text() == "hello\n"
    finally:
        while mounts_at(m.mnt) > 1:  # the build before: a stack to take down
            subprocess.run(["fusermount3", "-u", str(m.mnt)], timeout=30)
            time.sleep(0.2)


def test_mount_over_a_non_empty_dir_says_what_it_hides(mfs, mounted, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello\n")
    mfs.ingest(src, "org/one", "--quiet")
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "models--x--y").mkdir()
    (hub / ".locks").mkdir()
    (hub / "version.txt").write_text("1")
    m = mounted(mfs, name="hub")
    assert os.listdir(m.mnt) == ["models--org--one"]
    assert f"hides 3 entries of {hub} while mounted" in m.log(), m.log()
    assert m.stop() == 0
    assert sorted(os.listdir(hub)) == [".locks", "models--x--y", "version.txt"]
    empty = mounted(mfs, name="empty")
    assert "hides" not in empty.log(), empty.log()


# ---------------------------------------------------------------- item 12

def mount_options(path: Path) -> list[str]:
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if p[1] == str(path):
                return p[3].split(",")
    return []


def test_boolean_flags_take_yes_and_no(mfs, mounted, tmp_path):
    """`--allow-other yes`, `--foreground yes`, `--prefetch-model no`, as
    --help spells them, and the bare flags as before."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello\n")
    mfs.ingest(src, "org/one", "--quiet")
    helptext = mfs.ok("mount", "--help").out
    for flag in ("--allow-other [yes|no]", "--foreground [yes|no]",
                 "--prefetch-model [yes|no]", "--log FILE"):
        assert flag in helptext, helptext
    m = mounted(mfs, "--foreground", "yes", "--allow-other", "yes", "--prefetch-model", "no",
                name="yes")
    assert "allow_other" in mount_options(m.mnt)
    assert "config.json is first read" not in m.log(), m.log()  # prefetch_model off
    assert (m.snapshot("org/one") / "a.txt").read_text() == "hello\n"
    m = mounted(mfs, "--allow-other", "no", "--foreground=yes", name="no")
    assert "allow_other" not in mount_options(m.mnt)
    m = mounted(mfs, "--allow-other", "--prefetch-model", name="bare")
    assert "allow_other" in mount_options(m.mnt)
    assert "config.json is first read" in m.log(), m.log()
    res = mfs.run("mount", "--foreground", "maybe", str(tmp_path / "x"), timeout=30)
    assert res.rc == 2 and "--foreground takes yes or no" in res.err, res


def test_daemon_logs_to_log_file(mfs, tmp_path):
    """A daemonized mount with --log writes its start line there, and a read
    that fails with EIO says that a program mapping the file gets SIGBUS."""
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(7).randbytes(3 * MiB)  # incompressible: stored verbatim
    (src / "random.bin").write_bytes(data)
    mfs.ingest(src, "org/corrupt", "--quiet")
    from test_corruption import flip_in_store
    probe = data[MiB + 1000:MiB + 1064]  # inside the second chunk
    assert flip_in_store(mfs.store, probe), "chunk payload not found verbatim in a pack"
    mnt = tmp_path / "dmnt"
    mnt.mkdir()
    log = tmp_path / "logs" / "mount.log"
    log.parent.mkdir()
    log.write_text("an earlier line\n")
    try:
        res = mfs.run("mount", "--log", str(log), "--cache-bytes", "16M", str(mnt), timeout=60)
        assert res.rc == 0, res
        assert fuse_mounted(mnt)
        rd = mnt / "models--org--corrupt"
        path = rd / "snapshots" / (rd / "refs" / "main").read_text() / "random.bin"
        with open(path, "rb", buffering=0) as f:
            assert f.read(4096) == data[:4096]
            with pytest.raises(OSError) as ei:
                os.pread(f.fileno(), 4096, MiB + 1000)
            assert ei.value.errno == errno.EIO
        wait_for(lambda: "read error (EIO)" in log.read_text(), what="the EIO line in --log")
    finally:
        unmount_daemon(mnt)
    text = log.read_text()
    assert text.startswith("an earlier line\n"), text  # appended
    assert f"serving {mfs.store} at {mnt}" in text, text
    eio = next(l for l in text.splitlines() if "read error (EIO)" in l)
    assert "models/org/corrupt" in eio and "SIGBUS" in eio and "modelfs verify" in eio, eio
    wait_for(lambda: "stopping:" in log.read_text(), what="the stop line in --log")
