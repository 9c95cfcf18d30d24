"""Shared pieces of the end-to-end tests: the modelfs binary, a per-test store,
real-model fixtures (see fixtures.py) and helpers to compare trees.

The binary is $MODELFS (default build/tools/modelfs). `./run test` points it at
the ASan+UBSan build, so every e2e command is sanitizer-checked: any sanitizer
report on stderr fails the test, whatever the exit code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402

ROOT = fixtures.ROOT
MODELFS = Path(os.environ.get("MODELFS", ROOT / "build" / "tools" / "modelfs"))
if not MODELFS.is_absolute():
    MODELFS = ROOT / MODELFS
# A release binary for the few tests where an ASan -O0 build would take minutes
# (the 4 GiB file); falls back to MODELFS.
_rel = os.environ.get("MODELFS_RELEASE")
MODELFS_FAST = Path(_rel) if _rel and Path(_rel).is_file() else MODELFS

DEFAULT_TIMEOUT = float(os.environ.get("MFS_E2E_TIMEOUT", "600"))

SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|"
                          r"SUMMARY: (Address|Undefined|Leak)")

SUMMARY_RE = re.compile(
    r"ingested\s+(?P<files>\d+)\s+files?,\s+(?P<bytes_in>\d+)\s+bytes in,\s+"
    r"(?P<stored>\d+)\s+bytes stored\s+\(ratio\s+(?P<ratio>[0-9.]+|inf|nan)\),\s+"
    r"(?P<mbs>[0-9.]+|inf|nan)\s+MB/s")


def pytest_configure(config):
    config.addinivalue_line("markers", "bigfile: needs >= 12 GB free disk (4 GiB+ file)")


class Result:
    """What one modelfs invocation did."""

    def __init__(self, args, rc, out, err, seconds, maxrss_kb=None):
        self.args, self.rc, self.out, self.err = args, rc, out, err
        self.seconds = seconds
        self.maxrss_kb = maxrss_kb

    def __repr__(self):
        return (f"modelfs {' '.join(map(str, self.args))}\n  exit {self.rc} "
                f"in {self.seconds:.1f}s\n  stdout: {self.out[-3000:]!r}\n"
                f"  stderr: {self.err[-3000:]!r}")

    def summary(self) -> dict | None:
        m = SUMMARY_RE.search(self.out + "\n" + self.err)
        if not m:
            return None
        d = m.groupdict()
        return {"files": int(d["files"]), "bytes_in": int(d["bytes_in"]),
                "stored": int(d["stored"]), "ratio": float(d["ratio"]),
                "mbs": float(d["mbs"])}


def run_process(argv, env, timeout):
    """Run argv with stdin from /dev/null; returns (rc, stdout, stderr, seconds,
    max RSS in KiB of that process alone). rc is None on timeout (killed);
    a negative rc is a signal."""
    import tempfile
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe, \
            open(os.devnull, "rb") as devnull:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=devnull, stdout=fo, stderr=fe, env=env)
        rc = maxrss = None
        delay = 0.002
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(status)
                p.returncode = rc
                maxrss = ru.ru_maxrss
                break
            if time.monotonic() - t0 > timeout:
                p.kill()
                os.wait4(p.pid, 0)
                p.returncode = -9
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        secs = time.monotonic() - t0
        fo.seek(0)
        fe.seek(0)
        return (rc, fo.read().decode("utf-8", "replace"), fe.read().decode("utf-8", "replace"),
                secs, maxrss)


def check_sanitizers(res: Result):
    if SANITIZER_RE.search(res.err) or SANITIZER_RE.search(res.out):
        pytest.fail(f"sanitizer report from {res!r}", pytrace=False)


class Modelfs:
    """One store (a directory under the test's tmp_path) and the binary."""

    def __init__(self, store: Path, binary: Path = MODELFS, home: Path | None = None):
        self.store = Path(store)
        self.binary = Path(binary)
        self.home = home or self.store.parent
        if not self.binary.is_file():
            pytest.fail(f"modelfs binary not found at {self.binary} "
                        f"(build it with ./run build, or set MODELFS)", pytrace=False)

    def env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        # Never touch the user's default store, even if --store were ignored.
        env["XDG_DATA_HOME"] = str(self.home / "xdg-data")
        env.pop("MODELFS_STORE", None)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        if extra:
            env.update(extra)
        return env

    def argv(self, *args, store: bool = True) -> list[str]:
        a = [str(self.binary)]
        if store:
            a += ["--store", str(self.store)]
        return a + [str(x) for x in args]

    def run(self, *args, timeout: float = DEFAULT_TIMEOUT, store: bool = True,
            env: dict | None = None) -> Result:
        argv = self.argv(*args, store=store)
        rc, out, err, secs, maxrss = run_process(argv, self.env(env), timeout)
        if rc is None:
            pytest.fail(f"timed out after {timeout}s: {' '.join(argv)}\n"
                        f"stdout: {out[-2000:]!r}\nstderr: {err[-2000:]!r}", pytrace=False)
        res = Result(args, rc, out, err, secs, maxrss)
        check_sanitizers(res)
        return res

    def ok(self, *args, **kw) -> Result:
        res = self.run(*args, **kw)
        assert res.rc == 0, f"expected success:\n{res!r}"
        return res

    # -- commands
    def ingest(self, src, repo: str | None = None, *extra, **kw) -> Result:
        args = ["ingest", src]
        if repo:
            args += ["--repo", repo]
        return self.ok(*args, *extra, **kw)

    def export(self, repo: str, dest, rev: str | None = None, **kw) -> Result:
        args = ["export", repo, dest]
        if rev:
            args += ["--rev", rev]
        return self.ok(*args, **kw)

    def verify(self, repo: str | None = None, **kw) -> Result:
        return self.ok("verify", *([repo] if repo else []), **kw)

    def ls(self, repo: str | None = None) -> str:
        return self.ok("ls", *([repo] if repo else [])).out

    def info_json(self, target: str, rev: str | None = None):
        import json
        args = ["info", target, "--json"] + (["--rev", rev] if rev else [])
        res = self.ok(*args)
        try:
            return json.loads(res.out)
        except ValueError as e:
            pytest.fail(f"info --json printed no valid JSON ({e}):\n{res!r}", pytrace=False)

    def repos(self) -> str:
        return self.ls()

    def disk_bytes(self) -> int:
        """Bytes the store directory occupies on disk (allocated blocks)."""
        total = 0
        for dirpath, _, files in os.walk(self.store):
            for f in files:
                try:
                    st = os.lstat(os.path.join(dirpath, f))
                except FileNotFoundError:
                    continue
                total += st.st_blocks * 512
        return total


def repo_visible(listing: str, repo: str) -> bool:
    org, name = repo.split("/", 1) if "/" in repo else ("", repo)
    pat = re.compile(r"(?<![\w.-])(models/)?" + re.escape(repo) + r"(?![\w.-])")
    return bool(pat.search(listing)) or f"models--{org}--{name}" in listing


def assert_same_tree(expected: Path, got: Path, files: list[str] | None = None):
    """Every file of expected exists in got with the same sha256, and got has no
    extra files (symlinks followed)."""
    want = fixtures.tree_sha256(expected)
    if files is not None:
        want = {k: v for k, v in want.items() if k in files}
    have = fixtures.tree_sha256(got)
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    wrong = sorted(k for k in want if k in have and want[k] != have[k])
    assert not (missing or extra or wrong), (
        f"exported tree differs from {expected}:\n  missing {missing}\n  extra {extra}\n"
        f"  content differs {wrong}")


def walk_json(obj):
    """Every dict and list inside a JSON value, depth first."""
    yield obj
    if isinstance(obj, dict):
        for v in obj.values():
            yield from walk_json(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk_json(v)


def json_tensors(obj) -> list[dict]:
    """Every object in an info --json document that describes a tensor."""
    return [d for d in walk_json(obj)
            if isinstance(d, dict) and "dtype" in d and "shape" in d]


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def mfs(tmp_path) -> Modelfs:
    return Modelfs(tmp_path / "store")


@pytest.fixture
def make_mfs(tmp_path):
    """Factory for extra stores in one test: make_mfs("name")."""
    def make(name: str, binary: Path = MODELFS) -> Modelfs:
        return Modelfs(tmp_path / name, binary=binary)
    return make


def _model_fixture(name):
    @pytest.fixture(scope="session")
    def f():
        return fixtures.model(name)
    return f


minilm_f32 = _model_fixture("minilm-f32")
minilm_bf16 = _model_fixture("minilm-bf16")
minilm_fp16 = _model_fixture("minilm-fp16")
minilm_sharded = _model_fixture("minilm-sharded")
minilm_reupload = _model_fixture("minilm-reupload")
wordllama_model = _model_fixture("wordllama")


@pytest.fixture(scope="session")
def model_path():
    """model_path("minilm-bf16") -> folder."""
    return fixtures.model


@pytest.fixture
def hf_cache(tmp_path):
    """hf_cache(folder, repo_id, commit=None, refs=("main",)) -> layout info,
    all repos of one test under tmp_path/hf-cache."""
    root = tmp_path / "hf-cache"

    def make(folder: Path, repo_id: str, commit: str | None = None,
             refs=("main",), cache_dir: Path | None = None) -> dict:
        info = fixtures.hf_cache(folder, repo_id, cache_dir or root, commit=commit,
                                 refs=tuple(refs))
        info["cache_dir"] = cache_dir or root
        return info
    return make


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free
