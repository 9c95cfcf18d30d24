"""`modelfs upgrade`: a store written by the last format-1 release (chunk
payloads inside LMDB values) converted in place to format 2 (payloads in
pack files), crash-safely.

The store is tests/data/stores/format1.tar.zst, written by that release from
real weights (tests/data/stores/make_format1.sh regenerates it): F32 tensors
in 64 KiB chunks with two commits, a real fine-tune's xor-deltas against
them, BF16 tensors from a hub cache as quant-residuals of their int8 twin,
config and tokenizer files shared between repos, a removed and swept repo,
compacted. format1.manifest.json lists every file's sha256 as served.

Checked here:
  - this modelfs refuses the old store, naming `modelfs upgrade --store DIR`,
    and leaves data.mdb byte-identical (every command, the mount too);
  - `modelfs upgrade` converts it: every snapshot exports and mounts
    sha256-exact, verify is clean, tensors keep their codecs, the packs hold
    one well-formed entry per chunk (the layout of index/pack.h) and data.mdb
    shrinks to the index; upgrading again is a no-op that says so;
  - kill -9 at moments spread over the whole run (batches, the format switch,
    the compaction), sometimes twice in a row, then a rerun: exact again, and
    gc leaves no dead pack bytes;
  - a store in use (a process holding it the way every modelfs process and
    every LMDB program does) is refused with nothing changed;
  - bad input: no store, an empty folder, a file that is not LMDB, an LMDB
    environment that is not a store, a newer format, usage errors.

MODELFS_OLD: optional, a release binary of the format-1 commit (see
make_format1.sh); with it, an old release's real mount is refused too, and
the old release refuses the upgraded store. MFS_UPGRADE_TRIALS (default 8)
and MFS_CRASH_SEED (default 1) set the kill trials.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

import fixtures
from conftest import MODELFS, MODELFS_FAST, Modelfs, repo_visible
from mount_fixtures import fuse_mounted, mounted, unmount_daemon  # noqa: F401  (fixture)

STORES = fixtures.ROOT / "tests" / "data" / "stores"
FIXTURE = STORES / "format1.tar.zst"
MANIFEST = json.loads((STORES / "format1.manifest.json").read_text())
SEED = int(os.environ.get("MFS_CRASH_SEED", "1"))
TRIALS = int(os.environ.get("MFS_UPGRADE_TRIALS", "8"))
_old = os.environ.get("MODELFS_OLD")
MODELFS_OLD = Path(_old) if _old and Path(_old).is_file() else None
# Files that opening a store may create (LMDB's lock region, modelfs's lock
# files): not content, allowed to appear beside data.mdb when it is refused.
LOCK_FILES = {"lock.mdb", "users.lock", "ingest.lock"}
UPGRADE_HINT = re.compile(r"run `modelfs upgrade --store (?P<dir>[^`]+)`")

PACK_MAGIC = b"MFSPACK\0"
ENTRY_MAGIC = b"MFSE"
PACK_HEADER = 32
ENTRY_HEADER = 32


# ---------------------------------------------------------------- helpers

def extract(dest: Path) -> Path:
    """A fresh copy of the format-1 store at dest."""
    dest.mkdir(parents=True)
    subprocess.run(["tar", "--zstd", "-x", "-f", str(FIXTURE), "-C", str(dest)], check=True,
                   stdin=subprocess.DEVNULL)
    os.chmod(dest, 0o700)
    return dest


def old_store(tmp_path: Path, name: str = "store", binary: Path = MODELFS) -> Modelfs:
    return Modelfs(extract(tmp_path / name), binary=binary, home=tmp_path)


def content(store: Path) -> dict[str, str]:
    """relpath -> sha256 of every file in the store but the lock files."""
    out = {}
    for dirpath, _, files in os.walk(store):
        for f in files:
            p = Path(dirpath) / f
            rel = p.relative_to(store).as_posix()
            if rel not in LOCK_FILES:
                out[rel] = fixtures.sha256_file(p)
    return out


def store_format(store: Path) -> int:
    """The "format" record of the store's meta database, read with mdb_dump
    (LMDB's own tool: no modelfs code involved)."""
    r = subprocess.run(["mdb_dump", "-s", "meta", str(store)], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r
    body = r.stdout.split("HEADER=END", 1)[1].split("DATA=END", 1)[0]
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    for k, v in zip(lines[0::2], lines[1::2]):
        if bytes.fromhex(k) == b"format":
            return int.from_bytes(bytes.fromhex(v), "little")
    raise AssertionError(f"no format record in {store}:\n{r.stdout}")


def set_format(store: Path, value: int):
    """Overwrite the format record with mdb_load (a store from the future)."""
    dump = ("VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n"
            f" {b'format'.hex()}\n {value.to_bytes(8, 'little').hex()}\nDATA=END\n")
    subprocess.run(["mdb_load", "-s", "meta", str(store)], input=dump, text=True, check=True,
                   timeout=60)


def assert_refused_old(res, store: Path):
    """A command this modelfs refused because the store is format 1."""
    assert res.rc == 1, f"expected a refusal:\n{res!r}"
    msg = res.err
    assert "format 1" in msg, res
    m = UPGRADE_HINT.search(msg)
    assert m, f"the message does not name `modelfs upgrade --store DIR`:\n{res!r}"
    assert Path(m.group("dir")).resolve() == store.resolve(), res
    assert "nothing was changed" in msg, res


def mdb_records(store: Path, db: str) -> dict[bytes, bytes]:
    """Every record of one of the store's LMDB databases, read with mdb_dump."""
    r = subprocess.run(["mdb_dump", "-s", db, str(store)], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r
    body = r.stdout.split("HEADER=END", 1)[1].split("DATA=END", 1)[0]
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    return {bytes.fromhex(k): bytes.fromhex(v) for k, v in zip(lines[0::2], lines[1::2])}


def committed_ends(store: Path) -> dict[int, int]:
    """pack id -> committed_end, from the "packs" database (records.h: u8
    version 1, u64 committed_end, u64 live, u64 dead, u32 state, u64 txnid)."""
    out = {}
    for k, v in mdb_records(store, "packs").items():
        assert len(k) == 8 and len(v) == 37 and v[0] == 1, (k.hex(), v.hex())
        out[int.from_bytes(k, "big")] = int.from_bytes(v[1:9], "little")
    return out


def read_packs(store: Path, committed_only: bool = False) -> dict[bytes, int]:
    """Parse every pack file as index/pack.h lays them out: the 32-byte header
    (magic, version 1, the pack id its name gives), then entries (magic
    "MFSE", payload length, 16-byte key, 8 reserved zero bytes, payload) up to
    the end of the file, or with committed_only up to the committed_end its
    record says (what a committed transaction references; a crash may leave
    more, and pack files no record names yet).  Returns chunk key -> how many
    entries hold it."""
    keys: dict[bytes, int] = {}
    ends = committed_ends(store) if committed_only else {}
    packs = sorted((store / "packs").glob("*.pack"))
    for p in packs:
        data = p.read_bytes()
        if committed_only:
            if int(p.stem, 16) not in ends:
                continue  # a file a crash left before its record committed: gc's
            assert ends[int(p.stem, 16)] <= len(data), f"{p}: shorter than its committed end"
            data = data[:ends[int(p.stem, 16)]]
        assert len(data) >= PACK_HEADER, f"{p}: {len(data)} bytes, no header"
        magic, version, _, pack_id, _ = struct.unpack_from("<8sIIQQ", data, 0)
        assert magic == PACK_MAGIC and version == 1, f"{p}: header {data[:32].hex()}"
        assert re.fullmatch(r"[0-9a-f]{16}", p.stem) and int(p.stem, 16) == pack_id, p
        off = PACK_HEADER
        while off < len(data):
            assert off + ENTRY_HEADER <= len(data), f"{p}: a partial entry header at {off}"
            emagic, n, key, reserved = struct.unpack_from("<4sI16sQ", data, off)
            assert emagic == ENTRY_MAGIC and reserved == 0, f"{p}: bad entry at {off}"
            assert off + ENTRY_HEADER + n <= len(data), f"{p}: entry at {off} runs past the end"
            keys[key] = keys.get(key, 0) + 1
            off += ENTRY_HEADER + n
    return keys


def check_exact(m: Modelfs, out: Path):
    """Every ref of every repo exports sha256-exact per the manifest, tensors
    keep their codecs, and verify is clean over every chunk."""
    for repo, entry in MANIFEST["repos"].items():
        for ref, commit in entry["refs"].items():
            want = entry["snapshots"][commit]["files"]
            dest = out / f"{repo.replace('/', '_')}@{ref}"
            m.export(repo, dest, rev=ref)
            assert fixtures.tree_sha256(dest) == {p: f["sha256"] for p, f in want.items()}, \
                f"{repo}@{ref} exports other bytes than the format-1 store served"
            info = m.info_json(repo, rev=ref)
            assert info["commit"] == commit
            for f in info["files"]:
                have = {t["name"]: t["codec"] for t in f["tensors"]}
                assert have == {n: t["codec"] for n, t in want[f["path"]].get("tensors", {}).items()}, \
                    f"{repo}@{ref} {f['path']}: tensor codecs changed"
    res = m.ok("verify", "--quiet")
    assert (f"verified {MANIFEST['chunks']} chunks and {MANIFEST['files_verified']} files"
            in res.out), res
    assert "0 damaged chunks, 0 damaged files, 0 damaged records" in res.out, res


def check_converted(m: Modelfs, index_bytes_max: int):
    """Format 2, no compaction left over, data.mdb holds the index only, and
    every chunk has its entry in a pack."""
    assert store_format(m.store) == 2
    assert not (m.store / "compact.tmp").exists()
    size = (m.store / "data.mdb").stat().st_size
    assert size <= index_bytes_max, f"data.mdb is {size} bytes after the upgrade"
    keys = read_packs(m.store)
    assert len(keys) == MANIFEST["chunks"], f"{len(keys)} chunk keys in the packs"
    return keys


def upgrade_summary(out: str) -> int:
    """The chunk count of upgrade's summary line."""
    m = re.search(r"upgraded store .* to format 2: (\d+) chunks", out)
    assert m, f"no summary line in:\n{out}"
    return int(m.group(1))


@pytest.fixture(scope="module")
def original_size(tmp_path_factory) -> int:
    return (extract(tmp_path_factory.mktemp("orig") / "s") / "data.mdb").stat().st_size


# ---------------------------------------------------------------- tests

def test_fixture_is_format1():
    """The committed store is what the manifest says (guards the fixture)."""
    assert MANIFEST["format"] == 1
    assert MANIFEST["tensor_codecs"].get("xor-delta", 0) > 0
    assert MANIFEST["tensor_codecs"].get("quant-residual", 0) > 0
    assert FIXTURE.stat().st_size < 8 << 20


def test_old_store_refused_and_unchanged(tmp_path, minilm_bf16):
    m = old_store(tmp_path)
    before = content(m.store)
    assert set(before) == {"data.mdb"}
    small = tmp_path / "small"
    small.mkdir()
    shutil.copyfile(minilm_bf16 / "config.json", small / "config.json")
    commands = [["ls"], ["ls", "minilm/f32"], ["info", "minilm/f32"], ["verify"],
                ["export", "minilm/f32", tmp_path / "out"], ["rm", "minilm/int8"],
                ["gc"], ["gc", "--compact"], ["ingest", small, "--repo", "org/new", "--quiet"]]
    for args in commands:
        assert_refused_old(m.run(*args), m.store)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        assert_refused_old(m.run("mount", "-f", mnt, timeout=60), m.store)
    finally:
        unmount_daemon(mnt)
    assert not fuse_mounted(mnt)
    assert content(m.store) == before, "a refused command changed the store"
    assert not (tmp_path / "out").exists()
    assert store_format(m.store) == 1


def test_upgrade_converts_exact(tmp_path, mounted, original_size):
    m = old_store(tmp_path)
    res = m.ok("upgrade", "--quiet")
    assert upgrade_summary(res.out) == MANIFEST["chunks"]
    keys = check_converted(m, original_size // 4)
    assert all(n == 1 for n in keys.values()), "a chunk has two entries after a clean upgrade"
    check_exact(m, tmp_path / "export")
    # through the mount: every ref, snapshot file and blob
    mnt = mounted(m).root
    for repo, entry in MANIFEST["repos"].items():
        rd = mnt / ("models--" + repo.split("/", 1)[1].replace("/", "--"))
        for ref, commit in entry["refs"].items():
            assert (rd / "refs" / ref).read_text() == commit
        for commit, snap in entry["snapshots"].items():
            want = {p: f["sha256"] for p, f in snap["files"].items()}
            assert fixtures.tree_sha256(rd / "snapshots" / commit) == want, \
                f"{repo} {commit}: the mount serves other bytes"
            for f in snap["files"].values():
                assert fixtures.sha256_file(rd / "blobs" / f["etag"]) == f["sha256"]


def test_upgrade_twice_is_a_noop(tmp_path):
    m = old_store(tmp_path)
    m.ok("upgrade", "--quiet")
    after = content(m.store)
    res = m.ok("upgrade")
    assert "already format 2" in res.out and "nothing to do" in res.out, res
    assert content(m.store) == after, "a second upgrade changed the store"
    # and on a store this modelfs made itself
    fresh = Modelfs(tmp_path / "fresh")
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "bert"}')
    fresh.ingest(src, "org/fresh", "--quiet")
    res = fresh.ok("upgrade")
    assert "already format 2" in res.out and "nothing to do" in res.out, res


def test_upgrade_help():
    res = Modelfs(Path("/nonexistent-store")).ok("upgrade", "--help", store=False)
    for word in ("usage: modelfs upgrade", "format 1", "format 2", "pack", "crash",
                 "--batch"):
        assert word in res.out, res
    assert "upgrade" in Modelfs(Path("/x")).ok("--help", store=False).out


def schedule(rng: random.Random, trials: int) -> list[float]:
    """One kill moment per trial as a fraction of the run, stratified over
    [0, 1.1) (as test_crash.py does)."""
    d = [1.1 * (i + rng.random()) / trials for i in range(trials)]
    rng.shuffle(d)
    return d


def kill_after(m: Modelfs, delay: float, *args) -> tuple[bool, float]:
    """Start `modelfs ARGS`, SIGKILL it after delay seconds: (killed, seconds)."""
    p = subprocess.Popen(m.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=m.env())
    t0 = time.monotonic()
    while time.monotonic() - t0 < delay and p.poll() is None:
        time.sleep(min(0.002, max(0.0, delay - (time.monotonic() - t0))))
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    _, err = p.communicate()
    if not killed:
        assert p.returncode == 0, f"modelfs {args} failed before the kill:\n{err.decode()}"
    return killed, time.monotonic() - t0


def test_kill9_upgrade_then_rerun_exact(tmp_path, original_size):
    """Small batches (--batch 64K: a transaction per one or two chunks) so the
    kills land between and inside many batches, on the format switch and in
    the compaction."""
    rng = random.Random(SEED + 20)
    batch = ["upgrade", "--quiet", "--batch", "64K"]
    full = min(kill_after(old_store(tmp_path, f"ref{k}", MODELFS_FAST), 60, *batch)[1]
               for k in range(2))
    killed = twice = mid_format = 0
    t0 = time.monotonic()
    for i, frac in enumerate(schedule(rng, TRIALS)):
        fast = old_store(tmp_path, f"t{i}", MODELFS_FAST)
        m = Modelfs(fast.store, home=tmp_path)  # the checks run the test build
        was_killed, secs = kill_after(fast, frac * full, *batch)
        if not was_killed:
            full = min(full, secs)
        killed += was_killed
        if was_killed and i % 3 == 0:  # a rerun killed too, earlier in its run
            twice += kill_after(fast, frac * full / 2, *batch)[0]
        fmt = store_format(m.store)
        assert fmt in (1, 2), f"trial {i}: format {fmt} after a kill"
        if fmt == 1:
            assert_refused_old(m.run("ls"), m.store)
        else:
            mid_format += was_killed
        res = m.ok("upgrade", "--quiet")
        if fmt == 1:
            assert upgrade_summary(res.out) == MANIFEST["chunks"]
        check_converted(m, original_size // 4)
        # every chunk has exactly one entry in what the packs committed
        keys = read_packs(m.store, committed_only=True)
        assert all(n == 1 for n in keys.values()) and len(keys) == MANIFEST["chunks"], \
            f"trial {i}: the committed parts of the packs hold {sum(keys.values())} entries"
        check_exact(m, tmp_path / f"out-{i}")
        # what killed batches appended and never committed is garbage that
        # gc takes back: then that is all the packs hold
        m.ok("gc")
        keys = read_packs(m.store)
        assert all(n == 1 for n in keys.values()) and len(keys) == MANIFEST["chunks"], \
            f"trial {i}: after gc, the packs hold {sum(keys.values())} entries"
        check_exact(m, tmp_path / f"out-{i}-gc")
        shutil.rmtree(m.store)
    print(f"\nupgrade kill -9: {TRIALS} trials over {full * 1.1:.2f}s windows, {killed} killed "
          f"mid-run ({twice} killed again on the rerun, {mid_format} after the format "
          f"switch), all exact after a rerun; {time.monotonic() - t0:.1f}s")
    assert killed >= TRIALS // 2, "most kills should land while the upgrade runs"


def test_kill9_during_compaction_then_rerun_exact(tmp_path, original_size):
    """Killed while it compacts the index (compact.tmp/ exists: the format is
    2 already, the compaction owed): the store opens as format 2, and the
    rerun compacts it and leaves no compact.tmp/ behind."""
    landed = 0
    for i in range(4):
        fast = old_store(tmp_path, f"c{i}", MODELFS_FAST)
        m = Modelfs(fast.store, home=tmp_path)
        p = subprocess.Popen(fast.argv("upgrade", "--quiet"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=fast.env())
        tmp = m.store / "compact.tmp"
        while p.poll() is None and not tmp.exists():
            time.sleep(0.0005)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        _, err = p.communicate()
        if not killed:
            assert p.returncode == 0, err.decode()
            continue
        landed += 1
        assert store_format(m.store) == 2
        m.ok("ls")  # format 2 opens, owed compaction and all
        res = m.ok("upgrade", "--quiet")
        assert "compaction it still owed" in res.out or "nothing to do" in res.out, res
        check_converted(m, original_size // 4)
        check_exact(m, tmp_path / f"out-c{i}")
        assert "nothing to do" in m.ok("upgrade").out
        shutil.rmtree(m.store)
    print(f"\nupgrade kill -9 in the compaction: {landed} of 4 landed there")


def test_upgrade_refused_while_in_use(tmp_path):
    m = old_store(tmp_path)
    before = content(m.store)
    # every modelfs process (the format-1 release too) holds users.lock
    # shared while it has the store open
    with open(m.store / "users.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        res = m.run("upgrade", "--quiet")
    assert res.rc == 1 and "in use" in res.err and "nothing was changed" in res.err, res
    assert content(m.store) == before and store_format(m.store) == 1
    # every LMDB program (mdb_stat, mdb_dump, a foreign tool) holds a read
    # lock on lock.mdb's first byte while the environment is open
    with open(m.store / "lock.mdb", "a+b") as f:
        fcntl.lockf(f, fcntl.LOCK_SH, 1, 0, os.SEEK_SET)
        res = m.run("upgrade", "--quiet")
    assert res.rc == 1 and "nothing was changed" in res.err, res
    assert "LMDB" in res.err or "in use" in res.err, res
    assert content(m.store) == before and store_format(m.store) == 1
    # let go: it upgrades
    m.ok("upgrade", "--quiet")
    assert store_format(m.store) == 2


def holds_write_lock(pid: int, path: Path) -> bool:
    """Does process pid hold an fcntl write lock on path (/proc/locks)?"""
    st = path.stat()
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        for line in f:
            p = line.split()
            if len(p) >= 6 and p[1] == "POSIX" and p[3] == "WRITE" and p[4] == str(pid) \
                    and p[5] == want:
                return True
    return False


def test_commands_wait_for_a_running_upgrade(tmp_path):
    """A command started while upgrade runs waits in LMDB's open (upgrade holds
    lock.mdb's first byte for writing) and then finds format 2; the
    compaction is done, or owed while the command still had the store open
    and done by the next upgrade."""
    m = old_store(tmp_path)
    p = subprocess.Popen(m.argv("upgrade", "--quiet", "--batch", "4K"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=m.env())
    try:
        lock = m.store / "lock.mdb"
        t0 = time.monotonic()
        while not (lock.exists() and holds_write_lock(p.pid, lock)):
            assert p.poll() is None, f"upgrade ended before it held the store: {p.communicate()}"
            assert time.monotonic() - t0 < 120, "upgrade never took lock.mdb"
            time.sleep(0.002)
        # ls starts while upgrade holds the store (still format 1 unless the
        # last commit is near): had it not waited for the lock it would
        # have been refused as format 1.  (Whether upgrade has exited when ls
        # returns is a race: it may still be compacting or exiting.)
        listing = m.run("ls")
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, (out, err)
    assert listing.rc == 0 and repo_visible(listing.out, "minilm/f32"), listing
    assert upgrade_summary(out.decode()) == MANIFEST["chunks"]
    if b"was not compacted" in err:
        assert store_format(m.store) == 2
        res = m.ok("upgrade", "--quiet")
        assert "compaction it still owed" in res.out, res
    res = m.ok("upgrade")
    assert "nothing to do" in res.out, res
    check_converted(m, (m.store / "data.mdb").stat().st_size)
    assert (m.store / "data.mdb").stat().st_size < (1 << 20)
    check_exact(m, tmp_path / "export")


@pytest.mark.skipif(MODELFS_OLD is None, reason="MODELFS_OLD (a format-1 release binary, "
                    "see tests/data/stores/make_format1.sh) is not set")
def test_old_release_mount_blocks_upgrade(tmp_path, mounted):
    old = old_store(tmp_path, binary=MODELFS_OLD)
    mnt = mounted(old)
    res = Modelfs(old.store, home=tmp_path).run("upgrade", "--quiet")
    assert res.rc == 1 and "in use" in res.err and "nothing was changed" in res.err, res
    mnt.stop()
    new = Modelfs(old.store, home=tmp_path)
    new.ok("upgrade", "--quiet")
    # the old release refuses the converted store and changes nothing
    after = content(old.store)
    res = old.run("ls")
    assert res.rc == 1 and "format 2" in res.err, res
    assert content(old.store) == after
    check_exact(new, tmp_path / "export")


def test_upgrade_bad_input(tmp_path):
    def up(store: Path, *extra):
        return Modelfs(store, home=tmp_path).run("upgrade", "--quiet", *extra)

    # no store there: nothing is created
    res = up(tmp_path / "missing")
    assert res.rc == 1 and "no modelfs store" in res.err, res
    assert not (tmp_path / "missing").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = up(empty)
    assert res.rc == 1 and "no modelfs store" in res.err, res
    assert list(empty.iterdir()) == []
    # a data.mdb that is not LMDB
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "data.mdb").write_bytes(random.Random(5).randbytes(64 << 10))
    res = up(junk)
    assert res.rc == 1 and ("damaged" in res.err or "not an LMDB" in res.err), res
    assert content(junk) == {"data.mdb": fixtures.sha256_file(junk / "data.mdb")}
    # an LMDB environment that is not a modelfs store
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    subprocess.run(["mdb_load", "-s", "things", "-T", str(foreign)], text=True, check=True,
                   input="hello\nworld\n", timeout=60)
    before = content(foreign)
    res = up(foreign)
    assert res.rc == 1 and "not a modelfs store" in res.err, res
    assert content(foreign) == before
    # a store from a newer modelfs
    m = old_store(tmp_path, "newer")
    set_format(m.store, 99)
    before = content(m.store)
    res = up(m.store)
    assert res.rc == 1 and "format 99" in res.err and "newer" in res.err, res
    assert "nothing was changed" in res.err, res
    assert content(m.store) == before and store_format(m.store) == 99
    # usage errors
    m = old_store(tmp_path, "usage")
    before = content(m.store)
    for extra in (["extra-arg"], ["--batch", "0"], ["--batch", "lots"], ["--no-such"]):
        res = up(m.store, *extra)
        assert res.rc == 2, res
    assert content(m.store) == before
