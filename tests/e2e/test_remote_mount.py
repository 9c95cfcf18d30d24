"""`modelfs mount --store EMPTY_DIR --remote s3://...`: a store pushed to a
real S3 server (SeaweedFS, s3_server.py) mounted on a node that has nothing
of it: the index is fetched into the empty directory, payloads through the
chunk cache as reads need them.  Every file of every snapshot is read
through the mount and compared by sha256 with the original.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import fixtures
import s3_server
from conftest import Modelfs
from mount_fixtures import Mount


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with s3_server.s3_server(tmp_path_factory.mktemp("s3")) as s:
        yield s


class RemoteNode(Modelfs):
    """A Modelfs whose commands see the server's endpoint and keys."""

    def __init__(self, store: Path, srv):
        super().__init__(store)
        self.srv = srv

    def env(self, extra=None):
        return self.srv.env(base=super().env(extra))


def snapshot_files(mnt: Path, repo: str) -> Path:
    snaps = mnt / f"models--{repo.replace('/', '--')}" / "snapshots"
    (snap,) = list(snaps.iterdir())
    return snap


def test_mount_remote_on_an_empty_node_reads_exact(srv, tmp_path, minilm_f32, minilm_bf16):
    m = Modelfs(tmp_path / "src-store")
    m.ingest(minilm_f32, "org/f32")
    m.ingest(minilm_bf16, "org/bf16")
    url = f"s3://{srv.bucket}/mnt-{os.getpid()}"
    res = m.run("push", "--remote", url, env=srv.env(base=m.env()))
    assert res.rc == 0, res

    node = RemoteNode(tmp_path / "node", srv)  # nothing there yet
    mnt = Mount(node, tmp_path / "mnt", "--remote", url, "--cache-size", "64M").start()
    try:
        for repo, src in (("org/f32", minilm_f32), ("org/bf16", minilm_bf16)):
            snap = snapshot_files(mnt.mnt, repo)
            t0 = time.monotonic()
            got = fixtures.tree_sha256(snap)
            secs = time.monotonic() - t0
            assert got == fixtures.tree_sha256(src), repo
            size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
            print(f"\n{repo}: cold sha256 of every file through the remote mount: "
                  f"{size / 1e6:.1f} MB in {secs:.2f} s = {size / secs / 1e6:.0f} MB/s")
        # a second pass: what the cache kept and what it fetched again, exact
        snap = snapshot_files(mnt.mnt, "org/f32")
        assert fixtures.tree_sha256(snap) == fixtures.tree_sha256(minilm_f32)
    finally:
        mnt.stop()
    du = sum(f.stat().st_blocks * 512 for f in (node.store / "cache").iterdir())
    assert du <= 64 << 20
    assert (node.store / "data.mdb").is_file() and not (node.store / "packs").exists() or \
        not list((node.store / "packs").iterdir())


def test_mount_remote_errors(srv, tmp_path):
    node = RemoteNode(tmp_path / "node", srv)
    (tmp_path / "mnt").mkdir()
    res = node.run("mount", "--remote", f"s3://{srv.bucket}/nothing-here", "-f",
                   tmp_path / "mnt", timeout=60)
    assert res.rc == 1 and "no modelfs store" in res.err, res
    res = node.run("mount", "--remote", f"s3://{srv.bucket}/x", "--cache-size", "lots",
                   tmp_path / "mnt", timeout=60)
    assert res.rc == 2 and "--cache-size" in res.err, res
