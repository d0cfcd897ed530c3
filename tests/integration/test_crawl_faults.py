#!/usr/bin/python3
"""End-to-end crawl under faults, then a second pass over a changed catalog.

Starts the fixture server with every fault switched on (429 with Retry-After,
500, bodies cut short, malformed JSON, slow answers) and its per-host
concurrency check at 2, then a catalog, one crawler and one refiner on free
loopback ports.  No indexer: embed jobs stay pending, which is fine.

Pass 1 must produce every eligible adapter exactly once (the Civitai LORA,
LoCon and DoRA versions and the non-gated HF repos of the fixtures), nothing
ineligible, no dead job, and no request over the per-host limit.  The ids are
read from `stylus export` (docs.jsonl): one doc per refined record.

Pass 2 (catalog restarted with --refresh 1, refiner stopped): the server
changes one single-version model and deletes another (POST /__mutate).  The
changed record must queue exactly one refine job.  The deleted model's record
stays: the catalog has no tombstones yet, so it is kept as it was.

Every process is stopped by its PID.  Environment: STYLUS_BIN, STYLUS_FIXTURES.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("STYLUS_BIN", "build/stylus")
FIXTURES = os.environ.get("STYLUS_FIXTURES", "tests/fixtures")
with open(os.path.join(FIXTURES, "truth.json")) as _f:  # re-uploads: records kept, never indexed
    REUPLOADS = {i for i, a in json.load(_f)["adapters"].items() if a.get("duplicate_of")}
ELIGIBLE_TYPES = {"LORA", "LoCon", "DoRA"}
# Each fault fires on every Nth request under its prefix (/api/ by default); slow delays every
# request.  Malformed JSON is aimed at the listings only: a 200 with a broken body is not retried
# by the fetcher, and on an /api/v1/images call its record is left for the next pass
# (docs/crawler.md, "Not yet"), so the first pass could not be complete.
FAULTS = ["429:7", "500:11", "truncate:13", "badjson:2:/api/v1/models", "badjson:3:/api/models", "slow:20"]
PER_HOST = 2
TIMEOUT_S = 240


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """Processes started by this test, each stopped by its PID."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}
        self.names = []  # every name ever started, for the logs on failure

    def start(self, name, argv):
        if name not in self.names:
            self.names.append(name)
        with open(os.path.join(self.workdir, name + ".log"), "ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError("%s exited with %s" % (name, p.returncode))

    def log(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self, name):
        p = self.procs.pop(name)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            print("warning: %s needed SIGKILL" % name)

    def stop_all(self):
        for name in reversed(list(self.procs)):
            self.stop(name)


def status(endpoint):
    out = subprocess.run([BIN, "status", "--connect", endpoint], capture_output=True, text=True, timeout=10)
    return json.loads(out.stdout) if out.returncode == 0 else None


def http_json(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def load_fixtures():
    """(eligible ids, ineligible ids, Civitai models by id) from the fixture files."""
    with open(os.path.join(FIXTURES, "civitai", "models.json")) as f:
        models = json.load(f)
    eligible, ineligible = set(), set()
    for m in models:
        ids = {"civitai:%d@%d" % (m["id"], v["id"]) for v in m["modelVersions"]}
        (eligible if m["type"] in ELIGIBLE_TYPES else ineligible).update(ids)
    with open(os.path.join(FIXTURES, "hf", "models.json")) as f:
        for r in json.load(f):
            i = "hf:%s@%s" % (r["id"], r["sha"])
            usable = not r.get("gated") and not r.get("disabled") and not r.get("private")
            (eligible if usable else ineligible).add(i)
    return eligible, ineligible, {m["id"]: m for m in models}


def wait_until(what, cat, procs, ready):
    start = time.time()
    last = None
    while time.time() - start < TIMEOUT_S:
        procs.check_alive()
        last = status(cat)
        if last and ready(last):
            return last
        time.sleep(0.3)
    raise AssertionError("%s not reached after %ds: %s" % (what, TIMEOUT_S, last))


def sources_passed(s, passes):
    src = s.get("sources", {})
    return set(src) == {"civitai", "hf"} and all(v["done"] and v["passes"] >= passes for v in src.values())


def passes_ended(s, passes):
    src = s.get("sources", {})
    return set(src) == {"civitai", "hf"} and all(v["passes"] >= passes for v in src.values())


def crawl_idle(s):
    crawl = s["jobs"].get("crawl", {"pending": 0, "leased": 0})
    return crawl["pending"] + crawl["leased"] == 0


def refine_idle(s):
    refine = s["jobs"].get("refine", {"pending": 0, "leased": 0})
    return refine["pending"] + refine["leased"] == 0


def exported_ids(workdir, data):
    out = os.path.join(workdir, "export")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([BIN, "export", "--data", data, "--out", out], check=True, capture_output=True, timeout=60)
    with open(os.path.join(out, "docs.jsonl")) as f:
        return [json.loads(line)["id"] for line in f if line.strip()]


def pick_mutations(models, eligible):
    """An eligible single-version model to change and another to delete."""
    singles = sorted(i for i, m in models.items() if m["type"] in ELIGIBLE_TYPES and len(m["modelVersions"]) == 1)
    assert len(singles) >= 2, "fixtures need two single-version adapters"
    changed, deleted = singles[0], singles[-1]
    for i in (changed, deleted):
        assert "civitai:%d@%d" % (i, models[i]["modelVersions"][0]["id"]) in eligible
    return changed, deleted


def main():
    eligible, ineligible, models = load_fixtures()
    workdir = tempfile.mkdtemp(prefix="stylus-faults-")
    data = os.path.join(workdir, "catalog")
    procs = Procs(workdir)
    try:
        portfile = os.path.join(workdir, "fixture.port")
        argv = ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0", "--port-file", portfile,
                "--data", FIXTURES, "--max-per-host-check", str(PER_HOST)]
        for f in FAULTS:
            argv += ["--fault", f]
        procs.start("fixtures", argv)
        for _ in range(200):
            if os.path.exists(portfile):
                break
            procs.check_alive()
            time.sleep(0.05)
        base = "http://127.0.0.1:%s" % open(portfile).read().strip()
        cat = "tcp://127.0.0.1:%d" % free_port()
        catalog_argv = [BIN, "catalog", "--data", data, "--bind", cat, "--source", "civitai", "--source", "hf"]
        procs.start("catalog", catalog_argv)
        procs.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", base, "--hf-url", base,
                                "--rate", "0", "--hf-rate", "0", "--max-per-host", str(PER_HOST), "--allow-private"])
        procs.start("refiner", [BIN, "refiner", "--connect", cat])

        # ---- pass 1, under faults ----
        t0 = time.time()
        s = wait_until("pass 1", cat, procs, lambda s: sources_passed(s, 1) and crawl_idle(s) and refine_idle(s))
        stats = http_json(base + "/__stats")
        print("pass 1 in %.1fs: %d records, %d docs, dead %d; server: %d requests, faults %s, "
              "max concurrent %d, violations %d" % (time.time() - t0, s["records"], s["docs"], s["dead"],
                                                    stats["requests_total"], stats["faults_injected"],
                                                    stats["max_concurrent_requests"], stats["per_host_violations"]))
        for kind in ("429", "500", "truncate", "badjson"):
            assert stats["faults_injected"].get(kind, 0) > 0, ("fault never fired", kind, stats["faults_injected"])
        assert stats["per_host_violations"] == 0, stats
        assert stats["max_concurrent_requests"] <= PER_HOST, stats
        assert s["dead"] == 0, s
        assert s["records"] == len(eligible), ("records", s["records"], "eligible", len(eligible))
        ids = exported_ids(workdir, data)
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        assert not dupes, ("duplicate docs", dupes[:5])
        assert set(ids) == eligible - REUPLOADS, ("missing", sorted(eligible - REUPLOADS - set(ids))[:5],
                                                  "unexpected", sorted(set(ids) - eligible)[:5])
        assert not set(ids) & ineligible
        print("pass 1: all %d eligible ids exactly once, none of the %d ineligible" % (len(eligible), len(ineligible)))

        # ---- pass 2, after one model changed and one deleted ----
        procs.stop("refiner")  # so the refine job of the changed record stays visible
        procs.stop("catalog")
        changed, deleted = pick_mutations(models, eligible)
        answer = http_json(base + "/__mutate", {"change": [changed], "delete": [deleted]})
        assert answer == {"changed": [changed], "deleted": [deleted]}, answer
        procs.start("catalog", catalog_argv + ["--refresh", "1"])
        t0 = time.time()
        # A refresh restarts each source as soon as its pass ends, so both are seldom done at the
        # same moment: wait until each has ended pass 2.  Later passes see no change.
        s = wait_until("pass 2", cat, procs, lambda s: passes_ended(s, 2))
        refine = s["jobs"].get("refine", {"pending": 0, "leased": 0})
        print("pass 2 in %.1fs: %d records, refine jobs %s, dead %d" % (time.time() - t0, s["records"], refine,
                                                                           s["dead"]))
        assert refine["pending"] + refine["leased"] == 1, ("want one refine job (model %d)" % changed, s)
        # No tombstones yet: the deleted model's record is kept, so the count does not move.
        assert s["records"] == len(eligible), s
        assert s["dead"] == 0, s
        stats = http_json(base + "/__stats")
        assert stats["per_host_violations"] == 0, stats
        print("pass 2: model %d changed -> 1 refine job; model %d deleted -> record kept (no tombstones)"
              % (changed, deleted))
    except Exception:
        for name in procs.names:
            print("---- %s log (tail) ----\n%s" % (name, procs.log(name)))
        raise
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
