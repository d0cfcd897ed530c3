#!/usr/bin/python3
"""Integration test of the catalog's job broker (`stylus catalog`).

Starts the catalog as a real process on a loopback port and plays workers
with ZeroMQ DEALER sockets that speak the wire protocol of proto/wire.h
directly (frames: b"STY1", command, msgpack body):

  - a crawl worker that says READY gets the first crawl job; if it never
    answers, the job is offered to another worker once the lease expires;
  - a job that fails max-attempts times goes to the dead letters;
  - a worker that stops heartbeating leaves STATUS' worker count;
  - a crawl RESULT with two records is applied (records, refine jobs, the
    source's pass done) and survives kill -9 and a restart on the same data;
  - garbage (bad frames, bad bodies, non-ZMTP bytes) does not stop it.

Each scenario gets its own catalog and data directory.  Waits poll with
generous deadlines; nothing asserts how fast the broker is.  Every process
started is stopped by PID in a finally.

Environment: STYLUS_BIN (the stylus binary).
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

BIN = os.environ.get("STYLUS_BIN", "build/stylus")
PROTO = b"STY1"
LEASE_MS = 1500
MAX_ATTEMPTS = 3
DEADLINE = 20.0  # seconds; far above anything the broker needs
BEAT = 0.3  # seconds between our HEARTBEATs (the broker's liveness is 3 s)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pack(body):
    return msgpack.packb(body, use_bin_type=True)


def unpack(frame):
    return msgpack.unpackb(frame, raw=False)


def raw_record(n):
    """A raw_record (proto/doc.h) as a crawler would send it."""
    return {
        "id": "civitai:%d@%d" % (n, n * 10),
        "source": "civitai",
        "name": "Watercolor %d" % n,
        "version_name": "v1",
        "type": "LORA",
        "base_model": "sdxl",
        "base_model_raw": "SDXL 1.0",
        "card_html": "<p>Paints in <b>watercolor</b>.</p>",
        "tags": ["style", "watercolor"],
        "trained_words": ["wtrclr"],
        "nsfw": False,
        "stats": {"downloads": 10 * n, "likes": n, "rating": 4.5},
        "files": [{"name": "w%d.safetensors" % n, "size": 1234, "sha256": "%064x" % n,
                   "download_url": "https://example.invalid/w%d" % n}],
        "images": [{"url": "https://example.invalid/%d.png" % n, "prompt": "a cat, wtrclr"}],
        "crawled_at": "2025-01-01T00:00:00Z",
    }


class Catalog:
    """One `stylus catalog` process on a data directory."""

    def __init__(self, ctx, workdir, name, extra=()):
        self.ctx = ctx
        self.extra = list(extra)
        self.workdir = workdir
        self.data = os.path.join(workdir, name + "-data")
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.endpoint = None

    def start(self):
        for _ in range(5):  # a port picked by free_port() may be taken meanwhile
            self.endpoint = "tcp://127.0.0.1:%d" % free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [BIN, "catalog", "--data", self.data, "--bind", self.endpoint,
                     "--lease-ms", str(LEASE_MS), "--max-attempts", str(MAX_ATTEMPTS)] + self.extra,
                    stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.status(0.5) is not None:
                    return
            self.stop()
        raise AssertionError("catalog did not come up; log:\n" + self.log())

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                print("warning: catalog needed SIGKILL")
        self.proc = None

    def kill9(self):
        self.proc.kill()
        rc = self.proc.wait()
        self.proc = None
        assert rc == -signal.SIGKILL, rc

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def status(self, timeout=3.0):
        """STATUS over a fresh DEALER, or None when no answer came."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        try:
            s.connect(self.endpoint)
            s.send_multipart([PROTO, b"STATUS"])
            if not s.poll(int(timeout * 1000)):
                return None
            frames = s.recv_multipart()
            assert frames[:2] == [PROTO, b"STATUS"] and len(frames) == 3, frames
            return unpack(frames[2])
        finally:
            s.close()

    def wait_status(self, what, pred):
        """Poll STATUS until pred(status) holds; return that status."""
        deadline = time.monotonic() + DEADLINE
        last = None
        while time.monotonic() < deadline:
            assert self.alive(), "catalog died; log:\n" + self.log()
            last = self.status()
            if last is not None and pred(last):
                return last
            time.sleep(0.1)
        raise AssertionError("%s: not reached in %ds; last STATUS %r; log:\n%s"
                             % (what, DEADLINE, last, self.log()))


class Worker:
    """A worker played by hand: a DEALER connected to the catalog."""

    def __init__(self, ctx, endpoint, stage):
        self.stage = stage
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.last_beat = 0.0
        self.seen = []  # commands received other than the one waited for

    def send(self, command, body=None):
        frames = [PROTO, command.encode()]
        if body is not None:
            frames.append(pack(body))
        self.sock.send_multipart(frames)

    def ready(self):
        self.send("READY", {"stage": self.stage, "idle": True})

    def beat(self):
        self.send("HEARTBEAT", {"stage": self.stage, "idle": True})
        self.last_beat = time.monotonic()

    def result(self, job_id, ok, payload=None, error=None):
        body = {"job_id": job_id, "stage": self.stage, "ok": ok}
        if ok:
            body["payload"] = payload
        else:
            body["error"] = error
        self.send("RESULT", body)

    def poll_once(self, command, timeout_ms):
        """Receive for up to timeout_ms; the body if command came, else None."""
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        assert frames[0] == PROTO and len(frames) in (2, 3), frames
        cmd = frames[1].decode()
        body = unpack(frames[2]) if len(frames) == 3 else None
        if cmd == command:
            return body
        if cmd != "HEARTBEAT":
            self.seen.append((cmd, body))
        return None

    def wait(self, command, also_beat=(), beat=True):
        """Wait for command, heartbeating (us and also_beat) as a live worker does."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            for w in ([self] if beat else []) + list(also_beat):
                if time.monotonic() - w.last_beat >= BEAT:
                    w.beat()
            body = self.poll_once(command, 50)
            if body is not None:
                return body
            for w in also_beat:
                w.poll_once(None, 0)
        raise AssertionError("%s worker: no %s within %ds (also got %r)"
                             % (self.stage, command, DEADLINE, self.seen))

    def status(self):
        """STATUS over this worker's own connection: answered after all it sent before."""
        self.send("STATUS")
        return self.wait("STATUS")

    def close(self):
        self.sock.close()


def jobs(status, stage):
    return status["jobs"][stage]


def check_job(body, stage):
    assert body["stage"] == stage, body
    assert isinstance(body["job_id"], int) and body["job_id"] > 0, body
    assert isinstance(body["payload"], dict), body
    return body["job_id"], body["payload"]


# ---- scenarios ----


def test_first_job_and_lease_expiry(ctx, workdir):
    cat = Catalog(ctx, workdir, "lease")
    w1 = w2 = None
    try:
        cat.start()
        s = cat.status()
        assert jobs(s, "crawl")["pending"] == 1 and s["sources"]["civitai"]["done"] is False, s

        w1 = Worker(ctx, cat.endpoint, "crawl")
        w1.ready()
        job_id, payload = check_job(w1.wait("JOB"), "crawl")
        assert payload == {"source": "civitai", "cursor": None}, payload
        s = cat.status()
        assert jobs(s, "crawl")["leased"] == 1 and s["workers"] == 1, s

        # w1 stays alive but never answers: after the lease, w2 gets the job.
        w2 = Worker(ctx, cat.endpoint, "crawl")
        w2.ready()
        job_id2, payload2 = check_job(w2.wait("JOB", also_beat=[w1]), "crawl")
        assert (job_id2, payload2) == (job_id, payload), (job_id2, payload2)
        w1.poll_once(None, 0)
        assert not [c for c, _ in w1.seen if c == "JOB"], w1.seen
        s = cat.status()
        assert jobs(s, "crawl")["leased"] == 1 and jobs(s, "crawl")["pending"] == 1, s
        assert s["dead"] == 0, s
    finally:
        for w in (w1, w2):
            if w:
                w.close()
        cat.stop()


def test_busy_heartbeats_extend_the_lease(ctx, workdir):
    """A worker still busy past its lease keeps the job while its heartbeats name it."""
    cat = Catalog(ctx, workdir, "busy")
    w1 = w2 = None
    try:
        cat.start()
        w1 = Worker(ctx, cat.endpoint, "crawl")
        w1.ready()
        job_id, _ = check_job(w1.wait("JOB"), "crawl")
        w2 = Worker(ctx, cat.endpoint, "crawl")
        w2.ready()
        # Three lease periods of work, beating "busy with job_id" as proto/worker.c does.
        until = time.monotonic() + 3 * LEASE_MS / 1000.0
        while time.monotonic() < until:
            w1.send("HEARTBEAT", {"stage": "crawl", "idle": False, "job_id": job_id})
            w2.beat()
            assert w2.poll_once("JOB", int(BEAT * 1000)) is None, "the job was taken from a busy worker"
            w1.poll_once(None, 0)
        w1.result(job_id, True, {"source": "civitai", "records": [], "next_cursor": None})
        s = cat.wait_status("result applied", lambda s: jobs(s, "crawl")["pending"] == 0)
        assert s["sources"]["civitai"]["done"] is True and s["dead"] == 0, s

    finally:
        for w in (w1, w2):
            if w:
                w.close()
        cat.stop()


def test_nack(ctx, workdir):
    """NACK hands a job back at once and costs no attempt."""
    cat = Catalog(ctx, workdir, "nack")
    w3 = w4 = None
    try:
        cat.start()
        w3 = Worker(ctx, cat.endpoint, "crawl")
        first = None
        # More NACKs than max-attempts: were they failures (or expired leases), the job
        # would be buried and the last round would find no job.
        for _ in range(MAX_ATTEMPTS + 1):
            w3.ready()
            job_id, _ = check_job(w3.wait("JOB"), "crawl")
            first = first or job_id
            assert job_id == first
            w3.send("NACK", {"job_id": job_id, "stage": "crawl"})
        w4 = Worker(ctx, cat.endpoint, "crawl")
        w4.ready()
        job_id4, _ = check_job(w4.wait("JOB", also_beat=[w3]), "crawl")
        assert job_id4 == first
        s = cat.status()
        assert s["dead"] == 0 and jobs(s, "crawl")["leased"] == 1, s
    finally:
        for w in (w3, w4):
            if w:
                w.close()
        cat.stop()


def test_dead_letters(ctx, workdir):
    cat = Catalog(ctx, workdir, "dead")
    w = None
    try:
        cat.start()
        w = Worker(ctx, cat.endpoint, "crawl")
        w.ready()
        first = None
        for attempt in range(MAX_ATTEMPTS):
            job_id, _ = check_job(w.wait("JOB"), "crawl")
            first = first or job_id
            assert job_id == first, (attempt, job_id, first)
            w.result(job_id, False, error="upstream said 500 (attempt %d)" % attempt)
            w.ready()
        s = cat.wait_status("job buried", lambda s: s["dead"] == 1)
        assert jobs(s, "crawl") == {"pending": 0, "leased": 0}, s
        assert s["records"] == 0, s
        letters = s["dead_letters"]
        assert len(letters) == 1 and letters[0]["stage"] == "crawl" and letters[0]["job_id"] == first, s
        assert "upstream said 500" in letters[0]["error"], letters

        # `stylus requeue` puts it back under its own id; a worker gets it again.
        out = subprocess.run([BIN, "requeue", "--connect", cat.endpoint, "--stage", "crawl"],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0 and '"requeued": 1' in out.stdout, (out.returncode, out.stdout, out.stderr)
        s = cat.wait_status("job back", lambda s: s["dead"] == 0)
        # (pending counts the queued job whether or not it is leased yet)
        assert jobs(s, "crawl")["pending"] == 1 and s["dead_letters"] == [], s
        job_id, _ = check_job(w.wait("JOB"), "crawl")  # w is still waiting for work
        assert job_id == first, (job_id, first)
    finally:
        if w:
            w.close()
        cat.stop()


def test_heartbeats(ctx, workdir):
    cat = Catalog(ctx, workdir, "heartbeat")
    w = None
    try:
        cat.start()
        assert cat.status()["workers"] == 0
        w = Worker(ctx, cat.endpoint, "refine")  # no refine jobs: it only waits
        w.ready()
        cat.wait_status("worker joined", lambda s: s["workers"] == 1)
        # Heartbeating past several liveness periods keeps it known.
        until = time.monotonic() + 4.5
        while time.monotonic() < until:
            if time.monotonic() - w.last_beat >= BEAT:
                w.beat()
            w.poll_once(None, 50)
        assert cat.status()["workers"] == 1
        # Silent from now on: it is dropped.
        cat.wait_status("silent worker dropped", lambda s: s["workers"] == 0)
        # Speaking again brings it back.
        w.beat()
        cat.wait_status("worker back", lambda s: s["workers"] == 1)
    finally:
        if w:
            w.close()
        cat.stop()


def test_crawl_result_survives_kill9(ctx, workdir):
    cat = Catalog(ctx, workdir, "crawl")
    w = r = None
    records = [raw_record(1), raw_record(2)]
    ids = {rec["id"] for rec in records}
    try:
        cat.start()
        w = Worker(ctx, cat.endpoint, "crawl")
        w.ready()
        job_id, payload = check_job(w.wait("JOB"), "crawl")
        w.result(job_id, True, {"source": "civitai", "records": records, "next_cursor": None})
        w.ready()
        s = cat.wait_status("crawl result applied", lambda s: s["records"] == 2)
        assert jobs(s, "refine")["pending"] == 2, s
        assert jobs(s, "crawl") == {"pending": 0, "leased": 0}, s
        src = s["sources"]["civitai"]
        assert src["done"] is True and src["pages"] == 1 and src["cursor"] is None, s
        w.close()
        w = None

        cat.kill9()
        cat.start()  # same data directory
        s2 = cat.status()
        assert s2 is not None
        for key in ("records", "docs", "vectors", "dead", "head_seq", "sources"):
            assert s2[key] == s[key], (key, s[key], s2[key])
        assert jobs(s2, "refine") == {"pending": 2, "leased": 0}, s2
        assert jobs(s2, "crawl") == {"pending": 0, "leased": 0}, s2

        # The queued refine jobs are still there, with their records.
        r = Worker(ctx, cat.endpoint, "refine")
        r.ready()
        rjob, rpayload = check_job(r.wait("JOB"), "refine")
        record = rpayload["record"]
        assert record["id"] in ids and len(record["content_hash"]) == 64, rpayload
        doc = {"id": record["id"], "source": "civitai", "name": record["name"],
               "base_model": "sdxl", "task": "style", "description": "watercolor painting",
               "recommended_weight": 0.8, "refined_by": "card",
               "content_hash": record["content_hash"]}
        r.result(rjob, True, {"doc": doc})
        s3 = cat.wait_status("doc applied", lambda s: s["docs"] == 1)
        assert jobs(s3, "embed")["pending"] == 1 and jobs(s3, "refine")["pending"] == 1, s3
    finally:
        for x in (w, r):
            if x:
                x.close()
        cat.stop()


GARBAGE = [
    [b"garbage"],
    [PROTO],
    [PROTO, b""],
    [PROTO, b"X" * 100],
    [b"STY1\x00", b"STATUS"],
    [PROTO, b"READY"],
    [PROTO, b"READY", b"\xc1"],
    [PROTO, b"READY", b""],
    [PROTO, b"READY", pack([1, 2, 3])],
    [PROTO, b"READY", pack({"stage": "crawl"}) + b"\x00"],
    [PROTO, b"READY", pack({"stage": "crawl"}), b"extra frame"],
    [PROTO, b"READY", pack({"stage": 5})],
    [PROTO, b"READY", pack({"stage": "nonsense"})],
    [PROTO, b"HEARTBEAT", pack({"stage": None})],
    [PROTO, b"RESULT", pack({"job_id": "1", "stage": "crawl", "ok": True})],
    [PROTO, b"RESULT", pack({"job_id": 1, "stage": "crawl", "ok": "yes"})],
    [PROTO, b"RESULT", pack({"job_id": -1, "stage": "crawl", "ok": False})],
    [PROTO, b"RESULT", pack({"job_id": 2 ** 64 - 1, "stage": "crawl", "ok": True,
                             "payload": "not a map"})],
    [PROTO, b"RESULT", pack({"job_id": 5, "stage": "nonsense", "ok": True, "payload": {}})],
    [PROTO, b"SYNC", pack({})],
    [PROTO, b"SYNC", pack({"from_seq": 0, "shard": 0, "shards": 0})],
    [PROTO, b"SYNC", pack({"from_seq": 0, "shard": 5, "shards": 2})],
    [PROTO, b"NOSUCHCOMMAND", pack({})],
]


def test_garbage(ctx, workdir):
    cat = Catalog(ctx, workdir, "garbage")
    w = bad = None
    try:
        cat.start()
        before = cat.status()

        # Bytes that are not ZMTP at all.
        port = int(cat.endpoint.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            try:
                raw.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"GET / HTTP/1.1\r\n\r\n" * 50)
            except OSError:
                pass  # the catalog may hang up first; that is fine
        # Malformed messages over a proper connection.
        bad = ctx.socket(zmq.DEALER)
        bad.setsockopt(zmq.LINGER, 0)
        bad.connect(cat.endpoint)
        for frames in GARBAGE:
            bad.send_multipart(frames)
        bad.send_multipart([PROTO, b"STATUS"])
        assert bad.poll(int(DEADLINE * 1000)), "no STATUS after the garbage; log:\n" + cat.log()
        frames = bad.recv_multipart()
        assert frames[:2] == [PROTO, b"STATUS"], frames
        after = unpack(frames[2])
        assert cat.alive()
        assert after == before, (before, after)

        # A leased job's RESULT with a malformed payload counts as a failure;
        # a well-formed RESULT for a job that is not queued changes nothing.
        w = Worker(ctx, cat.endpoint, "crawl")
        w.ready()
        job_id, _ = check_job(w.wait("JOB"), "crawl")
        w.result(job_id, True, {"source": "civitai", "next_cursor": None})  # no records
        w.result(job_id + 1000, True,
                 {"source": "civitai", "records": [raw_record(7)], "next_cursor": None})
        s = w.status()
        assert s["records"] == 0 and s["dead"] == 0, s
        assert jobs(s, "crawl") == {"pending": 1, "leased": 0}, s

        # The catalog still does its job: the retry succeeds.
        w.ready()
        job_id2, _ = check_job(w.wait("JOB"), "crawl")
        assert job_id2 == job_id
        w.result(job_id, True, {"source": "civitai", "records": [raw_record(1), raw_record(2)],
                                "next_cursor": None})
        s = w.status()
        assert s["records"] == 2 and jobs(s, "refine")["pending"] == 2, s
        assert s["sources"]["civitai"]["done"] is True, s

        # Failures reported by a peer for jobs it was never given do not
        # count: the two queued refine jobs are not buried.
        stranger = Worker(ctx, cat.endpoint, "refine")
        for _ in range(MAX_ATTEMPTS):
            for job in range(1, 21):
                stranger.result(job, False, error="not mine")
        s = stranger.status()
        stranger.close()
        assert s["dead"] == 0 and jobs(s, "refine") == {"pending": 2, "leased": 0}, s
        assert cat.alive()
    finally:
        if bad:
            bad.close()
        if w:
            w.close()
        cat.stop()


def test_credit_window(ctx, workdir):
    """Credit: a worker that can hold two jobs gets two; naming both keeps both; no third."""
    cat = Catalog(ctx, workdir, "credit", ["--source", "civitai", "--source", "hf"])
    w1 = w2 = None
    try:
        cat.start()
        w1 = Worker(ctx, cat.endpoint, "crawl")
        # As proto/worker.c announces itself: free 2, holding nothing.
        w1.send("HEARTBEAT", {"stage": "crawl", "idle": True, "free": 2, "job_ids": []})
        got = [check_job(w1.wait("JOB", beat=False), "crawl") for _ in range(2)]
        ids = sorted(j for j, _ in got)
        assert len(set(ids)) == 2, got
        assert sorted(p["source"] for _, p in got) == ["civitai", "hf"], got
        w2 = Worker(ctx, cat.endpoint, "crawl")
        w2.ready()
        # Three lease periods holding both (one running, one queued): no job moves, none comes.
        until = time.monotonic() + 3 * LEASE_MS / 1000.0
        while time.monotonic() < until:
            w1.send("HEARTBEAT", {"stage": "crawl", "idle": False, "free": 0, "job_id": ids[0],
                                  "job_ids": ids})
            w2.beat()
            assert w2.poll_once("JOB", int(BEAT * 1000)) is None, "a held job was given away"
            assert w1.poll_once("JOB", 0) is None, "more jobs than the window"
        s = cat.status()
        assert jobs(s, "crawl")["leased"] == 2 and s["dead"] == 0, s
        # One result: that pass ends; the other job stays leased to w1.
        w1.result(ids[0], True, {"source": dict(got)[ids[0]]["source"], "records": [],
                                 "next_cursor": None})
        w1.send("READY", {"stage": "crawl", "idle": False, "credit": 1})
        s = cat.wait_status("result applied", lambda s: jobs(s, "crawl")["pending"] == 1)
        assert jobs(s, "crawl")["leased"] == 1, s
    finally:
        for w in (w1, w2):
            if w:
                w.close()
        cat.stop()


def test_plaintext_needs_insecure(ctx, workdir):
    """Plaintext only when asked for: without --insecure a role refuses even loopback."""
    env = {k: v for k, v in os.environ.items() if k != "STYLUS_INSECURE"}
    ep = "tcp://127.0.0.1:%d" % free_port()
    data = os.path.join(workdir, "plain-data")
    r = subprocess.run([BIN, "catalog", "--data", data, "--bind", ep], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "--insecure" in r.stderr, (r.returncode, r.stderr[-500:])
    r = subprocess.run([BIN, "status", "--connect", ep], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "--insecure" in r.stderr, (r.returncode, r.stderr[-500:])
    # With the flag (anywhere on the command line) it serves, and answers a client that has it too.
    p = subprocess.Popen([BIN, "catalog", "--insecure", "--data", data, "--bind", ep], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            r = subprocess.run([BIN, "status", "--connect", ep, "--insecure"], env=env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                break
            assert p.poll() is None, "catalog --insecure exited"
            time.sleep(0.2)
        assert r.returncode == 0 and '"records"' in r.stdout, (r.returncode, r.stderr[-500:])
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def main():
    if not os.access(BIN, os.X_OK):
        print("STYLUS_BIN %r is not an executable" % BIN)
        return 1
    workdir = tempfile.mkdtemp(prefix="test_broker.")
    ctx = zmq.Context()
    tests = [test_first_job_and_lease_expiry, test_busy_heartbeats_extend_the_lease, test_nack, test_dead_letters, test_heartbeats,
             test_crawl_result_survives_kill9, test_garbage, test_credit_window,
             test_plaintext_needs_insecure]
    failed = 0
    try:
        for t in tests:
            start = time.monotonic()
            try:
                t(ctx, workdir)
                print("ok   %s (%.1fs)" % (t.__name__, time.monotonic() - start))
            except AssertionError as e:
                failed += 1
                print("FAIL %s: %s" % (t.__name__, e))
    finally:
        ctx.destroy(linger=0)
        shutil.rmtree(workdir, ignore_errors=True)
    print("%d of %d failed" % (failed, len(tests)) if failed else "all %d passed" % len(tests))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
