"""Issue 20's remote figures, in one run (tests/bench/remote.sh runs it).

A real S3 server on loopback (SeaweedFS, tests/e2e/s3_server.py) holds, for
each fixture model, the modelfs store pushed by `modelfs push` and the plain
files of the model uploaded as objects (what a node would otherwise
download).  Then, for each model and each repetition (interleaved):

  mount      a node with an empty store directory: `modelfs mount --remote`,
             time to the first byte of model.safetensors (open + read of
             1 byte, counted from the mount being up), then every file read
             once (cold: nothing in the node's cache yet)
  download   every plain file fetched whole with the S3 client (tests/tools/
             s3_probe get-file: libcurl, like modelfs), then read once
  load       from_pretrained through a fresh remote mount (empty store
             directory) against download-then-from_pretrained (the seconds of
             from_pretrained itself, after Python's imports, plus the download)

Prints one table: MB/s of the model's file bytes (median of the reps) and the
ratio mount / download.  The object store's own page cache is warm for both
(the same objects are read every rep); the node's side starts empty each time.

    python remote_bench.py MODELFS S3_PROBE REPS MODEL...
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
import fixtures  # noqa: E402
import s3_server  # noqa: E402
from mount_fixtures import fuse_mounted  # noqa: E402

LOAD = r"""
import sys, time, torch
from transformers import AutoModel
t0 = time.perf_counter()
m = AutoModel.from_pretrained(sys.argv[1])
print(time.perf_counter() - t0)
"""


def run(argv, env, timeout=600):
    r = subprocess.run([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"remote_bench: {' '.join(map(str, argv))} failed:\n{r.stderr[-3000:]}")
    return r.stdout


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def read_all(paths) -> int:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while True:
                n = f.readinto(view)
                if not n:
                    break
                total += n
    return total


class RemoteMount:
    """modelfs mount --remote on an empty store directory; unmounted on exit."""

    def __init__(self, binary, url, node: Path, env):
        self.binary, self.url, self.node, self.env = binary, url, node, env
        self.mnt = node.parent / (node.name + "-mnt")
        self.proc = None

    def __enter__(self):
        self.mnt.mkdir(parents=True)
        self.proc = subprocess.Popen(
            [str(self.binary), "--store", str(self.node), "mount", "-f", "--remote", self.url,
             "--cache-size", "4G", str(self.mnt)],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while not fuse_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise SystemExit(f"remote_bench: mount failed: {self.proc.stderr.read()[-2000:]}")
            if time.monotonic() - t0 > 60:
                raise SystemExit("remote_bench: the remote mount did not come up in 60 s")
            time.sleep(0.02)
        self.up_seconds = time.monotonic() - t0
        return self

    def snapshot(self, repo: str) -> Path:
        snaps = self.mnt / f"models--{repo.replace('/', '--')}" / "snapshots"
        (snap,) = list(snaps.iterdir())
        return snap

    def __exit__(self, *exc):
        subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    binary, probe, reps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    models = sys.argv[4:]
    with tempfile.TemporaryDirectory(prefix="mfs-remote-bench-") as td:
        td = Path(td)
        with s3_server.s3_server(td / "s3") as srv:
            env = srv.env()
            rows = []
            for name in models:
                src = fixtures.model(name)
                repo = f"bench/{name}"
                store = td / f"store-{name}"
                run([binary, "--store", store, "ingest", "--quiet", "--repo", repo, src], env)
                url = f"s3://{srv.bucket}/store-{name}"
                t0 = time.perf_counter()
                run([binary, "--store", store, "push", "--remote", url], env)
                push_s = time.perf_counter() - t0
                files = files_of(src)
                size = sum(p.stat().st_size for p in files)
                for p in files:
                    rel = p.relative_to(src).as_posix()
                    run([probe, "put-file", f"s3://{srv.bucket}/raw-{name}/{rel}", p], env)
                res = {"mount": [], "ttfb": [], "download": [], "load_mount": [],
                       "load_download": []}
                for r in range(reps):
                    node = td / f"node-{name}-{r}"
                    with RemoteMount(binary, url, node, env) as m:
                        snap = m.snapshot(repo)
                        t0 = time.perf_counter()
                        with open(snap / "model.safetensors", "rb", buffering=0) as f:
                            f.read(1)
                        res["ttfb"].append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        n = read_all(sorted(p for p in snap.rglob("*") if p.is_file()))
                        res["mount"].append(time.perf_counter() - t0)
                        assert n == size, (n, size)
                    dl = td / f"dl-{name}-{r}"
                    t0 = time.perf_counter()
                    for p in files:
                        rel = p.relative_to(src).as_posix()
                        (dl / rel).parent.mkdir(parents=True, exist_ok=True)
                        run([probe, "get-file", f"s3://{srv.bucket}/raw-{name}/{rel}",
                             dl / rel], env)
                    read_all(files_of(dl))
                    res["download"].append(time.perf_counter() - t0)
                    # from_pretrained: a fresh remote node, and download-then-load
                    node = td / f"lnode-{name}-{r}"
                    with RemoteMount(binary, url, node, env) as m:
                        lenv = dict(env, HF_HUB_CACHE=str(m.mnt), HF_HUB_OFFLINE="1",
                                    TRANSFORMERS_OFFLINE="1", HF_HOME=str(td / "hf-home"))
                        # the script prints from_pretrained's own seconds
                        # (after its imports)
                        res["load_mount"].append(float(run([sys.executable, "-c", LOAD, repo],
                                                           lenv).split()[-1]))
                    dl2 = td / f"dl2-{name}-{r}"
                    t0 = time.perf_counter()
                    for p in files:
                        rel = p.relative_to(src).as_posix()
                        (dl2 / rel).parent.mkdir(parents=True, exist_ok=True)
                        run([probe, "get-file", f"s3://{srv.bucket}/raw-{name}/{rel}",
                             dl2 / rel], env)
                    fetched = time.perf_counter() - t0
                    res["load_download"].append(
                        fetched + float(run([sys.executable, "-c", LOAD, str(dl2)],
                                            env).split()[-1]))
                med = {k: statistics.median(v) for k, v in res.items()}
                rows.append((name, size, push_s, med))
            print(f"\nremote: SeaweedFS on loopback, {reps} rep(s), medians; MB/s of file bytes")
            print(f"{'model':14} {'MB':>7} {'push s':>7} {'ttfb ms':>8} {'mount MB/s':>11} "
                  f"{'download+read MB/s':>19} {'ratio':>6} {'load mount s':>13} "
                  f"{'download+load s':>16}")
            for name, size, push_s, m in rows:
                mb = size / 1e6
                print(f"{name:14} {mb:7.1f} {push_s:7.2f} {m['ttfb'] * 1e3:8.1f} "
                      f"{mb / m['mount']:11.1f} {mb / m['download']:19.1f} "
                      f"{m['download'] / m['mount']:5.2f}x {m['load_mount']:13.2f} "
                      f"{m['load_download']:16.2f}")
            print(json.dumps({"rows": [{"model": n, "bytes": s, "push_s": p, **m}
                                       for n, s, p, m in rows]}))


if __name__ == "__main__":
    main()
