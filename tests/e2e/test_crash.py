"""End to end: kill -9 of ingest and of gc at many moments loses nothing.

No mount here. Each trial starts the command, kills it with SIGKILL after a
delay drawn from a seeded, stratified schedule that covers the whole run
(measured first on a reference store), then checks the durability promise
of docs/durability.md: the store opens, `verify` is clean, every repo
committed before the crash exports sha256-exact, a repo the crash made
visible is whole, and the interrupted command succeeds when run again.

Knobs: MFS_CRASH_SEED (default 1), MFS_CRASH_TRIALS (ingest trials, default
20), MFS_GC_TRIALS (default 10). The figures (trials run, actually killed)
are printed; run with -s to see them.  The release build runs them (what a
crash leaves is the store's doing; the sanitizer builds run the same
commands in the other tests), so the many trials fit the suite's time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import fixtures
from conftest import MODELFS_FAST, Modelfs, assert_same_tree, repo_visible
from test_corruption import write_safetensors

SEED = int(os.environ.get("MFS_CRASH_SEED", "1"))
INGEST_TRIALS = int(os.environ.get("MFS_CRASH_TRIALS", "20"))
GC_TRIALS = int(os.environ.get("MFS_GC_TRIALS", "10"))


def make_model(folder: Path, seed: int, mib: int = 4) -> Path:
    """A small two-shard model with weight-like BF16/F32 tensors (so the
    bitplane codec and zstd both run), a config and a tokenizer file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    n = mib * (1 << 20) // 2 // 4  # elements per tensor: 4 tensors over 2 shards
    for shard in (1, 2):
        w32 = (rng.standard_normal(n // 2) * 0.02).astype(np.float32)
        w16 = (rng.standard_normal(n) * 0.02).astype(np.float32)
        bf16 = (w16.view(np.uint32) >> 16).astype(np.uint16)
        write_safetensors(folder / f"model-0000{shard}-of-00002.safetensors", {
            f"layers.{shard}.attn.weight": ("BF16", [n // 256, 256], bf16.tobytes()),
            f"layers.{shard}.mlp.weight": ("F32", [n // 512, 256], w32.tobytes()),
        })
    (folder / "config.json").write_text(json.dumps({"model_type": "crash", "seed": seed}))
    vocab = {f"tok{int(i)}": j for j, i in enumerate(rng.integers(0, 10**9, 3000))}
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}))
    return folder


def schedule(rng: random.Random, trials: int) -> list[float]:
    """One kill moment per trial as a fraction of the run, stratified over
    [0, 1.1): every part of the run gets a kill, in a shuffled order."""
    d = [1.1 * (i + rng.random()) / trials for i in range(trials)]
    rng.shuffle(d)
    return d


def kill_after(m: Modelfs, delay: float, *args) -> tuple[bool, float]:
    """Start `modelfs ARGS`, SIGKILL it after delay seconds. Returns (killed,
    seconds): killed is True when it was still running, False when it had
    already exited (then it must have succeeded, and seconds is how long the
    whole run took)."""
    p = subprocess.Popen(m.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=m.env())
    t0 = time.monotonic()
    while time.monotonic() - t0 < delay and p.poll() is None:
        time.sleep(min(0.005, max(0.0, delay - (time.monotonic() - t0))))
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    _, err = p.communicate()
    if not killed:
        assert p.returncode == 0, f"modelfs {args} failed before the kill:\n{err.decode()}"
    return killed, time.monotonic() - t0


def check_store(m: Modelfs, committed: dict[str, Path], out: Path, repos=None):
    """The store opens, verifies clean, and the committed repos export exact."""
    res = m.run("verify", "--quiet")
    assert res.rc == 0, f"verify after a crash:\n{res!r}"
    assert "0 damaged chunks, 0 damaged files" in res.out, res
    for repo in (repos if repos is not None else committed):
        dest = out / repo.replace("/", "_")
        m.export(repo, dest)
        assert_same_tree(committed[repo], dest)


def check_whole_if_visible(m: Modelfs, repo: str, src: Path, out: Path):
    """After a crash a repo is either invisible or whole."""
    if not repo_visible(m.ls(), repo):
        return False
    m.export(repo, out)
    assert_same_tree(src, out)
    return True


def test_kill9_ingest_many_trials(make_mfs, tmp_path):
    rng = random.Random(SEED)
    base = make_model(tmp_path / "src-base", 1000 + SEED)
    # How long does a whole ingest take here? The faster of two runs, so that
    # a run slowed by a busy machine does not push the kills past the end.
    full = min(make_mfs(f"ref{k}", binary=MODELFS_FAST).ingest(base, "org/base", "--quiet").seconds
               for k in range(2))
    m = make_mfs("store", binary=MODELFS_FAST)
    m.ingest(base, "org/base")
    committed = {"org/base": base}
    fractions = schedule(rng, INGEST_TRIALS)
    killed = visible = 0
    prev = None
    t0 = time.monotonic()
    for i, frac in enumerate(fractions):
        src = make_model(tmp_path / f"src-{i}", 2000 + 97 * SEED + i)
        repo = f"org/t{i}"
        was_killed, secs = kill_after(m, frac * full, "ingest", "--quiet", "--repo", repo,
                                      src)
        killed += was_killed
        if not was_killed:  # a whole run was faster than measured: rescale
            full = min(full, secs)
        out = tmp_path / f"out-{i}"
        # the store opens and verifies; base and the last committed repo are exact
        check_store(m, committed, out, ["org/base"] + ([prev] if prev else []))
        if check_whole_if_visible(m, repo, src, out / "interrupted"):
            visible += was_killed
        # the interrupted ingest succeeds when run again (exported exact by
        # the next trial's check, or the final one)
        m.ingest(src, repo, "--quiet")
        committed[repo] = src
        # keep the store small so that each trial's verify stays cheap: the
        # repo before the last goes, and gc sweeps now and then
        if prev:
            m.ok("rm", prev)
            del committed[prev]
        if i % 5 == 4:
            m.ok("gc")
        prev = repo
    # everything committed is still exact, gc finds the crashes' leftovers
    check_store(m, committed, tmp_path / "final")
    m.ok("gc")
    check_store(m, committed, tmp_path / "after-gc")
    print(f"\ningest kill -9: {len(fractions)} trials over {full * 1.1:.2f}s windows, "
          f"{killed} killed mid-run ({visible} of those had already published), "
          f"all survived; {time.monotonic() - t0:.1f}s")
    assert killed >= len(fractions) // 2, "most kills should land while ingest runs"


def test_kill9_gc_many_trials(make_mfs, tmp_path):
    rng = random.Random(SEED + 1)
    base = make_model(tmp_path / "src-base", 3000 + SEED)
    # How long does a gc with work take? (reference store: ingest, rm, gc)
    ref = make_mfs("ref", binary=MODELFS_FAST)
    work = make_model(tmp_path / "src-work", 4000 + SEED)
    ref.ingest(work, "org/work", "--quiet", "--chunk-size", "16K")
    ref.ok("rm", "org/work")
    span = ref.ok("gc").seconds
    m = make_mfs("store", binary=MODELFS_FAST)
    m.ingest(base, "org/base", "--quiet")
    committed = {"org/base": base}
    fractions = schedule(rng, GC_TRIALS)
    killed = 0
    t0 = time.monotonic()
    for i, frac in enumerate(fractions):
        src = make_model(tmp_path / f"src-{i}", 5000 + 89 * SEED + i)
        repo = f"org/gone{i}"
        # small chunks: many records for gc to delete
        m.ingest(src, repo, "--quiet", "--chunk-size", "16K")
        m.ok("rm", repo)
        args = ["gc"] + (["--compact"] if i % 3 == 2 else [])
        was_killed, secs = kill_after(m, frac * span, *args)
        killed += was_killed
        if not was_killed:
            span = min(span, secs)
        out = tmp_path / f"out-{i}"
        check_store(m, committed, out)
        assert not repo_visible(m.ls(), repo), f"{repo} came back after a killed gc"
        m.ok(*args)  # the interrupted gc succeeds when run again
        check_store(m, committed, out / "after")
        # and everything the removed repo held is gone: ingesting it again
        # stores it anew, whole
        if i == len(fractions) - 1:
            m.ingest(src, repo, "--quiet")
            m.export(repo, out / "again")
            assert_same_tree(src, out / "again")
    print(f"\ngc kill -9: {len(fractions)} trials over {span * 1.1:.2f}s windows, {killed} "
          f"killed mid-run, all survived; {time.monotonic() - t0:.1f}s")
    assert killed >= 1, "no kill landed while gc ran"
