#!/usr/bin/python3
"""The catalog on a full disk: a clear message, no crash, no corruption.

The catalog's data directory is a 1 MiB tmpfs (its map starts at 64 KiB and
must grow), too small for the fixture catalog.  A crawl fills it.  Then:
  - the catalog logs the failure as "No space left on device" (or "disk
    full") and keeps answering STATUS;
  - after it stops, the store copied to a roomy place opens and exports
    cleanly (every doc it accepted is readable), and a catalog restarted
    there finishes the crawl with nothing lost.
Also: a data directory that cannot be created, and a store on a read-only
file system, give a clear error naming the directory.

Needs root to mount a tmpfs; otherwise it says so and exits 77 (skipped).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, REUPLOADS, Cluster, eligible_ids, free_port, status  # noqa: E402

SKIP = 77


def main():
    # A path under a regular file cannot become a directory: a clear error, exit 1.
    r = subprocess.run([BIN, "catalog", "--data", "/etc/hostname/catalog", "--bind", "tcp://127.0.0.1:1"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "/etc/hostname/catalog" in r.stderr, (r.returncode, r.stderr)

    if os.geteuid() != 0:
        print("SKIP: mounting a small tmpfs needs root; disk-full test not run")
        return SKIP
    workdir = tempfile.mkdtemp(prefix="stylus-diskfull-")
    small = os.path.join(workdir, "small")
    os.mkdir(small)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], capture_output=True, text=True)
    if r.returncode != 0:
        print("SKIP: cannot mount a tmpfs here (%s); disk-full test not run" % r.stderr.strip())
        return SKIP
    cluster = Cluster(workdir)
    fixtures = Cluster(workdir)  # outlives the first catalog: its cursors name this server
    try:
        pf = os.path.join(workdir, "fixture.port")
        fixtures.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                                   "--port-file", pf, "--data", FIXTURES])
        for _ in range(200):
            if os.path.exists(pf):
                break
            time.sleep(0.05)
        url = "http://127.0.0.1:%s" % open(pf).read().strip()
        cat = "tcp://127.0.0.1:%d" % free_port()
        data = os.path.join(small, "catalog")
        cluster.start("catalog", [BIN, "catalog", "--data", data, "--bind", cat, "--map-size", "65536",
                                  "--source", "civitai", "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", url, "--rate", "0",
                                  "--hf-url", url, "--hf-rate", "0"])
        cluster.start("refiner", [BIN, "refiner", "--connect", cat])
        deadline = time.time() + 60
        full = False
        while time.time() < deadline and not full:
            log = cluster.log("catalog")
            full = "cannot write the catalog" in log
            time.sleep(0.3)
        assert full, "the disk never filled:\n" + cluster.log("catalog")
        time.sleep(1)
        s = status(cat)
        assert s is not None, "the catalog stopped answering on a full disk"
        cluster.check_alive()
        accepted = s["records"]
        cluster.stop()

        # A store it may not write (read-only file system): a clear error naming it, exit 1,
        # and the store is untouched (it opens and finishes below).
        r = subprocess.run(["mount", "-o", "remount,ro", small], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        try:
            r = subprocess.run([BIN, "catalog", "--data", data, "--bind", "tcp://127.0.0.1:%d" % free_port()],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 1 and data in r.stderr and \
                ("Read-only file system" in r.stderr or "Permission denied" in r.stderr), (r.returncode, r.stderr)
            print("read-only store: %s" % r.stderr.strip().splitlines()[-1])
        finally:
            subprocess.run(["mount", "-o", "remount,rw", small], capture_output=True)

        # Copy the store to a roomy place: it opens, exports, and a catalog there finishes the job.
        roomy = os.path.join(workdir, "roomy")
        shutil.copytree(data, roomy)
        out = subprocess.run([BIN, "export", "--data", roomy, "--out", os.path.join(workdir, "export")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        cat = "tcp://127.0.0.1:%d" % free_port()
        cluster.start("catalog2", [BIN, "catalog", "--data", roomy, "--bind", cat,
                                   "--source", "civitai", "--source", "hf"])
        cluster.start("crawler2", [BIN, "crawler", "--connect", cat, "--civitai-url", url, "--rate", "0",
                                   "--hf-url", url, "--hf-rate", "0"])
        cluster.start("refiner2", [BIN, "refiner", "--connect", cat])
        ids, _ = eligible_ids()
        deadline = time.time() + 120
        while time.time() < deadline:
            s = status(cat)
            if s and s["records"] == len(ids) + len(REUPLOADS) and s["docs"] == len(ids):
                break
            time.sleep(0.5)
        assert s and s["records"] - len(REUPLOADS) == s["docs"] == len(ids) and s["dead"] == 0, s
        print("disk full after %d records: clear error, still answering; the copied store finished the "
              "crawl: %d records, %d docs" % (accepted, s["records"], s["docs"]))
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s ----\n%s" % (name, cluster.log(name)[-3000:]))
        raise
    finally:
        cluster.stop()
        fixtures.stop()
        subprocess.run(["umount", small], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
