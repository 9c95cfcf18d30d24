"""End to end: fine-tunes stored as xor-deltas against their base (issue 17).

Real fine-tunes (tests/e2e/fixtures.py trains them on CPU from the PyPI
all-MiniLM-L6-v2): a full fine-tune whose model card names its base, one with
the embeddings and lower layers frozen whose config names it, and a second
full fine-tune that names nothing (found by tensor matching), in F32 and BF16.

Every file is checked byte for byte (sha256) through the mount and export;
from_pretrained through the mount gives the original's outputs; removing the
base and collecting garbage keeps the fine-tunes exact; the order of ingest
does not matter for the bytes; a damaged base chunk is an I/O error naming
both chunks, never wrong bytes; kill -9 during a delta ingest leaves a store
that verifies clean.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import fixtures
from conftest import MODELFS_FAST, Modelfs, assert_same_tree
from mount_fixtures import mounted  # noqa: F401  (fixture)
from test_corruption import write_safetensors

# from_pretrained of several models in one process (torch is imported once):
# argv = out, then the sources; saves {src: outputs} to out
LOAD_MANY = r"""
import sys, torch
from transformers import AutoModel, AutoTokenizer
out, res = sys.argv[1], {}
for src in sys.argv[2:]:
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModel.from_pretrained(src)
    model.eval()
    enc = tok(["modelfs serves models as plain files.", "A second, longer sentence here."],
              padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    res[src] = {"ids": enc["input_ids"], "hidden": hidden, "dtype": str(model.dtype)}
torch.save(res, out)
"""


def load_many(srcs: list[str], out: Path, env: dict | None = None) -> dict:
    import os
    import sys
    import torch
    e = dict(os.environ)
    e.update(env or {})
    res = subprocess.run([sys.executable, "-c", LOAD_MANY, str(out), *srcs], env=e,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"loading {srcs} failed:\n{res.stderr[-4000:]}"
    return torch.load(str(out))


def same_outputs(family, dt: str, m, tmp_path: Path):
    """from_pretrained of every fine-tune of @p dt through mount @p m gives
    exactly the outputs of the original folder."""
    import torch
    want = load_many([str(family[(k, dt)]) for k in FTS], tmp_path / f"want-{dt}.pt")
    have = load_many([ft_repo(k, dt) for k in FTS], tmp_path / f"have-{dt}.pt",
                     hf_env(m.root, tmp_path))
    for k in FTS:
        w, h = want[str(family[(k, dt)])], have[ft_repo(k, dt)]
        assert torch.equal(w["ids"], h["ids"]) and w["dtype"] == h["dtype"], k
        assert torch.equal(w["hidden"], h["hidden"]), k

BASE = "sentence-transformers/all-MiniLM-L6-v2"
FTS = ("full", "frozen", "second")
DELTAS_RE = re.compile(r"deltas: (\d+) tensors as xor-deltas, (\d+) bytes stored, "
                       r"about (\d+) bytes alone; (\d+) tensors already held")


def ft_repo(kind: str, dt: str) -> str:
    return f"tuner/minilm-{kind}-{dt}"


def new_bytes(res) -> int:
    return int(re.search(r"(\d+) bytes new", res.out).group(1))


def deltas(res) -> tuple[int, int, int, int]:
    m = DELTAS_RE.search(res.out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0, 0)


def hf_env(root: Path, tmp: Path) -> dict:
    return {"HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(tmp / "hf-home")}


def snapshot_sha(m, repo: str) -> dict[str, str]:
    return fixtures.tree_sha256(m.snapshot(repo))


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """The base and its fine-tunes, F32 and BF16: {("base"|kind, dt): folder}."""
    out = {("base", "f32"): fixtures.model("minilm-f32"),
           ("base", "bf16"): fixtures.model("minilm-bf16")}
    for kind in FTS:
        for dt in ("f32", "bf16"):
            out[(kind, dt)] = fixtures.model(f"minilm-ft-{kind}-{dt}")
    return out


@pytest.fixture(scope="module")
def f32_store(tmp_path_factory, family):
    """A store holding the F32 family, ingested base first (the ASan build:
    every delta encode and decode runs under the sanitizers); copied per test."""
    root = tmp_path_factory.mktemp("ft-f32")
    m = Modelfs(root / "store")
    res = {"base": m.ingest(family[("base", "f32")], BASE)}
    for kind in FTS:
        res[kind] = m.ingest(family[(kind, "f32")], ft_repo(kind, "f32"))
    return m.store, res


def copy_store(template: Path, mfs: Modelfs) -> Modelfs:
    import shutil
    shutil.copytree(template, mfs.store)
    return mfs


def test_base_chosen_and_saving(f32_store, family):
    """Each fine-tune finds its base the way its files say (card, config,
    tensor matching), most tensors become deltas, and a fine-tune adds far
    less than its base took."""
    _, res = f32_store
    assert "stored alone, no base" in res["base"].err, res["base"].err
    assert f"base models/{BASE} (chosen by the model card's base_model)" in res["full"].err
    assert f"base models/{BASE} (chosen by config.json's _name_or_path)" in res["frozen"].err
    assert f"base models/{BASE} (chosen by tensor names, shapes" in res["second"].err, \
        res["second"].err
    base_new = new_bytes(res["base"])
    for kind in FTS:
        n, stored, alone, same = deltas(res[kind])
        assert n > 0 and stored < alone, (kind, res[kind].out)
        new = new_bytes(res[kind])
        assert new < 0.8 * base_new, (kind, new, base_new)
        assert "saving" in res[kind].err
    # the frozen layers are the base's own chunks: stored once
    assert deltas(res["frozen"])[3] > 0, res["frozen"].out
    assert new_bytes(res["frozen"]) < new_bytes(res["full"])


def test_mount_sha_and_from_pretrained(mfs, f32_store, family, mounted, tmp_path):
    """sha256 of every file of the family through the mount; from_pretrained
    of each fine-tune through the mount gives exactly the original's outputs."""
    copy_store(f32_store[0], mfs)
    m = mounted(mfs)
    assert snapshot_sha(m, BASE) == fixtures.tree_sha256(family[("base", "f32")])
    for kind in FTS:
        assert snapshot_sha(m, ft_repo(kind, "f32")) == \
            fixtures.tree_sha256(family[(kind, "f32")]), kind
    same_outputs(family, "f32", m, tmp_path)


def test_info_and_ls_report(mfs, f32_store):
    copy_store(f32_store[0], mfs)
    doc = mfs.info_json(f"{ft_repo('full', 'f32')}/model.safetensors")
    ts = [t for f in doc["files"] for t in f["tensors"]]
    based = [t for t in ts if t.get("base")]
    assert based and all(t["base"] == f"models/{BASE}" for t in based)
    assert all(t["codec"] == "xor-delta" and t["saving_bytes"] > 0 for t in based)
    frozen = mfs.info_json(f"{ft_repo('frozen', 'f32')}/model.safetensors")
    assert frozen["files"][0]["shared_bytes"] > 0
    text = mfs.ok("info", ft_repo("full", "f32")).out
    assert f"base models/{BASE}, saves" in text
    line = next(l for l in mfs.ls().splitlines() if l.startswith(f"{BASE} "))
    held = re.search(r"base of others\s+([0-9.]+) (\w+)", line)
    assert held and float(held.group(1)) > 0, line
    shared = re.search(r"shared\s+([0-9.]+) (\w+)", line)
    assert shared and float(shared.group(1)) > 0, line  # the frozen layers


def test_rm_base_gc_keeps_finetunes_exact(mfs, f32_store, family, tmp_path, mounted):
    """rm of the base + gc never frees a chunk a fine-tune decodes against."""
    copy_store(f32_store[0], mfs)
    mfs.ok("rm", BASE)
    gc = mfs.ok("gc")
    assert re.search(r"and [1-9]\d* chunks", gc.out), gc.out
    mfs.verify()
    for kind in FTS:
        dest = tmp_path / f"export-{kind}"
        mfs.export(ft_repo(kind, "f32"), dest)
        assert_same_tree(family[(kind, "f32")], dest)
    m = mounted(mfs)
    assert snapshot_sha(m, ft_repo("second", "f32")) == \
        fixtures.tree_sha256(family[("second", "f32")])
    # and once the fine-tunes go too, gc frees everything
    for kind in FTS:
        mfs.ok("rm", ft_repo(kind, "f32"))
    m.stop()
    mfs.ok("gc")
    mfs.verify()
    chunks = re.search(r"(\d+) chunks", mfs.ls().splitlines()[-1])
    assert chunks and int(chunks.group(1)) == 0, mfs.ls()


def test_bf16_family_mount(make_mfs, family, mounted, tmp_path):
    """BF16: base, then the fine-tunes; every file exact through the mount and
    from_pretrained of each fine-tune equal to the original's.  (The release
    build: the F32 family above runs the sanitizers over the same paths.)"""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    mfs.ingest(family[("base", "bf16")], BASE)
    for kind in FTS:
        res = mfs.ingest(family[(kind, "bf16")], ft_repo(kind, "bf16"))
        n, stored, alone, _ = deltas(res)
        assert n > 0 and stored < alone, res.out
    mfs.verify()
    m = mounted(mfs)
    for kind in FTS:
        assert snapshot_sha(m, ft_repo(kind, "bf16")) == \
            fixtures.tree_sha256(family[(kind, "bf16")]), kind
    same_outputs(family, "bf16", m, tmp_path)


@pytest.mark.parametrize("order", [("full", "base", "second", "frozen"),
                                   ("second", "frozen", "full", "base")])
def test_any_order_exact(make_mfs, family, tmp_path, order):
    """Fine-tunes before their base, or between: every export exact, verify
    clean, and a fine-tune ingested after the base still becomes deltas.
    (The release build: the sanitizer runs are above.)"""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    res = {}
    for kind in order:
        repo = BASE if kind == "base" else ft_repo(kind, "f32")
        res[kind] = mfs.ingest(family[(kind, "f32")], repo)
    mfs.verify()
    for kind in order:
        repo = BASE if kind == "base" else ft_repo(kind, "f32")
        dest = tmp_path / f"x-{kind}"
        mfs.export(repo, dest)
        assert_same_tree(family[(kind, "f32")], dest)
    after = order[order.index("base") + 1:]
    for kind in after:
        assert deltas(res[kind])[0] > 0, (kind, res[kind].out, res[kind].err)


def test_base_errors(make_mfs, family, tmp_path):
    mfs = make_mfs("store", binary=MODELFS_FAST)
    wl = fixtures.model("wordllama")
    r = mfs.run("ingest", "--repo", "t/x", "--base", "org/absent", str(family[("full", "f32")]))
    assert r.rc == 1 and "--base models/org/absent: the store holds no such repo" in r.err, r.err
    mfs.ingest(wl, "org/wordllama")
    r = mfs.run("ingest", "--repo", "t/x", "--base", "org/wordllama",
                str(family[("full", "f32")]))
    assert r.rc == 1 and "none of its 1 tensors matches one of the" in r.err, r.err
    assert "nothing of the failed snapshot was published" in r.err
    assert "t/x" not in mfs.ls()
    r = mfs.run("ingest", "--repo", "t/x", "--base", "org/a", "--no-base",
                str(family[("full", "f32")]))
    assert r.rc == 2, r.err
    # automatic choice with nothing to match: a note, then stored alone
    r = mfs.ingest(family[("second", "f32")], "t/alone")
    assert "stored alone, no base" in r.err and deltas(r)[0] == 0, r.err
    # --no-base: no deltas even with the base present
    mfs.ingest(family[("base", "f32")], BASE)
    r = mfs.ingest(family[("full", "f32")], "t/nobase", "--no-base")
    assert deltas(r)[0] == 0 and "xor-delta" not in r.err


# ---------------------------------------------------------------- damage, crash

def synth_pair(folder: Path, seed: int) -> tuple[Path, Path]:
    """A base of incompressible F32 noise (stored raw, so its bytes lie
    verbatim in a pack file) and a 'fine-tune' whose low mantissa bits differ:
    synthetic on purpose, for where bytes lie, not for any figure."""
    rng = np.random.default_rng(seed)
    base_w = rng.integers(0, 2**32, 1 << 19, dtype=np.uint32)  # 2 MiB
    base_w = (base_w & ~np.uint32(0x7F800000)) | np.uint32(0x3C000000)  # finite floats
    ft_w = base_w ^ rng.integers(0, 256, base_w.size, dtype=np.uint32)
    out = []
    for name, w in (("base", base_w), ("ft", ft_w)):
        d = folder / name
        d.mkdir(parents=True)
        write_safetensors(d / "model.safetensors",
                          {"w": ("F32", [512, 1024], w.astype("<u4").tobytes())})
        (d / "config.json").write_text(json.dumps({"model_type": "synthetic"}))
        out.append(d)
    return out[0], out[1]


def test_damaged_base_chunk_is_eio_naming_both(mfs, tmp_path, mounted):
    from test_corruption import chunk_key_hex, damage_in_store
    base, ft = synth_pair(tmp_path / "src", 7)
    mfs.ingest(base, "org/base", "--codec", "raw")
    res = mfs.ingest(ft, "org/ft", "--base", "org/base")
    assert deltas(res)[0] == 1, res.out + res.err
    raw = (base / "model.safetensors").read_bytes()
    hdr = 8 + struct.unpack("<Q", raw[:8])[0]
    chunk = raw[hdr:hdr + (1 << 20)]
    assert damage_in_store(mfs.store, chunk) >= 1
    m = mounted(mfs)
    f = m.snapshot("org/ft") / "model.safetensors"
    size = f.stat().st_size
    with open(f, "rb") as fh:
        with pytest.raises(OSError) as ei:
            fh.seek(hdr)
            fh.read(4096)
    assert ei.value.errno == 5  # EIO, never wrong bytes
    # the other chunk of the tensor still reads exact (from the first page
    # wholly inside it: the kernel reads whole pages)
    start = (hdr + (1 << 20) + 4095) & ~4095
    with open(f, "rb") as fh:
        fh.seek(start)
        assert fh.read(size - start) == (ft / "model.safetensors").read_bytes()[start:]
    base_key = chunk_key_hex(chunk)
    ft_chunk = (ft / "model.safetensors").read_bytes()[hdr:hdr + (1 << 20)]
    ft_key = chunk_key_hex(ft_chunk)
    deadline = time.monotonic() + 15
    while "read error (EIO)" not in m.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(l for l in m.log().splitlines() if "read error (EIO)" in l)
    if base_key and ft_key:
        assert ft_key in line and base_key in line, line
    assert "decodes against base chunk" in line and "fails its check" in line, line
    r = mfs.run("export", "org/ft", str(tmp_path / "out"))
    assert r.rc == 1 and not (tmp_path / "out" / "model.safetensors").exists(), r.err
    v = mfs.run("verify", "--quiet")
    assert v.rc == 1 and "BAD chunk" in v.out, v.out


def test_kill9_during_delta_ingest_verifies_clean(make_mfs, tmp_path, family):
    """SIGKILL at several moments of a fine-tune's ingest against a stored
    base: the store opens, verifies clean, the base exports exact, and the
    ingest run again succeeds with exact bytes."""
    rng = random.Random(17)
    template = make_mfs("template", binary=MODELFS_FAST)
    template.ingest(family[("base", "bf16")], BASE)
    src = family[("full", "bf16")]
    t0 = time.monotonic()
    template.ingest(src, "probe/x")
    full = time.monotonic() - t0
    for trial in range(4):
        m = make_mfs(f"s{trial}", binary=MODELFS_FAST)
        import shutil
        shutil.copytree(template.store, m.store)
        m.ok("rm", "probe/x")
        p = subprocess.Popen(m.argv("ingest", "--quiet", "--repo", "t/ft", str(src)),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=m.env())
        time.sleep(full * (0.1 + 0.8 * rng.random()))
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.communicate()
        m.verify()
        dest = tmp_path / f"b{trial}"
        m.export(BASE, dest)
        assert_same_tree(family[("base", "bf16")], dest)
        m.ingest(src, "t/ft")
        m.ok("gc")
        m.verify()
        dest = tmp_path / f"f{trial}"
        m.export("t/ft", dest)
        assert_same_tree(src, dest)


def big_pair(folder: Path, mib: int, seed: int) -> tuple[Path, Path]:
    """synth_pair at @p mib MiB per model, written in pieces (bounded memory)."""
    rng = np.random.default_rng(seed)
    n = mib << 18  # F32 elements
    out = []
    for name in ("base", "ft"):
        d = folder / name
        d.mkdir(parents=True)
        out.append(d)
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}})
    hdr = hdr.encode() + b" " * (-len(hdr) % 8)
    with open(out[0] / "model.safetensors", "wb") as fb, \
            open(out[1] / "model.safetensors", "wb") as ff:
        for f in (fb, ff):
            f.write(struct.pack("<Q", len(hdr)) + hdr)
        for _ in range(mib // 16):
            w = rng.integers(0, 2**32, 16 << 18, dtype=np.uint32)
            w = (w & ~np.uint32(0x7F800000)) | np.uint32(0x3C000000)
            fb.write(w.tobytes())
            ff.write((w ^ rng.integers(0, 256, w.size, dtype=np.uint32)).tobytes())
    return out[0], out[1]


def peak_anon_kb(m: Modelfs, *args, deltas: bool = True) -> int:
    """Run `modelfs ARGS`; the most anonymous memory (heap, stacks: RssAnon)
    it held, sampled every 10 ms.  The store's map pages are file pages and
    not counted: they are the kernel's to drop, not ingest's to bound."""
    p = subprocess.Popen(m.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=m.env())
    peak = 0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as st:
                for line in st:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.01)
    out, err = p.communicate()
    assert p.returncode == 0, err.decode()
    assert bool(DELTAS_RE.search(out.decode())) == deltas, out.decode() + err.decode()
    return peak


def test_delta_ingest_memory_bounded(make_mfs, tmp_path):
    """A delta ingest holds what a plain ingest holds (the chunk ring and the
    write transaction's dirty pages, at most TXN_BYTES = 64 MiB of payload
    before a commit) plus one base chunk per worker, whatever the model's
    size: against the same fine-tune stored alone, and an absolute bound."""
    base, ft = big_pair(tmp_path / "src", 256, 3)
    m = make_mfs("store", binary=MODELFS_FAST)
    m.ingest(base, "org/base", "--threads", "2", "--codec", "raw")
    delta = peak_anon_kb(m, "ingest", "--quiet", "--threads", "2", "--base", "org/base",
                         "--repo", "org/ft", str(ft))
    m2 = make_mfs("store-alone", binary=MODELFS_FAST)  # the same chunks, not yet held
    m2.ingest(base, "org/base", "--threads", "2", "--codec", "raw")
    alone = peak_anon_kb(m2, "ingest", "--quiet", "--threads", "2", "--no-base",
                         "--repo", "org/ft", str(ft), deltas=False)
    assert delta < alone + 8 * 1024, (delta, alone)
    assert delta < (64 + 6 * 3 + 24) * 1024, (delta, alone)
