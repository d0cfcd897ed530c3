#!/usr/bin/python3
"""Duplicates: a crawl job {source: "civitai", by_hash: [sha256...]} end to end.

Drives one `stylus crawler` against the fixture server (tests/fixtures/server.py)
through the fake catalog broker of test_crawl_refresh.py (a ZeroMQ ROUTER
speaking proto/wire.h), so it needs no catalog.

  1. A full Civitai pass, as the catalog would run it: the re-upload
     (truth.json `duplicate_of`) and its original carry the same primary-file
     SHA256 in their records (lowercase, as the crawler writes it).
  2. by_hash with that SHA256 as a record has it, the same SHA256 in
     uppercase (as truth.json and Civitai write it), an unknown SHA256 and
     the lowercase one again: `canonical` maps each distinct hash, as given, to
     the original's id (the fixture server answers by-hash with the oldest
     version that has the file, and so does truth.json), the unknown one to
     nil; `records` is empty, `next_cursor` nil, `skipped` 0, and nothing
     else is in the payload.  A hash given twice is one map key and one
     request.
  3. Malformed jobs fail with a clear error and no request: a hash that is
     not 64 hex digits (the crawler's choice: the whole job fails, as a
     malformed check id does, rather than answer nil for it), an empty list,
     51 hashes, by_hash for source hf, by_hash together with check.
  4. A by-hash answer of 500 after the fetcher's retries, and a 200 with
     broken JSON, fail the job (the broker then retries it).  The server's
     faults hit only hashes that start with "5" (500) or "b" (JSON cut in
     half; a known hash, so the cut answer is a 200).
  5. The server saw no request over the per-host limit.

Every process is stopped by its PID.  Environment: STYLUS_BIN, STYLUS_FIXTURES.
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True
os.environ.setdefault("STYLUS_INSECURE", "1")  # plaintext on loopback, as --insecure asks
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import zmq
    from test_crawl_refresh import BIN, FIXTURES, Broker, Crawl, Procs
except ImportError as e:  # python3-zmq or python3-msgpack missing
    print("skipped: %s" % e)
    sys.exit(77)

FAULTS = ["500:1:/api/v1/model-versions/by-hash/5", "badjson:1:/api/v1/model-versions/by-hash/b"]
PER_HOST = 2
BY_HASH = "/api/v1/model-versions"


def load_truth():
    with open(os.path.join(FIXTURES, "truth.json")) as f:
        adapters = json.load(f)["adapters"]
    dup = [(i, a) for i, a in adapters.items() if a.get("duplicate_of")]
    assert len(dup) == 1, ("the fixtures have one re-upload", [i for i, _ in dup])
    dup_id, dup = dup[0]
    original = dup["duplicate_of"]
    assert adapters[original]["sha256"] == dup["sha256"], "truth.json: the original has another file"
    known_b = sorted(a["sha256"] for a in adapters.values() if (a.get("sha256") or "").startswith("B"))
    assert known_b, "truth.json has no SHA256 starting with B"
    return dup_id, original, dup["sha256"], known_b[0].lower()


def requests_by_hash(c):
    return c.stats()["by_prefix"].get(BY_HASH, 0)


def check_pass_shares_sha(c, dup_id, original):
    """1. The records of a pass carry the shared SHA256, as the catalog will see it."""
    pages = c.pass_("civitai")
    records = {r["id"]: r for p in pages for r in p["records"]}
    assert dup_id in records and original in records, "the pass lacks the re-upload or its original"
    sha = records[dup_id]["files"][0]["sha256"]
    assert sha == records[original]["files"][0]["sha256"] and sha == sha.lower() and len(sha) == 64, sha
    sharing = sorted(i for i, r in records.items() if any(f.get("sha256") == sha for f in r.get("files", [])))
    assert sharing == sorted([dup_id, original]), sharing
    print("pass: %d records in %d pages; %s and %s share file %s" % (len(records), len(pages), original,
                                                                     dup_id, sha))
    return sha


def check_canonical(c, sha, sha_upper, original):
    """2. The canonical map."""
    unknown = "0" * 64
    before = requests_by_hash(c)
    result = c.job({"source": "civitai", "by_hash": [sha, sha_upper, unknown, sha]})
    asked = requests_by_hash(c) - before
    assert set(result) == {"source", "records", "next_cursor", "skipped", "canonical"}, sorted(result)
    assert result["source"] == "civitai" and result["records"] == [], result
    assert result["next_cursor"] is None and result["skipped"] == 0, result
    assert result["canonical"] == {sha: original, sha_upper: original, unknown: None}, result["canonical"]
    assert asked == 3, ("one request per distinct hash", asked)
    print("by_hash: %s" % json.dumps(result["canonical"]))


def check_refused(c, sha):
    """3. Malformed jobs fail before any request."""
    before = requests_by_hash(c)
    for bad in ["not-a-hash", sha[:63], sha + "0", "g" * 64, "../../models/1"]:
        error = c.failing_job({"source": "civitai", "by_hash": [sha, bad]})
        assert bad in error and "SHA256" in error, error
    error = c.failing_job({"source": "civitai", "by_hash": []})
    assert "by_hash" in error, error
    error = c.failing_job({"source": "civitai", "by_hash": [sha] * 51})
    assert "by_hash" in error, error
    error = c.failing_job({"source": "civitai", "by_hash": [42]})
    assert "by_hash" in error, error
    error = c.failing_job({"source": "hf", "by_hash": [sha]})
    assert "civitai only" in error, error
    error = c.failing_job({"source": "civitai", "by_hash": [sha], "check": ["civitai:1@1"]})
    assert "together" in error, error
    assert requests_by_hash(c) == before, "a refused job made a request"
    print("by_hash: malformed hashes, empty and oversized lists, hf, and check+by_hash fail the job")


def check_failures(c, sha, known_b):
    """4. A 5xx and broken JSON fail the job."""
    t0 = time.monotonic()
    error = c.failing_job({"source": "civitai", "by_hash": [sha, "5" * 64]})
    assert "HTTP 500" in error and "5" * 64 in error, error
    print("by_hash: 500 after the retries fails the job in %.1fs: %s" % (time.monotonic() - t0, error))
    error = c.failing_job({"source": "civitai", "by_hash": [known_b]})
    assert "by-hash" in error and known_b in error, error
    print("by_hash: broken JSON fails the job: %s" % error)


def main():
    dup_id, original, sha_upper, known_b = load_truth()
    workdir = tempfile.mkdtemp(prefix="stylus-dedupe-")
    procs = Procs(workdir)
    ctx = zmq.Context()
    broker = None
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
        broker = Broker(ctx)
        procs.start("crawler", [BIN, "crawler", "--connect", broker.endpoint, "--civitai-url", base,
                                "--hf-url", base, "--rate", "0", "--hf-rate", "0",
                                "--max-per-host", str(PER_HOST), "--allow-private"])
        c = Crawl(broker, procs, base)
        sha = check_pass_shares_sha(c, dup_id, original)
        check_canonical(c, sha, sha_upper, original)
        check_refused(c, sha)
        check_failures(c, sha, known_b)
        stats = c.stats()
        assert stats["per_host_violations"] == 0, stats
        assert stats["max_concurrent_requests"] <= PER_HOST, stats
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
