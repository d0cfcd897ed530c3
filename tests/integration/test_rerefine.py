#!/usr/bin/python3
"""Switching the refiner re-refines the catalog progressively.

1. The fixture catalog is crawled and refined by the offline card refiner
   (refined_by "card").
2. The catalog restarts with --refine-as vlm:fixture-vlm@p1 and a VLM
   refiner (against tests/fixtures/vlm_server.py) replaces the card one.
   The sweep queues the stale docs a few at a time; the docs keep serving
   meanwhile (their count never drops); at the end every doc is refined by
   the VLM and nothing is dead.

Every process started is stopped by PID.  Env: STYLUS_BIN, STYLUS_FIXTURES.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, Cluster, eligible_ids, free_port, status  # noqa: E402

MODEL, KEY = "fixture-vlm", "sk-fixture-0123456789abcdef"
WANT = "vlm:%s@p1" % MODEL


def wait_port(cluster, path):
    for _ in range(400):
        if os.path.exists(path):
            return int(open(path).read().strip())
        cluster.check_alive()
        time.sleep(0.05)
    raise AssertionError("no port file " + path)


def export_docs(catalog_dir, out):
    import subprocess
    subprocess.run([BIN, "export", "--data", catalog_dir, "--out", out], check=True, capture_output=True)
    with open(os.path.join(out, "docs.jsonl")) as f:
        return [json.loads(line) for line in f]


def wait(cat, cluster, pred, what, timeout=240):
    start = time.time()
    while time.time() - start < timeout:
        cluster.check_alive()
        s = status(cat)
        if s and pred(s):
            return s
        time.sleep(0.5)
    raise AssertionError("%s: not after %ds: %s" % (what, timeout, status(cat)))


def main():
    import tempfile
    workdir = tempfile.mkdtemp(prefix="stylus-rerefine-")
    cluster = Cluster(workdir)
    ids, _ = eligible_ids()
    catalog_dir = os.path.join(workdir, "catalog")
    # No indexer runs here: embed jobs stay queued; crawl and refine must drain.
    idle = lambda s: sum(s["jobs"][j]["pending"] + s["jobs"][j]["leased"] for j in ("crawl", "refine")) == 0
    try:
        pf = os.path.join(workdir, "fixture.port")
        cluster.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                                   "--port-file", pf, "--data", FIXTURES])
        url = "http://127.0.0.1:%d" % wait_port(cluster, pf)
        cat = "tcp://127.0.0.1:%d" % free_port()
        cluster.start("catalog", [BIN, "catalog", "--data", catalog_dir, "--bind", cat,
                                  "--source", "civitai", "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", url, "--rate", "0",
                                  "--hf-url", url, "--hf-rate", "0"])
        cluster.start("card-refiner", [BIN, "refiner", "--connect", cat])
        wait(cat, cluster, lambda s: s["docs"] == len(ids) and idle(s), "card refine")
        cluster.stop()
        docs = export_docs(catalog_dir, os.path.join(workdir, "before"))
        assert len(docs) == len(ids) and all(d["refined_by"] == "card" for d in docs)

        vf = os.path.join(workdir, "vlm.port")
        cluster.start("vlm", ["/usr/bin/python3", os.path.join(FIXTURES, "vlm_server.py"), "--port", "0",
                              "--port-file", vf, "--key", KEY, "--data", FIXTURES])
        vlm = "http://127.0.0.1:%d/v1" % wait_port(cluster, vf)
        key_file = os.path.join(workdir, "vlm.key")
        with open(key_file, "w") as f:
            f.write(KEY + "\n")
        cat = "tcp://127.0.0.1:%d" % free_port()
        cluster.start("catalog2", [BIN, "catalog", "--data", catalog_dir, "--bind", cat,
                                   "--source", "civitai", "--source", "hf", "--refine-as", WANT])
        cluster.start("vlm-refiner", [BIN, "refiner", "--connect", cat, "--vlm-url", vlm, "--vlm-model", MODEL,
                                      "--vlm-key-file", key_file, "--vlm-json-mode", "--allow-private"])
        seen_min = len(ids)
        start = time.time()
        while time.time() - start < 240:
            cluster.check_alive()
            s = status(cat)
            if s:
                seen_min = min(seen_min, s["docs"])
                if idle(s) and "re-refine sweep to %s done" % WANT in cluster.log("catalog2"):
                    break
            time.sleep(0.5)
        cluster.stop()
        assert seen_min == len(ids), "docs stopped serving during the sweep: %d" % seen_min
        docs = export_docs(catalog_dir, os.path.join(workdir, "after"))
        by = {}
        for d in docs:
            by[d["refined_by"]] = by.get(d["refined_by"], 0) + 1
        assert len(docs) == len(ids) and by == {WANT: len(ids)}, by
        print("re-refined %d docs from card to %s; none stopped serving" % (len(docs), WANT))
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
