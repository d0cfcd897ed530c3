#!/usr/bin/python3
"""Replicated shards: convergence, failover, restart and kill -9 during apply.

Starts the fixture server, catalog, crawler, refiner, indexer, two shards of
two replicas each (every replica its own --data) and a query node that knows
both replicas of each shard.  Then:

1. convergence: each replica pair reports the same count, applied_seq equals
   the catalog's head_seq, the shards' counts sum to the catalog's docs, and
   /v1/retrieve answers with coverage 1.0;
2. failure: after kill -9 of one replica of each shard /v1/compose still has
   coverage 1.0 (failover); after killing both replicas of shard 1 it answers
   200 with partial true and coverage 0.5;
3. restart: a killed replica restarted on its old --data starts from its old
   applied_seq (never 0) and converges again;
4. compaction and kill -9 during a snapshot: once every replica has applied
   the head, the catalog (compacting every second) drops the whole changelog;
   a fresh replica is told to re-snapshot, is killed 5 times at random moments
   while it copies, and restarted on the same --data; in the end it opens
   fine, holds its sibling's count and applied_seq == head_seq.

Every process it starts, it stops by PID, whatever happens.
Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, Cluster, free_port, status, eligible_ids, post  # noqa: E402

DEADLINE = 120  # seconds for any one thing to converge; generous on purpose


def wait_for(what, check, cluster, timeout=DEADLINE):
    """Poll check() until it returns a true value; fail with its last answer."""
    start, last = time.time(), None
    while time.time() - start < timeout:
        cluster.check_alive()
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError("%s not reached after %ds (last: %r)" % (what, timeout, last))


class Replica:
    """One shard process `I/N`; it keeps its --data and endpoint across restarts."""

    def __init__(self, cluster, workdir, index, n, name, catalog):
        self.cluster, self.name = cluster, name
        self.argv = [BIN, "shard", "%d/%d" % (index, n), "--data", os.path.join(workdir, name),
                     "--bind", "tcp://127.0.0.1:%d" % free_port(), "--catalog", catalog]
        self.endpoint = self.argv[self.argv.index("--bind") + 1]
        self.proc = None
        self.seq_at_kill = None

    def start(self):
        self.proc = self.cluster.start(self.name, self.argv)

    def kill9(self):
        """SIGKILL and reap; the process is dropped from the cluster's list."""
        st = self.status()
        self.seq_at_kill = st["applied_seq"] if st else None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.cluster.procs = [(n, p) for n, p in self.cluster.procs if p is not self.proc]
        self.proc = None

    def status(self):
        return status(self.endpoint)


def start_lines(cluster, name):
    """(docs, applied seq) a shard found on disk, from each start line of its log."""
    path = os.path.join(cluster.workdir, name + ".log")
    return [(int(m.group(1)), int(m.group(2))) for m in
            re.finditer(r"(\d+) docs, applied seq (\d+)", open(path, errors="replace").read())]


def catalog_done(cat):
    s = status(cat)
    if not s:
        return None
    src = s.get("sources", {})
    busy = sum(j["pending"] + j["leased"] for j in s["jobs"].values())
    if src and all(v["done"] for v in src.values()) and busy == 0 and s["docs"] == s["vectors"]:
        return s
    return None


def converged(replicas, head):
    """Statuses of all replicas if every one has applied up to head, else None."""
    out = [r.status() for r in replicas]
    if all(s and s["applied_seq"] == head for s in out):
        return out
    return None


def first_prompt():
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        cases = json.load(f)
    if isinstance(cases, dict):
        cases = cases.get("prompts", cases.get("cases", []))
    body = {"prompt": cases[0]["prompt"]}
    if cases[0].get("base_model"):
        body["base_model"] = cases[0]["base_model"]
    return body


def compose(http, body):
    code, ans = post(http + "/v1/compose", body)
    assert code == 200, (code, ans)
    return ans


def start_pipeline(cluster, workdir):
    web = cluster.start_fixtures()
    cat = "tcp://127.0.0.1:%d" % free_port()
    cluster.start("catalog", [BIN, "catalog", "--data", os.path.join(workdir, "catalog"), "--bind", cat,
                              "--source", "civitai", "--source", "hf", "--compact-every", "1s"])
    cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", web, "--rate", "0",
                              "--hf-url", web, "--hf-rate", "0"])
    cluster.start("refiner", [BIN, "refiner", "--connect", cat])
    cluster.start("indexer", [BIN, "indexer", "--connect", cat])
    return cat


def scenario_convergence(cluster, cat, shards, http):
    s = wait_for("pipeline done", lambda: catalog_done(cat), cluster)
    head = s["head_seq"]
    ids, _ = eligible_ids()
    assert s["docs"] == len(ids), ("docs", s["docs"], "eligible", len(ids))
    reps = [r for pair in shards for r in pair]
    st = wait_for("all replicas at head_seq %d" % head, lambda: converged(reps, head), cluster)
    counts = []
    for i, pair in enumerate(shards):
        a, b = st[2 * i], st[2 * i + 1]
        assert a["count"] == b["count"], ("shard %d replicas differ" % i, a, b)
        counts.append(a["count"])
    assert sum(counts) == s["docs"], ("shard counts", counts, "docs", s["docs"])
    assert all(c > 0 for c in counts), counts
    code, ans = post(http + "/v1/retrieve", {"prompt": "watercolor painting of a dog", "k": 20})
    assert code == 200 and ans["coverage"] == 1.0 and not ans["partial"], (code, ans)
    assert len(ans["candidates"]) == 20, len(ans["candidates"])
    print("1 ok: head_seq %d, shard counts %s, sum %d docs" % (head, counts, s["docs"]))
    return head, counts


def scenario_failure(shards, http, prompt):
    before = compose(http, prompt)
    assert before["coverage"] == 1.0 and before["adapters"], before
    for pair in shards:
        pair[0].kill9()
    ans = compose(http, prompt)
    assert ans["coverage"] == 1.0 and not ans["partial"], ("failover", ans)
    assert [a["id"] for a in ans["adapters"]] == [a["id"] for a in before["adapters"]], (before, ans)
    shards[1][1].kill9()
    ans = compose(http, prompt)
    assert ans["partial"] is True and ans["coverage"] == 0.5, ("shard 1 down", ans)
    print("2 ok: failover answered in full; shard 1 down -> partial, coverage 0.5")


def scenario_restart(cluster, shards, head, counts):
    for i, pair in enumerate(shards):
        for r in pair:
            if r.proc is not None:
                continue
            r.start()
            first = wait_for("%s answers STATUS" % r.name, r.status, cluster, timeout=30)
            assert first["applied_seq"] >= r.seq_at_kill > 0, ("restart lost its place", r.name,
                                                               r.seq_at_kill, first)
            opened = start_lines(cluster, r.name)[-1]
            assert opened == (counts[i], r.seq_at_kill), ("restart opened", r.name, opened)
    reps = [r for pair in shards for r in pair]
    st = wait_for("restarted replicas at head", lambda: converged(reps, head), cluster)
    for i in range(len(shards)):
        assert st[2 * i]["count"] == st[2 * i + 1]["count"] == counts[i], (i, st, counts)
    print("3 ok: restarted replicas resumed from their applied_seq and converged")


def compacted(cat, head):
    """The catalog's changelog section once compaction has reached head."""
    s = status(cat)
    log = s.get("changelog") if s else None
    return log if log and log["low_seq"] >= head else None


def scenario_kill_during_apply(cluster, workdir, cat, shards, head, counts, rng):
    # Every replica has applied head: compaction drops the whole changelog, so a
    # newcomer cannot replay it and must copy a snapshot.
    log = wait_for("changelog compacted to %d" % head, lambda: compacted(cat, head), cluster)
    assert len(log["subscribers"]) == 4, log
    fresh = Replica(cluster, workdir, 0, 2, "shard0c", cat)
    delays = [rng.uniform(0.05, 0.3) for _ in range(5)]
    for delay in delays:
        fresh.start()
        time.sleep(delay)
        # It must not have died on its own (a corrupt store would make it exit).
        cluster.check_alive()
        fresh.proc.send_signal(signal.SIGKILL)  # no STATUS first: it may be mid-apply
        fresh.proc.wait()
        cluster.procs = [(n, p) for n, p in cluster.procs if p is not fresh.proc]
    fresh.start()
    st = wait_for("fresh replica at head", lambda: converged([fresh], head), cluster)[0]
    sib = shards[0][1].status()
    assert st["count"] == sib["count"] == counts[0], ("fresh replica differs", st, sib, counts)
    # Each start logs the applied seq it found on disk: it may only grow.
    starts = start_lines(cluster, fresh.name)
    # A process killed before it finished opening logs nothing; the last start always does.
    assert 1 <= len(starts) <= 6, starts
    assert starts[0] == (0, 0), starts
    assert all(a[1] <= b[1] for a, b in zip(starts, starts[1:])), starts
    text = open(os.path.join(cluster.workdir, fresh.name + ".log"), errors="replace").read()
    assert "taking a snapshot" in text and "snapshot done" in text, "no snapshot in the log"
    print("4 ok: killed after %s s; starts found docs/seq %s; then count %d == sibling, "
          "applied_seq %d == head" % (["%.2f" % d for d in delays], starts, st["count"],
                                      st["applied_seq"]))


def main():
    seed = int(os.environ.get("STYLUS_TEST_SEED", random.randrange(1 << 30)))
    print("seed %d" % seed)
    rng = random.Random(seed)
    workdir = tempfile.mkdtemp(prefix="stylus-rep-")
    cluster = Cluster(workdir)
    passed = False
    try:
        cat = start_pipeline(cluster, workdir)
        shards = []
        for i in range(2):
            pair = [Replica(cluster, workdir, i, 2, "shard%d%s" % (i, c), cat) for c in "ab"]
            for r in pair:
                r.start()
            shards.append(pair)
        http_port = free_port()
        http = "http://127.0.0.1:%d" % http_port
        argv = [BIN, "serve", "--listen", "127.0.0.1:%d" % http_port]
        for pair in shards:
            argv += ["--shard", ",".join(r.endpoint for r in pair)]
        cluster.start("serve", argv)

        head, counts = scenario_convergence(cluster, cat, shards, http)
        scenario_failure(shards, http, first_prompt())
        scenario_restart(cluster, shards, head, counts)
        scenario_kill_during_apply(cluster, workdir, cat, shards, head, counts, rng)
        cluster.check_alive()
        passed = True
    except Exception:
        names = [n for n, _ in cluster.procs]
        for name in names + [n for n in ("shard0a", "shard1a", "shard1b", "shard0c") if n not in names]:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()
        if passed:
            shutil.rmtree(workdir, ignore_errors=True)  # kept for its logs when a check fails
    return 0


if __name__ == "__main__":
    sys.exit(main())
