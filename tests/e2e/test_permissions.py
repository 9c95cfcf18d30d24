"""Permissions of the mount and of the store.

- Files are 0444, directories 0555, snapshot entries symlinks (0777, relative
  targets ../../blobs/<etag>, one more ../ per directory level) as the hub
  writes them; everything is owned by the user who mounted (the daemon's
  uid/gid): checked for a root mount and for a daemon running as uid 65534.
- allow_other only when configured (flag or mount.conf), read from the mount
  options in /proc/mounts: without it the kernel keeps other users (root
  included) out of a user's mount; with it they can read.
- The store directory ingest creates is 0700 (its files 0600), whatever the
  umask.
- Every way of writing to the mount fails with EROFS, setxattr included.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import fixtures
from conftest import MODELFS_FAST, Modelfs
from mount_fixtures import fuse_mounted, mounted  # noqa: F401  (fixture)
from test_resources import NOBODY, nobody_dir, start_as_nobody  # noqa: F401  (fixture)


def mount_options(mnt: Path) -> set[str]:
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[1] == str(mnt):
                return set(parts[3].split(","))
    raise AssertionError(f"{mnt} not in /proc/mounts")


# Walks a mount and prints (relpath, mode, uid, gid, link target) as JSON:
# run as root here, or as nobody through setpriv.
WALK = r"""
import json, os, sys
root = sys.argv[1]
out = []
for dirpath, dirs, files in os.walk(root):
    for n in [""] + dirs + files:
        p = os.path.join(dirpath, n) if n else dirpath
        if n == "" and dirpath != root:
            continue
        st = os.lstat(p)
        out.append([os.path.relpath(p, root), st.st_mode, st.st_uid, st.st_gid,
                    os.readlink(p) if os.path.islink(p) else None])
print(json.dumps(out))
"""


def walk(root: Path, as_nobody: bool = False) -> list:
    argv = [sys.executable, "-c", WALK, str(root)]
    if as_nobody:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_tree(entries: list, uid: int, gid: int):
    kinds = set()
    for rel, mode, u, g, target in entries:
        assert (u, g) == (uid, gid), f"{rel}: owned by {u}:{g}, mounted by {uid}:{gid}"
        if stat.S_ISDIR(mode):
            kinds.add("d")
            assert stat.S_IMODE(mode) == 0o555, f"{rel}: dir mode {oct(mode)}"
        elif stat.S_ISREG(mode):
            kinds.add("f")
            assert stat.S_IMODE(mode) == 0o444, f"{rel}: file mode {oct(mode)}"
        elif stat.S_ISLNK(mode):
            kinds.add("l")
            assert stat.S_IMODE(mode) == 0o777, f"{rel}: link mode {oct(mode)}"
            parts = Path(rel).parts  # models--o--n/snapshots/<commit>/<path...>
            assert parts[1] == "snapshots", rel
            depth = len(parts) - 4  # directory levels inside the snapshot
            assert target.startswith("../" * (depth + 2) + "blobs/"), (rel, target)
            assert "/" not in target[len("../" * (depth + 2) + "blobs/"):], (rel, target)
        else:
            raise AssertionError(f"{rel}: unexpected file type {oct(mode)}")
    assert kinds == {"d", "f", "l"}, kinds


def ingest_sharded(mfs: Modelfs, model_path) -> Path:
    src = model_path("minilm-sharded")  # has a subdirectory (1_Pooling/)
    mfs.ingest(src, "org/perm")
    return src


def test_root_mount_modes_owner_options(make_mfs, model_path, mounted, tmp_path):
    mfs = make_mfs("store", binary=MODELFS_FAST)
    ingest_sharded(mfs, model_path)
    m = mounted(mfs)
    check_tree(walk(m.root), os.getuid(), os.getgid())
    opts = mount_options(m.mnt)
    assert "ro" in opts and "allow_other" not in opts, opts
    assert f"user_id={os.getuid()}" in opts and f"group_id={os.getgid()}" in opts, opts
    assert m.stop() == 0

    # allow_other from mount.conf
    conf = tmp_path / "mount.conf"
    conf.write_text("allow_other = yes\n")
    m2 = mounted(mfs, "--config", str(conf), name="mnt-ao")
    assert "allow_other" in mount_options(m2.mnt)
    assert m2.stop() == 0
    # and `allow_other = no` / the flag's absence leaves it off
    conf.write_text("allow_other = no\n")
    m3 = mounted(mfs, "--config", str(conf), name="mnt-no")
    assert "allow_other" not in mount_options(m3.mnt)


def test_user_mount_owner_and_allow_other(nobody_dir, model_path):
    mfs = Modelfs(nobody_dir / "store", binary=MODELFS_FAST)
    src = ingest_sharded(mfs, model_path)
    # without allow_other: only the mounting user gets in
    m = start_as_nobody(mfs, nobody_dir / "mnt")
    try:
        opts = mount_options(m.mnt)
        assert "allow_other" not in opts and f"user_id={NOBODY}" in opts, opts
        with pytest.raises(PermissionError):
            os.listdir(m.root)
        check_tree(walk(m.root, as_nobody=True), NOBODY, NOBODY)
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        rd = m.root / "models--org--perm"
        r = subprocess.run(as_nobody + ["cat", str(rd / "refs" / "main")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(as_nobody + ["sha256sum",
                                        str(rd / "snapshots" / r.stdout / "config.json")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[0] == fixtures.sha256_file(src / "config.json")
        assert m.stop() == 0, m.log()
    finally:
        m.stop()
    # with allow_other: root reads it too, and sees it owned by the mounting user
    m = start_as_nobody(mfs, nobody_dir / "mnt-ao", "--allow-other")
    try:
        assert "allow_other" in mount_options(m.mnt)
        check_tree(walk(m.root), NOBODY, NOBODY)
        snap = m.snapshot("org/perm")
        assert fixtures.tree_sha256(snap) == fixtures.tree_sha256(src)
        assert m.stop() == 0, m.log()
    finally:
        m.stop()
        assert not fuse_mounted(m.mnt)


def test_store_dir_created_0700(tmp_path, model_path):
    store = tmp_path / "deep" / "er" / "store"
    mfs = Modelfs(store, binary=MODELFS_FAST)
    # whatever the umask: run ingest under umask 000
    argv = mfs.argv("ingest", str(model_path("wordllama")), "--repo", "org/u")
    r = subprocess.run(["sh", "-c", 'umask 000; exec "$@"', "sh"] + argv, env=mfs.env(),
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(store.stat().st_mode) == 0o700, oct(store.stat().st_mode)
    for f in store.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f"{f}: {oct(f.stat().st_mode)}"
    assert store.stat().st_uid == os.getuid()


def test_every_write_is_erofs(make_mfs, model_path, mounted):
    mfs = make_mfs("store", binary=MODELFS_FAST)
    ingest_sharded(mfs, model_path)
    m = mounted(mfs)
    rd = m.root / "models--org--perm"
    snap = m.snapshot("org/perm")
    blob = rd / "blobs" / os.path.basename(os.readlink(snap / "config.json"))
    ref = rd / "refs" / "main"
    attempts = {
        "open O_WRONLY": lambda: os.open(blob, os.O_WRONLY),
        "open O_RDWR": lambda: os.open(blob, os.O_RDWR),
        "open O_APPEND": lambda: os.open(blob, os.O_WRONLY | os.O_APPEND),
        "open O_TRUNC": lambda: os.open(ref, os.O_WRONLY | os.O_TRUNC),
        "create in repo": lambda: os.open(rd / "new", os.O_WRONLY | os.O_CREAT, 0o644),
        "create in root": lambda: os.open(m.root / "new", os.O_WRONLY | os.O_CREAT, 0o644),
        "create exclusive": lambda: os.open(rd / "blobs" / "x",
                                            os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644),
        "truncate": lambda: os.truncate(blob, 0),
        "truncate ref": lambda: os.truncate(ref, 1),
        "chmod file": lambda: os.chmod(blob, 0o644),
        "chmod dir": lambda: os.chmod(rd, 0o755),
        "lchown link": lambda: os.lchown(snap / "config.json", 1, 1),
        "chown": lambda: os.chown(blob, 1, 1),
        "utime": lambda: os.utime(blob, (0, 0)),
        "unlink blob": lambda: os.unlink(blob),
        "unlink link": lambda: os.unlink(snap / "config.json"),
        "rmdir": lambda: os.rmdir(snap / "1_Pooling"),
        "mkdir": lambda: os.mkdir(rd / "d"),
        "mkdir .locks": lambda: os.mkdir(m.root / ".locks"),
        "rename file": lambda: os.rename(ref, rd / "refs" / "other"),
        "rename dir": lambda: os.rename(rd, m.root / "models--org--other"),
        "rename onto": lambda: os.rename(blob, ref),
        "symlink": lambda: os.symlink("x", rd / "l"),
        "hard link": lambda: os.link(blob, rd / "blobs" / "hard"),
        "mknod fifo": lambda: os.mkfifo(rd / "fifo"),
        "setxattr": lambda: os.setxattr(blob, "user.x", b"1"),
        "setxattr dir": lambda: os.setxattr(rd, "user.x", b"1"),
        "removexattr": lambda: os.removexattr(blob, "user.x"),
    }
    wrong = {}
    for what, fn in attempts.items():
        try:
            fd = fn()
        except OSError as e:
            if e.errno != errno.EROFS:
                wrong[what] = f"{errno.errorcode.get(e.errno, e.errno)}: {e}"
        else:
            if isinstance(fd, int):
                os.close(fd)
            wrong[what] = "succeeded"
    assert not wrong, wrong
    # nothing changed
    assert sorted(os.listdir(rd)) == ["blobs", "refs", "snapshots"]
    assert sorted(os.listdir(m.root)) == ["models--org--perm"]
    assert stat.S_IMODE(os.stat(blob).st_mode) == 0o444
