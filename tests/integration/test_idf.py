#!/usr/bin/python3
"""The built-in embedder with IDF weights learned from the catalog.

Starts the fixture server, a catalog, crawler and refiner on free loopback
ports and waits until every adapter has its doc; `stylus idf` learns the
table from the catalog's store beside the running catalog and prints the
model name.  Then an indexer and a query node with --embed-idf and a shard
with --embed-model <that name> index and serve the catalog: every doc gets
a vector of the IDF model, /v1/retrieve finds, for every prompt of
expected.json, an expected adapter of each topic in its top 50 (on the
prompt's base model, as the bench measures), /v1/compose answers all of
them as test_pipeline.py expects (the composer is unchanged; its retrieval
scores now come from the IDF model), and a query node without
--embed-idf is refused by the shard with a model-mismatch error naming both
models.  Also: a corrupt or truncated table stops serve, indexer and embed
at start with a message naming the file; --embed-idf with --embed-url is a
usage error; `stylus idf` on no catalog fails.

Every process it starts, it stops by PID, whatever happens.
Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import (BIN, FIXTURES, REUPLOADS, Cluster, check_prompts, eligible_ids, free_port, post,  # noqa: E402
                           status, wait_done)

PLAIN = "stylus-hash-v1/384"


def run(argv, timeout=60):
    return subprocess.run([BIN] + argv, capture_output=True, text=True, timeout=timeout)


def wait_refined(cat, cluster, n, timeout=240):
    """Until the catalog has n records, a doc for each (re-uploads kept out) and no crawl or
    refine work left."""
    start = time.time()
    while time.time() - start < timeout:
        cluster.check_alive()
        s = status(cat)
        if s:
            src = s.get("sources", {})
            busy = sum(s["jobs"][j]["pending"] + s["jobs"][j]["leased"] for j in ("crawl", "refine")
                       if j in s["jobs"])
            if (src and all(v["done"] for v in src.values()) and busy == 0 and s["records"] == n
                    and s["docs"] + s.get("duplicates", 0) == n):
                return s
        time.sleep(0.5)
    raise AssertionError("not refined after %ds: %s" % (timeout, status(cat)))


def start_fixtures(cluster):
    portfile = os.path.join(cluster.workdir, "fixture.port")
    cluster.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"),
                               "--port", "0", "--port-file", portfile, "--data", FIXTURES])
    for _ in range(200):
        if os.path.exists(portfile):
            break
        cluster.check_alive()
        time.sleep(0.05)
    return "http://127.0.0.1:%s" % open(portfile).read().strip()


def learn_table(workdir, catalog_dir):
    path = os.path.join(workdir, "idf.bin")
    p = run(["idf", "--catalog-data", catalog_dir, "--out", path])
    assert p.returncode == 0, (p.returncode, p.stderr)
    model = p.stdout.strip()
    assert re.fullmatch(r"stylus-hash-v1\+idf-[0-9a-f]{8}/384", model), p.stdout
    assert "docs" in p.stderr and "sha256 " + model[19:27] in p.stderr, p.stderr
    # The same catalog gives the same table, and so the same name.
    again = run(["idf", "--catalog-data", catalog_dir, "--out", path + ".2"])
    assert again.returncode == 0 and again.stdout.strip() == model, again
    with open(path, "rb") as a, open(path + ".2", "rb") as b:
        assert a.read() == b.read(), "stylus idf is not deterministic"
    # stylus embed with the table names the same model.
    e = run(["embed", "-q", "--embed-idf", path, "a corgi in watercolor style"])
    assert e.returncode == 0 and json.loads(e.stdout)["model"] == model, (e.stdout, e.stderr)
    print("stylus idf: %s (%s)" % (model, p.stderr.strip()))
    return path, model


def bad_table_checks(workdir, table):
    """Corrupt, truncated and missing tables stop every command at start; usage errors."""
    with open(table, "rb") as f:
        good = f.read()
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0x40
    cases = {"corrupt": (bytes(corrupt), "SHA-256"), "truncated": (good[:len(good) - 3], "truncated"),
             "header": (good[:40], "truncated"), "notidf": (b"\x93NUMPY" + b"\0" * 200, "magic")}
    for name, (data, why) in cases.items():
        path = os.path.join(workdir, name + ".bin")
        with open(path, "wb") as f:
            f.write(data)
        for argv in (["embed", "--embed-idf", path, "x"],
                     ["serve", "--shard", "tcp://127.0.0.1:9", "--listen", "127.0.0.1:%d" % free_port(),
                      "--embed-idf", path],
                     ["indexer", "--connect", "tcp://127.0.0.1:9", "--embed-idf", path]):
            p = run(argv, timeout=30)
            assert p.returncode != 0 and path in p.stderr and why in p.stderr, (argv, p.returncode, p.stderr)
    missing = os.path.join(workdir, "missing.bin")
    p = run(["embed", "--embed-idf", missing, "x"])
    assert p.returncode != 0 and missing in p.stderr, p.stderr
    p = run(["embed", "--embed-idf", table, "--embed-url", "http://127.0.0.1:9", "--embed-model", "m",
             "--embed-dim", "8", "x"])
    assert p.returncode == 2 and "--embed-idf" in p.stderr and "--embed-url" in p.stderr, p.stderr
    p = run(["idf", "--catalog-data", os.path.join(workdir, "no-catalog"), "--out", missing])
    assert p.returncode == 1 and not os.path.exists(missing), (p.returncode, p.stderr)
    for argv in (["idf"], ["idf", "--catalog-data", workdir], ["idf", "--catalog-data", workdir, "--out", missing,
                                                               "--buckets", "1000"]):
        assert run(argv).returncode == 2, argv
    print("bad tables and usage errors: refused with clear messages")


def retrieval_checks(http):
    """Every expected topic has an adapter in the top 50 of its prompt's base model."""
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        cases = [c for c in json.load(f) if c["must_include_any"]]
    for case in cases:
        code, ans = post(http + "/v1/retrieve", {"prompt": case["prompt"], "k": 50,
                                                 "base_model": case["base_model"]})
        assert code == 200, (case["prompt"], code, ans)
        got = [c["id"] for c in ans["candidates"]]
        for group in case["must_include_any"]:
            assert set(group) & set(got), (case["prompt"], group, got[:10])
    print("/v1/retrieve: every topic of %d prompts found in the top 50" % len(cases))


def mismatch_check(http, model):
    code, ans = post(http + "/v1/retrieve", {"prompt": "a watercolor painting of a fox", "k": 5})
    msg = ans.get("error", {}).get("message", "")
    assert code == 500 and ans["error"]["code"] == "dimension or model mismatch", (code, ans)
    assert PLAIN in msg and model in msg, msg
    print("query node without --embed-idf: %d %s" % (code, msg))


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-idf-")
    cluster = Cluster(workdir)
    ok = False
    try:
        civitai = start_fixtures(cluster)
        cat = "tcp://127.0.0.1:%d" % free_port()
        catalog_dir = os.path.join(workdir, "catalog")
        cluster.start("catalog", [BIN, "catalog", "--data", catalog_dir, "--bind", cat,
                                  "--source", "civitai", "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", civitai, "--rate", "0",
                                  "--hf-url", civitai, "--hf-rate", "0"])
        cluster.start("refiner", [BIN, "refiner", "--connect", cat])
        ids, nsfw = eligible_ids()
        docs = wait_refined(cat, cluster, len(ids) + len(REUPLOADS))["docs"]

        table, model = learn_table(workdir, catalog_dir)
        bad_table_checks(workdir, table)

        shard = "tcp://127.0.0.1:%d" % free_port()
        http = "http://127.0.0.1:%d" % free_port()
        plain_http = "http://127.0.0.1:%d" % free_port()
        cluster.start("indexer", [BIN, "indexer", "--connect", cat, "--embed-idf", table])
        cluster.start("shard", [BIN, "shard", "0/1", "--data", os.path.join(workdir, "shard0"), "--bind", shard,
                                "--catalog", cat, "--embed-model", model, "--embed-dim", "384"])
        cluster.start("serve", [BIN, "serve", "--shard", shard, "--listen", http[7:], "--embed-idf", table])
        cluster.start("serve-plain", [BIN, "serve", "--shard", shard, "--listen", plain_http[7:]])
        s, sh = wait_done(cat, shard, cluster)
        assert s["vectors"] == docs and sh["count"] == docs and s["dead"] == 0, (s, sh)
        assert sh.get("model", model) == model, sh
        print("indexed: %d docs, %d vectors of %s, shard %d" % (s["docs"], s["vectors"], model, sh["count"]))

        retrieval_checks(http)
        n, failures = check_prompts(http, nsfw)
        assert not failures, "\n".join(failures)
        print("/v1/compose: all %d prompts answered as expected" % n)
        mismatch_check(plain_http, model)
        cluster.check_alive()
        print("IDF pipeline ok")
        ok = True
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
