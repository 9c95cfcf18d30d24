"""`modelfs mount --store EMPTY_DIR --remote s3://...`: a store pushed to a
real S3 server (SeaweedFS, s3_server.py) mounted on a node that has nothing
of it: the index is fetched into the empty directory, payloads through the
chunk cache as reads need them.  Every file of every snapshot is read
through the mount and compared by sha256 with the original.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

import fixtures
import s3_server
from conftest import MODELFS_FAST, Modelfs
from mount_fixtures import Mount, wait_for


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
    keep serving exact, whatever the push uploads beside it (they may take
    the new index in meanwhile: files open keep reading what they opened); a
    node that mounts after the push sees the new model, exact.
    (test_running_mount_takes_in_a_newer_push: the refresh itself.)"""
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


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_running_mount_takes_in_a_newer_push(srv, tmp_path, minilm_bf16, minilm_fp16):
    """An empty node mounts with --remote-poll 1; another node ingests a new
    model and pushes: the running mount shows the new repo within a bounded
    time, every file of it exact, and a file opened before the refresh and
    read after it is exact; then a newer revision of a repo already there
    is pushed: refs/main moves to it and its snapshot reads exact."""
    src_node = Modelfs(tmp_path / "src-store", binary=MODELFS_FAST)  # not under test
    src_node.ingest(minilm_bf16, "org/bf16")
    url = f"s3://{srv.bucket}/refresh-{os.getpid()}"
    env = srv.env(base=src_node.env())
    assert src_node.run("push", "--remote", url, env=env).rc == 0
    node = RemoteNode(tmp_path / "node", srv)
    mnt = Mount(node, tmp_path / "mnt", "--remote", url, "--cache-size", "256M",
                "--remote-poll", "1").start()
    try:
        assert sorted(os.listdir(mnt.mnt)) == ["models--org--bf16"]
        old_snap = mnt.snapshot("org/bf16")
        # open before the refresh: the first 4 MiB now, the rest after it
        held = open(old_snap / "model.safetensors", "rb")
        try:
            head = held.read(4 << 20)
            src_node.ingest(minilm_fp16, "org/fp16")
            assert src_node.run("push", "--remote", url, env=env).rc == 0
            t0 = time.monotonic()
            wait_for(lambda: "models--org--fp16" in os.listdir(mnt.mnt), timeout=30,
                     what="the pushed repo on the running mount", poll=0.1)
            print(f"\nnew repo on the running mount {time.monotonic() - t0:.2f} s after "
                  f"push returned (poll 1 s)")
            assert fixtures.tree_sha256(mnt.snapshot("org/fp16")) == \
                fixtures.tree_sha256(minilm_fp16)
            rest = held.read()
        finally:
            held.close()
        want = sha256_of(minilm_bf16 / "model.safetensors")
        assert hashlib.sha256(head + rest).hexdigest() == want
        assert fixtures.tree_sha256(old_snap) == fixtures.tree_sha256(minilm_bf16)

        # a LATEST whose index fails its check, then one of a newer format:
        # each a line in the log, the mount serving the index it has
        import json
        latest_key = f"refresh-{os.getpid()}/LATEST"
        good = srv.get_object(latest_key)
        bad = json.loads(good)
        bad["generation"] += 1
        bad["index_sha256"] = "0" * 64
        srv.put_object(latest_key, json.dumps(bad).encode())
        wait_for(lambda: "is not the index LATEST names" in mnt.log(), timeout=30,
                 what="the line about a LATEST whose index fails its check")
        srv.put_object(latest_key, json.dumps(dict(bad, format=99)).encode())
        wait_for(lambda: "upgrade modelfs" in mnt.log(), timeout=30,
                 what="the line about a LATEST of a newer format")
        assert sorted(os.listdir(mnt.mnt)) == ["models--org--bf16", "models--org--fp16"]
        assert sha256_of(mnt.snapshot("org/fp16") / "config.json") == \
            sha256_of(minilm_fp16 / "config.json")
        srv.put_object(latest_key, good)
        assert mnt.log().count("is not the index LATEST names") == 1, mnt.log()

        # a newer revision of org/bf16: one file more (hard links: same bytes)
        rev2 = tmp_path / "bf16-rev2"
        shutil.copytree(minilm_bf16, rev2, copy_function=os.link)
        (rev2 / "NOTES.md").write_text("revision 2\n")
        src_node.ingest(rev2, "org/bf16")
        assert src_node.run("push", "--remote", url, env=env).rc == 0
        refs_main = mnt.repo_dir("org/bf16") / "refs" / "main"
        t0 = time.monotonic()
        wait_for(lambda: refs_main.read_text() != old_snap.name, timeout=30,
                 what="refs/main of the new revision on the running mount", poll=0.1)
        print(f"new revision on the running mount {time.monotonic() - t0:.2f} s after "
              f"push returned")
        new_snap = mnt.snapshot("org/bf16")
        assert new_snap != old_snap
        assert fixtures.tree_sha256(new_snap) == fixtures.tree_sha256(rev2)
        assert fixtures.tree_sha256(old_snap) == fixtures.tree_sha256(minilm_bf16)
        log = mnt.log()
        assert "took in the index of generation" in log, log
    finally:
        mnt.stop()
    # a restart on that DIR comes up on the newest LATEST with nothing new
    # to fetch; and a DIR whose remote.json names an older LATEST than the
    # bucket's comes up on the bucket's
    src_node.ingest(minilm_bf16, "org/bf16-again")
    assert src_node.run("push", "--remote", url, env=env).rc == 0
    mnt = Mount(node, tmp_path / "mnt", "--remote", url, "--cache-size", "256M",
                "--remote-poll", "0").start()
    try:
        assert "models--org--bf16-again" in os.listdir(mnt.mnt)
        assert fixtures.tree_sha256(mnt.snapshot("org/bf16-again")) == \
            fixtures.tree_sha256(minilm_bf16)
    finally:
        mnt.stop()
    assert '"generation"' in (node.store / "remote.json").read_text()
    assert not (node.store / "refresh").exists()


def test_object_store_killed_under_the_mount(srv, tmp_path, minilm_bf16):
    """Mount on an empty node, read part of the files (now cached), kill the
    S3 server: cached files read exact, uncached reads fail with EIO within a
    bounded time (no hang) and the log names the object and why; a mount
    started on that DIR while the server is down serves what it holds; the
    server restarted, the same reads succeed, exact.  Never a wrong byte."""
    src_node = Modelfs(tmp_path / "src-store", binary=MODELFS_FAST)  # not under test
    src_node.ingest(minilm_bf16, "org/bf16")
    url = f"s3://{srv.bucket}/kill-{os.getpid()}"
    assert src_node.run("push", "--remote", url, env=srv.env(base=src_node.env())).rc == 0
    node = RemoteNode(tmp_path / "node", srv)
    flags = ("--remote", url, "--cache-size", "256M", "--remote-poll", "1",
             "--prefetch-model", "no")
    want = fixtures.tree_sha256(minilm_bf16)
    cold = "model.safetensors"
    cached = {k: v for k, v in want.items() if k != cold}

    def read_cached(snap: Path):
        assert {k: sha256_of(snap / k) for k in cached} == cached

    def read_cold_fails(snap: Path, what: str):
        for off in (0, 20 << 20):
            t0 = time.monotonic()
            with open(snap / cold, "rb") as f:
                f.seek(off)
                with pytest.raises(OSError) as ei:
                    f.read(1 << 20)
            secs = time.monotonic() - t0
            assert ei.value.errno == errno.EIO, ei.value
            print(f"\n{what}: uncached read at {off >> 20} MiB failed with EIO "
                  f"in {secs:.2f} s")
            assert secs < 30

    try:
        mnt = Mount(node, tmp_path / "mnt", *flags).start()
        try:
            snap = mnt.snapshot("org/bf16")
            read_cached(snap)
            srv.kill()
            read_cached(snap)
            read_cold_fails(snap, "server killed")
            wait_for(lambda: "cannot take in a newer LATEST" in mnt.log(), timeout=30,
                     what="the poll's line about the unreachable server")
            log = mnt.log()
            assert f"s3://{srv.bucket}/kill-{os.getpid()}/packs/" in log, log
            assert "cannot fetch its entry" in log, log
            assert "damaged" not in log, log
        finally:
            mnt.stop()
        # a mount started while the server is down: the index DIR holds,
        # cached files from DIR/cache (no page cache of the last mount)
        mnt = Mount(node, tmp_path / "mnt", *flags).start()
        try:
            assert "opening the index of generation" in mnt.log(), mnt.log()
            snap = mnt.snapshot("org/bf16")
            read_cached(snap)
            read_cold_fails(snap, "mount started with the server down")
            srv.start()
            assert {k: sha256_of(snap / k) for k in want} == want
            wait_for(lambda: "polling " in mnt.log() and "works again" in mnt.log(),
                     timeout=30,
                     what="the poll's line that the server is back")
        finally:
            mnt.stop()
    finally:
        srv.start()  # the module's server, for the tests after this one
