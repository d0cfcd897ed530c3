#!/usr/bin/python3
"""Resharding 2 -> 4 without downtime, as docs/search.md describes it.

1. The pipeline (fixture server, catalog compacting every second, crawler,
   refiner, indexer) fills two shards 0/2 and 1/2; query node A serves them.
2. Four new shards 0/4 .. 3/4 start on their own --data: their changelog is
   compacted away, so each copies a snapshot of its share from the catalog.
   Meanwhile A keeps answering (every answer checked: 200, coverage 1.0).
3. Once the four have applied the catalog's head, query node B serves them;
   for a set of prompts B retrieves the same ids with the same scores as A
   and composes the same adapters.
4. The old shards and A stop; B still answers in full.

Every process it starts, it stops by PID.
Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, Cluster, free_port, post  # noqa: E402
from test_replicas import (Replica, catalog_done, compacted, converged, start_pipeline,  # noqa: E402
                           wait_for)

PROMPTS = ["watercolor painting of a dog", "a samurai in armor on a snowy mountain",
           "cyberpunk city street at night, neon lights", "portrait photo, soft light",
           "anime girl with long hair", "oil painting of a harbor", "pixel art castle"]


def serve(cluster, name, shards):
    port = free_port()
    argv = [BIN, "serve", "--listen", "127.0.0.1:%d" % port]
    for r in shards:
        argv += ["--shard", r.endpoint]
    cluster.start(name, argv)
    http = "http://127.0.0.1:%d" % port

    def up():
        try:
            return post(http + "/v1/retrieve", {"prompt": "x", "k": 1})[0] == 200
        except OSError:  # not listening yet
            return False

    wait_for("%s up" % name, up, cluster, timeout=30)
    return http


def retrieve(http, prompt):
    code, ans = post(http + "/v1/retrieve", {"prompt": prompt, "k": 50})
    assert code == 200 and ans["coverage"] == 1.0 and not ans["partial"], (http, code, ans)
    return [(c["id"], c["score"]) for c in ans["candidates"]]


def same(prompt, got, want):
    """Same scores, and the same ids except among ties at the cut (merge order may differ)."""
    assert len(got) == len(want), (prompt, len(got), len(want))
    assert all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(got, want)), (prompt, got, want)
    last = want[-1][1]
    above = lambda hits: {i for i, sc in hits if sc > last + 1e-4}  # noqa: E731
    assert above(got) == above(want), (prompt, sorted(above(got) ^ above(want)))


def compose(http, prompt):
    code, ans = post(http + "/v1/compose", {"prompt": prompt})
    assert code == 200 and ans["coverage"] == 1.0, (http, code, ans)
    return [a["id"] for a in ans["adapters"]]


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-reshard-")
    cluster = Cluster(workdir)
    passed = False
    try:
        cat = start_pipeline(cluster, workdir)
        old = [Replica(cluster, workdir, i, 2, "old%d" % i, cat) for i in range(2)]
        for r in old:
            r.start()
        s = wait_for("pipeline done", lambda: catalog_done(cat), cluster)
        head = s["head_seq"]
        wait_for("old shards at head", lambda: converged(old, head), cluster)
        a = serve(cluster, "serve-a", old)
        before = {p: retrieve(a, p) for p in PROMPTS}
        print("1 ok: %d docs in 2 shards, head_seq %d" % (s["docs"], head))

        # Once both have applied the head the catalog compacts the whole changelog: newcomers
        # cannot replay it and copy snapshots (as on a long-lived cluster).
        wait_for("changelog compacted", lambda: compacted(cat, head), cluster)
        new = [Replica(cluster, workdir, i, 4, "new%d" % i, cat) for i in range(4)]
        for r in new:
            r.start()
        answered, start = 0, time.time()
        while True:  # A answers in full all along
            assert retrieve(a, PROMPTS[answered % len(PROMPTS)]), "A stopped answering"
            answered += 1
            if converged(new, head):
                break
            assert time.time() - start < 120, [r.status() for r in new]
            cluster.check_alive()
        counts = [r.status()["count"] for r in new]
        assert sum(counts) == s["docs"] and all(c > 0 for c in counts), (counts, s["docs"])
        logs = "".join(open(os.path.join(workdir, r.name + ".log"), errors="replace").read() for r in new)
        assert logs.count("snapshot done") == 4, "the new shards did not copy snapshots"
        print("2 ok: 4 new shards built from snapshots (%s docs) while A answered %d queries"
              % (counts, answered))

        b = serve(cluster, "serve-b", new)
        for p in PROMPTS:
            same(p, retrieve(b, p), before[p])
            assert compose(b, p) == compose(a, p), p
        print("3 ok: B over 4 shards answers as A over 2 for %d prompts" % len(PROMPTS))

        for r in old:
            r.kill9()
        for p in PROMPTS:
            same(p, retrieve(b, p), before[p])
        print("4 ok: old shards gone, B answers in full")
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
