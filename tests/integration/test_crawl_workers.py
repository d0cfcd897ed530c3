#!/usr/bin/python3
"""Three crawler workers share one pass: every list page fetched once, every adapter stored once.

Starts the fixture server (tests/fixtures/server.py) with faults on the list
pages, a catalog, THREE `stylus crawler` workers and a refiner, each on free
loopback ports (no indexer: embed jobs stay pending, which is fine here).
Each worker has its own --contact, so its User-Agent is its own and the
server counts its requests apart (`by_agent` in /__stats).  Small pages
(--civitai-page-limit 10, --hf-page-limit 1) make a pass of some 40 pages.

Faults (each on every Nth request under its path prefix):
  Civitai list (/api/v1/models): 429 + Retry-After 1 (3rd), JSON cut in half
    (7th), body cut short (11th);
  HF list (/api/models): 500 (3rd), JSON cut in half (5th);
  Civitai images (/api/v1/images): 429 + Retry-After 1 (19th);
  every request: 40 ms slower.
A 429, 500 or cut body is retried by the worker's fetcher; a 200 with broken
JSON fails the job, and the catalog leases it again after a backoff, often
to another worker.  The images fault is rare on purpose: an images call
that still fails after the fetcher's retries leaves its record for the next
pass (docs/crawler.md), and this test wants the whole catalog in one pass.

How a fetch is counted: the server's `by_target` counts, per request target
(path and query as sent), the requests and the "ok" answers: a 2xx or 304
that no fault touched and that was written out whole.  A 429 or 500 of the
fault injector, a cut body and broken JSON are requests, not fetches.  A list
page is each distinct target of /api/v1/models and /api/models (Civitai's
cursor URLs, the Hub's Link URLs).

Checks after the pass:
  - every eligible adapter is in the catalog exactly once, nothing else, no
    dead job (the check of test_crawl_faults.py: the record count, and the
    docs of `stylus export`, where a re-upload may be missing once the
    catalog has resolved it as a duplicate);
  - every list page was fetched successfully exactly once, and there are as
    many as the catalog counted pages (sources.*.pages), Civitai's being
    ceil(eligible models / 10);
  - the faults fired on the list pages (more requests than fetches there);
  - each of the three workers fetched list pages (by_agent ok_by_prefix)
    and logged crawl pages, and the pages the workers logged add up to the
    catalog's count;
  - no worker had more than --max-per-host (2) requests in flight
    (by_agent max_concurrent_requests), and the server's own check, set to
    3 x 2 for the three workers together, counted no violation.

Leases: a page may legitimately be fetched twice when a lease expires while a
slow worker still holds the job (the catalog gives it to another worker).
Here the catalog's --lease-ms is 30000, far above the worst a fault costs one
request (Retry-After 1 s, or the fetcher's 1 + 2 + 4 s backoff for a 500)
and the 40 ms delay, and a busy worker's heartbeats extend its lease; the
test checks that the catalog logged no expired lease.

Every process is stopped by its PID.  Environment: STYLUS_BIN, STYLUS_FIXTURES.
"""
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from urllib.parse import urlsplit

sys.dont_write_bytecode = True
os.environ.setdefault("STYLUS_INSECURE", "1")  # plaintext on loopback, as --insecure asks
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_crawl_faults import (BIN, FIXTURES, ELIGIBLE_TYPES, Procs, crawl_idle, exported_ids,  # noqa: E402
                               free_port, http_json, load_fixtures, refine_idle, sources_passed, status)

WORKERS = 3
PER_HOST = 2
CIVITAI_PAGE = 10
HF_PAGE = 1
LEASE_MS = 30000
MAX_ATTEMPTS = 8
TIMEOUT_S = 420
FAULTS = ["429:3:/api/v1/models", "badjson:7:/api/v1/models", "truncate:11:/api/v1/models",
          "500:3:/api/models", "badjson:5:/api/models", "429:19:/api/v1/images", "slow:40"]
LIST_PATHS = {"/api/v1/models": "civitai", "/api/models": "hf"}


def contact(i):
    return "crawl-worker-%d@example.org" % i


def user_agent(i):
    return "stylus-catalog/0.1 (LoRA catalog crawler; %s)" % contact(i)


def civitai_models():
    with open(os.path.join(FIXTURES, "civitai", "models.json")) as f:
        return sum(1 for m in json.load(f) if m["type"] in ELIGIBLE_TYPES)


def wait_pass(cat, procs):
    start, last = time.time(), None
    while time.time() - start < TIMEOUT_S:
        procs.check_alive()
        last = status(cat)
        if last and sources_passed(last, 1) and crawl_idle(last) and refine_idle(last):
            return last
        time.sleep(0.5)
    raise AssertionError("the pass did not end in %ds: %s" % (TIMEOUT_S, last))


def list_pages(stats):
    """{source: {target: {"requests", "ok"}}} of the list endpoints."""
    pages = {"civitai": {}, "hf": {}}
    for target, counts in stats["by_target"].items():
        source = LIST_PATHS.get(urlsplit(target).path)
        if source:
            pages[source][target] = counts
    return pages


def reuploads():
    """Ids of the re-uploads (truth.json duplicate_of): the catalog keeps their records but
    may leave them out of the docs once by_hash names their original (docs/crawler.md)."""
    with open(os.path.join(FIXTURES, "truth.json")) as f:
        return {i for i, a in json.load(f)["adapters"].items() if a.get("duplicate_of")}


def check_catalog(s, workdir, data, eligible, ineligible):
    assert s["dead"] == 0, ("dead jobs", s.get("dead_letters"))
    assert s["records"] == len(eligible), ("records", s["records"], "eligible", len(eligible))
    ids = exported_ids(workdir, data)
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, ("duplicate docs", dupes[:5])
    missing = eligible - set(ids)
    assert not missing - reuploads() and set(ids) <= eligible, \
        ("missing", sorted(missing)[:5], "unexpected", sorted(set(ids) - eligible)[:5])
    assert not set(ids) & ineligible
    return len(ids)


def check_pages(s, stats):
    pages = list_pages(stats)
    for source, targets in pages.items():
        twice = {t: c for t, c in targets.items() if c["ok"] != 1}
        assert not twice, ("%s list pages not fetched exactly once" % source, twice)
        assert len(targets) == s["sources"][source]["pages"], \
            (source, len(targets), "fetched pages, the catalog counted", s["sources"][source]["pages"])
    want = math.ceil(civitai_models() / CIVITAI_PAGE)
    assert len(pages["civitai"]) == want, ("civitai pages", len(pages["civitai"]), "want", want)
    requests = sum(c["requests"] for t in pages.values() for c in t.values())
    fetched = sum(c["ok"] for t in pages.values() for c in t.values())
    assert requests > fetched, "no fault hit a list page"
    for kind in ("429", "500", "truncate", "badjson"):
        assert stats["faults_injected"].get(kind, 0) > 0, ("fault never fired", kind, stats["faults_injected"])
    return pages, requests, fetched


def check_workers(s, stats, procs):
    per_worker = []
    for i in range(1, WORKERS + 1):
        agent = stats["by_agent"].get(user_agent(i))
        assert agent, ("worker %d made no request" % i, sorted(stats["by_agent"]))
        ok = agent["ok_by_prefix"]
        civitai, hf = ok.get("/api/v1/models", 0), ok.get("/api/models", 0)
        logged = len(re.findall(r"(civitai|hf) full page", procs.log_all("crawler%d" % i)))
        assert civitai + hf > 0 and logged > 0, ("worker %d fetched no list page" % i, agent)
        assert agent["max_concurrent_requests"] <= PER_HOST, ("worker %d over the per-host limit" % i, agent)
        per_worker.append((i, civitai, hf, logged, agent["requests"], agent["max_concurrent_requests"]))
    assert set(stats["by_agent"]) == {user_agent(i) for i in range(1, WORKERS + 1)}, sorted(stats["by_agent"])
    pages = sum(s["sources"][source]["pages"] for source in LIST_PATHS.values())
    assert sum(w[3] for w in per_worker) == pages, ("pages logged by the workers", per_worker, "catalog", pages)
    assert stats["per_host_violations"] == 0, stats
    assert stats["max_concurrent_requests"] <= WORKERS * PER_HOST, stats
    return per_worker


class Cluster(Procs):
    def log_all(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def main():
    eligible, ineligible, _ = load_fixtures()
    workdir = tempfile.mkdtemp(prefix="stylus-workers-")
    data = os.path.join(workdir, "catalog")
    procs = Cluster(workdir)
    try:
        portfile = os.path.join(workdir, "fixture.port")
        argv = ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0", "--port-file", portfile,
                "--data", FIXTURES, "--max-per-host-check", str(WORKERS * PER_HOST)]
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
        procs.start("catalog", [BIN, "catalog", "--data", data, "--bind", cat, "--source", "civitai",
                                "--source", "hf", "--lease-ms", str(LEASE_MS),
                                "--max-attempts", str(MAX_ATTEMPTS)])
        for i in range(1, WORKERS + 1):
            procs.start("crawler%d" % i, [BIN, "crawler", "--connect", cat, "--civitai-url", base, "--hf-url", base,
                                          "--rate", "0", "--hf-rate", "0", "--max-per-host", str(PER_HOST),
                                          "--civitai-page-limit", str(CIVITAI_PAGE),
                                          "--hf-page-limit", str(HF_PAGE), "--allow-private",
                                          "--contact", contact(i)])
        procs.start("refiner", [BIN, "refiner", "--connect", cat])

        t0 = time.time()
        s = wait_pass(cat, procs)
        elapsed = time.time() - t0
        stats = http_json(base + "/__stats")
        docs = check_catalog(s, workdir, data, eligible, ineligible)
        pages, requests, fetched = check_pages(s, stats)
        per_worker = check_workers(s, stats, procs)
        catalog_log = procs.log_all("catalog")
        assert "lease expired" not in catalog_log, "a lease expired: a page may have been fetched twice"
        retried = len(re.findall(r"crawl job \d+ failed", catalog_log))

        print("pass in %.1fs: %d records, all %d eligible once (%d docs: re-uploads are not indexed); "
              "faults %s" % (elapsed, s["records"], len(eligible), docs, stats["faults_injected"]))
        print("list pages: civitai %d, hf %d, each fetched once (%d list requests for %d fetches); "
              "%d crawl jobs failed and were leased again" % (len(pages["civitai"]), len(pages["hf"]),
                                                              requests, fetched, retried))
        for i, civitai, hf, logged, total, most in per_worker:
            print("worker %d: %d civitai + %d hf list pages fetched, %d pages logged, %d requests, "
                  "at most %d at once" % (i, civitai, hf, logged, total, most))
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
