"""End to end: one damaged index record stays one bad record.

A store holds two small repos, org/good and org/bad; the test damages one
record of org/bad with no process using the store, through lmdb-utils
(`mdb_dump` to read a database, `mdb_load` to write records back). Then
`verify` names the record and exits 1, `ls` lists org/good and leaves org/bad
out with one line on stderr (exit 1), `export` of org/good is exact while
export of org/bad fails naming the record, and a mount serves org/good and
logs one line for org/bad.

Also here: a path with ".." in the index (export writes nothing outside DEST,
the mount makes no ".." node, verify names it), a folder under DEST that is a
symbolic link (not followed), names with terminal escapes (info, ls and
verify print them quoted; info --json keeps them exact), and the executable
bit of a files record (export writes 0755).
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Modelfs, assert_same_tree, repo_visible
from mount_fixtures import mounted  # noqa: F401  (fixture)
from test_corruption import write_safetensors

GOOD = "org/good"
BAD = "org/bad"
BAD_ID = "models/org/bad"
NO_BLOB = "ee00000000000000000000000000000000000009"


# ---------------------------------------------------------------- helpers

def make_model(folder: Path, seed: int, tensor_name: str = "embed.weight",
               extra: dict[str, bytes] | None = None) -> Path:
    """A small model folder: weights, config.json, README.md, an executable
    run.sh, and sub/extra.json (a file one folder down)."""
    folder.mkdir(parents=True)
    data = bytes((seed * 7 + i * 13) % 251 for i in range(4096))
    write_safetensors(folder / "model.safetensors", {
        tensor_name: ("U8", [len(data)], data),
        "bias": ("U8", [64], bytes(range(seed % 7, seed % 7 + 64))),
    })
    (folder / "config.json").write_text(json.dumps({"model_type": "toy", "seed": seed}))
    (folder / "README.md").write_text(f"toy model {seed}\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.json").write_text(json.dumps({"extra": seed}))
    run = folder / "run.sh"
    run.write_text("#!/bin/sh\necho toy\n")
    run.chmod(0o755)
    for name, content in (extra or {}).items():
        (folder / name).write_bytes(content)
    return folder


def mdb_dump(store: Path, db: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of one database of the store."""
    out = subprocess.run(["mdb_dump", "-s", db, str(store)], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    lines = out.splitlines()
    body = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
    assert len(body) % 2 == 0, out
    return [(bytes.fromhex(body[i].strip()), bytes.fromhex(body[i + 1].strip()))
            for i in range(0, len(body), 2)]


def mdb_put(store: Path, db: str, records: list[tuple[bytes, bytes]]):
    """Write records (new, or over existing keys) into one database."""
    text = "VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n"
    text += "".join(f" {k.hex()}\n {v.hex()}\n" for k, v in records)
    text += "DATA=END\n"
    subprocess.run(["mdb_load", "-s", db, str(store)], input=text, check=True, text=True,
                   capture_output=True, timeout=60)


def records_of(store: Path, db: str, repo_id: str) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in mdb_dump(store, db) if k.startswith(repo_id.encode() + b"\0")]


def file_record(mode: int, etag: str) -> bytes:
    """A files record (index/records.h): version 1, u32 mode, u8 etag length, etag."""
    return bytes([1]) + struct.pack("<I", mode) + bytes([len(etag)]) + etag.encode()


def files_key(repo_id: str, commit: str, path: str) -> bytes:
    return repo_id.encode() + b"\0" + commit.encode() + b"\0" + path.encode()


def commit_of(store: Path, repo_id: str) -> str:
    (k, v), = [(k, v) for k, v in mdb_dump(store, "refs") if k == repo_id.encode() + b"\0main"]
    return v.decode()


def file_value(store: Path, repo_id: str, path: str) -> bytes:
    commit = commit_of(store, repo_id)
    (v,) = [v for k, v in mdb_dump(store, "files") if k == files_key(repo_id, commit, path)]
    return v


def left_out_lines(err: str, repo_id: str) -> list[str]:
    return [ln for ln in err.splitlines() if f"{repo_id} left out:" in ln]


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def wait_for_log(m, text: str, timeout: float = 60.0) -> str:
    """The mount's log once it holds text (the daemon logs after the mount appears)."""
    t0 = time.monotonic()
    while True:
        log = m.log()
        if text in log:
            return log
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"mount log never said {text!r}:\n{log}", pytrace=False)
        time.sleep(0.05)


@pytest.fixture
def store2(mfs: Modelfs, tmp_path: Path) -> dict:
    """A store with org/good and org/bad (different bytes), both intact."""
    good = make_model(tmp_path / "src-good", 1)
    bad = make_model(tmp_path / "src-bad", 2)
    mfs.ingest(good, GOOD)
    mfs.ingest(bad, BAD)
    return {"good": good, "bad": bad, "commit": commit_of(mfs.store, BAD_ID)}


def check_good_served_bad_left_out(mfs: Modelfs, store2: dict, tmp_path: Path, mounted,
                                   record: str):
    """What every kind of damage to one org/bad record must give; @record is
    the start of how the record is named ("files record for config.json")."""
    v = mfs.run("verify")
    assert v.rc == 1, v
    assert f"BAD record of {BAD_ID}: {record}" in v.out, v
    assert "1 damaged records" in v.out, v

    ls = mfs.run("ls")
    assert ls.rc == 1, ls
    assert repo_visible(ls.out, GOOD) and not repo_visible(ls.out, BAD), ls
    lines = left_out_lines(ls.err, BAD_ID)
    assert len(lines) == 1 and f"its {record}" in lines[0], ls
    assert "modelfs verify" in lines[0] and f"modelfs rm {BAD_ID}" in lines[0], ls
    assert mfs.run("ls", GOOD).rc == 0
    one = mfs.run("ls", BAD)
    assert one.rc == 1 and f"{BAD_ID} is damaged: its {record}" in one.err, one

    out_good = tmp_path / "out-good"
    mfs.export(GOOD, out_good)
    assert_same_tree(store2["good"], out_good)
    out_bad = tmp_path / "out-bad"
    e = mfs.run("export", BAD, out_bad)
    assert e.rc == 1 and f"{BAD_ID} is damaged: its {record}" in e.err, e
    assert not out_bad.exists() or all_files(out_bad) == [], all_files(out_bad)

    m = mounted(mfs)
    log = wait_for_log(m, "serving ")
    assert len(left_out_lines(log, BAD_ID)) == 1, log
    assert f"its {record}" in left_out_lines(log, BAD_ID)[0], log
    assert not m.repo_dir(BAD).exists()
    assert sorted(os.listdir(m.root)) == ["models--org--good"]
    snap = m.snapshot(GOOD)
    assert (snap / "config.json").read_bytes() == (store2["good"] / "config.json").read_bytes()
    assert (snap / "model.safetensors").read_bytes() == \
        (store2["good"] / "model.safetensors").read_bytes()


# ---------------------------------------------------------------- item 5

def test_file_naming_no_blob(mfs, store2, tmp_path, mounted):
    """A files record whose etag names no blob: verify used to call the store
    clean, `ls org/bad` and the mount failed."""
    key = files_key(BAD_ID, store2["commit"], "config.json")
    mdb_put(mfs.store, "files", [(key, file_record(0o444, NO_BLOB))])
    check_good_served_bad_left_out(
        mfs, store2, tmp_path, mounted,
        f"files record for config.json of commit {store2['commit']} names blob {NO_BLOB}, "
        f"which is not stored")


@pytest.mark.parametrize("db", ["files", "commits", "refs", "blobs", "repos"])
def test_bad_version_byte(mfs, store2, tmp_path, mounted, db):
    """A bad version byte in one record (refs hold 40 hex and no version:
    a non-hex byte there): before, `ls` failed for every repo or the mount
    refused to start."""
    recs = records_of(mfs.store, db, BAD_ID) if db != "repos" else \
        [(k, v) for k, v in mdb_dump(mfs.store, "repos") if k == BAD_ID.encode()]
    k, v = recs[0]
    v = (b"X" if db == "refs" else b"\x07") + v[1:]
    mdb_put(mfs.store, db, [(k, v)])
    record = {
        "files": "files record for ",
        "commits": f"commits record for commit {store2['commit']} has record version 7",
        "refs": "refs record for ref main does not hold a 40-hex commit",
        "blobs": "blobs record for blob ",
        "repos": "repos record has record version 7",
    }[db]
    check_good_served_bad_left_out(mfs, store2, tmp_path, mounted, record)


# ---------------------------------------------------------------- item 7

def test_dotdot_path_in_index(mfs, store2, tmp_path, mounted):
    """A files record whose path climbs out: export wrote it outside DEST and
    the mount made a node named ".."; now export writes nothing anywhere,
    the mount leaves the repo out with one line, verify names the record."""
    cfg = file_value(mfs.store, BAD_ID, "config.json")
    mdb_put(mfs.store, "files", [(files_key(BAD_ID, store2["commit"], "../../escape.txt"), cfg)])
    dest = tmp_path / "out" / "dest"
    e = mfs.run("export", BAD, dest)
    assert e.rc == 1, e
    assert "files record for ../../escape.txt" in e.err and '".." component' in e.err, e
    for p in (tmp_path / "escape.txt", tmp_path / "out" / "escape.txt", dest / "escape.txt"):
        assert not p.exists(), p
    assert not dest.exists() or all_files(dest) == []

    v = mfs.run("verify")
    assert v.rc == 1, v
    assert (f"BAD record of {BAD_ID}: files record for ../../escape.txt of commit "
            f"{store2['commit']} has a path that has a \"..\" component") in v.out, v

    check_good_served_bad_left_out(mfs, store2, tmp_path, mounted,
                                   "files record for ../../escape.txt")


def test_export_does_not_follow_a_link_in_dest(mfs, store2, tmp_path):
    """DEST/sub is a symbolic link to a folder outside DEST: export refuses to
    write sub/extra.json through it (it used to write into the link's target)."""
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    e = mfs.run("export", GOOD, dest)
    assert e.rc == 1, e
    assert "symbolic link" in e.err and "sub" in e.err, e
    assert list(outside.iterdir()) == []
    # without the link the same export is exact
    (dest / "sub").unlink()
    mfs.export(GOOD, dest)
    assert_same_tree(store2["good"], dest)


# ---------------------------------------------------------------- item 10

def test_info_quotes_tensor_name(mfs, tmp_path):
    """A tensor named "evil\\x1b[31mname" in a real safetensors file: info's
    table shows it quoted; info --json holds it exactly, as valid JSON."""
    name = "evil\x1b[31mname"
    src = make_model(tmp_path / "src", 3, tensor_name=name)
    mfs.ingest(src, "org/escape")
    t = mfs.ok("info", "org/escape")
    assert "\x1b" not in t.out and "\x1b" not in t.err, t
    assert "evil\\x1b[31mname" in t.out, t
    doc = mfs.info_json("org/escape")
    names = [x["name"] for f in doc["files"] for x in f["tensors"]]
    assert name in names, names
    one = mfs.ok("info", "org/escape/model.safetensors")
    assert "\x1b" not in one.out and "evil\\x1b[31mname" in one.out, one


def test_ls_info_verify_quote_names(mfs, store2, tmp_path):
    """A file named with U+009B (a C1 control: CSI on some terminals), and a
    ref and a path in the index holding ESC: ls, info and verify print them
    quoted, never raw."""
    csi = "x\u009b31m.txt"
    src = make_model(tmp_path / "src-c1", 4, extra={csi: b"c1\n"})
    mfs.ingest(src, "org/c1")
    ls = mfs.ok("ls", "org/c1")
    assert "\u009b" not in ls.out and "x\\xc2\\x9b31m.txt" in ls.out, ls
    info = mfs.ok("info", "org/c1")
    assert "\u009b" not in info.out and "x\\xc2\\x9b31m.txt" in info.out, info
    doc = mfs.info_json("org/c1")
    assert csi in [f["path"] for f in doc["files"]]

    commit = store2["commit"]
    mdb_put(mfs.store, "refs", [(BAD_ID.encode() + b"\0x\x1b[31m", commit.encode())])
    cfg = file_value(mfs.store, BAD_ID, "config.json")
    mdb_put(mfs.store, "files", [(files_key(BAD_ID, commit, "a\x1b[2Jb.json"), cfg)])
    v = mfs.run("verify")
    assert v.rc == 1, v
    assert "\x1b" not in v.out and "\x1b" not in v.err, v
    assert f"BAD record of {BAD_ID}: refs record for ref x\\x1b[31m has an invalid name" in v.out
    assert (f"BAD record of {BAD_ID}: files record for a\\x1b[2Jb.json of commit {commit} "
            f"has a path that holds a control character") in v.out, v
    ls = mfs.run("ls")
    assert ls.rc == 1 and "\x1b" not in ls.out + ls.err, ls
    assert len(left_out_lines(ls.err, BAD_ID)) == 1, ls


def test_verify_repair_quotes_source_path(mfs, tmp_path):
    """verify --repair-from prints the paths it finds quoted: a good copy in a
    folder named with ESC does not reach the terminal raw."""
    from test_corruption import DAMAGED_CHUNK, MiB, damage_in_store, make_random_model
    src = tmp_path / "rand"
    data_start = make_random_model(src)
    mfs.ingest(src, "org/rand")
    raw = (src / "model.safetensors").read_bytes()
    c0 = data_start + DAMAGED_CHUNK * MiB
    assert damage_in_store(mfs.store, raw[c0:c0 + MiB]) >= 1
    good = tmp_path / "good\x1b[31mcopy"
    good.mkdir()
    (good / "model.safetensors").write_bytes(raw)
    res = mfs.run("verify", "--quiet", "--repair-from", good)
    assert res.rc == 0, res
    assert "\x1b" not in res.out + res.err, res
    assert "good\\x1b[31mcopy/model.safetensors" in res.out, res
    assert "repaired chunk" in res.out, res


# ---------------------------------------------------------------- item 12

def export_modes(mfs: Modelfs, dest: Path) -> dict[str, int]:
    old = os.umask(0o022)
    try:
        mfs.export(GOOD, dest)
    finally:
        os.umask(old)
    return {rel: stat.S_IMODE((dest / rel).stat().st_mode)
            for rel in ("run.sh", "config.json", "model.safetensors", "sub/extra.json")}


def test_export_keeps_executable_bit(mfs, store2, tmp_path):
    """A file recorded executable (ingest records 0555 for a file with an x
    bit) is exported 0755, the others 0644: export follows the record."""
    modes = export_modes(mfs, tmp_path / "dest")
    assert_same_tree(store2["good"], tmp_path / "dest")
    assert modes == {"run.sh": 0o755, "config.json": 0o644, "model.safetensors": 0o644,
                     "sub/extra.json": 0o644}, modes
    # the records say otherwise: config.json executable, run.sh not
    commit = commit_of(mfs.store, "models/org/good")
    recs = []
    for rel, mode in (("run.sh", 0o444), ("config.json", 0o555)):
        v = file_value(mfs.store, "models/org/good", rel)
        recs.append((files_key("models/org/good", commit, rel),
                     file_record(mode, v[6:6 + v[5]].decode())))
    mdb_put(mfs.store, "files", recs)
    modes = export_modes(mfs, tmp_path / "dest2")
    assert modes == {"run.sh": 0o644, "config.json": 0o755, "model.safetensors": 0o644,
                     "sub/extra.json": 0o644}, modes


# ---------------------------------------------------------------- recovery

def test_damaged_blob_record_recovery(mfs, store2, tmp_path):
    """What the left-out line tells the user to do works: with a blobs record
    of org/bad damaged, re-ingesting the repo repairs the record, `rm` of the
    repo removes it anyway, and gc then settles the reference counts the
    damaged record held (its chunks are freed; verify is clean)."""
    def damage_blob():
        k, v = records_of(mfs.store, "blobs", BAD_ID)[0]
        mdb_put(mfs.store, "blobs", [(k, b"\x07" + v[1:])])

    damage_blob()
    assert mfs.run("verify").rc == 1
    mfs.ingest(store2["bad"], BAD)          # the same files: the record is rewritten
    v = mfs.run("verify")                   # the damaged record's counts are still held
    assert v.rc == 1 and "`modelfs gc` sets the count right" in v.out, v
    g = mfs.ok("gc")
    assert "reference counts" in g.out, g
    mfs.verify()
    out = tmp_path / "out-bad"
    mfs.export(BAD, out)
    assert_same_tree(store2["bad"], out)

    damage_blob()
    mfs.ok("rm", BAD)
    g = mfs.ok("gc")
    assert "reference counts" in g.out, g
    mfs.verify()
    assert repo_visible(mfs.ls(), GOOD) and not repo_visible(mfs.ls(), BAD)
    # every chunk org/bad alone used is gone: a re-ingest stores them again
    res = mfs.ingest(store2["bad"], BAD)
    assert res.summary() and res.summary()["files"] > 0
    mfs.verify()
