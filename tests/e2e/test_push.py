"""`modelfs push` (remote/push.h) against a real S3 server: SeaweedFS from its
PyPI wheel, started by s3_server.py on ports of its own.

What the bucket holds is read back with s3_server.py's own small client (it
shares no code with modelfs) and checked with the store library itself: the
index LATEST names is downloaded as data.mdb of an empty directory, the pack
objects as its packs/, and `modelfs verify` (every chunk decoded and hashed
to its key, so every range the index names must be in the bucket) and
`modelfs export` (sha256 of every file against the originals) run on it.

Kill -9 of a push at each of its steps (MODELFS_TEST_PUSH_STEP_MS pauses
between them) and at moments inside the uploads must leave LATEST naming a
complete index: the previous one or the new one, never a half.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

import s3_server
from conftest import MODELFS_FAST, Modelfs, assert_same_tree, repo_visible
from test_crash import make_model

SEED = int(os.environ.get("MFS_CRASH_SEED", "1"))
PUSH_KILLS = int(os.environ.get("MFS_PUSH_KILLS", "6"))  # timed kills inside uploads


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with s3_server.s3_server(tmp_path_factory.mktemp("s3")) as s:
        yield s


_prefix_n = 0


def new_prefix(name: str) -> str:
    global _prefix_n
    _prefix_n += 1
    return f"{name}-{os.getpid()}-{_prefix_n}"


def listing(srv, prefix: str) -> dict[str, int]:
    """key -> size of every object under prefix/ (ListObjectsV2, all pages)."""
    out, token = {}, None
    while True:
        q = {"list-type": "2", "prefix": prefix + "/", "max-keys": "1000"}
        if token:
            q["continuation-token"] = token
        st, _, body = srv.request("GET", srv.bucket, query=q)
        assert st == 200, body[:500]
        text = body.decode()
        for key, size in re.findall(r"<Key>(.*?)</Key>.*?<Size>(\d+)</Size>", text, re.S):
            out[key] = int(size)
        m = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>", text)
        if "<IsTruncated>true</IsTruncated>" not in text or not m:
            return out
        token = m.group(1)


def packs_of(lst: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) + 7:]: v for k, v in lst.items() if k.startswith(prefix + "/packs/")}


def push(m: Modelfs, srv, prefix: str, *extra, env=None):
    res = m.run("push", "--remote", f"s3://{srv.bucket}/{prefix}", "--json", *extra,
                env=srv.env(base=m.env(), **(env or {})))
    return res


def push_ok(m: Modelfs, srv, prefix: str) -> dict:
    res = push(m, srv, prefix)
    assert res.rc == 0, f"push failed:\n{res!r}"
    return json.loads(res.out)


def assert_bytes_up(st: dict, planned: int):
    """bytes_up is exactly what was planned, plus for each object sent in
    parts the CompleteMultipartUpload XML (under 100 bytes a part)."""
    extra = st["bytes_up"] - planned
    if st.get("multipart", 0) == 0:
        assert extra == 0, st
    else:
        parts = -(-st["pack_bytes_uploaded"] // st["part_size"]) + st["multipart"]
        assert 0 < extra < 100 * parts, (extra, st)


def local_packs(m: Modelfs) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (m.store / "packs").glob("*.pack")}


def materialize(srv, prefix: str, dest: Path) -> dict | None:
    """The store the bucket holds under prefix, as a directory: LATEST's index
    as data.mdb (checked against its size and sha256), every pack object in
    packs/.  None when there is no LATEST."""
    import hashlib
    try:
        latest = json.loads(srv.get_object(f"{prefix}/LATEST"))
    except s3_server.S3Error as e:
        assert e.status == 404, e
        return None
    dest.mkdir(parents=True)
    (dest / "packs").mkdir()
    index = srv.get_object(f"{prefix}/{latest['index']}")
    assert len(index) == latest["index_size"]
    assert hashlib.sha256(index).hexdigest() == latest["index_sha256"]
    (dest / "data.mdb").write_bytes(index)
    for name in packs_of(listing(srv, prefix), prefix):
        (dest / "packs" / name).write_bytes(srv.get_object(f"{prefix}/packs/{name}"))
    return latest


def check_bucket(srv, prefix: str, dest: Path, srcs: dict[str, Path], binary) -> set[str]:
    """The bucket reads exact: the store it holds verifies clean and every repo
    of srcs it shows exports sha256-exact.  Returns the repos it shows."""
    latest = materialize(srv, prefix, dest)
    if latest is None:
        return set()
    assert latest["format"] == 1 and latest["store_format"] == 2, latest
    r = Modelfs(dest, binary=binary)
    res = r.run("verify", "--quiet")
    assert res.rc == 0 and "0 damaged chunks, 0 damaged files" in res.out, \
        f"the store LATEST names does not verify:\n{res!r}"
    shown = set()
    ls = r.ls()
    for repo, src in srcs.items():
        if repo_visible(ls, repo):
            out = dest.parent / (dest.name + "-export") / repo.replace("/", "_")
            r.export(repo, out)
            assert_same_tree(src, out)
            shown.add(repo)
    return shown


# ---------------------------------------------------------------- pushing


def test_push_lists_verifies_and_exports(srv, mfs, minilm_f32, tmp_path):
    mfs.ingest(minilm_f32, "org/minilm")
    prefix = new_prefix("first")
    before = listing(srv, prefix)
    assert before == {}
    st = push_ok(mfs, srv, prefix)
    lst = listing(srv, prefix)
    # exactly: the packs, one index, LATEST
    packs = packs_of(lst, prefix)
    assert packs == local_packs(mfs), (packs, local_packs(mfs))
    assert st["packs"] == len(packs) and st["packs_uploaded"] == len(packs)
    assert st["pack_bytes_uploaded"] == sum(packs.values())
    idx = [k for k in lst if k.startswith(prefix + "/index/")]
    assert idx == [st["index_key"]], lst
    assert re.fullmatch(re.escape(prefix) + r"/index/\d{20}-[0-9a-f]{16}\.mdb", idx[0])
    assert lst[idx[0]] == st["index_bytes"]
    assert set(lst) == set(idx) | {f"{prefix}/LATEST"} | {f"{prefix}/packs/{p}" for p in packs}
    latest = json.loads(srv.get_object(f"{prefix}/LATEST"))
    assert f"{prefix}/{latest['index']}" == st["index_key"]
    assert latest["generation"] == st["generation"] and latest["packs"] == len(packs)
    # what went up is what was planned, and nothing else: packs + index + LATEST
    # (+ the XML completing each object sent in parts: a pack over 64 MiB)
    assert_bytes_up(st, st["pack_bytes_uploaded"] + st["index_bytes"] + lst[
        f"{prefix}/LATEST"])
    print(f"\npush: {st['bytes_up'] / 1e6:.1f} MB in {st['seconds']:.2f} s = "
          f"{st['mb_per_s']:.0f} MB/s")
    shown = check_bucket(srv, prefix, tmp_path / "remote", {"org/minilm": minilm_f32},
                         mfs.binary)
    assert shown == {"org/minilm"}


def test_push_again_uploads_nothing_then_only_what_is_new(srv, mfs, minilm_f32,
                                                          minilm_bf16, tmp_path):
    mfs.ingest(minilm_f32, "org/f32")
    prefix = new_prefix("incr")
    first = push_ok(mfs, srv, prefix)
    lst1 = listing(srv, prefix)

    again = push_ok(mfs, srv, prefix)
    assert again["up_to_date"] is True and again["packs_uploaded"] == 0, again
    assert again["bytes_up"] == 0, again
    assert listing(srv, prefix) == lst1  # not even a new index

    mfs.ingest(minilm_bf16, "org/bf16")
    local = local_packs(mfs)
    third = push_ok(mfs, srv, prefix)
    lst3 = listing(srv, prefix)
    p1, p3 = packs_of(lst1, prefix), packs_of(lst3, prefix)
    changed = {k: v for k, v in p3.items() if p1.get(k) != v}
    assert changed, "the second ingest added nothing to any pack?"
    # only the new packs and the packs that grew went up, whole up to their end
    assert third["packs_uploaded"] == len(changed), (third, changed)
    assert third["pack_bytes_uploaded"] == sum(changed.values())
    assert_bytes_up(third, third["pack_bytes_uploaded"] + third["index_bytes"] + lst3[
        f"{prefix}/LATEST"])
    assert all(p3[k] == local[k] for k in p3)
    assert third["generation"] > first["generation"]
    # the old index stays (a reader may still be fetching it); LATEST names the new
    idx = sorted(k for k in lst3 if k.startswith(prefix + "/index/"))
    assert idx == sorted([first["index_key"], third["index_key"]])
    shown = check_bucket(srv, prefix, tmp_path / "remote",
                         {"org/f32": minilm_f32, "org/bf16": minilm_bf16}, mfs.binary)
    assert shown == {"org/f32", "org/bf16"}


# ---------------------------------------------------------------- kill -9


def start_push(m: Modelfs, srv, prefix: str, step_ms: int | None):
    extra = {"MODELFS_TEST_PUSH_STEP_MS": str(step_ms)} if step_ms else {}
    env = srv.env(base=m.env(), **extra)
    return subprocess.Popen(m.argv("push", "--quiet", "--remote", f"s3://{srv.bucket}/{prefix}"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)


def kill_at_stage(m: Modelfs, srv, prefix: str, stage: str) -> list[str]:
    """Run push with a pause after each step; kill -9 it in the pause after
    the first step of @stage.  Returns the steps it reported."""
    p = start_push(m, srv, prefix, 400)
    steps = []
    try:
        while not (steps and steps[-1].startswith(stage)):
            line = p.stderr.readline().decode()
            if not line:
                break
            if "step: " in line:
                steps.append(line.split("step: ", 1)[1].strip())
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.communicate()
    return steps


def test_kill9_push_leaves_a_readable_bucket(srv, make_mfs, tmp_path):
    # The release build runs the trials (as test_crash.py's): many pushes,
    # ingests and bucket checks; the other tests here run the test build.
    m = make_mfs("store", binary=MODELFS_FAST)
    base = make_model(tmp_path / "src-base", 11, mib=24)
    m.ingest(base, "org/base")
    prefix = new_prefix("crash")
    push_ok(m, srv, prefix)
    srcs = {"org/base": base}
    rng = random.Random(SEED)
    trial = 0
    # 1. at every step: after the snapshot, the listing, a pack, the index,
    # LATEST; each run goes on from what the one before left in the bucket
    landed = set()
    for i in range(2):
        src = make_model(tmp_path / f"src-{i}", 100 + i, mib=24)
        m.ingest(src, f"org/m{i}")
        for stage in ("snapshot", "listed", "pack", "index", "latest"):
            seen = kill_at_stage(m, srv, prefix, stage)
            trial += 1
            if seen and seen[-1].startswith(stage):
                landed.add(stage)
            shown = check_bucket(srv, prefix, tmp_path / f"remote-{trial}",
                                 {**srcs, f"org/m{i}": src}, m.binary)
            assert set(srcs) <= shown, (seen, shown)
            # LATEST is the one switch: the new repo shows exactly once it is written
            wrote = bool(seen) and seen[-1].startswith("latest")
            assert (f"org/m{i}" in shown) == wrote, (seen, shown)
        srcs[f"org/m{i}"] = src
        push_ok(m, srv, prefix)
    assert landed == {"snapshot", "listed", "pack", "index", "latest"}, landed
    # 2. at random moments inside the uploads (no pauses)
    full, timed_kills = None, 0
    for i in range(PUSH_KILLS):
        src = make_model(tmp_path / f"src-t{i}", 200 + i, mib=24)
        m.ingest(src, f"org/t{i}")
        if full is None:  # how long a push of this much takes
            probe = make_mfs(f"probe{i}", binary=MODELFS_FAST)
            probe.ingest(src, "org/p")
            full = push_ok(probe, srv, new_prefix("probe"))["seconds"] + 0.15
        delay = full * (i + rng.random()) / PUSH_KILLS
        p = start_push(m, srv, prefix, None)
        time.sleep(delay)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
            timed_kills += 1
        _, err = p.communicate()
        assert killed or p.returncode == 0, err.decode()
        trial += 1
        shown = check_bucket(srv, prefix, tmp_path / f"remote-{trial}",
                             {**srcs, f"org/t{i}": src}, m.binary)
        assert set(srcs) <= shown, shown
        srcs[f"org/t{i}"] = src
        push_ok(m, srv, prefix)
        # keep the checks cheap: only the base and the last repo stay
        for old in [r for r in srcs if r not in ("org/base", f"org/t{i}")]:
            m.ok("rm", old)
            del srcs[old]
    shown = check_bucket(srv, prefix, tmp_path / "remote-final", srcs, m.binary)
    assert shown == set(srcs)
    print(f"\npush kill -9: {trial} trials, {timed_kills} of {PUSH_KILLS} timed ones "
          f"killed it before it ended")


# ---------------------------------------------------------------- errors


def assert_unchanged(srv, prefix, before):
    assert listing(srv, prefix) == before


def test_push_errors_are_clear_and_change_nothing(srv, make_mfs, tmp_path):
    a = make_mfs("a")
    a.ingest(make_model(tmp_path / "src-a", 1, mib=4), "org/a")
    prefix = new_prefix("err")

    # missing bucket
    res = a.run("push", "--remote", "s3://no-such-bucket-mfs/x", env=srv.env(base=a.env()))
    assert res.rc == 1 and "no-such-bucket-mfs" in res.err and "does not exist" in res.err, res
    # wrong secret, unknown access key
    res = push(a, srv, prefix, env={"AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789"})
    assert res.rc == 1 and "AWS_SECRET_ACCESS_KEY" in res.err, res
    res = push(a, srv, prefix, env={"AWS_ACCESS_KEY_ID": "nosuchkey"})
    assert res.rc == 1 and "AWS_ACCESS_KEY_ID" in res.err, res
    # a read-only key: refused at the first write, LATEST never written
    res = push(a, srv, prefix, env={"AWS_ACCESS_KEY_ID": s3_server.RO_ACCESS_KEY,
                                    "AWS_SECRET_ACCESS_KEY": s3_server.RO_SECRET_KEY})
    assert res.rc == 1 and "denied" in res.err.lower(), res
    # nothing reachable there
    port = s3_server.free_port_unused()
    res = push(a, srv, prefix, env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                                    "AWS_MAX_ATTEMPTS": "2"})
    assert res.rc == 1 and "AWS_ENDPOINT_URL" in res.err, res
    assert f"{prefix}/LATEST" not in listing(srv, prefix)
    # no keys at all
    res = a.run("push", "--remote", f"s3://{srv.bucket}/{prefix}",
                env={k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")} |
                {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    assert res.rc != 0 and "AWS_ACCESS_KEY_ID" in res.err, res
    # usage
    res = a.run("push")
    assert res.rc == 2 and "--remote" in res.err
    res = a.run("push", "--remote", "http://x/y")
    assert res.rc == 2 and "s3://" in res.err

    # a LATEST from a newer format: refused before anything is uploaded
    p2 = new_prefix("newer")
    srv.put_object(f"{p2}/LATEST", json.dumps({"format": 9, "store_format": 2}).encode())
    before = listing(srv, p2)
    res = push(a, srv, p2)
    assert res.rc == 1 and "newer modelfs" in res.err and "LATEST" in res.err, res
    assert_unchanged(srv, p2, before)
    # an index of a newer store format
    srv.put_object(f"{p2}/LATEST", json.dumps({"format": 1, "store_format": 7}).encode())
    before = listing(srv, p2)
    res = push(a, srv, p2)
    assert res.rc == 1 and "store format 7" in res.err, res
    assert_unchanged(srv, p2, before)
    # something that is not a modelfs LATEST
    srv.put_object(f"{p2}/LATEST", b"<html>hello</html>")
    before = listing(srv, p2)
    res = push(a, srv, p2)
    assert res.rc == 1 and "not a modelfs LATEST" in res.err, res
    assert_unchanged(srv, p2, before)

    # another store pushing into a prefix that holds a's packs: refused, a's
    # index still reads exact
    a_src = tmp_path / "src-a"
    push_ok(a, srv, prefix)
    b = make_mfs("b")
    b.ingest(make_model(tmp_path / "src-b", 2, mib=4), "org/b")
    b.ingest(make_model(tmp_path / "src-b2", 3, mib=4), "org/b2")  # a newer generation
    before = listing(srv, prefix)
    res = push(b, srv, prefix)
    assert res.rc == 1 and "another store" in res.err, res
    assert_unchanged(srv, prefix, before)
    shown = check_bucket(srv, prefix, tmp_path / "remote-a", {"org/a": a_src}, a.binary)
    assert shown == {"org/a"}


# ---------------------------------------------------------------- multipart


PART = 5 << 20  # S3's smallest part


def multipart_uploads(srv, prefix: str) -> list[bytes]:
    st, _, body = srv.request("GET", srv.bucket, query={"uploads": "", "prefix": prefix + "/"})
    assert st == 200, body
    return re.findall(rb"<UploadId>(.*?)</UploadId>", body)


def test_push_in_parts_reads_exact(srv, make_mfs, tmp_path):
    m = make_mfs("store", binary=MODELFS_FAST)
    src = make_model(tmp_path / "src", 21, mib=24)
    m.ingest(src, "org/big")
    big = max(local_packs(m).values())
    assert big > 3 * PART, local_packs(m)
    # the same store, once in one PUT per object, once in 5 MiB parts
    single = push_ok(m, srv, new_prefix("single"))
    assert single["multipart"] == 0, single
    prefix = new_prefix("parts")
    res = push(m, srv, prefix, env={"MODELFS_PUSH_PART_SIZE": "5M"})
    assert res.rc == 0, res
    st = json.loads(res.out)
    assert st["multipart"] >= 1 and st["part_size"] == PART, st
    assert packs_of(listing(srv, prefix), prefix) == local_packs(m)
    assert multipart_uploads(srv, prefix) == []  # every upload completed
    # what went up is the same bytes as one PUT each, plus the XML that
    # completes each upload (under 100 bytes a part)
    parts = -(-big // PART)
    extra = st["bytes_up"] - single["bytes_up"]
    assert 0 < extra < 100 * (parts + 1) * st["multipart"], (st, single)
    print(f"\npush of {st['pack_bytes'] / 1e6:.1f} MB: one PUT per object "
          f"{single['mb_per_s']:.0f} MB/s, {PART >> 20} MiB parts {st['mb_per_s']:.0f} MB/s")
    node = Modelfs(tmp_path / "node", binary=m.binary)
    res = node.run("export", "--remote", f"s3://{srv.bucket}/{prefix}", "org/big",
                   tmp_path / "out", env=srv.env(base=node.env()))
    assert res.rc == 0, res
    assert_same_tree(src, tmp_path / "out")
    # a part size S3 refuses
    res = push(m, srv, prefix, "--part-size", "1M")
    assert res.rc == 2 and "5M" in res.err, res


def test_kill9_push_inside_a_multipart_upload(srv, make_mfs, tmp_path):
    m = make_mfs("store", binary=MODELFS_FAST)
    base = make_model(tmp_path / "src-base", 31, mib=2)
    m.ingest(base, "org/base")
    prefix = new_prefix("mpkill")
    push_ok(m, srv, prefix)
    before = listing(srv, prefix)
    src = make_model(tmp_path / "src", 32, mib=24)
    m.ingest(src, "org/big")
    env = srv.env(base=m.env(), MODELFS_TEST_PUSH_STEP_MS="400",
                  MODELFS_PUSH_PART_SIZE="5M")
    p = subprocess.Popen(m.argv("push", "--quiet", "--remote", f"s3://{srv.bucket}/{prefix}"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    steps = []
    try:
        while not (steps and steps[-1].startswith("part") and len(steps) >= 3):
            line = p.stderr.readline().decode()
            if not line:
                break
            if "step: " in line:
                steps.append(line.split("step: ", 1)[1].strip())
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.communicate()
    assert steps and steps[-1].startswith("part") and " part " in steps[-1], steps
    # the object in parts never appeared; LATEST and what it names are as before
    assert listing(srv, prefix) == before, steps
    assert multipart_uploads(srv, prefix), "the killed push left no upload in progress?"
    shown = check_bucket(srv, prefix, tmp_path / "remote", {"org/base": base}, m.binary)
    assert shown == {"org/base"}
    # pushed again, in parts, it completes
    res = push(m, srv, prefix, env={"MODELFS_PUSH_PART_SIZE": "5M"})
    assert res.rc == 0, res
    shown = check_bucket(srv, prefix, tmp_path / "remote2",
                         {"org/base": base, "org/big": src}, m.binary)
    assert shown == {"org/base", "org/big"}


def test_push_refuses_latest_when_a_reused_pack_went_away(srv, make_mfs, tmp_path):
    # What a `gc --remote` running alongside may do to a pack that a push
    # found in the bucket and reuses: delete it between the listing and
    # LATEST. The push checks the packs it did not send before writing LATEST.
    m = make_mfs("store", binary=MODELFS_FAST)
    a = make_model(tmp_path / "src-a", 41, mib=2)
    m.ingest(a, "org/a")
    m.ingest(make_model(tmp_path / "src-b", 42, mib=2), "org/b")
    prefix = new_prefix("gone")
    push_ok(m, srv, prefix)
    latest = srv.get_object(f"{prefix}/LATEST")
    m.ok("rm", "org/b")  # a new generation, the same packs: all reused
    p = start_push(m, srv, prefix, 300)
    steps = []
    try:
        while not (steps and steps[-1].startswith("index")):
            line = p.stderr.readline().decode()
            if not line:
                break
            if "step: " in line:
                steps.append(line.split("step: ", 1)[1].strip())
        assert steps and steps[-1].startswith("index"), steps
        assert not any(s.startswith("pack") for s in steps), steps
        for name in local_packs(m):
            srv.delete_object(f"{prefix}/packs/{name}")
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1 and "went away" in err.decode(), err.decode()
    assert srv.get_object(f"{prefix}/LATEST") == latest  # not written
    # the next push sends them again, and the bucket reads exact
    push_ok(m, srv, prefix)
    shown = check_bucket(srv, prefix, tmp_path / "remote", {"org/a": a}, m.binary)
    assert shown == {"org/a"}
