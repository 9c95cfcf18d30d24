"""The chunk cache of a remote mount (remote/chunkcache.h) against a real S3
server (SeaweedFS, s3_server.py): a store is pushed with `modelfs push`,
then tests/tools/chunkcache_probe reads every chunk of it through a cache
of the bucket and compares each payload with the local store's bytes (and
decodes it: the decode re-hashes to the chunk key).

Checked: exact bytes, one GET per chunk however many threads ask at once,
the bound on disk (du, sampled while it runs) under a working set larger
than the cache, a restart that keeps what was cached (and its order), the
server killed mid-read and restarted (cached chunks read, the rest -EIO in
bounded time, then all exact again), and a truncated or altered pack object
(an error naming the chunk).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

import s3_server
from conftest import MODELFS, Modelfs, check_sanitizers, run_process, Result
from test_crash import make_model

PROBE = Path(os.environ.get("MFS_CHUNKCACHE_PROBE",
                            MODELFS.parent.parent / "tests" / "chunkcache_probe"))
MiB = 1 << 20


class Pushed:
    """A store pushed to srv under prefix, and the probe over it."""

    def __init__(self, srv, m: Modelfs, prefix: str):
        self.srv, self.m, self.prefix = srv, m, prefix
        if not PROBE.is_file():
            pytest.fail(f"chunkcache_probe not found at {PROBE} (cmake --build <build> "
                        f"--target chunkcache_probe, or set MFS_CHUNKCACHE_PROBE)",
                        pytrace=False)
        res = m.run("push", "--remote", self.url, "--json", env=srv.env(base=m.env()))
        assert res.rc == 0, res
        self.push = json.loads(res.out)
        self.locs = [line.split() for line in self.run("x", 1 << 30, "locs").out.splitlines()]
        self.payload = sum(int(x[3]) for x in self.locs)

    @property
    def url(self):
        return f"s3://{self.srv.bucket}/{self.prefix}"

    def env(self, **extra):
        env = self.srv.env(base=self.m.env())
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, cache, max_bytes, *args, timeout=300, **extra) -> Result:
        argv = [str(PROBE), str(self.m.store), str(cache), self.url, str(max_bytes),
                *map(str, args)]
        rc, out, err, secs, _ = run_process(argv, self.env(**extra), timeout)
        if rc is None:
            pytest.fail(f"chunkcache_probe hung for {timeout}s: {argv}\n{err[-2000:]}",
                        pytrace=False)
        res = Result(args, rc, out, err, secs)
        check_sanitizers(res)
        assert rc != 10, f"a wrong byte was served:\n{res!r}"
        return res

    def popen(self, cache, max_bytes, *args, **extra):
        argv = [str(PROBE), str(self.m.store), str(cache), self.url, str(max_bytes),
                *map(str, args)]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env(**extra))


def stats(res: Result) -> dict:
    m = re.search(r"^stats (.*)$", res.out, re.M)
    assert m, res
    return {k: float(v) if "." in v else int(v)
            for k, v in (kv.split("=") for kv in m.group(1).split())}


def du(cache: Path) -> int:
    total = 0
    for f in (cache / "cache").iterdir() if (cache / "cache").is_dir() else []:
        try:
            total += f.lstat().st_blocks * 512
        except FileNotFoundError:
            pass
    return total


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with s3_server.s3_server(tmp_path_factory.mktemp("s3")) as s:
        yield s


@pytest.fixture(scope="module")
def pushed(srv, tmp_path_factory, minilm_f32):
    m = Modelfs(tmp_path_factory.mktemp("cc") / "store")
    m.ingest(minilm_f32, "org/minilm")
    return Pushed(srv, m, f"cc-{os.getpid()}")


def test_exact_coalesced_and_kept_across_a_restart(pushed, tmp_path):
    n = len(pushed.locs)
    cache = tmp_path / "c"
    # cold, one reader: every chunk fetched once, exact
    res = pushed.run(cache, 1 << 30, "read", 1, 1)
    assert res.rc == 0, res
    st = stats(res)
    assert st["misses"] == n and st["hits"] == 0 and st["errors"] == 0, st
    assert st["fetched"] == pushed.payload + 32 * n  # entry header + payload, nothing more
    print(f"\ncold fetch through the cache: {pushed.payload / 1e6:.1f} MB of payload in "
          f"{st['seconds']:.2f} s = {st['mbps']:.0f} MB/s ({n} chunks, one thread)")
    assert st["entries"] == n and du(cache) == st["disk"] and du(cache) <= 1 << 30
    # a restart: everything is there, nothing is fetched
    res = pushed.run(cache, 1 << 30, "read", 2, 2)
    assert res.rc == 0, res
    st = stats(res)
    assert st["misses"] == 0 and st["hits"] == 4 * n and st["fetched"] == 0, st

    # 8 threads at once on a cold cache: one GET per chunk, the rest share it or hit
    cache2 = tmp_path / "c2"
    res = pushed.run(cache2, 1 << 30, "read", 8, 1)
    assert res.rc == 0, res
    st = stats(res)
    assert st["misses"] == n, st
    assert st["misses"] + st["coalesced"] + st["hits"] == 8 * n, st
    print(f"8 threads cold: {st['coalesced']} reads shared a fetch in flight, "
          f"{st['hits']} hit, {st['misses']} fetched")


def test_prefetch_fetches_runs_ahead(pushed, tmp_path):
    n = len(pushed.locs)
    res = pushed.run(tmp_path / "c", 1 << 30, "prefetch", 3)
    assert res.rc == 0, res
    st = stats(res)
    # every entry came in by a run's GET, and every read then hit
    assert st["prefetched"] == n and st["prefetch_errors"] == 0, st
    assert st["hits"] == n and st["misses"] == 0 and st["errors"] == 0, st
    assert st["fetched"] == pushed.payload + 32 * n
    print(f"\nprefetch in runs of <= 8 MiB, 3 threads: {st['mbps']:.0f} MB/s")
    # a bound below the working set: prefetch stays within it too
    bound = pushed.payload // 5
    res = pushed.run(tmp_path / "c2", bound, "prefetch", 3)
    assert res.rc == 0 and stats(res)["errors"] == 0, res
    assert du(tmp_path / "c2") <= bound


def test_disk_bound_under_a_larger_working_set(pushed, tmp_path):
    cache = tmp_path / "c"
    bound = pushed.payload // 4
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(du(cache))
            time.sleep(0.01)

    th = threading.Thread(target=sample)
    th.start()
    try:
        res = pushed.run(cache, bound, "read", 3, 2)
    finally:
        stop.set()
        th.join()
    assert res.rc == 0, res
    st = stats(res)
    assert st["evictions"] > 0 and st["errors"] == 0, st
    assert max(samples) <= bound, (max(samples), bound)
    assert du(cache) <= bound and st["disk"] <= bound
    print(f"\nbound {bound} bytes: du at most {max(samples)} over {len(samples)} samples, "
          f"{st['evictions']} evictions")
    # the LRU order survives a restart: the most recent entries stay, and a
    # smaller bound at open removes the oldest first
    before = {f.name: f.stat().st_mtime_ns for f in (cache / "cache").iterdir()}
    newest = max(before, key=before.get)
    small = bound // 3
    res = pushed.run(cache, small, "one", newest[:32])
    assert res.rc == 0, res
    st = stats(res)
    assert st["hits"] == 1 and st["misses"] == 0, st  # the newest survived
    after = {f.name for f in (cache / "cache").iterdir()}
    assert du(cache) <= small
    assert newest in after
    removed = set(before) - after
    assert removed and max(before[f] for f in removed) <= min(before[f] for f in after), \
        "entries were removed out of LRU order"


def test_torn_cached_file_is_fetched_again(pushed, tmp_path):
    cache = tmp_path / "c"
    key, *_ = pushed.locs[len(pushed.locs) // 2]
    assert pushed.run(cache, 1 << 30, "one", key).rc == 0
    f = cache / "cache" / f"{key}.entry"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x40  # a flipped bit in the payload
    f.write_bytes(bytes(data))
    res = pushed.run(cache, 1 << 30, "one", key)
    assert res.rc == 0, res
    st = stats(res)
    assert st["torn"] == 1 and st["misses"] == 1, st
    f.write_bytes(bytes(data[:100]))  # cut short, as a crash may leave one
    st = stats(pushed.run(cache, 1 << 30, "one", key))
    assert st["torn"] == 1 and st["misses"] == 1 and st["errors"] == 0, st
    (cache / "cache" / f"{key}.entry.tmp.0123456789abcdef").write_bytes(b"half")
    pushed.run(cache, 1 << 30, "one", key)
    assert not list((cache / "cache").glob("*.tmp.*")), "a leftover temporary file stayed"


def test_truncated_or_altered_pack_object_names_the_chunk(srv, make_mfs, tmp_path):
    m = make_mfs("store")
    m.ingest(make_model(tmp_path / "src", 5, mib=8), "org/m")
    p = Pushed(srv, m, f"alter-{os.getpid()}")
    key, pack, off, ln = max(p.locs, key=lambda x: int(x[2]))  # the last entry
    off, ln = int(off), int(ln)
    obj = f"{p.prefix}/packs/{pack}.pack"
    orig = srv.get_object(obj)
    try:
        srv.put_object(obj, orig[:off + 32 + ln - 1])  # one byte short
        res = p.run(tmp_path / "c1", 1 << 30, "one", key)
        assert res.rc == 8 and key in res.err and obj in res.err, res
        bad = bytearray(orig)
        bad[off + 8] ^= 1  # the key in the entry header
        srv.put_object(obj, bytes(bad))
        res = p.run(tmp_path / "c2", 1 << 30, "one", key)
        assert res.rc == 8 and key in res.err and "not its own" in res.err, res
        bad = bytearray(orig)
        bad[off + 32 + ln // 2] ^= 0x10  # the payload
        srv.put_object(obj, bytes(bad))
        res = p.run(tmp_path / "c3", 1 << 30, "one", key)
        assert res.rc == 8 and key in res.err and "fails its check" in res.err, res
        # nothing wrong was cached: with the object mended, the chunk reads
        srv.put_object(obj, orig)
        for c in ("c1", "c2", "c3"):
            st = stats(p.run(tmp_path / c, 1 << 30, "one", key))
            assert st["misses"] == 1 and st["errors"] == 0, st
    finally:
        srv.put_object(obj, orig)


def test_server_killed_mid_read_then_restarted(tmp_path, make_mfs):
    with s3_server.s3_server(tmp_path / "s3") as srv:
        m = make_mfs("store")
        m.ingest(make_model(tmp_path / "src", 7, mib=48), "org/m")
        p = Pushed(srv, m, "kill")
        n = len(p.locs)
        warm, cold = tmp_path / "warm", tmp_path / "cold"
        assert p.run(warm, 1 << 30, "read", 2, 1).rc == 0
        # half of the warm cache forgotten: those must fail while the server is gone
        entries = sorted((warm / "cache").glob("*.entry"))
        for f in entries[::2]:
            f.unlink()
        gone = len(entries[::2])

        srv.kill()
        t0 = time.monotonic()
        res = p.run(warm, 1 << 30, "read", 4, 1, PROBE_ATTEMPTS=2)
        secs = time.monotonic() - t0
        st = stats(res)
        assert res.rc == 7 and st["eio"] == st["errors"] and st["errors"] >= gone, res
        assert st["hits"] >= 4 * (n - gone) - 0, st  # what is cached reads exact
        assert "chunk " in res.err and "s3://" in res.err, res
        assert secs < 120, f"reads while the server is down took {secs:.0f} s"

        # killed in the middle of a cold read, restarted soon after
        srv.start()
        proc = p.popen(cold, 1 << 30, "read", 3, 1)
        time.sleep(0.3)
        srv.kill()
        time.sleep(1.0)
        srv.start()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 7), (proc.returncode, err[-3000:])
        # back: every chunk reads exact, the forgotten ones fetched again
        for c in (warm, cold):
            res = p.run(c, 1 << 30, "read", 2, 1)
            assert res.rc == 0, res
            assert stats(res)["errors"] == 0
