"""kill -9 of the mount daemon at random moments during reads.

A loop of MFS_CRASH_TRIALS trials (default 10). Each trial mounts the store,
starts readers (random preads and sequential reads of every blob, compared
with the originals), and SIGKILLs the daemon after a random delay: while it
starts up, while readers are busy, or just after they start. Then:

  - every reader comes back (ENOTCONN or a short read; never a hang, never a
    wrong byte before or after the kill);
  - the dead mount is cleaned up with `fusermount3 -uz` and is gone from
    /proc/mounts;
  - the store opens (`modelfs ls`) and `modelfs verify` is clean;
  - the LMDB reader slots the killed daemon held are reclaimed once the store
    is opened again, even while another process keeps the store open (a
    second, bystander mount stays up through all trials, so the lock file is
    never re-initialised);
  - a fresh mount serves every file under snapshots/ and blobs/ sha256-exact.

At the end the bystander mount still serves exact bytes and unmounts cleanly.
The daemon is the release binary when MODELFS_RELEASE is set (ASan builds
make each trial's verify and full re-read slow).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import fixtures
from conftest import MODELFS_FAST
from mount_fixtures import Mount, fuse_mounted

TRIALS = int(os.environ.get("MFS_CRASH_TRIALS", "10"))
MiB = 1 << 20
MODELS = {"org/crash-f32": "minilm-f32", "org/crash-bf16": "minilm-bf16",
          "org/crash-sharded": "minilm-sharded"}
# what a read may fail with once the daemon is dead
DEAD_ERRNOS = {errno.ENOTCONN, errno.ECONNABORTED, errno.EIO, errno.ENODEV}


def repo_dir(root: Path, repo: str) -> Path:
    return root / ("models--" + repo.replace("/", "--"))


def reader_slots(store: Path) -> dict[int, int]:
    """pid -> reader slots with an open transaction, from `mdb_stat -r`
    (which only reads the table: it never clears stale slots)."""
    r = subprocess.run(["mdb_stat", "-r", str(store)], capture_output=True, text=True,
                       timeout=30)
    assert "Reader Table Status" in r.stdout, r
    out: dict[int, int] = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[2] != "-":
            out[int(parts[0])] = out.get(int(parts[0]), 0) + 1
    return out


def check_mount_exact(m: Mount, want: dict[str, dict[str, str]]):
    """sha256 of every file of every repo, under snapshots/ and blobs/."""
    for repo, files in want.items():
        rd = repo_dir(m.root, repo)
        commit = (rd / "refs" / "main").read_text()
        have = fixtures.tree_sha256(rd / "snapshots" / commit)
        assert have == files, f"{repo}: snapshot differs after a crash"
        blobs = {fixtures.sha256_file(p) for p in (rd / "blobs").iterdir()}
        assert blobs == set(files.values()), f"{repo}: blobs differ after a crash"


def stop_all(mounts: list[Mount]):
    for m in mounts:
        try:
            m.stop()
        except Exception:  # noqa: BLE001  keep stopping the others
            pass
        assert not fuse_mounted(m.mnt), f"{m.mnt} still mounted"


def test_kill9_mount_during_reads(make_mfs, model_path, tmp_path):
    mfs = make_mfs("store", binary=MODELFS_FAST)
    originals: dict[str, dict[str, bytes]] = {}
    want: dict[str, dict[str, str]] = {}
    for repo, name in MODELS.items():
        src = model_path(name)
        mfs.ingest(src, repo)
        originals[repo] = {rel: (src / rel).read_bytes() for rel in fixtures.list_files(src)}
        want[repo] = fixtures.tree_sha256(src)
    have_mdb_stat = shutil.which("mdb_stat") is not None
    seed = int(os.environ.get("MFS_TEST_SEED", "0")) or random.randrange(1 << 30)
    print(f"MFS_TEST_SEED={seed}")
    rnd = random.Random(seed)

    mounts: list[Mount] = []
    survived = 0
    try:
        bystander = Mount(mfs, tmp_path / "bystander", "--cache-bytes", "16M")
        mounts.append(bystander)
        bystander.start()
        for trial in range(TRIALS):
            victim = Mount(mfs, tmp_path / f"victim{trial}", "--cache-bytes",
                           rnd.choice(["8M", "64M"]), "--threads", str(rnd.choice([1, 4, 8])))
            mounts.append(victim)
            victim.start()
            pid = victim.proc.pid
            killed = threading.Event()
            errors: list[str] = []
            counts = [0]

            # (path, bytes) of every file: through the snapshot links and the blobs
            items = []
            for repo in MODELS:
                rd = repo_dir(victim.root, repo)
                commit = (rd / "refs" / "main").read_text()
                for rel, data in originals[repo].items():
                    p = rd / "snapshots" / commit / rel
                    items.append((p, data))
                    items.append((rd / "blobs" / os.path.basename(os.readlink(p)), data))

            def reader(tid: int):
                r = random.Random(seed * 1000 + trial * 100 + tid)
                while not killed.is_set():
                    path, data = r.choice(items)
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except OSError as e:
                        if not killed.is_set() or e.errno not in DEAD_ERRNOS | {errno.ENOENT}:
                            errors.append(f"open {path}: {e!r}")
                        return
                    try:
                        seq = r.random() < 0.3
                        off = 0
                        for _ in range(200 if seq else r.randint(5, 30)):
                            if not seq:
                                off = r.randrange(max(1, len(data)))
                            ln = r.choice([4096, MiB, MiB + 17, 3 * MiB])
                            got = os.pread(fd, ln, off)
                            if got != data[off:off + ln] and not (
                                    killed.is_set() and data[off:off + len(got)] == got):
                                errors.append(f"{path}: {ln} bytes at {off} differ")
                                return
                            counts[0] += 1
                            if seq:
                                off += len(got)
                                if not got:
                                    break
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    except OSError as e:
                        if not killed.is_set() or e.errno not in DEAD_ERRNOS:
                            errors.append(f"read {path}: {e!r}")
                        return
                    finally:
                        os.close(fd)

            threads = [threading.Thread(target=reader, args=(i,), daemon=True)
                       for i in range(rnd.choice([2, 4, 8]))]
            for t in threads:
                t.start()
            time.sleep(rnd.choice([0.0, 0.02, 0.1, 0.3, 0.7, 1.5]))
            slots_before = reader_slots(mfs.store).get(pid, 0) if have_mdb_stat else None
            killed.set()
            os.kill(pid, signal.SIGKILL)
            rc = victim.proc.wait(timeout=30)
            assert rc == -signal.SIGKILL, rc
            for t in threads:
                t.join(timeout=60)
            hung = sum(t.is_alive() for t in threads)
            # clean the dead mount up, as a person would
            r = subprocess.run(["fusermount3", "-uz", str(victim.mnt)], capture_output=True,
                               text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            assert not fuse_mounted(victim.mnt)
            assert not hung, f"trial {trial}: {hung} readers hung after kill -9"
            assert not errors, f"trial {trial}: {errors}"
            victim.stop()  # reaps the log; nothing left to unmount

            # the store opens, verifies clean, and forgets the dead daemon's readers
            assert mfs.ok("ls").rc == 0
            res = mfs.run("verify")
            assert res.rc == 0, f"trial {trial}: verify after kill -9:\n{res!r}"
            if have_mdb_stat:
                left = reader_slots(mfs.store).get(pid, 0)
                assert left == 0, (
                    f"trial {trial}: the killed daemon (pid {pid}) still holds {left} LMDB "
                    f"reader slot(s) ({slots_before} when killed) after the store was "
                    f"opened again: stale readers are never cleared while another process "
                    f"has the store open")
            # a fresh mount serves every file exact
            fresh = Mount(mfs, tmp_path / f"fresh{trial}", "--cache-bytes", "32M")
            mounts.append(fresh)
            fresh.start()
            check_mount_exact(fresh, want)
            assert fresh.stop() == 0, fresh.log()
            survived += 1
            print(f"trial {trial}: killed pid {pid} after {counts[0]} reads "
                  f"({slots_before} reader slots open): survived")
        # the bystander saw none of it
        check_mount_exact(bystander, want)
        assert bystander.stop() == 0, bystander.log()
    finally:
        stop_all(mounts)
    print(f"kill -9 of the mount: {survived}/{TRIALS} trials survived")
    assert survived == TRIALS
