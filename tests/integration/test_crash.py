#!/usr/bin/python3
"""Crash test of the catalog and its workers.

Crawls the fixture catalog twice with catalog, crawler, refiner and indexer
as real processes: once without faults, once while a killer sends SIGKILL
to a random one of them at random moments and restarts it.  Then both
catalogs are exported (stylus export) and must hold the same docs and
vectors: nothing lost, nothing duplicated.  The catalog starts with a
64 KiB LMDB map, so the map-growth path runs too, under kills.

Short mode by default (STYLUS_CRASH_KILLS, default 20 kills); every process
this test starts, it stops by PID.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("STYLUS_BIN", "build/stylus")
FIXTURES = os.environ.get("STYLUS_FIXTURES", "tests/fixtures")
KILLS = int(os.environ.get("STYLUS_CRASH_KILLS", "20"))
SEED = int(os.environ.get("STYLUS_CRASH_SEED", str(int(time.time()))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    def __init__(self, workdir):
        self.workdir = workdir
        self.live = {}    # name -> Popen
        self.argv = {}

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, name + ".log"), "ab")
        self.argv[name] = argv
        self.live[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill9(self, name):
        p = self.live[name]
        p.kill()
        p.wait()

    def restart(self, name):
        self.start(name, self.argv[name])

    def stop_all(self):
        for p in self.live.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.live.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.live = {}


def status(endpoint):
    out = subprocess.run([BIN, "status", "--connect", endpoint, "--timeout-ms", "1000"],
                         capture_output=True, text=True, timeout=10)
    return json.loads(out.stdout) if out.returncode == 0 else None


def done(s):
    if not s:
        return False
    src = s.get("sources", {})
    busy = sum(j["pending"] + j["leased"] for j in s["jobs"].values())
    return bool(src) and all(v["done"] for v in src.values()) and busy == 0


def export(catalog_dir, out):
    subprocess.run([BIN, "export", "--data", catalog_dir, "--out", out], check=True,
                   capture_output=True, timeout=60)
    docs = {}
    with open(os.path.join(out, "docs.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            d.pop("crawled_at", None)   # the only field that may differ between runs
            assert d["id"] not in docs, "duplicate doc " + d["id"]
            docs[d["id"]] = d
    with open(os.path.join(out, "embeddings.npy"), "rb") as f:
        vectors = f.read()
    return docs, vectors


def run(workdir, name, fixture_url, kills, rng):
    """One crawl of the fixture catalog; returns (docs, vectors, kills done)."""
    procs = Procs(workdir)
    cat_dir = os.path.join(workdir, name + "-catalog")
    ep = "tcp://127.0.0.1:%d" % free_port()
    try:
        procs.start(name + "-catalog", [BIN, "catalog", "--data", cat_dir, "--bind", ep,
                                        "--source", "civitai", "--source", "hf",
                                        "--lease-ms", "3000", "--max-attempts", "1000",
                                        "--map-size", "65536"])
        procs.start(name + "-crawler", [BIN, "crawler", "--connect", ep, "--civitai-url", fixture_url,
                                        "--hf-url", fixture_url, "--rate", "0", "--hf-rate", "0",
                                        "--hf-page-limit", "3"])
        procs.start(name + "-refiner", [BIN, "refiner", "--connect", ep])
        procs.start(name + "-indexer", [BIN, "indexer", "--connect", ep])
        victims = [n for n in procs.live]
        done_kills = 0
        deadline = time.time() + 600
        while time.time() < deadline:
            if done_kills < kills:
                time.sleep(rng.uniform(0.1, 0.9))
                victim = rng.choice(victims)
                procs.kill9(victim)
                done_kills += 1
                print("kill -9 %-16s (%d/%d)" % (victim, done_kills, kills), flush=True)
                time.sleep(rng.uniform(0.0, 0.3))
                procs.restart(victim)
                continue
            if done(status(ep)):
                break
            time.sleep(0.3)
        s = status(ep)
        assert done(s), "pipeline not done: %s" % s
        assert s["dead"] == 0, s
    finally:
        procs.stop_all()
    docs, vectors = export(cat_dir, os.path.join(workdir, name + "-export"))
    return docs, vectors, done_kills, s


def main():
    rng = random.Random(SEED)
    workdir = tempfile.mkdtemp(prefix="stylus-crash-")
    print("seed %d, workdir %s" % (SEED, workdir))
    portfile = os.path.join(workdir, "fixture.port")
    # Latency keeps the crawl busy long enough for the kills to land mid-work.
    server = subprocess.Popen(["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                               "--port-file", portfile, "--data", FIXTURES, "--latency-ms", "40"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(portfile):
                break
            time.sleep(0.05)
        url = "http://127.0.0.1:%s" % open(portfile).read().strip()
        clean, clean_vec, _, s0 = run(workdir, "clean", url, 0, rng)
        t0 = time.time()
        crashed, crashed_vec, kills, s1 = run(workdir, "crash", url, KILLS, rng)
        print("clean run: %d docs; crash run: %d docs after %d kills in %.1fs"
              % (len(clean), len(crashed), kills, time.time() - t0))
        assert kills >= KILLS
        # Every record is a doc but the re-uploads (records kept, never indexed).
        assert s0["records"] - s0["duplicates"] == s1["records"] - s1["duplicates"] == len(clean), \
            (s0["records"], s0["duplicates"], s1["records"], s1["duplicates"], len(clean))
        assert s0["duplicates"] == s1["duplicates"], (s0["duplicates"], s1["duplicates"])
        missing = sorted(set(clean) - set(crashed))
        extra = sorted(set(crashed) - set(clean))
        assert not missing and not extra, ("missing", missing[:5], "extra", extra[:5])
        differ = [i for i in clean if clean[i] != crashed[i]]
        assert not differ, ("docs differ", differ[:5])
        assert clean_vec == crashed_vec, "embeddings differ"
        print("identical exports: %d docs, %d kills, no loss, no duplicates" % (len(clean), kills))
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
