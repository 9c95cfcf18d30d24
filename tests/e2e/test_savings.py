"""Savings visible where people look (issue 21, deliverable 5).

On the mount, a blob's st_blocks are its stored bytes (the payloads of its
chunks, as the blob record counts them), so `du` shows what the disk holds
and `du --apparent-size` the size; `df` shows the store on disk as used and
the free space of the disk under the store as available, not the mount 100%
full.  `modelfs ls` names repos as people type them and ends its repo list
with a total line; `modelfs info` shows the codec and ratio of the bytes no
tensor holds (a whole config.json, a safetensors header).

Everything is measured with the real tools (du, df, stat) on a real mount of
the BF16 fixture model, and checked against exact figures from
`modelfs info --json` and the store directory.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

import fixtures
from conftest import MODELFS_FAST, Modelfs
from mount_fixtures import mounted  # noqa: F401  (fixture)

REPO = "org/bf16"
COPY = "org/bf16-copy"
MiB = 1 << 20
# What another process may write or free on the disk between two looks at its
# free space (the machine is shared: builds and other tests run beside).
FREE_SLACK = 256 * MiB


def run(*argv: str) -> str:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{argv} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def du_bytes(path: Path, *flags: str) -> int:
    return int(run("du", "-B1", *flags, path).split()[0])


def up(n: int, unit: int) -> int:
    return (n + unit - 1) // unit * unit


def store_disk_bytes(store: Path) -> int:
    """data.mdb and the packs, by their blocks (what the mount says df uses)."""
    total = os.lstat(store / "data.mdb").st_blocks * 512
    for p in (store / "packs").iterdir():
        if re.fullmatch(r"[0-9a-f]{16}\.pack", p.name):
            total += os.lstat(p).st_blocks * 512
    return total


def files_of(mfs: Modelfs, repo: str) -> dict[str, dict]:
    return {f["path"]: f for f in mfs.info_json(repo)["files"]}


@pytest.fixture
def bf16(mfs, minilm_bf16):
    mfs.ingest(minilm_bf16, REPO, "--quiet")
    return mfs


def test_du_shows_stored_bytes(bf16, minilm_bf16, mounted):
    """du of every file of the snapshot is its stored bytes (in 512-byte
    blocks), du --apparent-size its size; through the snapshot's links too."""
    mfs = bf16
    files = files_of(mfs, REPO)
    m = mounted(mfs)
    snap = m.snapshot(REPO)
    blobs = m.repo_dir(REPO) / "blobs"
    for rel, f in files.items():
        blob = blobs / f["etag"]
        st = os.stat(blob)
        assert st.st_size == f["size"] == (minilm_bf16 / rel).stat().st_size
        assert st.st_blocks == up(f["stored_bytes"], 512) // 512, rel
        assert st.st_blksize == MiB, rel  # cp's read size: unchanged
        assert du_bytes(blob) == up(f["stored_bytes"], 512), rel
        assert du_bytes(blob, "--apparent-size") == f["size"], rel
        assert du_bytes(snap / rel, "-L") == up(f["stored_bytes"], 512), rel
    # the weights really are smaller on disk than they look
    w = files["model.safetensors"]
    assert w["stored_bytes"] < 0.8 * w["size"], w
    # the whole repo: du counts the blobs' stored bytes, plus its directories,
    # refs and links at their own sizes
    rd = m.repo_dir(REPO)
    small = 0
    for dirpath, dirnames, filenames in os.walk(rd):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.parent != blobs:
                small += up(os.lstat(p).st_size, 512)
    small += up(4096, 512)  # the repo directory itself
    assert du_bytes(rd, "-s") == small + sum(up(f["stored_bytes"], 512)
                                             for f in {f["etag"]: f for f in files.values()}.values())
    assert du_bytes(rd, "-s", "--apparent-size") > du_bytes(rd, "-s")


def test_df_shows_store_and_free_space(bf16, mounted):
    """df on the mount: used is the store on disk (data.mdb and the packs),
    available the free space of the disk under the store; not 100% used."""
    mfs = bf16
    m = mounted(mfs)
    want_used = up(store_disk_bytes(mfs.store), 4096)
    sv0 = os.statvfs(mfs.store)
    out = run("df", "-B1", "--output=size,used,avail,pcent", m.root).splitlines()
    sv1 = os.statvfs(mfs.store)
    size, used, avail, pcent = out[1].split()
    size, used, avail = int(size), int(used), int(avail)
    assert used == want_used, out
    lo = min(sv0.f_bavail, sv1.f_bavail) * sv0.f_frsize - FREE_SLACK
    hi = max(sv0.f_bavail, sv1.f_bavail) * sv0.f_frsize + FREE_SLACK
    assert lo <= avail <= hi, (out, sv0, sv1)
    assert size == used + avail, out
    assert pcent != "100%", out
    # the logical size is not what df says is used
    logical = sum(f["size"] for f in files_of(mfs, REPO).values())
    assert used < logical, (out, logical)
    # inodes: every node the mount serves (the root, dirs, links, files)
    nodes = 1
    for _, dirnames, filenames in os.walk(m.root):
        nodes += len(dirnames) + len(filenames)
    inodes = run("df", "--output=itotal", m.root).split()[-1]
    assert int(inodes) == nodes


def total_line(listing: str) -> re.Match:
    t = re.search(r"^total \((\d+) repos?\)\s+(\d+) snap\s+.*?\s([0-9.]+)x\s+"
                  r"\((\d+) bytes logical, (\d+) stored: every chunk once; (.*) on disk",
                  listing, re.M)
    assert t, listing
    return t


def test_ls_names_and_totals(bf16, minilm_bf16):
    """modelfs ls: org/name, the repo's ratio, and a total line whose ratio is
    its logical over its stored bytes; a second repo with the same files
    doubles the logical bytes and stores nothing more."""
    mfs = bf16
    files = files_of(mfs, REPO)
    size = sum(f["size"] for f in {f["etag"]: f for f in files.values()}.values())
    stored = sum(f["stored_bytes"] for f in {f["etag"]: f for f in files.values()}.values())
    listing = mfs.ls()
    assert "models/" not in listing and "models--" not in listing, listing
    line = next((l for l in listing.splitlines() if l.startswith(REPO + " ")), None)
    assert line, listing
    ratio = re.search(r"\s([0-9.]+)x\s", line)
    assert ratio and abs(float(ratio.group(1)) - size / stored) < 0.006, (line, size, stored)
    t = total_line(listing)
    assert int(t.group(1)) == 1 and int(t.group(2)) == 1, t.group(0)
    logical1, stored1 = int(t.group(4)), int(t.group(5))
    assert logical1 == size == sum((minilm_bf16 / r).stat().st_size for r in files)
    assert 0 < stored1 <= stored, (stored1, stored)
    assert abs(float(t.group(3)) - logical1 / stored1) < 0.006, t.group(0)
    # the store line stays last (tests and scripts read its chunk count there)
    assert re.search(r"^store .*\d+ chunks", listing.splitlines()[-1]), listing

    mfs.ingest(minilm_bf16, COPY, "--quiet")
    listing = mfs.ls()
    assert any(l.startswith(COPY + " ") for l in listing.splitlines()), listing
    t = total_line(listing)
    assert int(t.group(1)) == 2 and int(t.group(2)) == 2, t.group(0)
    assert int(t.group(4)) == 2 * logical1, t.group(0)
    assert int(t.group(5)) == stored1, t.group(0)  # every chunk shared
    assert abs(float(t.group(3)) - 2 * logical1 / stored1) < 0.006, t.group(0)

    # one repo: its name as typed, its files' total in exact bytes
    detail = mfs.ls(REPO)
    assert detail.splitlines()[0].split() == ["repo", REPO], detail
    tot = re.search(r"^\s*(\d+)\s+(\d+)\s+([0-9.]+)x\s+total of (\d+) files$", detail, re.M)
    assert tot, detail
    assert int(tot.group(1)) == sum(f["size"] for f in files.values())
    assert int(tot.group(2)) == sum(f["stored_bytes"] for f in files.values())
    assert int(tot.group(4)) == len(files)


def test_info_plain_bytes(bf16, minilm_bf16):
    """modelfs info names the codec and ratio of the bytes no tensor holds: a
    whole config.json or tokenizer.json, a safetensors header."""
    mfs = bf16
    doc = mfs.info_json(f"{REPO}/config.json")
    f = doc["files"][0]
    assert f["tensors"] == [], f
    plain = f["plain"]
    assert sum(p["raw_bytes"] for p in plain) == f["size"], f
    assert sum(p["stored_bytes"] for p in plain) == f["stored_bytes"], f
    assert all(p["codec"] in ("zstd", "raw") for p in plain), f
    text = mfs.ok("info", f"{REPO}/config.json").out
    assert text.startswith(f"repo {REPO} "), text
    row = next((l for l in text.splitlines() if "(plain bytes: no tensors)" in l), None)
    assert row, text
    cells = row.split()
    p = plain[0]
    assert p["codec"] in cells and str(p["raw_bytes"]) in cells and \
        str(p["stored_bytes"]) in cells, row
    assert f"{p['raw_bytes'] / p['stored_bytes']:.3f}x" in cells, row

    # tokenizer.json: JSON text, which zstd shrinks well
    tok = mfs.info_json(f"{REPO}/tokenizer.json")["files"][0]
    assert [p["codec"] for p in tok["plain"]][0] == "zstd", tok
    assert tok["plain"][0]["ratio"] > 1.5, tok

    # model.safetensors: the plain bytes are its header (8-byte length + JSON)
    w = mfs.info_json(f"{REPO}/model.safetensors")["files"][0]
    with open(minilm_bf16 / "model.safetensors", "rb") as fh:
        header = 8 + struct.unpack("<Q", fh.read(8))[0]
    assert sum(p["raw_bytes"] for p in w["plain"]) == header, w["plain"]
    assert sum(p["raw_bytes"] for p in w["plain"]) + \
        sum(t["raw_bytes"] for t in w["tensors"]) == w["size"]
    assert sum(p["stored_bytes"] for p in w["plain"]) + \
        sum(t["stored_bytes"] for t in w["tensors"]) == w["stored_bytes"]
    text = mfs.ok("info", f"{REPO}/model.safetensors").out
    assert "(bytes outside tensors)" in text, text


def test_info_plain_bytes_of_other_formats(make_mfs):
    """A .bin, .pt, .gguf or .onnx file: what its tensors do not hold (zip
    structures and the pickle, GGUF metadata, protobuf) is listed by codec,
    and with the tensors it adds up to the file.  (The release build: the
    fixture is 270 MB.)"""
    mfs = make_mfs("store", binary=MODELFS_FAST)
    src = fixtures.model("minilm-formats")
    mfs.ingest(src, "org/formats", "--quiet")
    files = files_of(mfs, "org/formats")
    seen = 0
    for rel, f in files.items():
        if not rel.endswith((".bin", ".pt", ".gguf", ".onnx")):
            continue
        seen += 1
        assert f["plain"], (rel, f)
        assert sum(p["raw_bytes"] for p in f["plain"]) + \
            sum(t["raw_bytes"] for t in f["tensors"]) == f["size"], rel
        assert sum(p["stored_bytes"] for p in f["plain"]) + \
            sum(t["stored_bytes"] for t in f["tensors"]) == f["stored_bytes"], rel
        for p in f["plain"]:
            assert p["codec"] != "unreadable" and p["chunks"] > 0, (rel, p)
    assert seen, sorted(files)
