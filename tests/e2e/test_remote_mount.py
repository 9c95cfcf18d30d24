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


def test_two_nodes_mount_one_bucket_while_a_third_pushes(srv, tmp_path, minilm_f32,
                                                         minilm_bf16):
    """A fleet: two empty nodes mount one bucket; from_pretrained through one
    of them gives the outputs of the original folder; while both read every
    file, the source node ingests another model and pushes it.  The mounts
    keep serving the index they fetched, exact, whatever the push uploads
    beside it; a node that mounts after the push sees the new model, exact.
    (A running mount picking up the newer LATEST is not built yet.)"""
    import subprocess

    import torch
    from test_mount import load_outputs

    src_node = Modelfs(tmp_path / "src-store")
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    src_node.ingest(minilm_f32, repo)
    url = f"s3://{srv.bucket}/fleet-{os.getpid()}"
    env = srv.env(base=src_node.env())
    res = src_node.run("push", "--remote", url, env=env)
    assert res.rc == 0, res
    mounts = [Mount(RemoteNode(tmp_path / f"node{i}", srv), tmp_path / f"mnt{i}",
                    "--remote", url, "--cache-size", "256M") for i in (1, 2)]
    try:
        for m in mounts:
            m.start()
        # the third node pushes a new model while the two read
        src_node.ingest(minilm_bf16, "org/bf16")
        push = subprocess.Popen(src_node.argv("push", "--remote", url), env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            want = fixtures.tree_sha256(minilm_f32)
            for m in mounts:
                assert fixtures.tree_sha256(snapshot_files(m.mnt, repo)) == want
            loaded = load_outputs(str(minilm_f32), tmp_path / "want.pt")
            through = load_outputs(repo, tmp_path / "have.pt",
                                   {"HF_HUB_CACHE": str(mounts[0].mnt), "HF_HUB_OFFLINE": "1",
                                    "TRANSFORMERS_OFFLINE": "1",
                                    "HF_HOME": str(tmp_path / "hf-home")})
            out, err = push.communicate(timeout=300)
        finally:
            if push.poll() is None:
                push.kill()
                push.communicate()
        assert push.returncode == 0, err.decode()
        assert torch.equal(loaded["ids"], through["ids"])
        assert loaded["dtype"] == through["dtype"]
        assert torch.equal(loaded["hidden"], through["hidden"])
        # after the push: the running mounts still read exact
        for m in mounts:
            assert fixtures.tree_sha256(snapshot_files(m.mnt, repo)) == want
    finally:
        for m in mounts:
            m.stop()
    late = Mount(RemoteNode(tmp_path / "node3", srv), tmp_path / "mnt3", "--remote", url,
                 "--cache-size", "256M").start()
    try:
        assert fixtures.tree_sha256(snapshot_files(late.mnt, "org/bf16")) == \
            fixtures.tree_sha256(minilm_bf16)
        assert fixtures.tree_sha256(snapshot_files(late.mnt, repo)) == \
            fixtures.tree_sha256(minilm_f32)
    finally:
        late.stop()
