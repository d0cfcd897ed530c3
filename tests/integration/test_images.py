#!/usr/bin/python3
"""The images worker (`stylus images`) and the refiner's --image-store, end to end.

Processes: the fixture server (tests/fixtures/server.py: PNGs at /images/<name>,
request counters at /__stats), a small hostile image server run by this test
(oversized, HTML, a PNG Content-Type over HTML, SVG, 404, and a copy of a fixture
image under another URL, each request counted), the test VLM server
(tests/fixtures/vlm_server.py), and a fake catalog broker in this process that
speaks proto/wire.h (frames b"STY1", command, msgpack body) and hands out
images and refine jobs built here.  Checks:

  1. a record with ten images: each stored image's sha256 is the SHA-256 of
     the bytes the server sent, its file is at STORE/sha256/<2>/<64> with
     those bytes, results come in the record's order, the copy under another
     URL is the same file (one file per content), a URL twice in a record is
     fetched once, and oversized / HTML / fake PNG / SVG / 404 / ftp / no URL
     are per-image errors of a job that succeeds;
  2. a second job naming the same URLs makes no request at all;
  3. a truncated file in the store is treated as absent, fetched again, repaired;
  4. a store that cannot be written fails the job with the store's directory
     in the error (so the catalog retries it);
  5. without --allow-private, loopback and private URLs (127.0.0.1, localhost,
     [::1], 10.255.255.1) are per-image errors and no request reaches the
     fixture server, while a URL already in the store is still answered;
  6. the refiner with --image-store sends the VLM the stored images without
     downloading them (the fixture server counts no image request); an image
     not in the store, or whose stored file is corrupt, falls back to its URL,
     which the refiner's address guard refuses unless --allow-private.

Every process started is stopped by PID in a finally.  Environment:
STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (tests/fixtures).
Exit 77 (skipped) when pyzmq or msgpack is missing.
"""
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True
try:
    import msgpack
    import zmq
except ImportError as e:
    print("skipped: %s" % e)
    sys.exit(77)

BIN = os.environ.get("STYLUS_BIN", "build/stylus")
FIXTURES = os.environ.get("STYLUS_FIXTURES", "tests/fixtures")
sys.path.insert(0, FIXTURES)
from fixture_common import png_bytes  # noqa: E402

PROTO = b"STY1"
DEADLINE = 60.0
MAX_BYTES = 1 << 20  # the images worker's --max-bytes in this test
MODEL = "fixture-vlm"


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
class Procs:
    """Processes of the test, each with a log file; stopped by PID."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError("%s exited with %s; log:\n%s" % (name, p.returncode, self.log(name)[-3000:]))

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                print("warning: %s needed SIGKILL" % name)
        return p.returncode

    def stop_all(self):
        for name in list(self.procs)[::-1]:
            self.stop(name)


def wait_port(procs, path):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read().strip())
        procs.check_alive()
        time.sleep(0.05)
    raise AssertionError("no port file %s" % path)


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


# ---------------------------------------------------------------------------
# A fake catalog broker: a ROUTER on loopback, run by a thread that owns it
# ---------------------------------------------------------------------------
class Broker:
    """Hands jobs of one stage to workers as their credit allows and collects
    their RESULTs.  Credit: READY adds its "credit" (1 when absent); a HEARTBEAT
    with "free" resets it to free minus the jobs sent that the worker does not
    yet list as held (proto/worker.h).  It heartbeats every worker it heard
    from, so workers stay connected while the test does other things; a job
    the worker never confirmed (no RESULT, not in a HEARTBEAT's job_ids) for
    3 s, or handed back with NACK, goes out again."""

    def __init__(self, ctx, stage):
        self.stage = stage
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # An address of its own in 127/8: a worker of another test reconnecting to a port this
        # broker happens to get (a catalog being restarted there) cannot take its jobs.
        host = "127.%d.%d.%d" % (random.randrange(1, 255), random.randrange(256), random.randrange(1, 255))
        port = self.sock.bind_to_random_port("tcp://" + host)
        self.endpoint = "tcp://%s:%d" % (host, port)
        self.jobs = queue.Queue()  # (job_id, payload) to hand out
        self.results = {}  # job_id -> queue.Queue of the RESULT body
        self.next_id = 1
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def submit(self, payload):
        job_id = self.next_id
        self.next_id += 1
        self.results[job_id] = queue.Queue()
        self.jobs.put((job_id, payload))
        return job_id

    def result(self, job_id, timeout=DEADLINE):
        try:
            return self.results[job_id].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no RESULT for %s job %d in %ds" % (self.stage, job_id, timeout))

    def run_job(self, payload, timeout=DEADLINE):
        return self.result(self.submit(payload), timeout)

    def close(self):
        self.stop_flag = True
        self.thread.join(10)
        self.sock.close()

    def send(self, ident, command, body=None):
        frames = [ident, PROTO, command]
        if body is not None:
            frames.append(msgpack.packb(body, use_bin_type=True))
        try:
            self.sock.send_multipart(frames)
            return True
        except zmq.ZMQError:  # that worker is gone (ROUTER_MANDATORY)
            return False

    def run(self):
        credit = {}  # identity -> jobs it may still be sent
        heard = {}  # identity -> last time heard
        sent = {}  # job_id -> [payload, identity, time sent, confirmed]
        waiting = []  # (job_id, payload) not handed out yet
        last_beat = 0.0
        while not self.stop_flag:
            now = time.monotonic()
            while True:
                try:
                    waiting.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            for job_id, (payload, _, at, confirmed) in list(sent.items()):
                if not confirmed and now - at > 3.0:
                    del sent[job_id]
                    waiting.insert(0, (job_id, payload))
            for ident in sorted(credit, key=lambda i: -heard.get(i, 0)):
                while waiting and credit[ident] > 0:
                    job_id, payload = waiting[0]
                    if not self.send(ident, b"JOB", {"job_id": job_id, "stage": self.stage, "payload": payload}):
                        credit[ident] = 0
                        break
                    waiting.pop(0)
                    credit[ident] -= 1
                    sent[job_id] = [payload, ident, now, False]
            if now - last_beat >= 0.5:
                for ident, t in list(heard.items()):
                    if now - t > 5.0:
                        del heard[ident]
                        credit.pop(ident, None)
                    else:
                        self.send(ident, b"HEARTBEAT")
                last_beat = now
            if self.sock.poll(50):
                self.receive(credit, heard, sent, waiting)

    def receive(self, credit, heard, sent, waiting):
        frames = self.sock.recv_multipart()
        if len(frames) < 3 or frames[1] != PROTO:
            return
        ident, command = frames[0], frames[2]
        body = msgpack.unpackb(frames[3], raw=False) if len(frames) > 3 else {}
        if body.get("stage") != self.stage:
            return
        heard[ident] = time.monotonic()
        credit.setdefault(ident, 0)
        if command == b"READY":
            credit[ident] += body.get("credit", 1)
        elif command == b"HEARTBEAT":
            held = set(body.get("job_ids") or []) | ({body["job_id"]} if body.get("job_id") else set())
            for job_id in held & set(sent):
                sent[job_id][3] = True
            if "free" in body:
                unseen = [j for j, v in sent.items() if v[1] == ident and j not in held]
                credit[ident] = max(0, body["free"] - len(unseen))
        elif command == b"NACK" and body.get("job_id") in sent:
            payload = sent.pop(body["job_id"])[0]
            waiting.insert(0, (body["job_id"], payload))
        elif command == b"RESULT" and body.get("job_id") in sent:
            del sent[body["job_id"]]
            self.results[body["job_id"]].put(body)


# ---------------------------------------------------------------------------
# The hostile image server, in this process
# ---------------------------------------------------------------------------
class HostileHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        with server.lock:
            server.counts[self.path] = server.counts.get(self.path, 0) + 1
        routes = {
            "/big.png": (200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * MAX_BYTES)),
            "/page.html": (200, "text/html", b"<html><body>not an image</body></html>"),
            "/liar.png": (200, "image/png", b"<html><body>a PNG, it says</body></html>"),
            "/drawing.svg": (200, "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
            "/copy-of-a.png": (200, "image/png", png_bytes("a.png")),
        }
        status, ctype, body = routes.get(self.path, (404, "text/plain", b"not found"))
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped at its cap

    def log_message(self, fmt, *args):
        pass


def start_hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileHandler)
    server.daemon_threads = True
    server.lock = threading.Lock()
    server.counts = {}
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


# ---------------------------------------------------------------------------
# Records and checks
# ---------------------------------------------------------------------------
def record(n, images, content_hash="ab" * 32):
    r = {
        "id": "civitai:%d@%d" % (n, n * 10),
        "source": "civitai",
        "name": "Watercolor %d" % n,
        "version_name": "v1",
        "type": "LORA",
        "base_model": "sdxl",
        "card_html": "<p>Paints in <b>watercolor</b>. Use weight 0.7.</p>",
        "tags": ["style", "watercolor"],
        "trained_words": ["wtrclr"],
        "nsfw": False,
        "stats": {"downloads": 10, "likes": 1, "rating": 4.5},
        "files": [],
        "images": images,
        "crawled_at": "2025-01-01T00:00:00Z",
    }
    if content_hash:
        r["content_hash"] = content_hash
    return r


def image(url, prompt="a cat, wtrclr", sha256=None):
    im = {"prompt": prompt}
    if url is not None:
        im["url"] = url
    if sha256:
        im["sha256"] = sha256
    return im


def ok_payload(body, what):
    assert body["ok"] is True, "%s failed: %r" % (what, body)
    return body["payload"]


def stored_path(store, digest):
    return os.path.join(store, "sha256", digest[:2], digest)


def content_files(store):
    out = []
    for root, _, files in os.walk(os.path.join(store, "sha256")):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


def image_requests(fixture):
    return http_json(fixture + "/__stats")["by_prefix"].get("/images", 0)


def check_stored(store, slot, data, url):
    assert slot["url"] == url, (slot, url)
    assert "error" not in slot, slot
    assert slot["sha256"] == sha(data) and slot["bytes"] == len(data), (slot, sha(data), len(data))
    with open(stored_path(store, slot["sha256"]), "rb") as f:
        assert f.read() == data, "stored bytes differ for %s" % url


def check_failed(slot, url, *words):
    assert slot["url"] == url, (slot, url)
    assert "sha256" not in slot and slot["bytes"] == 0, slot
    assert isinstance(slot.get("error"), str) and slot["error"], slot
    assert any(w in slot["error"] for w in words), (slot["error"], words)


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------
def images_with_private_allowed(ctx, procs, store, fixture, hostile_server):
    hostile = "http://127.0.0.1:%d" % hostile_server.server_address[1]
    a, b = png_bytes("a.png"), png_bytes("b.png")
    broker = Broker(ctx, "images")
    try:
        procs.start("images", [BIN, "images", "--catalog", broker.endpoint, "--store", store, "--allow-private",
                               "--rate", "0", "--max-bytes", str(MAX_BYTES), "--contact", "test@example.org"])
        # 1. ten images, good and bad
        urls = [fixture + "/images/a.png", fixture + "/images/b.png", hostile + "/copy-of-a.png",
                hostile + "/big.png", hostile + "/page.html", hostile + "/liar.png", hostile + "/drawing.svg",
                hostile + "/missing.png", fixture + "/images/a.png", "ftp://example.invalid/x.png"]
        before = image_requests(fixture)
        p = ok_payload(broker.run_job({"record": record(1, [image(u) for u in urls])}), "job 1")
        assert set(p) == {"id", "content_hash", "images"}, p
        assert p["id"] == "civitai:1@10" and p["content_hash"] == "ab" * 32, p
        s = p["images"]
        assert len(s) == len(urls), s
        check_stored(store, s[0], a, urls[0])
        check_stored(store, s[1], b, urls[1])
        check_stored(store, s[2], a, urls[2])
        check_failed(s[3], urls[3], "over", "bytes")
        check_failed(s[4], urls[4], "content type", "image/")
        check_failed(s[5], urls[5], "not a raster image")
        check_failed(s[6], urls[6], "not a raster image")
        check_failed(s[7], urls[7], "404")
        check_stored(store, s[8], a, urls[8])
        check_failed(s[9], urls[9], "http")
        assert content_files(store) == sorted([stored_path(store, sha(a)), stored_path(store, sha(b))]), \
            content_files(store)
        assert image_requests(fixture) - before == 2, "a.png twice in the record, fetched once"
        assert hostile_server.counts["/copy-of-a.png"] == 1
        print("job 1: 10 images, 4 stored as 2 files (one URL twice, one copy under another URL), "
              "6 per-image errors: %s" % "; ".join(x["error"][:60] for x in s if "error" in x))

        # 2. the same URLs again: no request at all
        hostile_before = dict(hostile_server.counts)
        before = image_requests(fixture)
        again = [fixture + "/images/a.png", hostile + "/copy-of-a.png", fixture + "/images/b.png", None]
        p = ok_payload(broker.run_job({"record": record(2, [image(u) for u in again], None)}), "job 2")
        assert len(p["content_hash"]) == 64 and p["content_hash"] != "ab" * 32, p["content_hash"]
        check_stored(store, p["images"][0], a, again[0])
        check_stored(store, p["images"][1], a, again[1])
        check_stored(store, p["images"][2], b, again[2])
        check_failed(p["images"][3], "", "no URL")
        assert image_requests(fixture) == before, "stored URLs were fetched again"
        assert hostile_server.counts == hostile_before, (hostile_server.counts, hostile_before)
        print("job 2: the same URLs cost no request")

        # 3. a truncated file is absent: fetched again and repaired
        path = stored_path(store, sha(b))
        with open(path, "r+b") as f:
            f.truncate(len(b) // 2)
        before = image_requests(fixture)
        p = ok_payload(broker.run_job({"record": record(3, [image(fixture + "/images/b.png")])}), "job 3")
        check_stored(store, p["images"][0], b, fixture + "/images/b.png")
        assert image_requests(fixture) == before + 1
        print("job 3: a truncated stored file was fetched again and repaired")

        # 4. a store that cannot be written fails the job, naming the directory
        tmp = os.path.join(store, "tmp")
        os.rename(tmp, tmp + ".away")
        with open(tmp, "w") as f:
            f.write("not a directory\n")
        try:
            body = broker.run_job({"record": record(4, [image(fixture + "/images/new.png")])})
        finally:
            os.remove(tmp)
            os.rename(tmp + ".away", tmp)
        assert body["ok"] is False and store in body["error"], body
        print("job 4: unwritable store -> job failed: %s" % body["error"])
        p = ok_payload(broker.run_job({"record": record(5, [image(fixture + "/images/new.png")])}), "job 5")
        check_stored(store, p["images"][0], png_bytes("new.png"), fixture + "/images/new.png")
        procs.check_alive()
        assert procs.stop("images") == 0, procs.log("images")
        log = procs.log("images")
        assert "images totals: 4 jobs done" in log  # the failed job is not one, log[-2000:]
    finally:
        procs.stop("images")
        broker.close()


def images_without_private(ctx, procs, store, fixture):
    fixture_port = fixture.rsplit(":", 1)[1]
    broker = Broker(ctx, "images")
    try:
        procs.start("images-public", [BIN, "images", "--catalog", broker.endpoint, "--store", store, "--rate", "0"])
        urls = [fixture + "/images/c.png", "http://localhost:%s/images/d.png" % fixture_port,
                "http://[::1]:%s/images/e.png" % fixture_port, "http://10.255.255.1/x.png",
                fixture + "/images/a.png"]
        before = image_requests(fixture)
        p = ok_payload(broker.run_job({"record": record(6, [image(u) for u in urls])}), "public job")
        s = p["images"]
        for i in range(4):
            check_failed(s[i], urls[i], "not a public address", "refused")
        check_stored(store, s[4], png_bytes("a.png"), urls[4])  # already stored: no request needed
        assert image_requests(fixture) == before, "a private address was reached"
        assert procs.stop("images-public") == 0, procs.log("images-public")
        print("without --allow-private: 4 loopback/private URLs refused (%s), the stored one answered"
              % s[0]["error"][:90])
    finally:
        procs.stop("images-public")
        broker.close()


def refiner_run(ctx, procs, name, store, vlm, extra, images):
    """One refine job through a refiner with --image-store; returns (doc, VLM images sent, log)."""
    broker = Broker(ctx, "refine")
    try:
        procs.start(name, [BIN, "refiner", "--connect", broker.endpoint, "--vlm-url", vlm + "/v1",
                           "--vlm-model", MODEL, "--image-store", store] + extra)
        sent_before = http_json(vlm + "/__stats")["images"]
        p = ok_payload(broker.run_job({"record": record(7, images)}), name)
        sent = http_json(vlm + "/__stats")["images"] - sent_before
        assert procs.stop(name) == 0, procs.log(name)
        return p["doc"], sent, procs.log(name)
    finally:
        procs.stop(name)
        broker.close()


def refiner_reads_the_store(ctx, procs, workdir, store, fixture):
    pf = os.path.join(workdir, "vlm.port")
    procs.start("vlm", ["/usr/bin/python3", os.path.join(FIXTURES, "vlm_server.py"), "--port", "0",
                        "--port-file", pf])
    vlm = "http://127.0.0.1:%d" % wait_port(procs, pf)
    a, b, g = png_bytes("a.png"), png_bytes("b.png"), png_bytes("g.png")
    url = lambda n: fixture + "/images/" + n  # noqa: E731

    # Without --allow-private: a and b come from the store; g is not stored, and its
    # download (127.0.0.1) is refused by the refiner's address guard.
    before = image_requests(fixture)
    doc, sent, log = refiner_run(ctx, procs, "refiner", store, vlm, [],
                                 [image(url("a.png"), sha256=sha(a)), image(url("b.png"), sha256=sha(b)),
                                  image(url("g.png"), sha256=sha(g))])
    assert doc["refined_by"] == "vlm:%s@p1" % MODEL and "refine_error" not in doc, doc
    assert sent == 2, ("images sent to the VLM", sent)
    assert image_requests(fixture) == before, "the refiner downloaded an image"
    assert "images: 2 read from the store, 1 store misses, 1 downloads" in log, log[-2000:]
    print("refiner --image-store: 2 images read from the store and sent, 0 image requests; "
          "the unstored one was refused by the address guard")

    # With --allow-private: a from the store; b's stored file corrupt and h not stored:
    # both downloaded from their URLs.
    with open(stored_path(store, sha(b)), "r+b") as f:
        f.seek(len(b) - 5)
        f.write(b"XXXXX")
    h = png_bytes("h.png")
    doc, sent, log = refiner_run(ctx, procs, "refiner-private", store, vlm, ["--allow-private"],
                                 [image(url("a.png"), sha256=sha(a)), image(url("b.png"), sha256=sha(b)),
                                  image(url("h.png"), sha256=sha(h))])
    assert doc["refined_by"] == "vlm:%s@p1" % MODEL, doc
    assert sent == 3, ("images sent to the VLM", sent)
    assert image_requests(fixture) == before + 2, "want exactly the corrupt and the unstored image fetched"
    assert "images: 1 read from the store, 2 store misses, 2 downloads" in log, log[-2000:]
    stats = http_json(vlm + "/__stats")
    assert stats["violations"] == 0, stats["violation_messages"]
    print("refiner --image-store --allow-private: 1 from the store, corrupt + unstored downloaded (2 requests)")


def trim_the_store(store):
    """stylus images --store-max-bytes SIZE --trim: with every image written an hour ago but the
    newest, a cap of one image's size keeps only the newest; URL entries of removed images go;
    images younger than ten minutes are never removed."""
    def files(kind):
        top = os.path.join(store, kind)
        return sorted(os.path.join(top, d, f) for d in os.listdir(top) for f in os.listdir(os.path.join(top, d)))

    images = files("sha256")
    assert len(images) >= 3, images
    run = lambda *a: subprocess.run([BIN, "images", "--store", store] + list(a), capture_output=True,
                                    text=True, timeout=60)
    p = run("--store-max-bytes", "1", "--trim")  # all are minutes old: nothing may go
    assert p.returncode == 0 and "younger than 10 minutes" in p.stderr, p.stderr
    assert files("sha256") == images
    hour_ago = time.time() - 3600
    for i, path in enumerate(images):
        os.utime(path, (hour_ago + i, hour_ago + i))  # images[-1] the newest
    newest = os.path.getsize(images[-1])
    p = run("--store-max-bytes", str(newest), "--trim")
    assert p.returncode == 0, p.stderr
    assert files("sha256") == images[-1:], (files("sha256"), p.stderr)
    keep = os.path.basename(images[-1]) + "\n"
    for entry in files("urls"):
        assert open(entry).read() == keep, entry
    assert run("--trim").returncode == 2  # --trim needs a cap
    assert run("--store-max-bytes", "12X").returncode == 2
    print("--store-max-bytes --trim: %d images of an hour ago removed, the newest kept" % (len(images) - 1))


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-images-")
    store = os.path.join(workdir, "store")
    procs = Procs(workdir)
    ctx = zmq.Context()
    hostile = start_hostile()
    ok = False
    try:
        pf = os.path.join(workdir, "fixture.port")
        procs.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                                 "--port-file", pf, "--data", FIXTURES])
        fixture = "http://127.0.0.1:%d" % wait_port(procs, pf)
        images_with_private_allowed(ctx, procs, store, fixture, hostile)
        images_without_private(ctx, procs, store, fixture)
        refiner_reads_the_store(ctx, procs, workdir, store, fixture)
        trim_the_store(store)
        ok = True
    except Exception:
        for name in ("images", "images-public", "refiner", "refiner-private", "vlm", "fixtures"):
            print("---- %s log (tail) ----\n%s" % (name, procs.log(name)[-3000:]))
        raise
    finally:
        procs.stop_all()
        hostile.shutdown()
        hostile.server_close()
        ctx.term()
    if ok:
        shutil.rmtree(workdir)  # kept when a check failed, for its logs
    return 0


if __name__ == "__main__":
    sys.exit(main())
