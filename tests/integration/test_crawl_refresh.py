#!/usr/bin/python3
"""Refreshing a crawl: conditional GET, incremental passes, tombstone checks, RateLimit.

Drives one `stylus crawler --cache DIR` against the fixture server
(tests/fixtures/server.py, --max-per-host-check 2) through a fake catalog
broker written here: a ZeroMQ ROUTER speaking proto/wire.h (frames "STY1",
command, msgpack body) that hands out exactly the crawl jobs a scenario
needs and returns their RESULT payloads.  It does not depend on the real
catalog.

Civitai (the server sends no validators at first, as civitai.com):
  1. a full pass returns every eligible adapter; an incremental pass stops
     on its first page by content hash alone, without a conditional request;
  2. with validators switched on, a full pass learns them, and the next full
     pass gets a 304 for every page: no record built, every id in
     `unchanged`, the same cursors, no /api/v1/images call;
  3. the newest model changes and the oldest is deleted: an incremental
     pass builds page 1 again (stop false) and stops at page 2 (a 304);
  4. a check job: the deleted model's id and a version that does not exist
     are `gone`, the changed and an untouched id come back as records; a
     malformed id fails the job.
Hugging Face:
  5. a full pass reads every README once; a second full pass gets a 304 for
     every listing page and reads no README;
  6. one repo gets a new commit: an incremental pass (sort=lastModified)
     sends only that repo's new record -- its README asked with the old
     ETag and answered 304 -- puts the rest in `unchanged` without a README
     request, skips the rest of listing 1 and stops in listing 2; a full
     pass afterwards reads no README (same shas);
  7. a check job after one repo is deleted: the deleted id and the changed
     repo's old id are `gone`, the new revision and an untouched repo come
     back as records;
  8. RateLimit: with a quota of 8 calls per 2 s window, several HF passes and
     checks must not get a single 429 from the quota (the crawler waits
     for the window), and no request may break the per-host limit.

Every process is stopped by its PID.  Environment: STYLUS_BIN, STYLUS_FIXTURES.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
import zmq

BIN = os.environ.get("STYLUS_BIN", "build/stylus")
FIXTURES = os.environ.get("STYLUS_FIXTURES", "tests/fixtures")
PROTO = b"STY1"
ELIGIBLE_TYPES = {"LORA", "LoCon", "DoRA"}
HF_PAGE = 3  # repos per HF listing page: several pages per listing
JOB_TIMEOUT_S = 120
HEARTBEAT_S = 0.5  # the worker reconnects after 3 s without hearing from us


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Broker:
    """A catalog broker that serves only the jobs it is given (proto/wire.h).  A worker may
    take a job when its last READY, or its last HEARTBEAT (idle, or with free > 0), says so;
    one job runs at a time, and a NACKed job is offered again."""

    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # An address of its own in 127/8: a worker of another test reconnecting to a port this
        # broker happens to get (a catalog being restarted there) cannot take its jobs.
        host = "127.%d.%d.%d" % (random.randrange(1, 255), random.randrange(256), random.randrange(1, 255))
        port = self.sock.bind_to_random_port("tcp://" + host)
        self.endpoint = "tcp://%s:%d" % (host, port)
        self.available = {}  # identity -> may take a job now
        self.last_beat = 0.0
        self.job_id = 0

    def send(self, identity, command, body=None):
        frames = [identity, PROTO, command.encode()]
        if body is not None:
            frames.append(msgpack.packb(body, use_bin_type=True))
        self.sock.send_multipart(frames)

    def pump(self, timeout_ms):
        """Handle one message (or none within timeout_ms); returns (command, body) of a
        RESULT or NACK, else None."""
        if time.monotonic() - self.last_beat >= HEARTBEAT_S:
            for peer in self.available:
                self.send(peer, "HEARTBEAT")
            self.last_beat = time.monotonic()
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        identity, rest = frames[0], frames[1:]
        if len(rest) < 2 or rest[0] != PROTO:
            return None
        command = rest[1].decode()
        body = msgpack.unpackb(rest[2], raw=False) if len(rest) == 3 else {}
        if command == "READY":
            self.available[identity] = body.get("credit", 1) > 0
        elif command == "HEARTBEAT":
            self.available[identity] = body.get("free", 1 if body.get("idle") else 0) > 0
        elif command in ("RESULT", "NACK"):
            self.available.setdefault(identity, False)
            return command, body
        return None

    def dispatch(self, payload, procs, deadline):
        while True:
            ready = [i for i, ok in self.available.items() if ok]
            if ready:
                self.available[ready[0]] = False
                self.send(ready[0], "JOB", {"job_id": self.job_id, "stage": "crawl", "payload": payload})
                return
            procs.check_alive()
            assert time.monotonic() < deadline, "no crawler ready for a job"
            self.pump(100)

    def run(self, payload, procs):
        """Hand one crawl job to a ready worker and wait for its RESULT body."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        self.job_id += 1
        self.dispatch(payload, procs, deadline)
        while time.monotonic() < deadline:
            got = self.pump(100)
            if got and got[1].get("job_id") == self.job_id:
                command, body = got
                if command == "NACK":
                    self.dispatch(payload, procs, deadline)
                    continue
                assert body["stage"] == "crawl", body
                return body
            procs.check_alive()
        raise AssertionError("no RESULT for job %d (%r) in %ds" % (self.job_id, payload, JOB_TIMEOUT_S))

    def close(self):
        self.sock.close()


class Procs:
    """Processes started by this test, each stopped by its PID."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError("%s exited with %s" % (name, p.returncode))

    def log(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def stop_all(self):
        for name in reversed(list(self.procs)):
            p = self.procs.pop(name)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Crawl:
    """Crawl jobs through the broker, and the fixture server's counters around them."""

    def __init__(self, broker, procs, base):
        self.broker, self.procs, self.base = broker, procs, base

    def job(self, payload):
        body = self.broker.run(payload, self.procs)
        assert body["ok"], ("job failed", payload, body.get("error"))
        return body["payload"]

    def failing_job(self, payload):
        body = self.broker.run(payload, self.procs)
        assert not body["ok"], ("job should have failed", payload, body)
        return body["error"]

    def pass_(self, source, mode="full", max_pages=50):
        """Pages of one pass until next_cursor is nil or stop; the RESULT payloads with their cursors."""
        cursor, pages = None, []
        for _ in range(max_pages):
            payload = {"source": source, "cursor": cursor}
            if mode != "full" or len(pages) % 2:  # "full" is also the default when absent
                payload["pass"] = mode
            result = self.job(payload)
            assert result["source"] == source, result
            assert ("stop" in result) == (mode == "incremental"), result
            result["cursor"] = cursor
            pages.append(result)
            cursor = result["next_cursor"]
            if cursor is None or result.get("stop"):
                return pages
        raise AssertionError("pass of %s did not end in %d pages" % (source, max_pages))

    def stats(self):
        """The server's counters once they stop moving: a handler thread counts a request after
        it has sent the answer, so the crawler may have the last answer before it is counted."""
        last = http_json(self.base + "/__stats")
        for _ in range(100):
            time.sleep(0.05)
            now = http_json(self.base + "/__stats")
            if now == last:
                return now
            last = now
        return last

    def config(self, **kw):
        return http_json(self.base + "/__config", kw)

    def mutate(self, **kw):
        return http_json(self.base + "/__mutate", kw)


def ids(records):
    return [r["id"] for r in records]


def sent(pages):
    return [i for p in pages for i in ids(p["records"])]


def unchanged(pages):
    return [i for p in pages for i in p.get("unchanged", [])]


def diff(after, before, key, sub):
    return after[key].get(sub, 0) - before[key].get(sub, 0)


def load_fixtures():
    with open(os.path.join(FIXTURES, "civitai", "models.json")) as f:
        models = [m for m in json.load(f) if m["type"] in ELIGIBLE_TYPES]
    # The server's sort=Newest: newest version first, ties by id.
    models.sort(key=lambda m: m["id"])
    models.sort(key=lambda m: max(v["publishedAt"] for v in m["modelVersions"]), reverse=True)
    with open(os.path.join(FIXTURES, "hf", "models.json")) as f:
        repos = {r["id"]: r for r in json.load(f)}
    return models, repos


def civitai_ids(model):
    return ["civitai:%d@%d" % (model["id"], v["id"]) for v in model["modelVersions"]]


def check_civitai(c, models):
    eligible = {i for m in models for i in civitai_ids(m)}

    # 1. No validators (as civitai.com): the content hash decides.
    before = c.stats()
    full = c.pass_("civitai")
    assert sorted(sent(full)) == sorted(eligible), "pass 1 is not every eligible adapter once"
    assert len(full) == 3 and not unchanged(full), [len(p["records"]) for p in full]
    inc = c.pass_("civitai", "incremental")
    assert len(inc) == 1 and inc[0]["stop"] is True, [(len(p["records"]), p["stop"]) for p in inc]
    assert sorted(sent(inc)) == sorted(sent(full[:1])), "incremental page 1 differs from the full pass"
    after = c.stats()
    assert diff(after, before, "conditional", "/api/v1/models") == 0, after["conditional"]
    print("civitai: full pass %d adapters in %d pages; incremental stopped on page 1 by content hash"
          % (len(eligible), len(full)))

    # 2. Validators on: learnt by one pass, then every page is a 304.
    c.config(validators=True)
    full = c.pass_("civitai")
    assert sorted(sent(full)) == sorted(eligible)
    before = c.stats()
    again = c.pass_("civitai")
    after = c.stats()
    assert len(again) == len(full) and not sent(again), [len(p["records"]) for p in again]
    for old, new in zip(full, again):
        assert new["next_cursor"] == old["next_cursor"], (old["next_cursor"], new["next_cursor"])
        assert sorted(new["unchanged"]) == sorted(ids(old["records"])), "304 page stands for other ids"
    assert diff(after, before, "sent_304", "/api/v1/models") == len(full), after["sent_304"]
    assert diff(after, before, "by_prefix", "/api/v1/images") == 0, "a 304 page made images calls"
    print("civitai: validators on: second full pass all %d pages 304, %d ids unchanged"
          % (len(again), len(unchanged(again))))

    # 3. Newest model changed, oldest deleted: incremental builds page 1, stops at page 2.
    newest, oldest, other = models[0], models[-1], models[len(models) // 2]
    answer = c.mutate(change=[newest["id"]], delete=[oldest["id"]])
    assert answer == {"changed": [newest["id"]], "deleted": [oldest["id"]]}, answer
    before = c.stats()
    inc = c.pass_("civitai", "incremental")
    after = c.stats()
    assert len(inc) == 2, [(len(p["records"]), len(p.get("unchanged", [])), p["stop"]) for p in inc]
    assert inc[0]["stop"] is False and set(civitai_ids(newest)) <= set(sent(inc[:1])), inc[0]["stop"]
    assert inc[1]["stop"] is True and not inc[1]["records"] and inc[1]["unchanged"], "page 2 not a 304"
    assert diff(after, before, "sent_304", "/api/v1/models") == 1, after["sent_304"]
    print("civitai: after a change, incremental pass: page 1 rebuilt (stop false), page 2 304 (stop true)")

    # 4. Tombstones.
    bogus = "civitai:%d@999999999" % newest["id"]
    check = civitai_ids(newest)[:1] + civitai_ids(oldest)[:1] + [bogus] + civitai_ids(other)[:1]
    result = c.job({"source": "civitai", "check": check})
    assert result["next_cursor"] is None and "stop" not in result, result.keys()
    assert sorted(result["gone"]) == sorted([civitai_ids(oldest)[0], bogus]), result["gone"]
    assert sorted(ids(result["records"])) == sorted([civitai_ids(newest)[0], civitai_ids(other)[0]]), \
        ids(result["records"])
    changed = [r for r in result["records"] if r["id"] == civitai_ids(newest)[0]][0]
    assert "Changed between passes" in changed["card_html"], "check did not return the fresh record"
    error = c.failing_job({"source": "civitai", "check": ["civitai:abc"]})
    assert "civitai:abc" in error, error
    c.failing_job({"source": "civitai", "check": []})
    c.failing_job({"source": "civitai", "cursor": None, "pass": "sideways"})
    print("civitai: check: %s gone, %d records; malformed check ids and an unknown pass fail the job"
          % (result["gone"], len(result["records"])))


def hf_id(repo):
    return "hf:%s@%s" % (repo["id"], repo["sha"])


def listing(cursor):
    """Which listing a cursor is on: 1 (filter=lora, or nil) or 2 (search=lora)."""
    return 2 if cursor and "search=lora" in cursor else 1


def check_hf(c, repos):
    eligible = {hf_id(r) for r in repos.values() if not r.get("gated")}

    # 5. A full pass reads every README once; the next one gets 304s and reads none.
    before = c.stats()
    full = c.pass_("hf")
    after = c.stats()
    assert sorted(sent(full)) == sorted(eligible), (sorted(sent(full)), sorted(eligible))
    assert diff(after, before, "by_prefix", "/resolve") == len(eligible), after["by_prefix"]
    before = after
    again = c.pass_("hf")
    after = c.stats()
    assert len(again) == len(full) and not sent(again), [len(p["records"]) for p in again]
    assert sorted(unchanged(again)) == sorted(eligible), unchanged(again)
    assert diff(after, before, "sent_304", "/api/models") == len(full), after["sent_304"]
    assert diff(after, before, "by_prefix", "/resolve") == 0, "a README was read again"
    print("hf: full pass %d repos, %d READMEs; second pass %d listing 304s, no README"
          % (len(eligible), len(eligible), len(again)))

    # 6. A new commit: incremental pass by lastModified.
    changed = repos["pixelsmith/pixel-art-sd15-lora"]
    answer = c.mutate(hf_change=[changed["id"]])
    assert answer["hf_changed"] == [changed["id"]], answer
    info = http_json(c.base + "/api/models/" + changed["id"])
    new_id = "hf:%s@%s" % (changed["id"], info["sha"])
    assert new_id != hf_id(changed)
    before = c.stats()
    inc = c.pass_("hf", "incremental")
    after = c.stats()
    assert sent(inc) == [new_id], sent(inc)
    assert inc[0]["stop"] is False and inc[-1]["stop"] is True, [p["stop"] for p in inc]
    assert "sort=lastModified" in (inc[0]["next_cursor"] or ""), inc[0]["next_cursor"]
    assert diff(after, before, "by_prefix", "/resolve") == 1, "only the new commit's README is asked"
    assert diff(after, before, "conditional", "/resolve") == 1 and diff(after, before, "sent_304", "/resolve") == 1, \
        "the new commit's README was not asked with the old ETag"
    full_pages_1 = len([p for p in full if listing(p["cursor"]) == 1])
    inc_pages_1 = len([p for p in inc if listing(p["cursor"]) == 1])
    assert inc_pages_1 < full_pages_1, ("listing 1 not cut short", inc_pages_1, full_pages_1)
    assert set(unchanged(inc)) <= eligible - {hf_id(changed)}, unchanged(inc)
    print("hf: new commit: incremental pass %d pages (%d of listing 1's %d), 1 record, %d unchanged, "
          "1 README 304" % (len(inc), inc_pages_1, full_pages_1, len(unchanged(inc))))
    before = after
    full = c.pass_("hf")
    after = c.stats()
    assert not sent(full) and diff(after, before, "by_prefix", "/resolve") == 0, \
        ("same shas must not read a README", sent(full), after["by_prefix"])
    eligible = (eligible - {hf_id(changed)}) | {new_id}
    assert sorted(unchanged(full)) == sorted(eligible), unchanged(full)
    print("hf: full pass after it: every repo unchanged, no README read")

    # 7. Tombstones.
    deleted = repos["corgilab/corgi-dreambooth-lora"]
    kept = repos["alice/watercolor-sdxl-lora"]
    answer = c.mutate(hf_delete=[deleted["id"]])
    assert answer["hf_deleted"] == [deleted["id"]], answer
    result = c.job({"source": "hf", "check": [hf_id(changed), hf_id(deleted), hf_id(kept)]})
    assert sorted(result["gone"]) == sorted([hf_id(changed), hf_id(deleted)]), result["gone"]
    assert sorted(ids(result["records"])) == sorted([new_id, hf_id(kept)]), ids(result["records"])
    print("hf: check: old revision and deleted repo gone; new revision and kept repo returned")


def check_ratelimit(c):
    # 8. A small quota: the crawler must wait for the window rather than get a 429.
    c.config(hf_quota=8, hf_window=2)
    before = c.stats()
    t0 = time.monotonic()
    for _ in range(3):
        c.pass_("hf")
        c.pass_("hf", "incremental")
    c.job({"source": "hf", "check": ["hf:alice/watercolor-sdxl-lora@" + "0" * 40,
                                     "hf:kenji-m/ukiyoe-woodblock-flux-lora@" + "1" * 40,
                                     "hf:dragonforge/dragon-flux-lora@" + "2" * 40]})
    elapsed = time.monotonic() - t0
    after = c.stats()
    calls = diff(after, before, "by_prefix", "/api/models")
    assert calls > 16, ("too few HF API calls to need a wait", calls)
    assert after["ratelimit_429"] == before["ratelimit_429"], ("quota 429s", after["ratelimit_429"])
    assert elapsed >= 2 * (calls // 8 - 1), ("the crawler did not wait for the windows", elapsed, calls)
    print("hf: %d API calls under a quota of 8 per 2 s in %.1fs, no 429" % (calls, elapsed))


def main():
    models, repos = load_fixtures()
    workdir = tempfile.mkdtemp(prefix="stylus-refresh-")
    procs = Procs(workdir)
    ctx = zmq.Context()
    broker = None
    try:
        portfile = os.path.join(workdir, "fixture.port")
        procs.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                                 "--port-file", portfile, "--data", FIXTURES, "--max-per-host-check", "2"])
        for _ in range(200):
            if os.path.exists(portfile):
                break
            procs.check_alive()
            time.sleep(0.05)
        base = "http://127.0.0.1:%s" % open(portfile).read().strip()
        broker = Broker(ctx)
        procs.start("crawler", [BIN, "crawler", "--connect", broker.endpoint, "--civitai-url", base,
                                "--hf-url", base, "--rate", "0", "--hf-rate", "0", "--max-per-host", "2",
                                "--hf-page-limit", str(HF_PAGE), "--allow-private",
                                "--cache", os.path.join(workdir, "cache")])
        c = Crawl(broker, procs, base)
        check_civitai(c, models)
        check_hf(c, repos)
        check_ratelimit(c)
        stats = c.stats()
        assert stats["per_host_violations"] == 0, stats
        assert stats["ratelimit_429"] == 0, stats
    except Exception:
        for name in ("fixtures", "crawler"):
            print("---- %s log (tail) ----\n%s" % (name, procs.log(name)))
        raise
    finally:
        procs.stop_all()
        if broker:
            broker.close()
        ctx.term()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
