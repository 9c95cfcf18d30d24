"""The S3 client (remote/s3.h) against a real S3 server: SeaweedFS from its
PyPI wheel, started by s3_server.py on ports of its own.

Driven through tests/tools/s3_probe (built with the tests, next to $MODELFS's
build: <build>/tests/s3_probe, or $MFS_S3_PROBE).  Round trips are compared
byte for byte with what an independent client (s3_server.py's own small
SigV4) wrote or reads; errors are checked for their class and for a message
that names the bucket or key and says what to do; faults (the server killed
mid-read, stopped, restarted) must end in a bounded time with a clear error,
never a wrong byte, and work again once the server is back.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import s3_server
from conftest import MODELFS, check_sanitizers, run_process, Result

PROBE = Path(os.environ.get("MFS_S3_PROBE", MODELFS.parent.parent / "tests" / "s3_probe"))

MiB = 1 << 20


class Probe:
    def __init__(self, srv: s3_server.S3Server):
        self.srv = srv
        if not PROBE.is_file():
            pytest.fail(f"s3_probe not found at {PROBE} (it is built with the tests: "
                        f"cmake --build <build> --target s3_probe, or set MFS_S3_PROBE)",
                        pytrace=False)

    def env(self, **extra):
        env = self.srv.env(**extra)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def run(self, *args, env=None, timeout=120, opts=()) -> Result:
        argv = [str(PROBE), *map(str, opts), *map(str, args)]
        rc, out, err, secs, _ = run_process(argv, env if env is not None else self.env(),
                                            timeout)
        if rc is None:
            pytest.fail(f"s3_probe hung for {timeout}s: {argv}\n{err[-2000:]}", pytrace=False)
        res = Result(args, rc, out, err, secs)
        check_sanitizers(res)
        return res

    def ok(self, *args, **kw) -> Result:
        res = self.run(*args, **kw)
        assert res.rc == 0, f"s3_probe failed:\n{res!r}"
        return res

    def fails(self, cls: str, *args, **kw) -> Result:
        res = self.run(*args, **kw)
        assert res.rc != 0 and f"class={cls} " in res.err, f"expected class={cls}:\n{res!r}"
        return res


def url(srv, key=""):
    return f"s3://{srv.bucket}/{key}"


def stats(res: Result) -> dict:
    m = re.search(r"stats requests=(\d+) retries=(\d+) up=(\d+) down=(\d+)", res.err)
    assert m, res
    return dict(zip(("requests", "retries", "up", "down"), map(int, m.groups())))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with s3_server.s3_server(tmp_path_factory.mktemp("s3")) as s:
        print(f"\nSeaweedFS up in {s.start_seconds:.2f}s on {s.endpoint}")
        yield s


@pytest.fixture
def probe(srv):
    return Probe(srv)


def rand_bytes(n: int, seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------- round trips

def test_put_get_head_roundtrip(srv, probe, tmp_path):
    data = rand_bytes(5 * MiB + 12345, 1)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    key = "rt/a key with spaces+plus=eq&amp~tilde/caf\u00e9.bin"

    probe.ok("put-file", url(srv, key), src)
    # what the independent client reads is what was sent
    assert srv.get_object(key) == data
    head = probe.ok("head", url(srv, key)).out.split()
    assert head[:2] == ["size", str(len(data))]
    assert head[3] == hashlib.md5(data).hexdigest()  # a single PUT's ETag

    out = tmp_path / "out.bin"
    for off, n in [(0, 1), (0, len(data)), (1, 4096), (len(data) - 1, 1),
                   (3 * MiB + 7, MiB + 3), (len(data) - 100, 100)]:
        probe.ok("get", url(srv, key), off, n, out)
        assert out.read_bytes() == data[off:off + n], (off, n)

    whole = tmp_path / "whole.bin"
    whole.write_bytes(b"x" * (len(data) + 999))  # longer: must be cut to the object
    probe.ok("get-file", url(srv, key), whole)
    assert whole.read_bytes() == data

    # a range of a file, streamed; and a buffer
    probe.ok("put-file", url(srv, "rt/slice"), src, 1000, 2 * MiB + 1)
    assert srv.get_object("rt/slice") == data[1000:1000 + 2 * MiB + 1]
    small = tmp_path / "small.bin"
    small.write_bytes(data[:777])
    probe.ok("put-buf", url(srv, "rt/buf"), small)
    assert srv.get_object("rt/buf") == data[:777]

    # what the independent client wrote, the probe reads
    other = rand_bytes(300_000, 2)
    srv.put_object("rt/other", other)
    probe.ok("get", url(srv, "rt/other"), 1234, 200_000, out)
    assert out.read_bytes() == other[1234:201_234]

    # an empty object
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    probe.ok("put-file", url(srv, "rt/empty"), empty)
    assert probe.ok("head", url(srv, "rt/empty")).out.split()[:2] == ["size", "0"]
    probe.ok("get-file", url(srv, "rt/empty"), whole)
    assert whole.read_bytes() == b""

    # a file range past the file's end is an error, not a short object
    res = probe.fails("corrupt", "put-file", url(srv, "rt/toolong"), small, 0, 10_000)
    assert "777 bytes" in res.err and "nothing was sent" in res.err
    assert stats(res)["requests"] == 0


def test_range_past_end(srv, probe, tmp_path):
    srv.put_object("short/obj", b"0123456789")
    out = tmp_path / "o"
    probe.ok("get", url(srv, "short/obj"), 5, 5, out)
    assert out.read_bytes() == b"56789"
    for off, n in [(5, 6), (9, 2), (10, 1), (1000, 4)]:
        res = probe.fails("corrupt", "get", url(srv, "short/obj"), off, n, out)
        assert "short/obj" in res.err and "10 bytes" in res.err, res
        assert stats(res)["requests"] == 1  # not retried


def test_list_pages_and_delete(srv, probe):
    keys = sorted(f"list/p/{i:03d}-{'x' * (i % 5)}" for i in range(23))
    keys.append("list/p/with space & amp <lt>")
    keys.sort()
    for i, k in enumerate(keys):
        srv.put_object(k, b"y" * i)
    srv.put_object("list/q/outside", b"z")
    srv.put_object("list/pother", b"z")

    for page, pages in [(7, 4), (1, 24), (1000, 1)]:
        res = probe.ok("list", url(srv, "list/p/"), opts=("--page", page))
        lines = res.out.splitlines()
        assert lines[-1] == f"keys {len(keys)}"
        got = [ln.split(" ", 1) for ln in lines[:-1]]
        assert [k for _, k in got] == keys
        assert [int(s) for s, _ in got] == [keys.index(k) for k in keys]
        assert stats(res)["requests"] == pages, (page, res)

    # a prefix without the trailing '/' takes in list/pother too
    res = probe.ok("list", url(srv, "list/p"), opts=("--page", 10))
    assert res.out.splitlines()[-1] == f"keys {len(keys) + 1}"
    assert probe.ok("list", url(srv, "list/none/")).out.strip() == "keys 0"

    probe.ok("delete", url(srv, keys[0]))
    probe.fails("notfound", "head", url(srv, keys[0]))
    probe.ok("delete", url(srv, keys[0]))  # again: still fine
    res = probe.ok("list", url(srv, "list/p/"), opts=("--page", 5))
    assert res.out.splitlines()[-1] == f"keys {len(keys) - 1}"



def test_multipart_upload_roundtrip_and_upload_listing(srv, probe, tmp_path):
    data = rand_bytes(12 * MiB + 7, 11)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    res = probe.ok("put-parts", url(srv, "mp/big"), src, 5 * MiB)
    assert res.out.count("part ") == 3 and "part 3 of 3: 2097159 bytes" in res.out, res
    assert probe.ok("head", url(srv, "mp/big")).out.startswith(f"size {len(data)} ")
    probe.ok("get-file", url(srv, "mp/big"), tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data
    # create, 3 parts, complete; nothing up twice
    st = stats(res)
    assert st["requests"] == 5 and st["retries"] == 0
    assert len(data) < st["up"] < len(data) + 1000
    # an object of one part, and one of zero bytes
    small = tmp_path / "small.bin"
    small.write_bytes(data[:1000])
    probe.ok("put-parts", url(srv, "mp/small"), small, 5 * MiB)
    probe.ok("get-file", url(srv, "mp/small"), tmp_path / "back-small")
    assert (tmp_path / "back-small").read_bytes() == data[:1000]
    # uploads begun by another client, listed one a page (markers), aborted
    ids = []
    for k in ("mp/u/a", "mp/u/b", "mp/u/b"):
        code, _, body = srv.request("POST", f"{srv.bucket}/{k}", query={"uploads": ""})
        assert code == 200, body
        ids.append(re.search(rb"<UploadId>(.*?)</UploadId>", body).group(1).decode())
    # (one page: SeaweedFS 4 pages uploads out of key order and without
    # NextKeyMarker; the markers are checked by tests/unit/test_s3.c)
    res = probe.ok("uploads", url(srv, "mp/u/"))
    lines = res.out.splitlines()
    assert lines[-1] == "uploads 3", res
    got = sorted((ln.split()[0], ln.split()[1]) for ln in lines[:-1])
    assert got == sorted(zip(("mp/u/a", "mp/u/b", "mp/u/b"), ids)), got
    assert all(abs(int(ln.split()[2]) - time.time()) < 600 for ln in lines[:-1]), lines
    for (k, i) in got:
        probe.ok("abort", url(srv, k), i)
    probe.ok("abort", url(srv, got[0][0]), got[0][1])  # gone already: fine
    assert probe.ok("uploads", url(srv, "mp/u/")).out.strip() == "uploads 0"

def test_many_threads_one_client(srv, probe, tmp_path):
    data = rand_bytes(4 * MiB + 3, 3)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    probe.ok("put-file", url(srv, "mt/obj"), src)
    res = probe.ok("mget", url(srv, "mt/obj"), src, 8, 40, 300_000)
    assert "8 threads ok, 0 wrong" in res.out
    assert stats(res)["requests"] == 8 * 40


def test_64mib_rate(srv, probe, tmp_path):
    """64 MiB up and down on loopback, byte-exact; the rates are printed (-s)."""
    data = rand_bytes(64 * MiB, 4)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    up = probe.ok("put-file", url(srv, "big/obj"), src)
    out = tmp_path / "out.bin"
    down = probe.ok("get", url(srv, "big/obj"), 0, len(data), out)
    assert out.read_bytes() == data
    streamed = probe.ok("get-file", url(srv, "big/obj"), out)
    assert out.read_bytes() == data
    rate = lambda r: float(re.search(r"MBps ([0-9.]+)", r.out).group(1))  # noqa: E731
    print(f"\n64 MiB: put-file {rate(up):.0f} MB/s, get (range into memory) "
          f"{rate(down):.0f} MB/s, get-file {rate(streamed):.0f} MB/s")


# ---------------------------------------------------------------- errors

def test_missing_bucket(srv, probe, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    for args in [("get", "s3://no-such-bucket/k", 0, 3, tmp_path / "o"),
                 ("head", "s3://no-such-bucket/k"),
                 ("list", "s3://no-such-bucket/p/"),
                 ("put-file", "s3://no-such-bucket/k", f),
                 ("get-file", "s3://no-such-bucket/k", tmp_path / "o"),
                 ("bucket", "s3://no-such-bucket")]:
        res = probe.fails("nobucket", *args)
        assert "no-such-bucket" in res.err and "does not exist" in res.err, res
        assert stats(res)["retries"] == 0
    probe.ok("bucket", url(srv))


def test_missing_key(srv, probe, tmp_path):
    for args in [("get", url(srv, "nokey/here"), 0, 3, tmp_path / "o"),
                 ("head", url(srv, "nokey/here")),
                 ("get-file", url(srv, "nokey/here"), tmp_path / "o")]:
        res = probe.fails("notfound", *args)
        assert f"s3://{srv.bucket}/nokey/here" in res.err, res
        assert stats(res)["retries"] == 0


def test_wrong_keys(srv, probe, tmp_path):
    srv.put_object("auth/obj", b"secret data")
    out = tmp_path / "o"
    res = probe.fails("auth", "get", url(srv, "auth/obj"), 0, 4, out,
                      env=probe.env(AWS_SECRET_ACCESS_KEY="not-the-secret"))
    assert "SignatureDoesNotMatch" in res.err and "secret key is wrong" in res.err
    assert s3_server.ACCESS_KEY in res.err and "AWS_SECRET_ACCESS_KEY" in res.err
    assert "not-the-secret" not in res.err  # a secret is never printed
    assert stats(res)["retries"] == 0

    res = probe.fails("auth", "list", url(srv, "auth/"),
                      env=probe.env(AWS_ACCESS_KEY_ID="unknownkey"))
    assert "InvalidAccessKeyId" in res.err and "unknownkey" in res.err

    # HEAD answers carry no reason: still the auth class, naming the key
    res = probe.fails("auth", "head", url(srv, "auth/obj"),
                      env=probe.env(AWS_SECRET_ACCESS_KEY="not-the-secret"))
    assert "auth/obj" in res.err

    # valid keys without write permission: access denied
    ro = probe.env(AWS_ACCESS_KEY_ID=s3_server.RO_ACCESS_KEY,
                   AWS_SECRET_ACCESS_KEY=s3_server.RO_SECRET_KEY)
    probe.ok("get", url(srv, "auth/obj"), 0, 6, out, env=ro)
    assert out.read_bytes() == b"secret"
    f = tmp_path / "f"
    f.write_bytes(b"x")
    res = probe.fails("auth", "put-file", url(srv, "auth/new"), f, env=ro)
    assert "AccessDenied" in res.err and s3_server.RO_ACCESS_KEY in res.err


def test_unreachable_endpoint(srv, probe, tmp_path):
    port = s3_server.free_port_unused()
    env = probe.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    res = probe.fails("unreachable", "get", url(srv, "k"), 0, 1, tmp_path / "o", env=env,
                      opts=("--attempts", 3, "--backoff-ms", 100))
    assert time.monotonic() - t0 < 10
    assert f"127.0.0.1:{port}" in res.err and "AWS_ENDPOINT_URL" in res.err
    assert "3 attempts" in res.err
    st = stats(res)
    assert st["requests"] == 3 and st["retries"] == 2
    # a name that does not resolve
    res = probe.fails("unreachable", "head", url(srv, "k"), opts=("--attempts", 1),
                      env=probe.env(AWS_ENDPOINT_URL="http://no-such-host.invalid:9"))
    assert "no-such-host.invalid" in res.err


def test_bad_config_is_clear(srv, probe, tmp_path):
    res = probe.fails("inval", "head", url(srv, "k"),
                      env=probe.env(AWS_ENDPOINT_URL="127.0.0.1:1"))
    assert "AWS_ENDPOINT_URL" in res.err and "http://" in res.err
    env = probe.env()
    del env["AWS_SECRET_ACCESS_KEY"]
    res = probe.fails("inval", "head", url(srv, "k"), env=env)
    assert "AWS_SECRET_ACCESS_KEY" in res.err
    res = probe.fails("inval", "head", "s3://Bad_Bucket/k")
    assert "bucket name" in res.err


def test_config_from_aws_files(srv, probe, tmp_path):
    """Keys, endpoint and region from ~/.aws of a temporary HOME, no AWS_* set."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        "[default]\n"
        f"aws_access_key_id = {s3_server.ACCESS_KEY}\n"
        f"aws_secret_access_key = {s3_server.SECRET_KEY}\n"
        "[broken]\n"
        f"aws_access_key_id = {s3_server.ACCESS_KEY}\n"
        "aws_secret_access_key = wrong-secret\n")
    (home / ".aws" / "config").write_text(
        "[default]\n"
        "region = us-east-1\n"
        "s3 =\n"
        f"  endpoint_url = {srv.endpoint}/\n"
        "[profile broken]\n"
        f"endpoint_url = {srv.endpoint}\n")
    env = {k: v for k, v in probe.env().items() if not k.startswith("AWS_")}
    env["HOME"] = str(home)
    cfg = probe.ok("config", env=env).out
    assert f"endpoint {srv.endpoint}\n" in cfg
    assert "config line 4 (s3 endpoint_url)" in cfg
    assert "credentials, profile [default]" in cfg
    assert s3_server.SECRET_KEY not in cfg

    f = tmp_path / "f"
    f.write_bytes(rand_bytes(70_000, 5))
    probe.ok("put-file", url(srv, "cfg/obj"), f, env=env)
    assert srv.get_object("cfg/obj") == f.read_bytes()

    res = probe.fails("auth", "head", url(srv, "cfg/obj"), env={**env, "AWS_PROFILE": "broken"})
    assert "cfg/obj" in res.err
    res = probe.fails("inval", "head", url(srv, "cfg/obj"), env={**env, "AWS_PROFILE": "nope"})
    assert "nope" in res.err and "AWS_PROFILE" in res.err
    # the environment's keys go before the files'
    probe.ok("head", url(srv, "cfg/obj"),
             env={**env, "AWS_PROFILE": "broken", "AWS_ACCESS_KEY_ID": s3_server.ACCESS_KEY,
                  "AWS_SECRET_ACCESS_KEY": s3_server.SECRET_KEY})


# ---------------------------------------------------------------- faults

FAST = ("--connect-timeout-ms", 1000, "--timeout-ms", 3000, "--stall-ms", 1000,
        "--attempts", 3, "--backoff-ms", 100)


@pytest.fixture
def fault_srv(srv):
    """The module's server, for a test that kills, stops or restarts it: it is
    running when the test starts and again when it ends (same data, same
    ports), so one start serves the whole file."""
    srv.resume()
    srv.start()
    try:
        yield srv
    finally:
        srv.resume()
        srv.start()


def test_killed_mid_read_then_restarted(fault_srv, tmp_path):
    srv = fault_srv
    probe = Probe(srv)
    data = rand_bytes(16 * MiB + 5, 6)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    probe.ok("put-file", url(srv, "fault/obj"), src)

    # many ranged reads from 4 threads; the server dies under them
    argv = [str(PROBE), *map(str, FAST), "mget", url(srv, "fault/obj"), str(src), "4", "100000",
            str(2 * MiB)]
    p = subprocess.Popen(argv, env=probe.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        assert p.poll() is None, p.communicate()
        t_kill = time.monotonic()
        srv.kill()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    took = time.monotonic() - t_kill
    err = err.decode("utf-8", "replace")
    # bounded: 3 attempts of at most a few seconds each, then a clear error
    assert took < 30, took
    assert p.returncode in (5, 6, 7), (p.returncode, err[-2000:])  # never 10: a wrong byte
    assert "wrong bytes" not in err
    assert "fault/obj" in err and re.search(r"after \d attempts", err), err[-2000:]

    # while it is down: a bounded, clear error
    res = probe.fails("unreachable", "get", url(srv, "fault/obj"), 0, 10, tmp_path / "o",
                      opts=FAST)
    assert res.seconds < 10

    # back on the same data and ports: reads are exact again
    srv.start()
    out = tmp_path / "o"
    probe.ok("get", url(srv, "fault/obj"), MiB, 3 * MiB, out)
    assert out.read_bytes() == data[MiB:4 * MiB]
    res = probe.ok("mget", url(srv, "fault/obj"), src, 2, 20, MiB)
    assert "0 wrong" in res.out


def test_stopped_server_times_out(fault_srv, tmp_path):
    """A server that accepts but never answers (SIGSTOP) ends in a timeout."""
    srv = fault_srv
    probe = Probe(srv)
    srv.put_object("stop/obj", b"abcdef")
    srv.pause()
    try:
        t0 = time.monotonic()
        res = probe.fails("timeout", "get", url(srv, "stop/obj"), 0, 6, tmp_path / "o",
                          opts=("--connect-timeout-ms", 1000, "--timeout-ms", 1500,
                                "--stall-ms", 1000, "--attempts", 2, "--backoff-ms", 100))
        took = time.monotonic() - t0
        assert took < 12, took
        assert "did not answer in time" in res.err and "2 attempts" in res.err
    finally:
        srv.resume()
    out = tmp_path / "o"
    probe.ok("get", url(srv, "stop/obj"), 0, 6, out, opts=FAST)
    assert out.read_bytes() == b"abcdef"


def test_retry_outlasts_a_restart(fault_srv, tmp_path):
    """The server goes down and comes back while a call is still retrying:
    the call succeeds, with retries counted."""
    srv = fault_srv
    probe = Probe(srv)
    srv.put_object("retry/obj", b"0123456789" * 1000)
    srv.kill()
    argv = [str(PROBE), "--connect-timeout-ms", "1000", "--attempts", "12", "--backoff-ms",
            "1000", "get", url(srv, "retry/obj"), "100", "5000", str(tmp_path / "o")]
    p = subprocess.Popen(argv, env=probe.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        srv.start()
        out, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = err.decode("utf-8", "replace")
    assert p.returncode == 0, err[-2000:]
    assert (tmp_path / "o").read_bytes() == (b"0123456789" * 1000)[100:5100]
    st = re.search(r"retries=(\d+)", err)
    assert st and int(st.group(1)) >= 1, err


# ---------------------------------------------------------------- a scripted server

class ScriptedServer:
    """A loopback HTTP server that answers each request with the next of a
    list of raw responses (the last one repeats), to make answers a real
    server will not: short bodies, wrong ranges, 503s.  It checks no
    signature; it records the request lines."""

    def __init__(self, responses: list[bytes]):
        import socket
        import threading
        self.responses = responses
        self.requests: list[str] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)  # accept wakes up to see self.stop
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with c:
                c.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        d = c.recv(65536)
                        if not d:
                            break
                        buf += d
                except OSError:
                    continue
                if not buf:
                    continue
                self.requests.append(buf.split(b"\r\n", 1)[0].decode())
                i = min(len(self.requests) - 1, len(self.responses) - 1)
                try:
                    c.sendall(self.responses[i])
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


def http(status: str, body: bytes = b"", headers: dict | None = None,
         length: int | None = None) -> bytes:
    h = {"Content-Length": str(len(body) if length is None else length), "Connection": "close"}
    h.update(headers or {})
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
            + "\r\n").encode() + body


@pytest.fixture
def scripted(srv):
    servers = []

    def make(responses):
        s = ScriptedServer(responses)
        servers.append(s)
        return s, Probe(srv).env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{s.port}")
    yield make
    for s in servers:
        s.close()


def test_answers_a_real_server_will_not_give(srv, scripted, tmp_path):
    probe = Probe(srv)
    out = tmp_path / "o"
    body = bytes(range(100))
    ok206 = http("206 Partial Content", body[10:20],
                 {"Content-Range": "bytes 10-19/100", "ETag": '"e"'})
    slow = http("503 Slow Down", b"<Error><Code>SlowDown</Code><Message>slow</Message></Error>")

    # two 503 SlowDown, then the answer: retried, exact
    s, env = scripted([slow, slow, ok206])
    res = probe.ok("get", "s3://bkt/k", 10, 10, out, env=env, opts=("--backoff-ms", 10))
    assert out.read_bytes() == body[10:20]
    assert stats(res)["retries"] == 2 and len(s.requests) == 3
    assert s.requests[0] == "GET /bkt/k HTTP/1.1"

    # 503 on every attempt: -EIO after exactly the attempts allowed
    s, env = scripted([slow])
    res = probe.fails("io", "get", "s3://bkt/k", 10, 10, out, env=env,
                      opts=("--attempts", 4, "--backoff-ms", 10))
    assert "4 times" in res.err and "SlowDown" in res.err and len(s.requests) == 4

    # a body cut short (the connection closes early): retried, then -EIO
    short = http("206 Partial Content", body[10:15], {"Content-Range": "bytes 10-19/100"},
                 length=10)
    s, env = scripted([short])
    res = probe.fails("io", "get", "s3://bkt/k", 10, 10, out, env=env,
                      opts=("--attempts", 2, "--backoff-ms", 10))
    assert "2 attempts" in res.err and len(s.requests) == 2
    # ... and once it is cut short, then whole: the retry gives exact bytes
    s, env = scripted([short, ok206])
    probe.ok("get", "s3://bkt/k", 10, 10, out, env=env, opts=("--backoff-ms", 10))
    assert out.read_bytes() == body[10:20]

    # another range than the one asked for: corrupt, not retried
    s, env = scripted([http("206 Partial Content", body[11:21],
                            {"Content-Range": "bytes 11-20/100"})])
    res = probe.fails("corrupt", "get", "s3://bkt/k", 10, 10, out, env=env)
    assert "10-19" in res.err and "11-20" in res.err and len(s.requests) == 1

    # more bytes than asked: stopped at the buffer's end, corrupt
    s, env = scripted([http("206 Partial Content", body[10:30],
                            {"Content-Range": "bytes 10-19/100"})])
    probe.fails("corrupt", "get", "s3://bkt/k", 10, 10, out, env=env)

    # a server that ignores Range and sends the whole object
    s, env = scripted([http("200 OK", body)])
    res = probe.fails("io", "get", "s3://bkt/k", 10, 10, out, env=env)
    assert "ignored the byte range" in res.err

    # a bare 403 on HEAD, an unexpected 400
    s, env = scripted([http("403 Forbidden")])
    probe.fails("auth", "head", "s3://bkt/k", env=env)
    s, env = scripted([http("400 Bad Request",
                            b"<Error><Code>InvalidArgument</Code><Message>no</Message></Error>")])
    res = probe.fails("io", "get", "s3://bkt/k", 0, 1, out, env=env)
    assert "InvalidArgument" in res.err and len(s.requests) == 1

    # a listing page that is not XML: corrupt, naming the page
    s, env = scripted([http("200 OK", b"<html>proxy error</html>")])
    res = probe.fails("corrupt", "list", "s3://bkt/p/", env=env)
    assert "page 0" in res.err

    # a wrong region
    s, env = scripted([http("400 Bad Request",
                            b"<Error><Code>AuthorizationHeaderMalformed</Code>"
                            b"<Message>the region 'us-east-1' is wrong; expecting 'eu-west-1'"
                            b"</Message></Error>")])
    res = probe.fails("inval", "get", "s3://bkt/k", 0, 1, out, env=env)
    assert "AWS_REGION" in res.err



def test_multipart_retries_a_part_and_aborts_on_failure(srv, scripted, tmp_path):
    probe = Probe(srv)
    src = tmp_path / "f"
    src.write_bytes(bytes(range(250)))
    init = http("200 OK", b"<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key>"
                b"<UploadId>up-1</UploadId></InitiateMultipartUploadResult>")
    part = http("200 OK", headers={"ETag": '"0123abcd"'})
    slow = http("503 Slow Down", b"<Error><Code>SlowDown</Code><Message>slow</Message></Error>")
    done = http("200 OK", b"<CompleteMultipartUploadResult><Key>k</Key><ETag>\"x-3\"</ETag>"
                b"</CompleteMultipartUploadResult>")
    # part 2 fails both attempts of its request, then goes up on its second
    # try: the parts before it are not sent again
    s, env = scripted([init, part, slow, slow, part, part, done])
    res = probe.ok("put-parts", "s3://bkt/k", src, 100, 3, env=env,
                   opts=("--attempts", 2, "--backoff-ms", 10))
    reqs = s.requests
    assert reqs[0] == "POST /bkt/k?uploads= HTTP/1.1", reqs
    parts = [r for r in reqs if r.startswith("PUT ")]
    assert [p.split("partNumber=")[1].split("&")[0] for p in parts] == ["1", "2", "2", "2", "3"]
    assert all("uploadId=up-1" in p for p in parts)
    assert reqs[-1] == "POST /bkt/k?uploadId=up-1 HTTP/1.1", reqs
    assert res.out.count("part ") == 3
    # a 200 whose body is an <Error> fails the upload, which is aborted
    bad = http("200 OK", b"<Error><Code>InvalidPart</Code><Message>no such part</Message>"
               b"</Error>")
    s, env = scripted([init, part, part, part, bad, http("204 No Content")])
    res = probe.fails("io", "put-parts", "s3://bkt/k", src, 100, env=env)
    assert "InvalidPart" in res.err, res
    assert s.requests[-1] == "DELETE /bkt/k?uploadId=up-1 HTTP/1.1", s.requests
    # a part that fails for good: no complete, an abort
    s, env = scripted([init, part, slow, slow, slow, slow, http("204 No Content")])
    res = probe.fails("io", "put-parts", "s3://bkt/k", src, 100, 2, env=env,
                      opts=("--attempts", 2, "--backoff-ms", 10))
    assert not any(r.startswith("POST /bkt/k?uploadId") for r in s.requests), s.requests
    assert s.requests[-1] == "DELETE /bkt/k?uploadId=up-1 HTTP/1.1", s.requests
    # an answer to CreateMultipartUpload without an UploadId: nothing sent
    s, env = scripted([http("200 OK", b"<html>proxy</html>")])
    res = probe.fails("corrupt", "put-parts", "s3://bkt/k", src, 100, env=env)
    assert "InitiateMultipartUploadResult" in res.err and len(s.requests) == 1
