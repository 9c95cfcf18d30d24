"""What ingest reads from a source, and what it refuses (issue 16, items 2, 3, 12).

- Nothing from outside the source: in an HF cache, snapshot entries are links
  into their repo's blobs/, and a blob may link into the cache's shared blob
  store (huggingface_hub 2.x); any other link that leaves the repo folder, and
  a folder of the layout that is itself a link, is refused naming the link and
  its target.  In a plain folder, links that stay inside are followed; links
  that leave it are refused unless --follow-links.
- Nothing hangs: a FIFO, socket, device or directory where ingest expects a
  file is refused with its name and what it is, in every place ingest opens
  something.  Each run has a timeout, so a hang fails the test.
- Ref names are checked (the --ref given, and every file in a cache's refs/).
- A Git LFS pointer, .git/ and .cache/, and executable files are handled as a
  user expects.

A refused ingest exits 1 and leaves the store as it was: verify passes, the
bad repo is not listed, the good repo exports byte-exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import struct
import tempfile
from pathlib import Path

import pytest

import fixtures
from conftest import Modelfs, assert_same_tree, repo_visible
from mount_fixtures import mounted  # noqa: F401  (fixture)

GOOD = "good/model"
BAD = "bad/model"
# No test here should take long; a hang (FIFO opened blocking) hits this.
TIMEOUT = 60


def safetensors_bytes(tensors: dict) -> bytes:
    """A small valid safetensors file from {name: (dtype, shape, nbytes)}."""
    header, data, off = {}, b"", 0
    for name, (dtype, shape, nb) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nb]}
        data += bytes((i * 37 + len(name)) & 0xFF for i in range(nb))
        off += nb
    hj = json.dumps(header).encode()
    hj += b" " * ((-len(hj)) % 8)
    return struct.pack("<Q", len(hj)) + hj + data


def small_model(folder: Path, tag: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(
        safetensors_bytes({"w": ("F32", [64, 4], 1024), "b" + tag: ("BF16", [32], 64)}))
    (folder / "config.json").write_text('{"model_type": "bert"%s}\n' % tag)
    (folder / "tokenizer.json").write_text(json.dumps({"vocab": {"a": 1, "b" + tag: 2}}))
    return folder


@pytest.fixture(scope="module")
def good_src(tmp_path_factory) -> Path:
    return small_model(tmp_path_factory.mktemp("good") / "src", "good")


@pytest.fixture
def store(mfs, good_src) -> Modelfs:
    mfs.ingest(good_src, GOOD)
    return mfs


def assert_refused(m: Modelfs, res, good_src: Path, tmp: Path, *must: str, bad: str = BAD):
    """Exit 1, every string of must in the message, and the store as it was."""
    assert res.rc == 1, f"expected a refusal (exit 1):\n{res!r}"
    for s in must:
        assert s in res.err, f"the message must name {s!r}:\n{res.err}"
    assert_store_intact(m, good_src, tmp, bad)


def assert_store_intact(m: Modelfs, good_src: Path, tmp: Path, bad: str = BAD):
    m.verify()
    listing = m.ls()
    assert not repo_visible(listing, bad), f"{bad} visible after a refused ingest:\n{listing}"
    out = tmp / "good-export"
    m.export(GOOD, out)
    assert_same_tree(good_src, out)


def bad_cache(tmp_path: Path) -> dict:
    """An HF cache holding bad/model (a small model), laid out as huggingface_hub does."""
    src = small_model(tmp_path / "bad-src", "bad")
    lay = fixtures.hf_cache(src, BAD, tmp_path / "cache")
    lay["cache_dir"] = tmp_path / "cache"
    lay["snap"] = lay["repo_dir"] / "snapshots" / lay["commit"]
    return lay


def share_blobs(lay: dict) -> dict:
    """Turn a cache laid out by fixtures.hf_cache into the huggingface_hub 2.x
    shared-blob layout, with huggingface_hub's own writer: each per-repo
    blobs/<etag> becomes a relative link to <cache>/blobs/<2 hex>/<xet hash>
    (a regular file), the store marked and each hash's .refs manifest kept."""
    from huggingface_hub.utils import _shared_blobs as hfsb
    cache = Path(lay["cache_dir"]).resolve()
    lay["shared"] = {}
    for etag in sorted(set(lay["files"].values())):
        blob = Path(lay["repo_dir"]).resolve() / "blobs" / etag
        # A stand-in xet hash: 64 hex derived from the content (the real one is
        # a Merkle hash computed by the hub; ingest only needs its shape).
        xet = hashlib.sha256(b"xet\0" + fixtures.sha256_file(blob).encode()).hexdigest()
        if not blob.is_symlink():
            ok = hfsb.publish_blob_to_shared_store(blob_path=str(blob), xet_hash=xet,
                                                   cache_dir=cache,
                                                   expected_size=blob.stat().st_size)
            assert ok, f"huggingface_hub did not share {blob}"
        target = cache / "blobs" / xet[:2] / xet
        assert blob.is_symlink() and Path(os.readlink(blob)) == Path("../../blobs") / xet[:2] / xet
        assert stat.S_ISREG(target.lstat().st_mode)
        lay["shared"][etag] = target
    return lay


# ---------------------------------------------------------------- huggingface_hub 2.x shared blobs

def test_shared_blob_store_cache_roundtrip(mfs, tmp_path, hf_cache, wordllama_model, good_src):
    """Two repos of one cache whose blobs both link into the shared store (the
    same content once there): both ingest, export sha256-exact, etags kept."""
    lay1 = share_blobs(hf_cache(wordllama_model, "org/w1", commit="1" * 40))
    lay2 = share_blobs(hf_cache(wordllama_model, "org/w2", commit="2" * 40, refs=("main", "v1")))
    hf_cache(good_src, "org/plain")  # a repo of the same cache without shared blobs
    assert set(lay1["shared"].values()) == set(lay2["shared"].values())
    res = mfs.ingest(lay1["cache_dir"], timeout=TIMEOUT * 5)
    mfs.verify()
    for repo, lay, src in (("org/w1", lay1, wordllama_model), ("org/w2", lay2, wordllama_model),
                           ("org/plain", None, good_src)):
        out = tmp_path / repo.replace("/", "_")
        mfs.export(repo, out)
        assert_same_tree(src, out)
        if lay:
            text = mfs.ls(repo)
            missing = [rel for rel, etag in lay["files"].items() if etag not in text]
            assert not missing, f"etags of {missing} not kept:\n{text}"
    assert "warning" not in res.err.lower(), res


def test_shared_blob_store_one_repo_folder(mfs, tmp_path, hf_cache, wordllama_model):
    """One repo folder of a shared-blob cache: its cache is the folder's parent."""
    lay = share_blobs(hf_cache(wordllama_model, "org/w", refs=("main",)))
    mfs.ingest(lay["repo_dir"], timeout=TIMEOUT * 5)
    mfs.verify()
    mfs.export("org/w", tmp_path / "out")
    assert_same_tree(wordllama_model, tmp_path / "out")


# ---------------------------------------------------------------- HF cache: links that leave

def _relink(path: Path, target: str | Path):
    if path.is_symlink() or path.exists():
        path.unlink()
    os.symlink(target, path)


def _move_and_link(path: Path, elsewhere: Path):
    shutil.move(str(path), str(elsewhere))
    os.symlink(elsewhere, path)


def _secret(tmp: Path) -> Path:
    s = tmp / "secret.txt"
    s.write_text("not part of any repo\n")
    return s


def case_entry_abs_shadow(lay, tmp):
    _relink(lay["snap"] / "config.json", "/etc/shadow")
    return ["config.json", "/etc/shadow"]


def case_entry_rel_passwd(lay, tmp):
    target = os.path.relpath("/etc/passwd", lay["snap"])
    _relink(lay["snap"] / "config.json", target)
    return ["config.json", target, "/etc/passwd"]


def case_entry_rel_outside(lay, tmp):
    _secret(tmp)
    _relink(lay["snap"] / "config.json", "../../../../secret.txt")
    return ["config.json", "../../../../secret.txt"]


def case_blob_links_outside(lay, tmp):
    blob = lay["repo_dir"] / "blobs" / lay["files"]["config.json"]
    _relink(blob, _secret(tmp))
    return ["config.json", str(tmp / "secret.txt")]


def case_blob_links_into_cache_not_store(lay, tmp):
    """A blob link to a file of the cache that is not the shared store's shape."""
    etag = lay["files"]["config.json"]
    other = lay["cache_dir"] / "other" / etag[:2]
    other.mkdir(parents=True)
    blob = lay["repo_dir"] / "blobs" / etag
    shutil.move(str(blob), str(other / ("0" * 64)))
    os.symlink(f"../../other/{etag[:2]}/{'0' * 64}", blob)
    return ["config.json", "other/"]


def case_blob_links_store_wrong_prefix(lay, tmp):
    """<cache>/blobs/<2 hex>/<hash> whose 2 hex are not the hash's first two."""
    etag = lay["files"]["config.json"]
    h = "ab" + "1" * 62
    d = lay["cache_dir"] / "blobs" / "cd"
    d.mkdir(parents=True)
    blob = lay["repo_dir"] / "blobs" / etag
    shutil.move(str(blob), str(d / h))
    os.symlink(f"../../blobs/cd/{h}", blob)
    return ["config.json", f"blobs/cd/{h}"]


def case_snapshot_dir_is_link(lay, tmp):
    other = tmp / "other-snapshot"
    other.mkdir()
    (other / "config.json").write_text(_secret(tmp).read_text())
    shutil.rmtree(lay["snap"])
    os.symlink(other, lay["snap"])
    return [f"snapshots/{lay['commit']}", str(other)]


@pytest.mark.parametrize("part", ["snapshots", "refs", "blobs", ".no_exist"])
def test_layout_folder_is_link(store, tmp_path, good_src, part):
    """snapshots/, refs/, blobs/, .no_exist/ that are links (to a copy of
    themselves elsewhere): refused, naming the folder and where it leads."""
    lay = bad_cache(tmp_path)
    if part == ".no_exist":
        (lay["repo_dir"] / ".no_exist" / lay["commit"]).mkdir(parents=True)
        (lay["repo_dir"] / ".no_exist" / lay["commit"] / "vocab.txt").write_bytes(b"")
    elsewhere = tmp_path / f"elsewhere-{part.strip('.')}"
    _move_and_link(lay["repo_dir"] / part, elsewhere)
    res = store.run("ingest", lay["cache_dir"], timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path, f"models--bad--model/{part}", str(elsewhere))
    assert re.search(r"symlink", res.err), res.err


def case_noexist_commit_links_to_dir(lay, tmp):
    names = tmp / "names"
    names.mkdir()
    for n in ("a.json", "b.json"):
        (names / n).write_bytes(b"")
    (lay["repo_dir"] / ".no_exist").mkdir()
    os.symlink(names, lay["repo_dir"] / ".no_exist" / lay["commit"])
    return [f".no_exist/{lay['commit']}", str(names)]


def case_entry_links_to_dir_inside(lay, tmp):
    os.symlink("../../blobs", lay["snap"] / "sub")
    return ["/sub", "../../blobs", "a directory"]


def case_entry_links_to_dir_outside(lay, tmp):
    os.symlink("/etc", lay["snap"] / "etc")
    return ["/etc", "leads out of the repo folder"]


def case_repo_folder_is_link(lay, tmp):
    elsewhere = tmp / "models--bad--model"
    _move_and_link(lay["repo_dir"], elsewhere)
    return ["models--bad--model", str(elsewhere)]


HF_CASES = {
    "entry-abs-etc-shadow": case_entry_abs_shadow,
    "entry-rel-etc-passwd": case_entry_rel_passwd,
    "entry-rel-outside-file": case_entry_rel_outside,
    "blob-links-outside": case_blob_links_outside,
    "blob-links-into-cache-not-store": case_blob_links_into_cache_not_store,
    "blob-links-store-wrong-prefix": case_blob_links_store_wrong_prefix,
    "snapshot-dir-is-link": case_snapshot_dir_is_link,
    "noexist-commit-links-to-dir": case_noexist_commit_links_to_dir,
    "entry-links-to-dir-inside": case_entry_links_to_dir_inside,
    "entry-links-to-dir-outside": case_entry_links_to_dir_outside,
    "repo-folder-is-link": case_repo_folder_is_link,
}


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_hf_cache_link_out_is_refused(store, tmp_path, good_src, case):
    lay = bad_cache(tmp_path)
    must = HF_CASES[case](lay, tmp_path)
    res = store.run("ingest", lay["cache_dir"], timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path, *must)
    assert "not part of any repo" not in res.err + res.out


def test_hf_cache_copy_mode_snapshot_is_accepted(mfs, tmp_path, good_src):
    """A cache written without symlinks (regular files in the snapshot), and a
    snapshot link to another file inside the repo folder: both stay inside."""
    lay = bad_cache(tmp_path)
    snap = lay["snap"]
    for rel in ("config.json", "model.safetensors"):
        data = (snap / rel).read_bytes()
        (snap / rel).unlink()
        (snap / rel).write_bytes(data)
    os.symlink("config.json", snap / "config-alias.json")
    mfs.ingest(lay["cache_dir"], timeout=TIMEOUT)
    mfs.export(BAD, tmp_path / "out")
    src, out = tmp_path / "bad-src", tmp_path / "out"
    assert sorted(fixtures.list_files(out)) == ["config-alias.json", "config.json",
                                                "model.safetensors", "tokenizer.json"]
    for got, orig in (("config.json", "config.json"), ("model.safetensors", "model.safetensors"),
                      ("tokenizer.json", "tokenizer.json"), ("config-alias.json", "config.json")):
        assert (out / got).read_bytes() == (src / orig).read_bytes(), got


# ---------------------------------------------------------------- plain folder links

def test_folder_links_inside_are_followed(mfs, tmp_path):
    """A file link, a nested relative link and a folder link that stay inside
    the folder are followed: the export holds their targets' bytes."""
    src = small_model(tmp_path / "src")
    (src / "sub").mkdir()
    (src / "sub" / "real.txt").write_text("real\n")
    os.symlink("config.json", src / "alias.json")
    os.symlink("../tokenizer.json", src / "sub" / "tok.json")
    os.symlink("sub", src / "shards")
    mfs.ingest(src, BAD, timeout=TIMEOUT)
    out = tmp_path / "out"
    mfs.export(BAD, out)
    want = {"alias.json": "config.json", "sub/tok.json": "tokenizer.json",
            "shards/real.txt": "sub/real.txt", "shards/tok.json": "tokenizer.json",
            "sub/real.txt": "sub/real.txt", "model.safetensors": "model.safetensors"}
    for got, orig in want.items():
        assert (out / got).read_bytes() == (src / orig).read_bytes(), got


def test_folder_link_loop_is_refused(store, tmp_path, good_src):
    src = small_model(tmp_path / "src")
    (src / "sub").mkdir()
    os.symlink("..", src / "sub" / "up")
    res = store.run("ingest", src, "--repo", BAD, timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path, "sub/up", '".."')
    assert re.search(r"loop", res.err), res.err


# case -> (link name in the folder, its target: relative to tmp_path's secret or absolute)
FOLDER_OUT = {
    "absolute-file": ("x.json", "ABS"),
    "relative-file": ("x.json", "../secret.txt"),
    "etc-passwd": ("x.json", "/etc/passwd"),
    "nested-relative": ("sub/x.json", "../../secret.txt"),
    "folder": ("linked-dir", "DIR"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_OUT))
def test_folder_link_out_is_refused(store, tmp_path, good_src, case):
    src = small_model(tmp_path / "src")
    (src / "sub").mkdir()
    name, target = FOLDER_OUT[case]
    secret = _secret(tmp_path)
    if target == "ABS":
        target = str(secret)
    elif target == "DIR":
        target = str(tmp_path / "outside-dir")
        os.mkdir(target)
        (Path(target) / "inner.txt").write_text(secret.read_text())
    os.symlink(target, src / name)
    res = store.run("ingest", src, "--repo", BAD, timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path, name, target, "--follow-links")
    assert "not part of any repo" not in res.err + res.out


def test_follow_links_flag(mfs, tmp_path):
    """--follow-links: links out of the folder are followed (what a user of
    an older huggingface_hub's local_dir, which links into the cache, wants)."""
    src = small_model(tmp_path / "src")
    cache_file = tmp_path / "cache" / "blob-config"
    cache_file.parent.mkdir()
    cache_file.write_text('{"from": "cache"}\n')
    (tmp_path / "cache" / "dir").mkdir()
    (tmp_path / "cache" / "dir" / "inner.txt").write_text("inner\n")
    (src / "config.json").unlink()
    os.symlink(os.path.relpath(cache_file, src), src / "config.json")
    os.symlink(tmp_path / "cache" / "dir", src / "linked")
    mfs.ingest(src, BAD, "--follow-links", timeout=TIMEOUT)
    out = tmp_path / "out"
    mfs.export(BAD, out)
    assert (out / "config.json").read_text() == '{"from": "cache"}\n'
    assert (out / "linked" / "inner.txt").read_text() == "inner\n"


def test_dangling_link_names_link_and_target(store, tmp_path, good_src):
    src = small_model(tmp_path / "src")
    os.symlink("gone/vocab.txt", src / "vocab.txt")
    res = store.run("ingest", src, "--repo", BAD, timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path, "vocab.txt", "gone/vocab.txt")
    assert re.search(r"dangling|does not exist", res.err), res.err


# ---------------------------------------------------------------- not a regular file, nowhere

KIND_WORDS = {"fifo": "a FIFO (named pipe)", "socket": "a unix socket", "chardev": "a character device",
              "dir": "a directory"}


def make_kind(path: Path, kind: str):
    """Put a FIFO, a unix socket, a character device (like /dev/null) or a
    directory at path (replacing what is there)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        # a socket path is limited to 108 bytes: bind in a short folder, move it
        with tempfile.TemporaryDirectory(dir="/tmp") as d:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.bind(os.path.join(d, "s"))
                shutil.move(os.path.join(d, "s"), str(path))
            finally:
                s.close()
    elif kind == "chardev":
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        path.mkdir()
        (path / "inner").write_text("x\n")
    assert {"fifo": stat.S_ISFIFO, "socket": stat.S_ISSOCK, "chardev": stat.S_ISCHR,
            "dir": stat.S_ISDIR}[kind](path.lstat().st_mode)


def place_folder(tmp, kind):
    src = small_model(tmp / "src")
    make_kind(src / "model.safetensors", kind)
    return [src, "--repo", BAD], "model.safetensors"


def place_folder_link(tmp, kind):
    """A link inside the folder to a non-regular file outside it (followed
    with --follow-links, so the kind is what is refused)."""
    src = small_model(tmp / "src")
    make_kind(tmp / "thing", kind)
    os.symlink(tmp / "thing", src / "vocab.txt")
    return [src, "--repo", BAD, "--follow-links"], "vocab.txt"


def place_refs(tmp, kind):
    lay = bad_cache(tmp)
    make_kind(lay["repo_dir"] / "refs" / "main", kind)
    return [lay["cache_dir"]], "refs/main"


def place_noexist(tmp, kind):
    lay = bad_cache(tmp)
    d = lay["repo_dir"] / ".no_exist" / lay["commit"]
    d.mkdir(parents=True)
    make_kind(d / "vocab.txt", kind)
    return [lay["cache_dir"]], "vocab.txt"


def place_noexist_commit(tmp, kind):
    """.no_exist/<commit> itself (a folder is expected there)."""
    lay = bad_cache(tmp)
    (lay["repo_dir"] / ".no_exist").mkdir()
    make_kind(lay["repo_dir"] / ".no_exist" / lay["commit"], kind)
    return [lay["cache_dir"]], f".no_exist/{lay['commit']}"


def place_snapshot(tmp, kind):
    lay = bad_cache(tmp)
    make_kind(lay["snap"] / "vocab.txt", kind)
    return [lay["cache_dir"]], "vocab.txt"


def place_blob(tmp, kind):
    lay = bad_cache(tmp)
    make_kind(lay["repo_dir"] / "blobs" / lay["files"]["config.json"], kind)
    return [lay["cache_dir"]], "config.json"


def place_shared_blob(tmp, kind):
    lay = share_blobs(bad_cache(tmp))
    make_kind(lay["shared"][lay["files"]["config.json"]], kind)
    return [lay["cache_dir"]], "config.json"


PLACES = {"folder": place_folder, "folder-link": place_folder_link, "refs": place_refs,
          "noexist": place_noexist, "noexist-commit": place_noexist_commit,
          "snapshot": place_snapshot, "blob": place_blob, "shared-blob": place_shared_blob}
# Where a folder stands where a file is expected: a blob.  (A snapshot entry
# that links to a folder: test_hf_cache_link_out_is_refused.)  In a plain
# folder, refs/ and .no_exist/<commit>/ a folder is a folder of the repo
# (sub/, refs/pr/), and followed; .no_exist/<commit> itself must be one.
DIR_PLACES = {"blob", "shared-blob"}
NONREG = [(p, k) for p in sorted(PLACES) for k in sorted(KIND_WORDS)
          if k != "dir" or p in DIR_PLACES]


@pytest.mark.parametrize("place,kind", NONREG, ids=[f"{p}-{k}" for p, k in NONREG])
def test_non_regular_file_is_refused_without_hanging(store, tmp_path, good_src, place, kind):
    args, name = PLACES[place](tmp_path, kind)
    res = store.run("ingest", *args, timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path, name, KIND_WORDS[kind])


# ---------------------------------------------------------------- ref names

BAD_REF_FILES = ["x.lock", "bad name", ".hidden", "a..b", "main.", "pr/.x", "@"]


@pytest.mark.parametrize("ref", BAD_REF_FILES)
def test_bad_ref_file_in_cache(store, tmp_path, good_src, ref):
    """A file in refs/ whose name git would refuse: an error naming the file,
    even when it points at no snapshot here."""
    lay = bad_cache(tmp_path)
    p = lay["repo_dir"] / "refs" / ref
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(lay["commit"])
    res = store.run("ingest", lay["cache_dir"], timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path, f"models--bad--model/refs/{ref}", "ref name")


def test_bad_ref_option_checked_before_reading(store, tmp_path, good_src):
    """--ref is checked before the source is looked at (here it does not exist)."""
    res = store.run("ingest", tmp_path / "does-not-exist", "--repo", BAD, "--ref", "a//b",
                    timeout=TIMEOUT)
    assert res.rc in (1, 2), res
    assert "a//b" in res.err and "--ref" in res.err, res.err
    assert "does-not-exist" not in res.err, f"the source was read before --ref was checked:\n{res.err}"
    assert_store_intact(store, good_src, tmp_path)


# ---------------------------------------------------------------- Git LFS pointers, .git, modes

def lfs_pointer(size: int = 91_000_000) -> bytes:
    oid = hashlib.sha256(b"the real weights").hexdigest()
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
            .encode())


def test_lfs_pointer_safetensors_is_refused(store, tmp_path, good_src):
    src = small_model(tmp_path / "src")
    ptr = lfs_pointer()
    (src / "model.safetensors").write_bytes(ptr)
    res = store.run("ingest", src, "--repo", BAD, timeout=TIMEOUT)
    assert_refused(store, res, good_src, tmp_path,
                   f"model.safetensors is a Git LFS pointer, not the file ({len(ptr)} bytes): "
                   "fetch the real file (git lfs pull) and ingest again")
    assert "over the limit" not in res.err, res.err


def test_lfs_pointer_other_weights_stored_with_warning(mfs, tmp_path):
    src = small_model(tmp_path / "src")
    ptr = lfs_pointer()
    (src / "pytorch_model.bin").write_bytes(ptr)
    (src / "notes.txt").write_bytes(ptr)  # not an LFS-type name: no warning
    res = mfs.ingest(src, BAD, timeout=TIMEOUT)
    warn = [line for line in res.err.splitlines() if "Git LFS pointer" in line]
    assert len(warn) == 1 and "pytorch_model.bin" in warn[0] and "warning" in warn[0], res.err
    out = tmp_path / "out"
    mfs.export(BAD, out)
    assert (out / "pytorch_model.bin").read_bytes() == ptr


def test_git_and_cache_folders_skipped_with_a_note(mfs, tmp_path):
    src = small_model(tmp_path / "src")
    (src / ".git" / "objects").mkdir(parents=True)
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (src / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (src / ".cache" / "huggingface" / "download" / "config.json.metadata").write_text("x\n")
    (src / "sub").mkdir()
    (src / "sub" / ".git").write_text("gitdir: ../.git/modules/sub\n")
    (src / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    res = mfs.ingest(src, BAD, timeout=TIMEOUT)
    lines = [line for line in res.err.splitlines() if "skipped" in line]
    assert len(lines) == 1, res.err
    for name in (".git/", ".cache/", "sub/.git"):
        assert name in lines[0], lines[0]
    assert re.search(r"git|huggingface", lines[0].split("skipped", 1)[1]), lines[0]
    listing = mfs.ls(BAD)
    assert ".gitattributes" in listing and "HEAD" not in listing and ".metadata" not in listing


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_executable_bit_is_kept(mfs, tmp_path, mounted, hf_cache):
    """A file with any x bit is served 0555 (plain folder and HF cache blob),
    others 0444; the x bit is part of a plain folder's commit id."""
    src = small_model(tmp_path / "src")
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "tool.py").write_text("print('hi')\n")
    os.chmod(src / "run.sh", 0o755)
    os.chmod(src / "tool.py", 0o744)
    os.chmod(src / "config.json", 0o644)
    mfs.ingest(src, "org/plain", timeout=TIMEOUT)
    lay = hf_cache(src, "org/cached")
    os.chmod(lay["repo_dir"] / "blobs" / lay["files"]["tool.py"], 0o700)
    mfs.ingest(lay["cache_dir"], timeout=TIMEOUT)
    commit_x = re.findall(r"ref\s+main\s+([0-9a-f]{40})", mfs.ls("org/plain"))
    m = mounted(mfs)
    plain = m.snapshot("org/plain")
    assert (_mode(plain / "run.sh"), _mode(plain / "tool.py"), _mode(plain / "config.json")) \
        == (0o555, 0o555, 0o444)
    cached = m.snapshot("org/cached")
    assert (_mode(cached / "tool.py"), _mode(cached / "config.json")) == (0o555, 0o444)
    m.stop()
    os.chmod(src / "run.sh", 0o644)
    os.chmod(src / "tool.py", 0o644)
    mfs.ingest(src, "org/plain", timeout=TIMEOUT)
    commit_nox = re.findall(r"ref\s+main\s+([0-9a-f]{40})", mfs.ls("org/plain"))
    assert commit_x and commit_nox and commit_x != commit_nox, (commit_x, commit_nox)
