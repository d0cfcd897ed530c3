#!/usr/bin/python3
"""Models that disappear leave the index: tombstones end to end.

Runs the whole pipeline (fixture server, catalog, crawler with a validator
cache, refiner, indexer, one shard, query node) with continuous full passes
(catalog --refresh 1s --full-refresh 1s).  Once everything is served:

1. the fixture server deletes 40 Civitai models and one Hugging Face repo
   and gives another HF repo a new commit (POST /__mutate);
2. the next full pass does not list them; the catalog checks each unlisted
   record with the source, which answers 404: each becomes a tombstone, a
   "del" goes to the shard; the HF repo's old commit is superseded by the new
   one (a tombstone too, the new commit is indexed);
3. the catalog's and shard's counts drop by exactly those records, the shard
   compacts its tombstones away (they are over a tenth of its rows), and no
   answer of the query node names a deleted adapter; `stylus export` holds
   exactly the expected ids.

Every process it starts, it stops by PID.
Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, REUPLOADS, Cluster, free_port, status, eligible_ids, post  # noqa: E402

DEADLINE = 180


def wait_for(what, check, cluster, timeout=DEADLINE):
    start, last = time.time(), None
    while time.time() - start < timeout:
        cluster.check_alive()
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError("%s not reached after %ds (last: %r)" % (what, timeout, last))


def mutate(web, body):
    req = urllib.request.Request(web + "/__mutate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def pick(ids):
    """40 eligible Civitai models (every one of their versions), one HF repo to delete, one to change."""
    with open(os.path.join(FIXTURES, "civitai", "models.json")) as f:
        models = json.load(f)
    if isinstance(models, dict):
        models = models.get("items", [])
    eligible = sorted({int(i.split(":")[1].split("@")[0]) for i in ids if i.startswith("civitai:")})
    doomed = eligible[::5][:40]
    gone = {i for i in ids if i.startswith("civitai:") and int(i.split(":")[1].split("@")[0]) in doomed}
    repos = sorted(i for i in ids if i.startswith("hf:"))
    return doomed, gone, repos[0], repos[1]


def exported_ids(workdir):
    out = os.path.join(workdir, "export")
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([BIN, "export", "--data", os.path.join(workdir, "catalog"), "--out", out],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "docs.jsonl")) as f:
        return {json.loads(line)["id"] for line in f if line.strip()}


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-tomb-")
    cluster = Cluster(workdir)
    passed = False
    try:
        web = cluster.start_fixtures()
        cat = "tcp://127.0.0.1:%d" % free_port()
        shard = "tcp://127.0.0.1:%d" % free_port()
        http_port = free_port()
        http = "http://127.0.0.1:%d" % http_port
        cluster.start("catalog", [BIN, "catalog", "--data", os.path.join(workdir, "catalog"), "--bind", cat,
                                  "--source", "civitai", "--source", "hf", "--refresh", "1s",
                                  "--full-refresh", "1s", "--compact-every", "1s"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", web, "--rate", "0",
                                  "--hf-url", web, "--hf-rate", "0", "--cache", os.path.join(workdir, "cache")])
        cluster.start("refiner", [BIN, "refiner", "--connect", cat])
        cluster.start("indexer", [BIN, "indexer", "--connect", cat])
        cluster.start("shard", [BIN, "shard", "0/1", "--data", os.path.join(workdir, "shard0"),
                                "--bind", shard, "--catalog", cat])
        cluster.start("serve", [BIN, "serve", "--shard", shard, "--listen", "127.0.0.1:%d" % http_port])

        ids, _ = eligible_ids()

        def served():
            s, sh = status(cat), status(shard)
            if s and sh and s["docs"] == s["vectors"] == len(ids) and sh["count"] == len(ids):
                return s, sh
            return None

        s, sh = wait_for("all %d adapters served" % len(ids), served, cluster)
        print("1 ok: %d docs served; shard %d rows" % (s["docs"], sh["count"]))

        doomed, gone, hf_deleted, hf_changed = pick(ids)
        ans = mutate(web, {"delete": doomed, "hf_delete": [hf_deleted.split(":")[1].split("@")[0]],
                           "hf_change": [hf_changed.split(":")[1].split("@")[0]]})
        assert sorted(ans["deleted"]) == doomed, ans
        assert len(ans.get("hf_deleted", [])) == 1 and len(ans.get("hf_changed", [])) == 1, ans
        gone |= {hf_deleted, hf_changed}  # the changed repo's old commit is superseded
        want = len(ids) - len(gone) + 1    # ... and its new commit comes in
        print("2 mutated: %d Civitai models (%d versions), HF %s deleted, %s changed"
              % (len(doomed), len(gone) - 2, hf_deleted, hf_changed))

        def settled():
            s, sh = status(cat), status(shard)
            if not (s and sh):
                return None
            if s["changelog"]["tombstones"] == len(gone) and s["docs"] == s["vectors"] == want and \
                    sh["count"] == want and sh["applied_seq"] >= s["head_seq"] and sh["dead"] == 0:
                return s, sh
            return None

        s, sh = wait_for("tombstones applied", settled, cluster)
        assert s["records"] == want + len(REUPLOADS), s
        assert sh["compacted"] > 0, sh  # over a tenth of the rows: compacted (dead is 0 above)
        got = exported_ids(workdir)
        assert not got & gone, sorted(got & gone)[:5]
        assert len(got) == want, (len(got), want)
        new_hf = [i for i in got if i.startswith(hf_changed.split("@")[0] + "@")]
        assert len(new_hf) == 1 and new_hf[0] != hf_changed, new_hf
        print("3 ok: %d tombstones; catalog %d docs, shard %d rows (%d rows moved by compaction); "
              "HF %s now %s" % (s["changelog"]["tombstones"], s["docs"], sh["count"], sh["compacted"],
                                hf_changed, new_hf[0]))

        for prompt in ("watercolor painting", "portrait photo", "anime girl", "armor", "landscape",
                       "cyberpunk city", "cute animal"):
            code, ans = post(http + "/v1/retrieve", {"prompt": prompt, "k": 200})
            assert code == 200, (code, ans)
            named = {c["id"] for c in ans["candidates"]}
            assert not named & gone, (prompt, sorted(named & gone)[:5])
        print("4 ok: no answer names a deleted adapter")
        cluster.check_alive()
        passed = True
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()
        if passed:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
