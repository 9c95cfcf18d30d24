"""A pushed store read on another "node": `modelfs export --store EMPTY_DIR
--remote s3://...` fetches LATEST and the index into the empty directory and
every payload through the chunk cache (remote/remote.h; index/pack.h's
payload source), against a real S3 server (SeaweedFS, s3_server.py).  Every
file is compared by sha256 with the original; the cache's bound holds; a
bucket with nothing pushed, a directory holding a local store, and an
altered pack object are clear errors.
"""

from __future__ import annotations

import os
import re

import pytest

import fixtures
import s3_server
from conftest import Modelfs, assert_same_tree
from test_chunkcache import du


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with s3_server.s3_server(tmp_path_factory.mktemp("s3")) as s:
        yield s


@pytest.fixture(scope="module")
def pushed(srv, tmp_path_factory, minilm_f32, minilm_bf16):
    m = Modelfs(tmp_path_factory.mktemp("src") / "store")
    m.ingest(minilm_f32, "org/f32")
    m.ingest(minilm_bf16, "org/bf16")
    prefix = f"remote-{os.getpid()}"
    res = m.run("push", "--remote", f"s3://{srv.bucket}/{prefix}",
                env=srv.env(base=m.env()))
    assert res.rc == 0, res
    return m, prefix


def export(srv, node: Modelfs, prefix, repo, dest, *extra):
    return node.run("export", "--remote", f"s3://{srv.bucket}/{prefix}", *extra, repo, dest,
                    env=srv.env(base=node.env()))


def fetched(res) -> tuple[int, int]:
    m = re.search(r"remote: (\d+) chunks fetched \((\d+) bytes\), (\d+) read from the cache",
                  res.out)
    assert m, res
    return int(m.group(1)), int(m.group(3))


def test_export_through_the_remote_is_exact(srv, pushed, tmp_path, minilm_f32, minilm_bf16):
    m, prefix = pushed
    node = Modelfs(tmp_path / "node")  # does not exist yet: an empty node
    for repo, src in (("org/f32", minilm_f32), ("org/bf16", minilm_bf16)):
        res = export(srv, node, prefix, repo, tmp_path / f"out-{repo[4:]}")
        assert res.rc == 0, res
        assert_same_tree(src, tmp_path / f"out-{repo[4:]}")
        n, hits = fetched(res)
        assert n > 0, res
        print(f"\n{repo} through the remote: {res.out.splitlines()[0]}")
    assert (node.store / "data.mdb").is_file() and (node.store / "remote.json").is_file()
    assert not (node.store / "packs").exists() or not list((node.store / "packs").iterdir())
    # again: everything from the cache, nothing fetched
    res = export(srv, node, prefix, "org/f32", tmp_path / "again")
    assert res.rc == 0, res
    assert fetched(res)[0] == 0, res
    assert_same_tree(minilm_f32, tmp_path / "again")


def test_export_with_a_cache_smaller_than_the_model(srv, pushed, tmp_path, minilm_f32):
    m, prefix = pushed
    node = Modelfs(tmp_path / "node")
    bound = 16 << 20
    res = export(srv, node, prefix, "org/f32", tmp_path / "out", "--cache-size", str(bound))
    assert res.rc == 0, res
    assert_same_tree(minilm_f32, tmp_path / "out")
    assert du(node.store) <= bound


def test_remote_errors(srv, pushed, tmp_path, minilm_f32):
    src = minilm_f32
    m, prefix = pushed
    node = Modelfs(tmp_path / "node")
    res = export(srv, node, "nothing-here", "org/f32", tmp_path / "o1")
    assert res.rc == 1 and "no modelfs store" in res.err, res
    assert not (node.store / "data.mdb").exists()
    res = node.run("export", "--remote", "s3://no-such-bucket-mfs/x", "org/f32", tmp_path / "o2",
                   env=srv.env(base=node.env()))
    assert res.rc == 1 and "does not exist" in res.err, res
    # a local store's directory is not taken over
    res = export(srv, m, prefix, "org/f32", tmp_path / "o3")
    assert res.rc == 1 and "local store" in res.err, res
    # a bucket whose pack was altered: an error naming the chunk, no wrong file
    srcdir = m.store / "packs"
    name = sorted(p.name for p in srcdir.glob("*.pack"))[0]
    obj = f"{prefix}/packs/{name}"
    orig = srv.get_object(obj)
    bad = bytearray(orig)
    for off in range(4096, len(bad), 1 << 20):
        bad[off] ^= 0x5a
    try:
        srv.put_object(obj, bytes(bad))
        node2 = Modelfs(tmp_path / "node2")
        res = export(srv, node2, prefix, "org/f32", tmp_path / "o4")
        # (fs/reader.c reads payloads without a message buffer, so what export
        # says names the file and offset; the chunk cache's message naming the
        # chunk and the object is checked in test_chunkcache.py)
        assert res.rc == 1 and "damaged" in res.err, res
        # what export did write before it stopped is exact
        got, want = fixtures.tree_sha256(tmp_path / "o4"), fixtures.tree_sha256(src)
        assert all(want.get(k) == v for k, v in got.items()), "a file was written wrong"
        assert len(got) < len(want)
    finally:
        srv.put_object(obj, orig)
