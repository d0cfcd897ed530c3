#!/usr/bin/python3
"""The query node's ZeroMQ front (query/zmq_front.h, docs/zmq.md) against its HTTP front.

Starts the fixture server, catalog, crawler, refiner, indexer, one shard and a
query node with both --listen and --zmq-listen, waits until every adapter is
served, then checks:

1. the same compose and retrieve requests give the same answers over
   ZeroMQ (msgpack) as over HTTP (JSON), for the fixture's prompts;
2. 8 pipelined requests from each of 3 DEALER clients are all answered, each
   reply carrying its request's id; a REQ socket works too;
3. hostile input -- random bytes, a msgpack array, a bin value, a 100 KiB
   body, nesting 100 deep, an unknown op, 3 frames, 20 frames, a 2 MiB frame
   -- each gets an error reply or is dropped, and a good request is answered
   afterwards; the refusals show in /metrics;
4. the Python client of docs/zmq.md runs as written;
5. security: a non-loopback --zmq-listen without CURVE keys is refused at
   start; with CURVE, an allowed client key is answered and another is not.

Every process it starts, it stops by PID, whatever happens.
Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, Cluster, free_port, status, eligible_ids, post  # noqa: E402,F401
from test_pipeline import get, wait_done  # noqa: E402

TIMEOUT_MS = 30000  # one reply; generous on a loaded machine


def prompts(n):
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        cases = json.load(f)
    if isinstance(cases, dict):
        cases = cases.get("prompts", cases.get("cases", []))
    out = []
    for case in cases[:n]:
        body = {"prompt": case["prompt"]}
        if case.get("base_model"):
            body["base_model"] = case["base_model"]
        out.append(body)
    return out


class Client:
    """One DEALER (or REQ) socket to the front."""

    def __init__(self, ctx, endpoint, kind=zmq.DEALER, curve=None):
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A DEALER whose CURVE handshake was refused has no peer, and a send would block for
        # ever: give up after a while instead (ask then answers None, as for no reply).
        self.sock.setsockopt(zmq.SNDTIMEO, 5000)
        if curve:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.connect(endpoint)

    def send(self, *frames):
        self.sock.send_multipart(list(frames))

    def recv(self, timeout_ms=TIMEOUT_MS):
        """The reply map, or None when nothing came in time."""
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        assert len(frames) == 1, frames
        return msgpack.unpackb(frames[0], raw=False)

    def ask(self, request, timeout_ms=TIMEOUT_MS):
        try:
            self.send(msgpack.packb(request, use_bin_type=True))
        except zmq.Again:
            return None
        return self.recv(timeout_ms)

    def close(self):
        self.sock.close(0)


def without(answer, *keys):
    return {k: v for k, v in answer.items() if k not in keys}


def check_same_as_http(ctx, endpoint, http):
    c = Client(ctx, endpoint)
    try:
        for i, body in enumerate(prompts(4)):
            code, over_http = post(http + "/v1/compose", body)
            assert code == 200, (code, over_http)
            over_zmq = c.ask(dict(body, id=i))
            assert over_zmq and over_zmq["status"] == 200 and over_zmq["id"] == i, over_zmq
            assert without(over_zmq, "status", "id") == over_http, (body, over_zmq, over_http)
            assert over_zmq.get("adapters"), over_zmq
            print("same over ZeroMQ and HTTP: %-45s -> %s"
                  % (body["prompt"][:45], ", ".join(a["id"] for a in over_zmq["adapters"])))
        body = dict(prompts(1)[0], k=5)
        code, over_http = post(http + "/v1/retrieve", body)
        over_zmq = c.ask(dict(body, op="retrieve", id="r"))
        assert code == 200 and over_zmq["status"] == 200 and over_zmq["id"] == "r", over_zmq
        assert without(over_zmq, "status", "id") == over_http, (over_zmq, over_http)
        assert 0 < len(over_zmq["candidates"]) <= 5, over_zmq
        # One adapter by id, as GET /v1/adapters/{id} answers it.
        first = over_zmq["candidates"][0]["id"]
        code, over_http = get(http + "/v1/adapters/" + first)
        over_zmq = c.ask({"op": "adapter", "adapter": first, "id": "a"})
        assert code == 200 and over_zmq["status"] == 200 and over_zmq["id"] == "a", over_zmq
        assert without(over_zmq, "status", "id") == over_http, (over_zmq, over_http)
        assert over_zmq["adapter"]["id"] == first and over_zmq["save_as"], over_zmq
        missing = c.ask({"op": "adapter", "adapter": "civitai:999999999@1"})
        assert missing["status"] == 404 and "error" in missing, missing
        assert c.ask({"op": "adapter"})["status"] == 400
    finally:
        c.close()


def check_pipelined(ctx, endpoint):
    clients = [Client(ctx, endpoint) for _ in range(3)]
    texts = [b["prompt"] for b in prompts(4)]
    try:
        sent = {}
        for n in range(8):
            for i, c in enumerate(clients):
                rid = "client%d-%d" % (i, n) if i != 1 else i * 100 + n  # str and int ids
                sent[rid] = i
                c.send(msgpack.packb({"id": rid, "prompt": texts[n % len(texts)], "k": 20}))
        got = {}
        for i, c in enumerate(clients):
            for _ in range(8):
                r = c.recv()
                assert r is not None, "client %d: a reply is missing (got %d)" % (i, len(got))
                assert r["status"] == 200, r
                assert sent.get(r["id"]) == i, ("reply to someone else", i, r["id"])
                got[r["id"]] = r
        assert set(got) == set(sent), set(sent) - set(got)
        print("24 pipelined requests from 3 DEALERs: all answered with their ids")
    finally:
        for c in clients:
            c.close()
    req = Client(ctx, endpoint, zmq.REQ)
    try:
        r = req.ask({"prompt": texts[0], "id": None})
        assert r and r["status"] == 200 and "id" in r and r["id"] is None and r["adapters"], r
        print("REQ socket: answered")
    finally:
        req.close()


def nested(depth):
    v = "leaf"
    for _ in range(depth):
        v = [v]
    return v


def hostile_cases():
    rng = random.Random(7)
    good = msgpack.packb({"prompt": "a cat"})
    return [
        ("random bytes", [bytes(rng.randrange(256) for _ in range(300))], {400}),
        ("empty frame", [b""], {400}),
        ("msgpack array", [msgpack.packb(["prompt", "a cat"])], {400}),
        ("bin value", [msgpack.packb({"prompt": b"a cat", "id": 1}, use_bin_type=True)], {400}),
        ("100 KiB body", [msgpack.packb({"prompt": "x" * (100 << 10)})], {413}),
        ("depth 100", [msgpack.packb({"prompt": "a cat", "x": nested(100)})], {400}),
        ("unknown op", [msgpack.packb({"prompt": "a cat", "op": "delete", "id": 5})], {400}),
        ("int key", [b"\x81\x01\xa1x"], {400}),
        ("map id", [msgpack.packb({"prompt": "a cat", "id": {"a": 1}})], {400}),
        ("bad prompt", [msgpack.packb({"prompt": 42, "id": 6})], {400}),
        ("3 frames", [good, good, good], {400}),
        ("20 frames", [good] * 20, None),         # malformed envelope: dropped
        ("2 MiB frame", [b"\x00" * (2 << 20)], None),  # over ZMQ_MAXMSGSIZE: connection dropped
    ]


def check_hostile(ctx, endpoint, http):
    before = metric(http, "stylus_query_errors_total")
    refused = 0
    for name, frames, statuses in hostile_cases():
        c = Client(ctx, endpoint)
        try:
            c.send(*frames)
            r = c.recv(3000 if statuses is None else TIMEOUT_MS)
            if statuses is None:
                assert r is None, (name, "should be dropped", r)
            else:
                assert r and r["status"] in statuses and r["error"]["message"], (name, r)
                refused += 1
                if name in ("bin value", "unknown op", "bad prompt"):
                    assert r.get("id") in (1, 5, 6), (name, "id not echoed", r)
            # The server still answers, on a fresh socket (the old one may have been cut off).
            fresh = Client(ctx, endpoint)
            try:
                ok = fresh.ask({"prompt": "a corgi dog", "id": name})
                assert ok and ok["status"] == 200 and ok["id"] == name, (name, ok)
            finally:
                fresh.close()
            print("hostile %-14s -> %s" % (name, "dropped" if r is None else
                                           "%d %s" % (r["status"], r["error"]["message"][:60])))
        finally:
            c.close()
    after = metric(http, "stylus_query_errors_total")
    assert after - before >= refused, (before, after, refused)


def metric(http, name):
    with urllib.request.urlopen(http + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def wait_front(ctx, endpoint, cluster, name):
    c = Client(ctx, endpoint)
    try:
        for _ in range(100):
            cluster.check_alive()
            r = c.ask({"prompt": "ping"}, 300)
            if r is not None:
                return
        raise AssertionError("%s: the ZeroMQ front never answered" % name)
    finally:
        c.close()


def check_security(ctx, cluster, workdir, shard):
    # Not on loopback and no keys: refused at start with a clear message.
    out = subprocess.run([BIN, "serve", "--shard", shard, "--listen", "127.0.0.1:%d" % free_port(),
                          "--zmq-listen", "tcp://0.0.0.0:%d" % free_port()],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "not a loopback address" in out.stderr, out
    print("non-loopback plaintext front: refused (%s)" % out.stderr.strip().splitlines()[-1][:70])
    if not zmq.has("curve"):
        print("libzmq without CURVE: CURVE check skipped")
        return
    prefix = os.path.join(workdir, "front")
    for who in ("front", "client", "stranger"):
        subprocess.run([BIN, "keygen", os.path.join(workdir, who)], check=True, capture_output=True)
    with open(os.path.join(workdir, "allow"), "w") as f:
        f.write(open(os.path.join(workdir, "client.pub")).read())

    def keys(who):
        text = open(os.path.join(workdir, who + ".key")).read()
        fields = dict(line.split("=", 1) for line in text.split())
        return fields["public"].encode(), fields["secret"].encode()

    server_pub = keys("front")[0]
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    cluster.start("serve-curve", [BIN, "serve", "--shard", shard, "--listen",
                                  "127.0.0.1:%d" % free_port(), "--zmq-listen", endpoint,
                                  "--curve-key", prefix + ".key",
                                  "--curve-allow", os.path.join(workdir, "allow")])
    allowed = Client(ctx, endpoint, curve=keys("client") + (server_pub,))
    stranger = Client(ctx, endpoint, curve=keys("stranger") + (server_pub,))
    try:
        for _ in range(100):
            cluster.check_alive()
            r = allowed.ask({"prompt": "a corgi dog", "id": "curve"}, 300)
            if r:
                break
        assert r and r["status"] == 200 and r["id"] == "curve", r
        assert stranger.ask({"prompt": "a corgi dog"}, 2000) is None
        print("CURVE front: allowed key answered, other key not")
    finally:
        allowed.close()
        stranger.close()


def check_doc_example(front):
    """The Python client of docs/zmq.md runs as written, against this front."""
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "zmq.md")
    text = open(doc).read()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "tcp://127.0.0.1:5700" in code, code
    out = subprocess.run(["/usr/bin/python3", "-c", code.replace("tcp://127.0.0.1:5700", front)],
                         capture_output=True, text=True, timeout=120)
    lines = sorted(out.stdout.splitlines())  # the workers may answer in either order
    assert out.returncode == 0 and len(lines) == 2, out
    assert lines[0].startswith("0 [") and lines[1].startswith("1 ["), out  # not "0 503 ..."
    print("docs/zmq.md's client: ran, %d replies" % len(lines))


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-zmq-")
    cluster = Cluster(workdir)
    ctx = zmq.Context()
    try:
        web = cluster.start_fixtures()
        cat = "tcp://127.0.0.1:%d" % free_port()
        shard = "tcp://127.0.0.1:%d" % free_port()
        http = "http://127.0.0.1:%d" % free_port()
        front = "tcp://127.0.0.1:%d" % free_port()
        cluster.start("catalog", [BIN, "catalog", "--data", os.path.join(workdir, "catalog"),
                                  "--bind", cat, "--source", "civitai", "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", web,
                                  "--rate", "0", "--hf-url", web, "--hf-rate", "0"])
        cluster.start("refiner", [BIN, "refiner", "--connect", cat])
        cluster.start("indexer", [BIN, "indexer", "--connect", cat])
        cluster.start("shard", [BIN, "shard", "0/1", "--data", os.path.join(workdir, "shard0"),
                                "--bind", shard, "--catalog", cat])
        cluster.start("serve", [BIN, "serve", "--shard", shard, "--listen", http[len("http://"):],
                                "--zmq-listen", front])
        s, sh = wait_done(cat, shard, cluster)
        ids, _ = eligible_ids()
        assert sh["count"] == len(ids), (sh, len(ids))
        wait_front(ctx, front, cluster, "serve")

        check_same_as_http(ctx, front, http)
        check_pipelined(ctx, front)
        check_hostile(ctx, front, http)
        check_doc_example(front)
        check_security(ctx, cluster, workdir, shard)
        cluster.check_alive()
        print("ZeroMQ API: all checks passed")
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()
        ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
