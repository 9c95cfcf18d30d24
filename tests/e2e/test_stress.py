"""Load: 32 concurrent readers on one mount while an ingest and an rm + gc run.

Four real models (minilm f32, bf16, fp16 and the two-shard variant) are
ingested into one store, plus a "victim" repo nobody reads. One mount with a
64 MiB decoded-chunk cache serves them to 32 reader threads for
MFS_STRESS_SECONDS (default 45; set it higher to soak). Readers pick random
files under snapshots/ and blobs/ and read them in one of four ways:
random pread ranges (1 B .. 3 MiB, many across chunk and tensor boundaries,
the last byte), a whole sequential read, O_DIRECT reads (never answered from
the page cache) and mmap slices; every byte is compared with the original.
After each file a reader drops the file's page cache (POSIX_FADV_DONTNEED) so
that most reads reach the daemon instead of the kernel's cache.

Meanwhile a second model (wordllama) is ingested into the same store, and
the victim repo is removed and garbage-collected.

Asserted:
  - every byte read equals the original; no read fails;
  - every reader finishes before its deadline (no deadlock or hang);
  - the ingest, rm and gc succeed; the new repo appears and the removed one
    disappears from the mount; the new repo reads back exact;
  - the daemon's anonymous memory (RssAnon, sampled every 50 ms) stays under
    the cache budget + DAEMON_OVERHEAD; its VmHWM (which also counts the pages
    of the store's memory map that it touched and of its code: page cache,
    reclaimable, at most the size of data.mdb and of its executable mappings)
    under budget + overhead + those sizes (with payloads in pack files, read
    with pread, data.mdb is only the index: under 1 MiB here);
  - the daemon's open file descriptors return to their baseline once readers
    close, and so do the LMDB reader slots in use (`mdb_stat -r`, lmdb-utils).

The figures (duration, reads, bytes verified, daemon cache gets, peak memory
against the budget) are printed (pytest -s) and written to
$MFS_STRESS_REPORT when set. docs/trust-load.md records measured ones.

The daemon is the release binary (MODELFS_RELEASE when set, else MODELFS):
memory figures of an ASan build say nothing about the daemon's own use (they
are not checked then).

Knobs: MFS_STRESS_SECONDS (45), MFS_STRESS_READERS (32), MFS_STRESS_THREADS
(FUSE threads, 8), MFS_TEST_SEED, MFS_STRESS_REPORT (write the figures as JSON).
"""

from __future__ import annotations

import json
import mmap
import os
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import MODELFS_FAST, SANITIZER_RE, Modelfs, run_process
from mount_fixtures import mounted  # noqa: F401  (fixture)

MiB = 1 << 20
STRESS_SECONDS = float(os.environ.get("MFS_STRESS_SECONDS", "45"))
READERS = int(os.environ.get("MFS_STRESS_READERS", "32"))
CACHE_BYTES = 64 * MiB
FUSE_THREADS = int(os.environ.get("MFS_STRESS_THREADS", "8"))
# Fixed overhead of the daemon over its cache budget, measured with this test
# (docs/trust-load.md): the binary, libraries, layout tree and malloc's own
# (~17 MiB), and per FUSE thread and per prefetch worker (one per CPU) a
# request buffer, libfuse's receive buffer, a codec workspace and one chunk
# pinned or in flight above the budget (~2.5 MiB). Measured peak RssAnon over
# a 64 MiB budget (2 CPUs, so 2 workers): +26 MiB with 2 FUSE threads, +44..48
# with 8, +59 with 16. Allowed: 24 MiB + 4 MiB per thread and worker.
WORKERS = min(64, os.cpu_count() or 1)
DAEMON_OVERHEAD = 24 * MiB + 4 * MiB * (FUSE_THREADS + WORKERS)
READ_MODELS = {"org/stress-f32": "minilm-f32", "org/stress-bf16": "minilm-bf16",
               "org/stress-fp16": "minilm-fp16", "org/stress-sharded": "minilm-sharded"}
VICTIM = ("org/stress-victim", "minilm-reupload")
LATE = ("org/stress-late", "wordllama")


def repo_dir(root: Path, repo: str) -> Path:
    return root / ("models--" + repo.replace("/", "--"))


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0]) * (1024 if "kB" in v else 1)
    return out


def code_bytes(pid: int) -> int:
    """Bytes of the file mappings of the daemon's programs (its binary and
    shared libraries, libcurl's and OpenSSL's among them): every mapping of
    each file that has code, its read-only data too, since the daemon brings
    those of its decoders into memory at start (fs/warm.h). The most of its
    code that can be resident, file-backed and reclaimable like the store's
    map."""
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            p = line.split()
            if len(p) >= 6 and p[5].startswith("/"):
                lo, hi = (int(x, 16) for x in p[0].split("-"))
                maps.append((p[5], p[1], hi - lo))
    programs = {path for path, perms, _ in maps if "x" in perms}
    return sum(size for path, _, size in maps if path in programs)


def fd_count(pid: int) -> int:
    """The daemon's descriptors, less those of its pack table (one per pack
    file read, kept open and bounded by the table; not a reader's)."""
    d = f"/proc/{pid}/fd"
    n = 0
    for fd in os.listdir(d):
        try:
            target = os.readlink(f"{d}/{fd}")
        except OSError:
            continue
        if "/packs/" in target and ".pack" in target:
            continue
        n += 1
    return n


def lmdb_readers(store: Path, pid: int) -> int | None:
    """Reader slots of process pid holding a transaction open (`mdb_stat -r`
    lists pid, thread and txnid; a free slot has txnid '-'). None when
    mdb_stat is not installed."""
    exe = shutil.which("mdb_stat")
    if not exe:
        return None
    r = subprocess.run([exe, "-r", str(store)], capture_output=True, text=True, timeout=30)
    # mdb_stat 0.9.24 exits 1 after printing the table: judge by its output
    if "Reader Table Status" not in r.stdout:
        raise AssertionError(f"mdb_stat -r failed ({r.returncode}): {r.stderr}")
    n = 0
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == str(pid) and parts[2] != "-":
            n += 1
    return n


def file_set(root: Path, repo: str, src: Path) -> list[tuple[Path, bytes]]:
    """(mounted path, original bytes) of every file of a repo under
    snapshots/ (through the links) and under blobs/ (named by the links)."""
    rd = repo_dir(root, repo)
    commit = (rd / "refs" / "main").read_text()
    snap = rd / "snapshots" / commit
    out = []
    for dirpath, _, names in os.walk(snap):
        for n in names:
            p = Path(dirpath) / n
            rel = p.relative_to(snap)
            data = (src / rel).read_bytes()
            out.append((p, data))
            blob = (p.parent / os.readlink(p)).resolve(strict=False)
            out.append((rd / "blobs" / blob.name, data))
    return out


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reads = 0
        self.bytes = 0
        self.files = 0
        self.by_mode: dict[str, int] = {}
        self.errors: list[str] = []

    def add(self, reads: int, nbytes: int, mode: str):
        with self.lock:
            self.reads += reads
            self.bytes += nbytes
            self.files += 1
            self.by_mode[mode] = self.by_mode.get(mode, 0) + 1

    def error(self, msg: str):
        with self.lock:
            if len(self.errors) < 50:
                self.errors.append(msg)


def read_file(path: Path, data: bytes, mode: str, rnd: random.Random) -> tuple[int, int]:
    """Read path one way and compare with data; returns (reads, bytes
    verified); raises AssertionError on a wrong byte."""
    size = len(data)
    view = memoryview(data)
    reads = nbytes = 0
    if mode == "mmap":
        if size == 0:
            return 0, 0
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                for _ in range(rnd.randint(4, 24)):
                    off = rnd.randrange(size)
                    ln = min(size - off, rnd.choice([1, 4096, 300_000, 2 * MiB]))
                    if mm[off:off + ln] != view[off:off + ln]:
                        raise AssertionError(f"mmap {path}: {ln} bytes at {off} differ")
                    reads += 1
                    nbytes += ln
            finally:
                mm.close()
        return reads, nbytes
    if mode == "direct":
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4 * MiB)  # page-aligned
        try:
            for _ in range(rnd.randint(4, 24)):
                off = rnd.randrange(0, max(size, 1), 4096) if size else 0
                ln = rnd.choice([4096, 65536, MiB, 4 * MiB])
                with memoryview(buf) as whole, whole[:ln] as mv:
                    n = os.preadv(fd, [mv], off)
                    want = min(ln, max(0, size - off))
                    ok = n == want and mv[:n] == view[off:off + n]
                if not ok:
                    raise AssertionError(f"O_DIRECT {path}: {ln} bytes at {off}: got {n}, "
                                         f"want {want} bytes, or they differ")
                reads += 1
                nbytes += n
        finally:
            buf.close()
            os.close(fd)
        return reads, nbytes
    fd = os.open(path, os.O_RDONLY)
    try:
        if mode == "seq":
            step = rnd.choice([128 * 1024, MiB, 3 * MiB + 5])
            off = 0
            while True:
                got = os.pread(fd, step, off)
                reads += 1
                if got != view[off:off + len(got)] or (not got and off < size):
                    raise AssertionError(f"seq {path}: read at {off} differs")
                if not got:
                    break
                off += len(got)
                nbytes += len(got)
            if off != size:
                raise AssertionError(f"seq {path}: read {off} bytes, file has {size}")
        else:  # random ranges, with chunk boundaries and the last byte
            points = [0, size - 1, size] + [k * MiB for k in range(size // MiB + 1)]
            for _ in range(rnd.randint(8, 40)):
                if rnd.random() < 0.5:
                    off = rnd.choice(points) + rnd.randint(-4100, 4100)
                else:
                    off = rnd.randrange(max(size, 1))
                off = max(0, min(size, off))
                ln = rnd.choice([1, 7, 4096, 65536 + 3, MiB - 1, MiB + 17, 3 * MiB])
                got = os.pread(fd, ln, off)
                if got != view[off:off + ln]:
                    raise AssertionError(f"pread {path}: {ln} bytes at {off} differ "
                                         f"(got {len(got)})")
                reads += 1
                nbytes += len(got)
        # drop this file's pages, so the next reader's bytes come from the daemon
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return reads, nbytes


def is_sanitized(binary: Path) -> bool:
    """An ASan/TSan build (its shadow memory and quarantine dwarf the cache)."""
    with open(binary, "rb") as f:
        data = f.read()
    return any(s in data for s in (b"__asan_init", b"__tsan_init", b"libasan", b"libtsan"))


def test_stress_readers_ingest_gc(make_mfs, model_path, mounted, tmp_path):
    mfs = make_mfs("store", binary=MODELFS_FAST)
    for repo, name in READ_MODELS.items():
        mfs.ingest(model_path(name), repo)
    mfs.ingest(model_path(VICTIM[1]), VICTIM[0])
    m = mounted(mfs, "--cache-bytes", str(CACHE_BYTES), "--threads", str(FUSE_THREADS))
    pid = m.proc.pid
    root = m.root

    files: list[tuple[Path, bytes]] = []
    for repo, name in READ_MODELS.items():
        files += file_set(root, repo, model_path(name))
    total_file_bytes = sum(len(d) for _, d in files)
    # the biggest files (the weights) get most of the reads
    weights = [max(1.0, len(d) / MiB) for _, d in files]

    base_fds = fd_count(pid)
    base_readers = lmdb_readers(mfs.store, pid)
    seed = int(os.environ.get("MFS_TEST_SEED", "0")) or random.randrange(1 << 30)
    print(f"MFS_TEST_SEED={seed}")

    stats = Stats()
    stop_at = time.monotonic() + STRESS_SECONDS
    modes = ["random", "random", "seq", "direct", "mmap"]

    def reader(tid: int):
        rnd = random.Random(seed * 1000 + tid)
        try:
            while time.monotonic() < stop_at and not stats.errors:
                path, data = rnd.choices(files, weights)[0]
                mode = rnd.choice(modes)
                try:
                    r, n = read_file(path, data, mode, rnd)
                except (AssertionError, OSError) as e:
                    stats.error(f"reader {tid} ({mode}): {e!r}")
                    return
                stats.add(r, n, mode)
        except Exception as e:  # noqa: BLE001  anything else is a failure too
            stats.error(f"reader {tid}: {e!r}")

    # memory / fd / reader-slot monitor
    samples = {"rss_anon_peak": 0, "rss_peak": 0, "fds_peak": 0, "readers_peak": 0}
    mon_stop = threading.Event()

    def monitor():
        n = 0
        while not mon_stop.is_set():
            try:
                st = proc_status(pid)
                samples["rss_anon_peak"] = max(samples["rss_anon_peak"], st["RssAnon"])
                samples["rss_peak"] = max(samples["rss_peak"], st["VmRSS"])
                samples["fds_peak"] = max(samples["fds_peak"], fd_count(pid))
                if n % 40 == 0 and base_readers is not None:
                    samples["readers_peak"] = max(samples["readers_peak"],
                                                  lmdb_readers(mfs.store, pid) or 0)
            except (OSError, KeyError, subprocess.TimeoutExpired):
                pass
            n += 1
            mon_stop.wait(0.05)

    # the store changes under the readers: an ingest, then rm + gc of a repo
    # nobody reads; while time is left, the two swap back and forth
    changes: dict[str, dict] = {}
    cycles = [0]

    def store_changes():
        env = mfs.env()
        time.sleep(min(3.0, STRESS_SECONDS / 6))
        late = ["ingest", str(model_path(LATE[1])), "--repo", LATE[0]]
        back = ["ingest", str(model_path(VICTIM[1])), "--repo", VICTIM[0]]
        forth = (("ingest", late), ("rm", ["rm", VICTIM[0]]), ("gc", ["gc"]))
        swap = (("ingest", back), ("rm", ["rm", LATE[0]]), ("gc", ["gc"]))
        while True:
            for steps in (forth, swap):
                for what, args in steps:
                    rc, out, err, secs, _ = run_process(mfs.argv(*args), env, timeout=300)
                    c = changes.setdefault(what, {"rc": 0, "n": 0, "seconds": 0.0})
                    c["n"] += 1
                    c["seconds"] = round(c["seconds"] + secs, 2)
                    if rc != 0 or SANITIZER_RE.search(err):
                        c.update(rc=rc, err=err[-2000:], args=args)
                        return
                # end with LATE in and VICTIM out
                if steps is forth:
                    cycles[0] += 1
                    if time.monotonic() > stop_at - 15:
                        return

    threads = [threading.Thread(target=reader, args=(i,), daemon=True, name=f"reader{i}")
               for i in range(READERS)]
    mon = threading.Thread(target=monitor, daemon=True)
    chg = threading.Thread(target=store_changes, daemon=True)
    t0 = time.monotonic()
    mon.start()
    chg.start()
    for t in threads:
        t.start()
    # every reader must finish soon after the deadline: a read that hangs
    # (a deadlock in the daemon) keeps its thread alive
    join_by = stop_at + 120
    for t in threads:
        t.join(timeout=max(0.1, join_by - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    duration = time.monotonic() - t0
    chg.join(timeout=max(0.1, join_by + 300 - time.monotonic()))
    assert not hung, f"readers still blocked {join_by - stop_at:.0f}s after the deadline " \
                     f"(deadlock?): {hung}\n{m.log()}"
    assert not chg.is_alive(), f"ingest/rm/gc did not finish: {changes}"
    assert not stats.errors, "\n".join(stats.errors) + "\n" + m.log()
    for what in ("ingest", "rm", "gc"):
        assert what in changes and changes[what]["rc"] == 0, \
            f"{what} during the stress run failed: {changes}"

    # the store changes are visible in the mount
    def wait_for(cond, what, timeout=15.0):
        t = time.monotonic()
        while not cond():
            assert time.monotonic() - t < timeout, f"timed out waiting for {what}"
            time.sleep(0.1)
    wait_for(lambda: repo_dir(root, LATE[0]).name in os.listdir(root), "the ingested repo")
    wait_for(lambda: repo_dir(root, VICTIM[0]).name not in os.listdir(root),
             "the removed repo to disappear")
    for p, d in file_set(root, LATE[0], model_path(LATE[1])):
        assert p.read_bytes() == d, p
        stats.bytes += len(d)

    # resources back to their baseline once every file is closed (the kernel
    # sends RELEASE asynchronously after close/munmap: give it a moment)
    fds = readers = None
    t_end = time.monotonic() + 15
    while time.monotonic() < t_end:
        fds = fd_count(pid)
        readers = lmdb_readers(mfs.store, pid)
        if fds <= base_fds and (readers is None or readers <= base_readers):
            break
        time.sleep(0.2)
    mon_stop.set()
    mon.join(timeout=10)
    st = proc_status(pid)
    assert fds <= base_fds, f"daemon fds: {fds} after the readers closed, {base_fds} before"
    if base_readers is not None:
        assert readers <= base_readers, \
            f"LMDB reader slots in use: {readers} after, {base_readers} before (a leak)"

    data_mdb = (mfs.store / "data.mdb").stat().st_size
    code = code_bytes(pid)
    rss_anon_peak = max(samples["rss_anon_peak"], st["RssAnon"])
    report = {
        "seconds": round(duration, 1), "readers": READERS, "seed": seed,
        "files_read": stats.files, "reads": stats.reads, "bytes_verified": stats.bytes,
        "by_mode": stats.by_mode, "distinct_files": len(files),
        "file_bytes": total_file_bytes,
        "cache_budget": CACHE_BYTES, "overhead_allowed": DAEMON_OVERHEAD,
        "rss_anon_peak": rss_anon_peak, "vm_hwm": st["VmHWM"], "data_mdb": data_mdb, "code_bytes": code,
        "fds_baseline": base_fds, "fds_peak": samples["fds_peak"], "fds_after": fds,
        "lmdb_readers_baseline": base_readers, "lmdb_readers_peak": samples["readers_peak"],
        "lmdb_readers_after": readers, "store_change_cycles": cycles[0],
        "store_changes": changes,
    }
    rc = m.stop()
    log = m.log()
    assert rc == 0, f"daemon exited with {rc}:\n{log}"
    mm = re.search(r"cache hits (\d+), misses (\d+), waits (\d+), decodes (\d+) "
                   r"\(prefetch (\d+)\), evictions (\d+) \(drop-behind \d+\), peak (\d+) MiB, "
                   r"fill errors (\d+)", log)
    assert mm, f"no cache line in the daemon's log:\n{log}"
    if mm:
        hits, misses, waits, _fills, pf, ev, peak, ferr = map(int, mm.groups())
        report.update(cache_gets=hits + misses + waits, cache_hits=hits, cache_misses=misses,
                      cache_waits=waits, prefetch_decodes=pf, evictions=ev,
                      cache_peak_mib=peak, fill_errors=ferr)
        assert ferr == 0, log
    mr = re.search(r"reads: (\d+) requests, (\d+) MiB", log)
    if mr:  # FUSE read requests the daemon answered, when its log says
        report.update(fuse_read_requests=int(mr.group(1)), fuse_read_mib=int(mr.group(2)))
    print("stress:", json.dumps(report))
    if os.environ.get("MFS_STRESS_REPORT"):
        Path(os.environ["MFS_STRESS_REPORT"]).write_text(json.dumps(report, indent=1))

    assert stats.reads > 0 and stats.bytes > 0
    if is_sanitized(MODELFS_FAST):
        print("stress: sanitizer build: memory bounds not checked (set MODELFS_RELEASE)")
    else:
        assert rss_anon_peak <= CACHE_BYTES + DAEMON_OVERHEAD, \
            f"daemon anonymous memory peaked at {rss_anon_peak / MiB:.1f} MiB: over the " \
            f"{CACHE_BYTES / MiB:.0f} MiB cache + {DAEMON_OVERHEAD / MiB:.0f} MiB overhead"
        assert st["VmHWM"] <= CACHE_BYTES + DAEMON_OVERHEAD + data_mdb + code, \
            f"daemon VmHWM {st['VmHWM'] / MiB:.1f} MiB: over cache + overhead + the " \
            f"store map ({data_mdb / MiB:.1f} MiB) + its code ({code / MiB:.1f} MiB)"
