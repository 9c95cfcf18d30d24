"""A real `modelfs mount` for the end-to-end tests.

``Mount`` runs ``modelfs mount -f`` in the background (a subprocess), waits
for the mount to appear in /proc/mounts (with a timeout), and on ``stop()``
ALWAYS takes it down: ``fusermount3 -u``, then ``fusermount3 -uz`` (lazy),
then kills the daemon. The ``mounted`` fixture (conftest-style, imported by
test_mount.py) stops every mount it made on every exit path of a test, and
checks the daemon's log for sanitizer reports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SANITIZER_RE, Modelfs

MOUNT_TIMEOUT = float(os.environ.get("MFS_MOUNT_TIMEOUT", "60"))


def fuse_mounted(path: Path) -> bool:
    """Is path a modelfs FUSE mount now? Reads /proc/mounts: never stats the
    mount point, so a hung daemon cannot hang the check."""
    want = str(path)
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] == want and parts[2].startswith("fuse"):
                return True
    return False


def wait_for(cond, timeout: float = 15.0, what: str = "condition", poll: float = 0.05):
    """Poll cond() until it is true; fail the test after timeout seconds."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(poll)


def unmount_daemon(mnt: Path, wait: float = 10.0):
    """Take down a daemonized mount (no process of ours to reap): unmount,
    wait for it to go, lazily unmount if it did not."""
    if fuse_mounted(mnt):
        subprocess.run(["fusermount3", "-u", str(mnt)], stdin=subprocess.DEVNULL,
                       timeout=30)
    t0 = time.monotonic()
    while fuse_mounted(mnt) and time.monotonic() - t0 < wait:
        time.sleep(0.1)
    if fuse_mounted(mnt):
        subprocess.run(["fusermount3", "-uz", str(mnt)], stdin=subprocess.DEVNULL,
                       timeout=30)


class Mount:
    """One `modelfs mount -f` of mfs.store at mnt."""

    def __init__(self, mfs: Modelfs, mnt: Path, *flags: str):
        self.mfs = mfs
        self.mnt = Path(mnt)
        self.flags = [str(f) for f in flags]
        self.log_path = self.mnt.parent / (self.mnt.name + ".log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = MOUNT_TIMEOUT) -> "Mount":
        self.mnt.mkdir(parents=True, exist_ok=True)
        argv = self.mfs.argv("mount", "-f", *self.flags, str(self.mnt))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self.mfs.env())
        t0 = time.monotonic()
        while not fuse_mounted(self.mnt):
            rc = self.proc.poll()
            if rc is not None:
                self.stop()
                pytest.fail(f"modelfs mount exited with {rc} before mounting:\n"
                            f"{self.log()}", pytrace=False)
            if time.monotonic() - t0 > timeout:
                self.stop()
                pytest.fail(f"mount did not appear within {timeout}s:\n{self.log()}",
                            pytrace=False)
            time.sleep(0.05)
        # The daemon writes its "serving ..." line just after the mount shows
        # in /proc/mounts: wait for it (bounded) so tests that read the log
        # see it.  A log level above info never writes it: after 5 s, go on.
        t1 = time.monotonic()
        while "serving " not in self.log() and time.monotonic() - t1 < 5:
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    @property
    def root(self) -> Path:
        return self.mnt

    def repo_dir(self, repo: str) -> Path:
        return self.mnt / ("models--" + repo.replace("/", "--"))

    def snapshot(self, repo: str) -> Path:
        rd = self.repo_dir(repo)
        commit = (rd / "refs" / "main").read_text()
        return rd / "snapshots" / commit

    def stop(self) -> int | None:
        """Unmount and reap the daemon, whatever state it is in. Returns its
        exit code (None when it had to be killed)."""
        if self.proc is None:
            return None
        rc = None
        if fuse_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", str(self.mnt)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if fuse_mounted(self.mnt):
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        if fuse_mounted(self.mnt):  # the daemon is gone: only a lazy unmount is left
            subprocess.run(["umount", "-l", str(self.mnt)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        self._log.close()
        self.proc = None
        return rc


@pytest.fixture
def mounted(tmp_path):
    """mounted(mfs, *flags) -> a started Mount of mfs's store under tmp_path.
    Every mount made in the test is unmounted at teardown, pass or fail; a
    sanitizer report or a non-zero exit of the daemon fails the test."""
    mounts: list[Mount] = []

    def make(mfs: Modelfs, *flags: str, name: str | None = None) -> Mount:
        m = Mount(mfs, tmp_path / (name or f"mnt{len(mounts)}"), *flags)
        mounts.append(m)
        return m.start()

    try:
        yield make
    finally:
        problems = []
        for m in mounts:
            was_running = m.proc is not None
            rc = m.stop()
            log = m.log()
            if SANITIZER_RE.search(log):
                problems.append(f"sanitizer report from the mount daemon:\n{log}")
            elif was_running and rc not in (0, None):
                problems.append(f"mount daemon exited with {rc}:\n{log}")
            assert not fuse_mounted(m.mnt), f"{m.mnt} is still mounted"
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)
