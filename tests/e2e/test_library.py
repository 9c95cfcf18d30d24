"""`import modelfs` (the package `pip install .` builds and installs, with
libmodelfs inside) against the real model fixtures, compared with safetensors
reading the original files:

- load_file / safe_open on F32, BF16, FP16 and the sharded model equal
  safetensors' own for every tensor (names, order, dtype, shape, bytes);
  keys(), offset_keys(), metadata(); numpy without torch;
- get_slice over random ranges (rows, columns, steps, negative and integer
  indices) equals indexing the whole tensor;
- reads from many threads at once; peak memory of load_file is the tensors
  plus a small window;
- a store ingested into, with the repo being read removed and garbage-
  collected, while a reader reads: the open reader keeps its bytes;
- bad repo ids, revisions, files, tensors, stores and frameworks, and a
  damaged chunk, are Python exceptions carrying libmodelfs's message;
- the `modelfs` command of the package;
- examples/read_tensor.c built against the C library installed by
  `cmake --install` into a temporary prefix, through its modelfs.pc (shared
  and static), reads a tensor by name equal to the file's bytes.

`./run test` installs the package into the venv (pip install .) first.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import MODELFS_FAST, Modelfs

try:
    import modelfs
except ImportError as e:  # the package is part of the build: never skipped
    pytest.fail(f"`import modelfs` failed ({e}): install the package with "
                f"`{sys.executable} -m pip install --no-build-isolation .` from the "
                f"checkout (./run test does)", pytrace=False)

torch = pytest.importorskip("torch")
import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.numpy  # noqa: E402
import safetensors.torch  # noqa: E402

MiB = 1 << 20
REPOS = {"minilm-f32": "lib/minilm-f32", "minilm-bf16": "lib/minilm-bf16",
         "minilm-fp16": "lib/minilm-fp16", "minilm-sharded": "lib/minilm-sharded"}


@pytest.fixture(scope="module")
def store(tmp_path_factory, model_path):
    """One store with the four fixtures (ingested by the release binary)."""
    m = Modelfs(tmp_path_factory.mktemp("library") / "store", binary=MODELFS_FAST)
    for name, repo in REPOS.items():
        m.ingest(model_path(name), repo, "--quiet")
    return m


def originals(folder: Path, fw: str = "pt") -> dict:
    """What safetensors loads from the fixture folder: model.safetensors, or
    every shard of the index (merged in shard order)."""
    load = safetensors.torch.load_file if fw == "pt" else safetensors.numpy.load_file
    if (folder / "model.safetensors").is_file():
        return load(str(folder / "model.safetensors"))
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        out.update(load(str(folder / shard)))
    return out


def same(a, b) -> bool:
    """Bit-identical tensors (NaNs included) of the same dtype and shape."""
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes() == b.tobytes())
    if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
        return False
    if a.numel() == 0:
        return True
    def raw(x):  # the bytes, whatever the strides
        return torch.empty(x.shape, dtype=x.dtype).copy_(x).reshape(-1).view(torch.uint8)
    return torch.equal(raw(a), raw(b))


def test_package_installed():
    """The package in use is the one pip installed, with its library, binary,
    header and pkg-config file inside it."""
    root = Path(modelfs.__file__).resolve().parent
    assert "site-packages" in str(root), f"modelfs imported from {root}, not installed"
    for rel in ("lib/libmodelfs.so", "bin/modelfs", "include/modelfs.h",
                "lib/pkgconfig/modelfs.pc"):
        assert (root / rel).is_file(), f"{rel} missing from the installed package"
    assert modelfs.library_version() == modelfs.__version__


@pytest.mark.parametrize("name", list(REPOS))
def test_load_file_equals_safetensors(store, model_path, name, tmp_path):
    want = originals(model_path(name))
    got = modelfs.load_file(REPOS[name], store=str(store.store))
    assert list(got) == list(want)  # the same names in the same (file) order
    for k in want:
        assert same(got[k], want[k]), f"{name}: tensor {k} differs"
        assert got[k].is_contiguous()
    # each tensor has storage of its own, of its own size (as safetensors'
    # have): nothing shared, so the dict saves back as it came
    ptrs = {v.untyped_storage().data_ptr() for v in got.values() if v.numel()}
    assert len(ptrs) == sum(1 for v in got.values() if v.numel())
    assert all(v.untyped_storage().nbytes() == v.numel() * v.element_size()
               for v in got.values())
    if name == "minilm-bf16":
        safetensors.torch.save_file(got, str(tmp_path / "again.safetensors"))
        again = safetensors.torch.load_file(str(tmp_path / "again.safetensors"))
        assert all(same(again[k], want[k]) for k in want)


@pytest.mark.parametrize("name", ["minilm-bf16", "minilm-sharded"])
def test_safe_open_api(store, model_path, name):
    folder = model_path(name)
    files = ([folder / "model.safetensors"] if name != "minilm-sharded"
             else sorted(folder.glob("model-*.safetensors")))
    ref_keys, ref_offset_keys, ref_meta = [], [], None
    for p in files:
        with safetensors.safe_open(str(p), framework="pt") as r:
            ref_keys += r.keys()
            ref_offset_keys += r.offset_keys()
            ref_meta = ref_meta or r.metadata()
    want = originals(folder)
    with modelfs.safe_open(REPOS[name], framework="pt", store=str(store.store)) as f:
        assert f.keys() == sorted(ref_keys)
        assert f.offset_keys() == ref_offset_keys
        assert f.metadata() == ref_meta
        for k in f.keys():
            assert same(f.get_tensor(k), want[k]), k
        with pytest.raises(modelfs.TensorNotFoundError, match="no.such"):
            f.get_tensor("no.such")
        with pytest.raises(KeyError):
            f.get_slice("no.such")
    with pytest.raises(ValueError, match="closed"):
        f.get_tensor(ref_keys[0])
    # one shard of the sharded model, by name
    if name == "minilm-sharded":
        with modelfs.safe_open(REPOS[name], filename=files[0].name,
                               store=str(store.store)) as f:
            with safetensors.safe_open(str(files[0]), framework="pt") as r:
                assert f.keys() == r.keys()


def test_revision_by_commit(store, model_path):
    s = modelfs.Store(str(store.store))
    repo = REPOS["minilm-fp16"]
    commit = s.resolve(repo, "main")
    assert s.refs(repo) == {"main": commit}
    assert [x["commit"] for x in s.snapshots(repo)] == [commit]
    assert "models/" + repo in s.repos()
    files = {f.path: f for f in s.files(repo)}
    src = model_path("minilm-fp16")
    assert files["model.safetensors"].size == (src / "model.safetensors").stat().st_size
    assert files["config.json"].size == (src / "config.json").stat().st_size
    with s.open(repo, "config.json", revision=commit) as cf:
        assert cf.read() == (src / "config.json").read_bytes()
        assert cf.tensors() == []
    got = modelfs.load_file("models/" + repo, revision=commit, store=s)
    want = originals(src)
    assert all(same(got[k], want[k]) for k in want)
    s.close()


def test_numpy_without_torch(store, model_path):
    """numpy alone: the package imports and loads with torch unavailable."""
    srcs = {n: str(model_path(n) / "model.safetensors") for n in ("minilm-f32", "minilm-fp16")}
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now fails
import numpy as np, modelfs
import safetensors.numpy as sn
for name, src in {srcs!r}.items():
    want = sn.load_file(src)
    got = modelfs.load_file("lib/" + name, store={str(store.store)!r}, framework="numpy")
    assert list(got) == list(want), name
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert got[k].tobytes() == want[k].tobytes(), k
with modelfs.safe_open("lib/minilm-bf16", framework="np", store={str(store.store)!r}) as f:
    try:
        f.get_tensor(f.keys()[0])
        raise SystemExit("BF16 read as numpy")
    except TypeError as e:
        assert "BF16" in str(e)
print("ok", "torch" in sys.modules and sys.modules["torch"] is not None)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["ok", "False"]


def slice_cases(shape, rng):
    """Random indexings of a tensor of @p shape: what get_slice takes (torch
    has no negative steps)."""
    rows = shape[0]
    cases = [slice(None), (Ellipsis,), rows - 1, -1, slice(-3, None), slice(5, 2)]
    for _ in range(12):
        a, b = sorted(rng.randrange(-rows, rows + 1) for _ in range(2))
        s0 = slice(a, b, rng.choice([1, 1, 1, 2, 3]))
        if len(shape) == 1:
            cases.append(s0)
            continue
        cols = shape[1]
        c, d = sorted(rng.randrange(0, cols + 1) for _ in range(2))
        cases += [s0, (s0, slice(c, d)), (rng.randrange(rows), slice(c, d, 2)),
                  (slice(a, b), rng.randrange(-cols, cols)), (Ellipsis, slice(c, d))]
    return cases


def test_get_slice_random(store, model_path):
    rng = random.Random(int(os.environ.get("MFS_TEST_SEED", time.time())))
    want = originals(model_path("minilm-bf16"))
    names = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight",
             "encoder.layer.3.intermediate.dense.bias", "embeddings.position_ids"]
    with modelfs.safe_open(REPOS["minilm-bf16"], framework="pt",
                           store=str(store.store)) as f, \
            safetensors.safe_open(str(model_path("minilm-bf16") / "model.safetensors"),
                                  framework="pt") as r:
        for name in names:
            s, rs = f.get_slice(name), r.get_slice(name)
            assert s.get_shape() == rs.get_shape() and s.get_dtype() == rs.get_dtype()
            full = want[name]
            for key in slice_cases(full.shape, rng):
                got = s[key]
                exp = full[key]
                assert same(got, exp.contiguous()), f"{name}[{key!r}]"
        with pytest.raises(IndexError):
            f.get_slice(names[0])[10 ** 6]


def test_threads(store, model_path):
    """Eight threads reading tensors of two files at once, all exact."""
    want = {n: originals(model_path(n)) for n in ("minilm-f32", "minilm-bf16")}
    errors = []
    with modelfs.safe_open(REPOS["minilm-f32"], store=str(store.store)) as f32, \
            modelfs.safe_open(REPOS["minilm-bf16"], store=str(store.store)) as b16:
        def work(i):
            rng = random.Random(i)
            try:
                for _ in range(25):
                    name, f = rng.choice([("minilm-f32", f32), ("minilm-bf16", b16)])
                    k = rng.choice(f.keys())
                    if not same(f.get_tensor(k), want[name][k]):
                        errors.append(f"{name} {k}")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        th = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in th:
            t.start()
        for t in th:
            t.join()
    assert not errors, errors


def test_load_file_memory(store, model_path):
    """Peak anonymous memory of load_file (sampled) is the tensors it returns
    plus a bounded window: never a second copy of the model."""
    code = f"""
import threading, time, torch, modelfs
def anon():
    with open("/proc/self/status") as st:
        return next(int(l.split()[1]) for l in st if l.startswith("RssAnon:")) * 1024
before, peak, done = anon(), [0], []
def sample():
    while not done:
        peak[0] = max(peak[0], anon())
        time.sleep(0.0005)
t = threading.Thread(target=sample); t.start()
d = modelfs.load_file("lib/minilm-f32", store={str(store.store)!r})
done.append(1); t.join()
peak[0] = max(peak[0], anon())
print(before, peak[0], sum(v.numel() * v.element_size() for v in d.values()))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    before, peak, tensors = map(int, r.stdout.split())
    assert tensors > 80 * MiB
    window = peak - before - tensors
    assert window < 32 * MiB, f"load_file held {window / MiB:.1f} MiB beyond its tensors"


def test_reader_survives_ingest_rm_gc(tmp_path, model_path):
    """A reader reads while the store takes another ingest, and its own repo
    is removed and garbage-collected: it keeps reading its snapshot, exactly;
    the repo is gone for a new reader."""
    m = Modelfs(tmp_path / "store", binary=MODELFS_FAST)
    m.ingest(model_path("minilm-bf16"), "lib/gone", "--quiet")
    want = originals(model_path("minilm-bf16"))
    stop, errors, reads = threading.Event(), [], [0]
    f = modelfs.safe_open("lib/gone", store=str(m.store))

    def read_loop():
        rng = random.Random(7)
        try:
            while not stop.is_set():
                k = rng.choice(f.keys())
                if not same(f.get_tensor(k), want[k]):
                    errors.append(k)
                reads[0] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t = threading.Thread(target=read_loop)
    t.start()
    try:
        m.ingest(model_path("minilm-fp16"), "lib/other", "--quiet")
        n0 = reads[0]
        m.ok("rm", "lib/gone")
        gc = m.ok("gc")
        n1 = reads[0]
        time.sleep(0.3)  # reads after the gc
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert n0 > 0 and reads[0] > n1, (n0, n1, reads[0])
    freed = re.search(r"unreferenced blobs and (\d+) chunks", gc.out)
    assert freed and int(freed.group(1)) > 100, gc.out  # gc did free the repo's chunks
    # the open reader still has every tensor
    got = f.get_tensors()
    assert all(same(got[k], want[k]) for k in want)
    f.close()
    with pytest.raises(modelfs.RepositoryNotFoundError, match="lib/gone"):
        modelfs.safe_open("lib/gone", store=str(m.store))
    other = modelfs.load_file("lib/other", store=str(m.store))
    fp16 = originals(model_path("minilm-fp16"))
    assert all(same(other[k], fp16[k]) for k in fp16)


def test_bad_input(store, tmp_path):
    s = str(store.store)
    cases = [
        (dict(repo_id="lib/no-such"), modelfs.RepositoryNotFoundError, "lib/no-such"),
        (dict(repo_id="lib/../etc"), modelfs.InvalidArgumentError, "invalid repo id"),
        (dict(repo_id=""), modelfs.InvalidArgumentError, "repo id"),
        (dict(repo_id="a" * 300), modelfs.InvalidArgumentError, "longer"),
        (dict(repo_id=REPOS["minilm-bf16"], revision="v9"), modelfs.RevisionNotFoundError,
         "v9"),
        (dict(repo_id=REPOS["minilm-bf16"], revision="0" * 40),
         modelfs.RevisionNotFoundError, "0000"),
        (dict(repo_id=REPOS["minilm-bf16"], filename="nope.safetensors"),
         modelfs.EntryNotFoundError, "nope.safetensors"),
        (dict(repo_id=REPOS["minilm-bf16"], filename="../x.safetensors"),
         modelfs.InvalidArgumentError, "invalid path"),
        (dict(repo_id=REPOS["minilm-bf16"], filename="config.json"),
         modelfs.FormatError, "index"),
        (dict(repo_id=REPOS["minilm-bf16"], framework="tf"), modelfs.InvalidArgumentError,
         "framework"),
    ]
    for kw, exc, text in cases:
        kw.setdefault("store", s)
        with pytest.raises(exc, match=text) as ei:
            modelfs.load_file(**kw)
        assert isinstance(ei.value, modelfs.ModelfsError) and ei.value.code < 0, kw
    # the hub's exception kinds too: a missing repo or file is a FileNotFoundError
    with pytest.raises(FileNotFoundError):
        modelfs.safe_open("lib/no-such", store=s)
    with pytest.raises(modelfs.StoreNotFoundError, match=str(tmp_path / "none")):
        modelfs.load_file(REPOS["minilm-bf16"], store=str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(modelfs.StoreNotFoundError, match="no modelfs store"):
        modelfs.Store(str(tmp_path / "empty"))
    with pytest.raises(TypeError):
        modelfs.load_file(REPOS["minilm-bf16"], store=s, revision=5)
    with pytest.raises(modelfs.InvalidArgumentError, match="numpy"):
        modelfs.load_file(REPOS["minilm-f32"], store=s, framework="numpy", device="cuda")
    # a range past the end of a file
    with modelfs.Store(s) as st, st.open(REPOS["minilm-bf16"], "config.json") as cf:
        with pytest.raises(modelfs.InvalidArgumentError, match="past the end"):
            cf.read(cf.size - 1, 2)


def damage_raw_chunk(store: Path, raw: bytes) -> int:
    """Flip 16 bytes inside every verbatim copy of @p raw (a chunk stored by
    the raw codec) in the store's pack files; how many copies were damaged."""
    from test_corruption import payload_files
    n = 0
    for f in payload_files(store):
        blob = bytearray(f.read_bytes())
        hit, pos = 0, blob.find(raw[:4096])
        while pos >= 0:
            if blob[pos:pos + len(raw)] == raw:
                for i in range(5000, 5016):
                    blob[pos + i] ^= 0xFF
                hit += 1
            pos = blob.find(raw[:4096], pos + 1)
        if hit:
            f.write_bytes(bytes(blob))
            n += hit
    return n


def test_damaged_chunk(tmp_path, model_path):
    """A damaged chunk: CorruptDataError naming the repo, the tensor and what to
    run, for load_file and for that tensor; every other tensor still reads."""
    src = model_path("minilm-bf16")
    m = Modelfs(tmp_path / "store", binary=MODELFS_FAST)
    m.ingest(src, "lib/damaged", "--quiet", "--codec", "raw")
    name = "embeddings.word_embeddings.weight"
    with safetensors.safe_open(str(src / "model.safetensors"), framework="pt") as r:
        header = 8 + int.from_bytes((src / "model.safetensors").read_bytes()[:8], "little")
        off = header + json.loads((src / "model.safetensors").read_bytes()[8:header])[
            name]["data_offsets"][0]
        assert name in r.keys()
    raw = (src / "model.safetensors").read_bytes()[off + 2 * MiB:off + 3 * MiB]
    assert damage_raw_chunk(m.store, raw) == 1
    with pytest.raises(modelfs.CorruptDataError) as ei:
        modelfs.load_file("lib/damaged", store=str(m.store))
    msg = str(ei.value)
    assert "lib/damaged" in msg and name in msg and "modelfs verify" in msg, msg
    assert isinstance(ei.value, OSError) and ei.value.code == -7
    want = originals(src)
    with modelfs.safe_open("lib/damaged", store=str(m.store)) as f:
        with pytest.raises(modelfs.CorruptDataError, match=name.replace(".", r"\.")):
            f.get_tensor(name)
        for k in f.keys():
            if k != name:
                assert same(f.get_tensor(k), want[k]), k
        # rows before the damaged chunk read fine through a slice
        rows = 2 * MiB // (384 * 2)
        assert same(f.get_slice(name)[:rows], want[name][:rows])


def test_command_entry_point(store):
    """The package's `modelfs` command runs the bundled binary."""
    exe = Path(sys.executable).parent / "modelfs"
    assert exe.is_file(), f"no {exe}: the console script was not installed"
    r = subprocess.run([str(exe), "--store", str(store.store), "ls"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "lib/minilm-bf16" in r.stdout
    r = subprocess.run([sys.executable, "-m", "modelfs", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "usage: modelfs" in r.stdout, r.stdout + r.stderr


def _cmake_build_dir() -> Path:
    """The build tree of the release binary the tests use (./run build's)."""
    d = Path(MODELFS_FAST).resolve().parents[1]
    if not (d / "CMakeCache.txt").is_file():
        pytest.fail(f"no CMake build tree at {d} (from the binary {MODELFS_FAST})",
                    pytrace=False)
    return d


def test_c_example_installed(tmp_path, store, model_path):
    """`cmake --install` into a fresh prefix gives bin/modelfs, the library
    (libmodelfs.so exporting modelfs_* only, libmodelfs.a), modelfs.h and
    modelfs.pc; examples/read_tensor.c builds with pkg-config against it and
    reads a tensor equal to the original file's bytes."""
    build = _cmake_build_dir()
    prefix = tmp_path / "prefix"
    r = subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    libdir = next(p.parent for p in prefix.rglob("libmodelfs.so"))
    for rel in ("bin/modelfs", "include/modelfs.h"):
        assert (prefix / rel).is_file(), rel
    assert (libdir / "libmodelfs.a").is_file() and (libdir / "pkgconfig/modelfs.pc").is_file()
    nm = subprocess.run(["nm", "-D", "--defined-only", str(libdir / "libmodelfs.so")],
                        capture_output=True, text=True, check=True).stdout.split("\n")
    syms = [ln.split()[-1].split("@")[0] for ln in nm if ln.strip()]
    assert "modelfs_file_read_ranges" in syms
    assert all(x.startswith("modelfs_") or x == "MODELFS_0" for x in syms), syms

    env = dict(os.environ, PKG_CONFIG_PATH=str(libdir / "pkgconfig"))

    def pc(*args):
        return subprocess.run(["pkg-config", *args, "modelfs"], env=env, capture_output=True,
                              text=True, check=True).stdout.split()

    sanitize = "MODELFS_SANITIZE:BOOL=ON" in (build / "CMakeCache.txt").read_text()
    san = ["-fsanitize=address,undefined"] if sanitize else []
    example = Path(__file__).resolve().parents[2] / "examples" / "read_tensor.c"
    shared, static = tmp_path / "read_tensor", tmp_path / "read_tensor_static"
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *san, str(example),
                        "-o", str(shared), *pc("--cflags"), *pc("--libs"),
                        f"-Wl,-rpath,{libdir}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    static_libs = [x for x in pc("--static", "--libs") if x != "-lmodelfs"]
    r = subprocess.run([cc, "-std=c99", *san, str(example), "-o", str(static),
                        *pc("--cflags"), str(libdir / "libmodelfs.a"), *static_libs],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ldd = subprocess.run(["ldd", str(static)], capture_output=True, text=True).stdout
    assert "libmodelfs" not in ldd, ldd

    src = model_path("minilm-bf16") / "model.safetensors"
    want = originals(model_path("minilm-bf16"))["encoder.layer.5.output.dense.weight"]
    for exe in (shared, static):
        r = subprocess.run([str(exe), "--store", str(store.store), REPOS["minilm-bf16"],
                            "model.safetensors", "encoder.layer.5.output.dense.weight",
                            str(src)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "matches" in r.stdout and "BF16 [384, 1536]" in r.stdout, r.stdout
        assert f"{want.numel() * 2} bytes" in r.stdout
    r = subprocess.run([str(shared), "--store", str(store.store), REPOS["minilm-bf16"],
                        "model.safetensors", "no.such.tensor"], capture_output=True, text=True)
    assert r.returncode == 1 and "no tensor" in r.stderr, r.stderr
