"""End to end: chunk payloads in pack files (store format 2).

- rm + gc while a mount runs gives the space back: `du` of the store shrinks
  without --compact (the repo's chunks were repacked out of the pack both
  repos share, and the old pack unlinked), and the mount still reads every
  file of the repo kept sha256-exact, its descriptor of the old pack closed
  by the sweep so the space is really free;
- kill -9 of gc at several points of a repack (between its committed steps,
  which MODELFS_TEST_GC_STEP_MS makes last) leaves a store that verifies
  clean and exports exact, and the next gc leaves no dead byte and no pack
  file behind;
- the packs' overhead over the payload is at most 0.1% on the BF16 fixture.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import fixtures
from conftest import MODELFS, MODELFS_FAST, Modelfs, assert_same_tree
from mount_fixtures import mounted, wait_for  # noqa: F401  (fixture)

KEEP = "org/small"   # minilm-bf16
DROP = "org/big"     # minilm-f32: most of the shared pack


def packs(store: Path) -> list[Path]:
    return sorted((store / "packs").glob("*.pack"))


def du(store: Path) -> int:
    return Modelfs(store).disk_bytes()


def space(text: str) -> dict:
    """The figures of gc's last "after:" line."""
    line = [ln for ln in text.splitlines() if ln.startswith("after:")][-1]
    m = re.search(r"(\d+) packs, .* on disk \((.*) dead\)", line)
    assert m, line
    return {"packs": int(m.group(1)), "dead": m.group(2), "line": line}


@pytest.fixture
def two_in_one_pack(mfs, hf_cache, minilm_f32, minilm_bf16):
    """One ingest of a cache holding both repos: their chunks share a pack."""
    hf_cache(minilm_f32, DROP)
    info = hf_cache(minilm_bf16, KEEP)
    mfs.ingest(info["cache_dir"], None, "--quiet")
    assert len(packs(mfs.store)) == 1, list(packs(mfs.store))
    return mfs


def sha_tree(folder: Path) -> dict:
    return fixtures.tree_sha256(folder)


def test_rm_gc_with_mount_shrinks_du(two_in_one_pack, mounted, minilm_bf16):
    mfs = two_in_one_pack
    m = mounted(mfs)
    snap = m.snapshot(KEEP)
    want = sha_tree(minilm_bf16)
    # read half the files now: the mount holds the old pack open
    names = sorted(want)
    for n in names[: len(names) // 2]:
        assert fixtures.sha256_file(snap / n) == want[n], n
    before = du(mfs.store)
    mfs.ok("rm", DROP)
    g = mfs.ok("gc", "--reader-wait", "20")
    assert "moved" in g.out and "removed 1 pack files" in g.out, g.out
    after = du(mfs.store)
    big = sum(f.stat().st_size for f in minilm_f32_files())
    # the F32 model's chunks were most of the pack: their bytes are gone
    assert after < before - big // 3, (before, after, g.out)
    assert space(g.out)["dead"] == "0 B", g.out
    assert len(packs(mfs.store)) == 1
    # the mount reads every file of the repo kept, exact, from the new pack
    snap = m.snapshot(KEEP)
    got = {n: fixtures.sha256_file(snap / n) for n in names}
    assert got == want
    # and lets go of the old pack (the sweep closes unlinked packs' descriptors)
    pid = m.proc.pid

    def old_pack_closed():
        fds = Path(f"/proc/{pid}/fd")
        return not any(".pack (deleted)" in os.readlink(fds / fd)
                       for fd in os.listdir(fds) if os.path.islink(fds / fd))
    wait_for(old_pack_closed, timeout=20, what="the mount to close the removed pack",
             poll=0.5)
    mfs.verify()
    assert "models--org--big" not in os.listdir(m.root)


def minilm_f32_files() -> list[Path]:
    return [p for p in fixtures.minilm_f32().rglob("*") if p.is_file()]


# The repack's batches in the kill test: the 30 MB of live BF16 chunks move in
# about four, so a kill lands in each kind of step (the sweep, a batch, the
# retire) without a trial per 2 MiB.
GC_BATCH = 8 << 20


def kill_gc_at(mfs: Modelfs, delay: float, step_ms: int) -> bool:
    """Run gc with a pause of step_ms after each committed step and batches
    of GC_BATCH bytes; SIGKILL it after delay seconds. True when it was killed."""
    env = mfs.env({"MODELFS_TEST_GC_STEP_MS": str(step_ms),
                   "MODELFS_TEST_GC_BATCH": str(GC_BATCH)})
    p = subprocess.Popen(mfs.argv("gc", "--reader-wait", "0"), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    if not killed:
        assert p.returncode == 0, err.decode()
    return killed


def test_kill9_gc_during_repack(tmp_path, two_in_one_pack, minilm_bf16):
    template = two_in_one_pack
    template.ok("rm", DROP)
    # how many steps a repack takes here, and how long each one is
    # The release build runs the kills and the checks of every trial (as
    # test_crash.py's trials); the test build verifies what each one left.
    probe = Modelfs(tmp_path / "probe", binary=MODELFS_FAST)
    shutil.copytree(template.store, probe.store)
    step_ms = 250
    res = probe.run("gc", "--reader-wait", "0",
                    env={"MODELFS_TEST_GC_STEP_MS": str(step_ms),
                         "MODELFS_TEST_GC_BATCH": str(GC_BATCH)})
    assert res.rc == 0, res
    steps = res.err.count("modelfs gc: step:")
    payload = sum(p.stat().st_size for p in packs(probe.store))  # all live now
    assert steps >= 4, res.err  # cleanup, batches, retire
    killed = 0
    # one kill inside each pause (and one in the sweep before the first)
    for k in range(steps + 1):
        m = Modelfs(tmp_path / f"t{k}", binary=MODELFS_FAST)
        shutil.copytree(template.store, m.store)
        delay = 0.05 if k == 0 else (k - 0.5) * step_ms / 1000 + 0.1
        killed += kill_gc_at(m, delay, step_ms)
        # every file reads exact: verify (chunks, records, sha256 of files)
        Modelfs(m.store, binary=MODELFS).verify()
        out = tmp_path / f"x{k}"
        m.export(KEEP, out)
        assert_same_tree(minilm_bf16, out)
        shutil.rmtree(out)
        # the next gc cleans up: no dead byte, no pack file or tail that no
        # commit references (a kill between batches leaves the moved chunks
        # in a pack of their own: two full packs then)
        g = m.ok("gc", "--reader-wait", "0")
        s = space(g.out)
        assert s["dead"] == "0 B" and s["packs"] <= 2, (k, g.out)
        on_disk = sum(p.stat().st_size for p in packs(m.store))
        assert on_disk <= payload + 32 * 2 + 32 * 200, (k, on_disk, payload, g.out)
        assert len(packs(m.store)) == s["packs"], (k, list(packs(m.store)))
        m.verify()
        shutil.rmtree(m.store)
    assert killed >= steps - 1, f"only {killed} of {steps + 1} kills landed"


def test_overhead_bf16(mfs, minilm_bf16):
    """Pack bytes on disk over payload bytes: at most 0.1%; the index file
    (LMDB: a few pages per database) is printed with it."""
    r = mfs.ingest(minilm_bf16, KEEP, "--quiet")
    m = re.search(r"(\d+) bytes stored", r.out + r.err)
    assert m, r.out + r.err
    payload = int(m.group(1))
    pack_disk = sum(p.stat().st_blocks * 512 for p in packs(mfs.store))
    overhead = (pack_disk - payload) / payload
    store_disk = du(mfs.store)
    print(f"\nBF16 fixture: payload {payload} B, packs {pack_disk} B on disk "
          f"({overhead * 100:.4f}% over), store {store_disk} B on disk "
          f"({(store_disk - payload) / payload * 100:.3f}% over, index "
          f"{(mfs.store / 'data.mdb').stat().st_size} B)")
    assert overhead <= 0.001, (payload, pack_disk)
