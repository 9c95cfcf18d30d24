"""`modelfs gc --remote` (remote/rgc.h) against a real S3 server (SeaweedFS,
s3_server.py): old indexes and the packs local gc retired leave the bucket,
LATEST's index and every pack it names stay, and an empty node reads every
file sha256-exact afterwards (`modelfs export --remote`).

The bucket's listing is read with s3_server.py's own client; which packs an
index names is read from the local store that pushed it (after a push, the
store's packs on disk are exactly the packs LATEST's index names).

Safety: objects younger than --grace stay (a push in flight uploads packs
before its index and LATEST); a dry run deletes nothing; kill -9 of gc after
each of its steps and at random moments leaves a bucket an empty node reads
exact, and the next gc finishes the job; incomplete multipart uploads older
than the grace are aborted.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time

import pytest

import s3_server
from conftest import MODELFS_FAST, Modelfs, assert_same_tree
from test_crash import make_model
from test_push import listing, local_packs, new_prefix, packs_of, push_ok

SEED = 7


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with s3_server.s3_server(tmp_path_factory.mktemp("s3")) as s:
        yield s


def rgc(m: Modelfs, srv, prefix: str, *extra, env=None):
    return m.run("gc", "--remote", f"s3://{srv.bucket}/{prefix}", *extra,
                 env=srv.env(base=m.env(), **(env or {})))


def rgc_ok(m: Modelfs, srv, prefix: str, *extra) -> dict:
    res = rgc(m, srv, prefix, "--json", *extra)
    assert res.rc == 0, f"gc --remote failed:\n{res!r}"
    return json.loads(res.out)


def indexes_of(lst: dict[str, int], prefix: str) -> set[str]:
    return {k for k in lst if k.startswith(prefix + "/index/")}


def export_exact(srv, node_dir, prefix: str, srcs: dict, binary=None):
    """An empty node (a fresh directory) exports every repo of srcs exact."""
    node = Modelfs(node_dir, **({"binary": binary} if binary else {}))
    for repo, src in srcs.items():
        out = node_dir.parent / (node_dir.name + "-out") / repo.replace("/", "_")
        res = node.run("export", "--remote", f"s3://{srv.bucket}/{prefix}", repo, out,
                       env=srv.env(base=node.env()))
        assert res.rc == 0, res
        assert_same_tree(src, out)


def churn(m: Modelfs, srv, prefix: str, tmp_path, n: int, mib: int = 4) -> Path:
    """n rounds of: ingest a new model, remove the previous one, local gc
    (which repacks the dead pack away), push.  Leaves n-1 dead indexes and
    the packs only they name.  Returns the last model's source."""
    prev, src = None, None
    for i in range(n):
        src = make_model(tmp_path / f"churn-{prefix}-{i}", 300 + i, mib=mib)
        m.ingest(src, f"org/c{i}")
        if prev:
            m.ok("rm", prev)
            m.ok("gc")
        prev = f"org/c{i}"
        push_ok(m, srv, prefix)
    return src


def test_remote_gc_deletes_what_no_kept_index_names(srv, mfs, tmp_path):
    a = make_model(tmp_path / "src-a", 1, mib=6)
    b = make_model(tmp_path / "src-b", 2, mib=6)
    mfs.ingest(a, "org/a")
    prefix = new_prefix("gc")
    first = push_ok(mfs, srv, prefix)
    packs_a = set(local_packs(mfs))
    # local rm + gc repacks A's packs away; B lands in new packs
    mfs.ok("rm", "org/a")
    mfs.ok("gc")
    mfs.ingest(b, "org/b")
    second = push_ok(mfs, srv, prefix)
    packs_b = set(local_packs(mfs))
    assert packs_a and packs_b and not (packs_a & packs_b), (packs_a, packs_b)
    before = listing(srv, prefix)
    assert set(packs_of(before, prefix)) == packs_a | packs_b
    assert indexes_of(before, prefix) == {first["index_key"], second["index_key"]}

    # the defaults (keep 2, grace 1 h): both indexes kept, so every pack
    st = rgc_ok(mfs, srv, prefix)
    assert st["indexes_deleted"] == 0 and st["packs_deleted"] == 0, st
    assert {k["why"] for k in st["kept"] if "/index/" in k["key"]} == {"latest", "newest"}
    assert listing(srv, prefix) == before

    # a dry run says what it would delete, and deletes nothing
    dry = rgc_ok(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "0", "--dry-run")
    assert dry["dry_run"] is True
    assert {d["key"] for d in dry["deleted"]} == {first["index_key"]} | {
        f"{prefix}/packs/{p}" for p in packs_a}, dry
    assert listing(srv, prefix) == before
    res = rgc(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "0", "--dry-run")
    assert res.rc == 0 and "would delete" in res.out and "dry run" in res.out, res
    assert listing(srv, prefix) == before

    # keep 1, no grace: the old index and A's packs go, exactly
    st = rgc_ok(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "0")
    after = listing(srv, prefix)
    assert set(after) == {f"{prefix}/LATEST", second["index_key"]} | {
        f"{prefix}/packs/{p}" for p in packs_b}, after
    assert {k: after[k] for k in after if "/packs/" in k} == {
        f"{prefix}/packs/{p}": s for p, s in local_packs(mfs).items()}
    assert st["indexes_deleted"] == 1 and st["packs_deleted"] == len(packs_a), st
    assert st["pack_bytes_deleted"] == sum(v for k, v in packs_of(before, prefix).items()
                                           if k in packs_a)
    print(f"\nremote gc: {st['indexes_deleted']} index + {st['packs_deleted']} packs, "
          f"{(st['index_bytes_deleted'] + st['pack_bytes_deleted']) / 1e6:.1f} MB deleted "
          f"in {st['seconds']:.2f} s ({st['requests']} requests)")
    export_exact(srv, tmp_path / "node", prefix, {"org/b": b})
    # again: nothing left to do
    again = rgc_ok(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "0")
    assert again["indexes_deleted"] == 0 and again["packs_deleted"] == 0, again
    assert listing(srv, prefix) == after


def test_remote_gc_grace_keeps_what_a_push_in_flight_uploaded(srv, mfs, tmp_path):
    src = make_model(tmp_path / "src", 3, mib=2)
    mfs.ingest(src, "org/m")
    prefix = new_prefix("grace")
    push_ok(mfs, srv, prefix)
    # what a push in flight has uploaded so far: a pack and an index no LATEST
    # names yet (ids and a generation beyond the store's)
    fresh_pack = f"{prefix}/packs/00000000000fffff.pack"
    fresh_index = f"{prefix}/index/{99999:020d}-{0xabc:016x}.mdb"
    latest = json.loads(srv.get_object(f"{prefix}/LATEST"))
    srv.put_object(fresh_pack, b"MFSPACK\0" + bytes(100))
    srv.put_object(fresh_index, srv.get_object(f"{prefix}/{latest['index']}"))
    before = listing(srv, prefix)
    st = rgc_ok(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "1h")
    assert listing(srv, prefix) == before, st
    assert st["packs_young"] == 1, st
    kept = {k["key"]: k["why"] for k in st["kept"]}
    assert kept[fresh_pack] == "young" and kept[fresh_index] == "young", kept
    # past the grace, what a push that never wrote LATEST left is garbage
    st = rgc_ok(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "0")
    assert {d["key"] for d in st["deleted"]} == {fresh_pack, fresh_index}, st
    export_exact(srv, tmp_path / "node", prefix, {"org/m": src})
    # a kept index that does not read stops gc before anything goes
    srv.put_object(fresh_pack, b"MFSPACK\0" + bytes(100))
    srv.put_object(fresh_index, b"not an LMDB file")
    before = listing(srv, prefix)
    res = rgc(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "1h")
    assert res.rc == 1 and fresh_index in res.err and "nothing was deleted" in res.err, res
    assert listing(srv, prefix) == before



def test_remote_gc_keeps_an_index_that_was_newest_within_the_grace(srv, make_mfs, tmp_path):
    # A mount that looks at LATEST now and then may still read the index
    # LATEST named until a moment ago, however old that index itself is.
    # (Ages are whole seconds: a 2 s grace, pushes less than 1 s apart.)
    mfs = make_mfs("store", binary=MODELFS_FAST)
    src = make_model(tmp_path / "src", 6, mib=1)
    mfs.ingest(src, "org/m")
    prefix = new_prefix("recent")
    first = push_ok(mfs, srv, prefix)
    time.sleep(3.2)  # the first index is now older than a 2 s grace
    mfs.ingest(make_model(tmp_path / "src2", 7, mib=1), "org/n")
    second = push_ok(mfs, srv, prefix)
    st = rgc_ok(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "2")
    kept = {k["key"]: k["why"] for k in st["kept"]}
    assert kept.get(first["index_key"]) == "recent", st
    assert kept.get(second["index_key"]) == "latest", st
    assert st["indexes_deleted"] == 0, st
    time.sleep(2.2)  # superseded longer than the grace ago: it goes
    st = rgc_ok(mfs, srv, prefix, "--keep-indexes", "1", "--grace", "2")
    assert [d["key"] for d in st["deleted"]] == [first["index_key"]], st

def test_remote_gc_aborts_stale_multipart_uploads(srv, mfs, tmp_path):
    src = make_model(tmp_path / "src", 4, mib=2)
    mfs.ingest(src, "org/m")
    prefix = new_prefix("mpu")
    push_ok(mfs, srv, prefix)
    key = f"{prefix}/packs/0000000000000abc.pack"
    st, _, body = srv.request("POST", f"{srv.bucket}/{key}", query={"uploads": ""})
    assert st == 200, body
    upload_id = re.search(rb"<UploadId>(.*?)</UploadId>", body).group(1).decode()

    def uploads():
        st, _, body = srv.request("GET", srv.bucket, query={"uploads": "", "prefix": prefix + "/"})
        assert st == 200, body
        return re.findall(rb"<UploadId>(.*?)</UploadId>", body)

    assert upload_id.encode() in uploads()
    st1 = rgc_ok(mfs, srv, prefix, "--grace", "1h")
    assert st1["uploads_aborted"] == 0 and upload_id.encode() in uploads(), st1
    dry = rgc_ok(mfs, srv, prefix, "--grace", "0", "--dry-run")
    assert [a["upload_id"] for a in dry["aborted"]] == [upload_id] and upload_id.encode() in uploads()
    st2 = rgc_ok(mfs, srv, prefix, "--grace", "0")
    assert st2["uploads_aborted"] == 1 and st2["aborted"][0]["key"] == key, st2
    assert upload_id.encode() not in uploads()


def test_kill9_remote_gc_leaves_a_readable_bucket(srv, make_mfs, tmp_path):
    m = make_mfs("store", binary=MODELFS_FAST)
    prefix = new_prefix("gckill")
    last = churn(m, srv, prefix, tmp_path, 3, mib=2)
    srcs = {"org/c2": last}
    full = listing(srv, prefix)
    want = {f"{prefix}/LATEST"} | {f"{prefix}/packs/{p}" for p in local_packs(m)}
    env = srv.env(base=m.env(), MODELFS_TEST_GC_STEP_MS="300")
    argv = m.argv("gc", "--remote", f"s3://{srv.bucket}/{prefix}", "--keep-indexes", "1",
                  "--grace", "0", "--quiet")
    # 1. kill -9 in the pause after each step (planned, each deletion), one
    # more step each time; each run goes on from what the one before left
    steps_seen = set()
    for k in range(1, 8):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)
        steps = []
        try:
            while len(steps) < k:
                line = p.stderr.readline().decode()
                if not line:
                    break
                if "step: " in line:
                    steps.append(line.split("step: ", 1)[1].split()[0])
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.communicate()
        steps_seen.update(steps)
        lst = listing(srv, prefix)
        assert want <= set(lst), (steps, sorted(lst))
        export_exact(srv, tmp_path / f"node-{k}", prefix, srcs, binary=m.binary)
        if len(steps) < k:  # it ran to the end
            break
    assert {"planned", "delete-index", "delete-pack"} <= steps_seen, steps_seen
    # 2. at random moments (no pauses), each time on a bucket with new garbage:
    # a moment within one gc's run, measured by a dry run (planning is most
    # of a gc; the deletions add a request each)
    rng = random.Random(SEED)
    t0 = time.monotonic()
    prev, dur, killed = "org/c2", None, 0
    for i in range(3):
        src = make_model(tmp_path / f"timed-{i}", 400 + i, mib=2)
        m.ingest(src, f"org/t{i}")
        m.ok("rm", prev)
        m.ok("gc")
        push_ok(m, srv, prefix)
        prev, srcs = f"org/t{i}", {f"org/t{i}": src}
        want = {f"{prefix}/LATEST"} | {f"{prefix}/packs/{p}" for p in local_packs(m)}
        if dur is None:
            dur = 2 * rgc_ok(m, srv, prefix, "--keep-indexes", "1", "--grace", "0",
                             "--dry-run")["seconds"] + 0.02
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=srv.env(base=m.env()))
        time.sleep(dur * (i + rng.random()) / 3)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.communicate()
        lst = listing(srv, prefix)
        assert want <= set(lst), sorted(lst)
        export_exact(srv, tmp_path / f"node-r{i}", prefix, srcs, binary=m.binary)
    # the next gc finishes: exactly LATEST, its index and its packs remain
    st = rgc_ok(m, srv, prefix, "--keep-indexes", "1", "--grace", "0")
    lst = listing(srv, prefix)
    assert set(lst) - indexes_of(lst, prefix) == want, (st, sorted(lst))
    assert len(indexes_of(lst, prefix)) == 1
    assert len(indexes_of(full, prefix)) == 3
    print(f"\nremote gc kill -9: {len(steps_seen)} kinds of step; {killed} of 3 timed "
          f"kills within {dur:.2f} s came before gc ended ({time.monotonic() - t0:.1f} s)")


def test_remote_gc_errors_are_clear(srv, mfs, tmp_path):
    mfs.ingest(make_model(tmp_path / "src", 5, mib=1), "org/m")
    prefix = new_prefix("gcerr")
    push_ok(mfs, srv, prefix)
    before = listing(srv, prefix)
    res = mfs.run("gc", "--remote", "s3://no-such-bucket-mfs/x", env=srv.env(base=mfs.env()))
    assert res.rc == 1 and "no-such-bucket-mfs" in res.err and "does not exist" in res.err, res
    res = rgc(mfs, srv, prefix, env={"AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789"})
    assert res.rc == 1 and "AWS_SECRET_ACCESS_KEY" in res.err, res
    res = rgc(mfs, srv, prefix, env={"AWS_ACCESS_KEY_ID": "nosuchkey"})
    assert res.rc == 1 and "AWS_ACCESS_KEY_ID" in res.err, res
    # nothing pushed there
    res = rgc(mfs, srv, new_prefix("empty"))
    assert res.rc == 1 and "no LATEST" in res.err and "nothing was deleted" in res.err, res
    # a read-only key: refused at its first delete, LATEST's objects untouched
    junk = f"{prefix}/packs/0000000000ffffff.pack"
    srv.put_object(junk, b"MFSPACK\0")
    res = rgc(mfs, srv, prefix, "--grace", "0", "--keep-indexes", "1",
              env={"AWS_ACCESS_KEY_ID": s3_server.RO_ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": s3_server.RO_SECRET_KEY})
    assert res.rc == 1 and "denied" in res.err.lower() and junk in res.err, res
    assert listing(srv, prefix) == dict(before, **{junk: 8})
    srv.delete_object(junk)
    # LATEST naming an index that is not there: refused, nothing deleted
    raw = srv.get_object(f"{prefix}/LATEST")
    bad = dict(json.loads(raw), index="index/00000000000000000001-0000000000000000.mdb")
    srv.put_object(f"{prefix}/LATEST", json.dumps(bad).encode())
    res = rgc(mfs, srv, prefix, "--grace", "0")
    assert res.rc == 1 and "not in the bucket" in res.err and "nothing was deleted" in res.err
    srv.put_object(f"{prefix}/LATEST", raw)
    assert listing(srv, prefix) == before
    # usage
    for args in (["--keep-indexes", "0"], ["--grace", "soon"], ["extra"]):
        res = rgc(mfs, srv, prefix, *args)
        assert res.rc == 2, res
    res = mfs.run("gc", "--remote", "s3://b/x", "--help")
    assert res.rc == 0 and "--keep-indexes" in res.out and "--grace" in res.out
