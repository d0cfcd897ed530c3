#!/usr/bin/python3
"""End-to-end test of the walking skeleton.

Starts every role as its own process on free loopback ports -- the fixture
server (Civitai wire format), catalog, crawler, refiner, indexer, one shard
and a query node -- crawls the fixture catalog over real HTTP, waits until
every adapter is refined, embedded and served, then asks the prompts of
tests/fixtures/expected.json and checks the answers.  Every process it
starts, it stops by PID, whatever happens.

Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BIN = os.environ.get("STYLUS_BIN", "build/stylus")
os.environ.setdefault("STYLUS_INSECURE", "1")  # plaintext on loopback, as --insecure asks
FIXTURES = os.environ.get("STYLUS_FIXTURES", "tests/fixtures")
ELIGIBLE_TYPES = {"LORA", "LoCon", "DoRA"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append((name, p))
        return p

    def start_fixtures(self, *args):
        """Start the fixture server (tests/fixtures/server.py, extra args appended) on a free
        port; its base URL once it listens."""
        portfile = os.path.join(self.workdir, "fixture.port")
        self.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                                "--port-file", portfile, "--data", FIXTURES] + list(args))
        for _ in range(200):
            if os.path.exists(portfile):
                break
            self.check_alive()
            time.sleep(0.05)
        return "http://127.0.0.1:%s" % open(portfile).read().strip()

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise AssertionError("%s exited with %s; log:\n%s" % (name, p.returncode, self.log(name)))

    def log(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for name, p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                print("warning: %s needed SIGKILL" % name)
        self.procs = []


def status(endpoint):
    out = subprocess.run([BIN, "status", "--connect", endpoint], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def post(url, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def reuploads():
    """Ids of the fixture's re-uploads (truth.json duplicate_of): the catalog keeps their records
    but never indexes them once Civitai's by-hash answer names the original."""
    with open(os.path.join(FIXTURES, "truth.json")) as f:
        return {i for i, a in json.load(f)["adapters"].items() if a.get("duplicate_of")}


REUPLOADS = reuploads()


def eligible_ids():
    """(ids served: every eligible adapter but the re-uploads, the NSFW ones among them).
    The catalog's records are these plus REUPLOADS."""
    with open(os.path.join(FIXTURES, "civitai", "models.json")) as f:
        models = json.load(f)
    if isinstance(models, dict):
        models = models.get("items", [])
    ids, nsfw = set(), set()
    for m in models:
        if m.get("type") not in ELIGIBLE_TYPES:
            continue
        for v in m.get("modelVersions", []):
            i = "civitai:%d@%d" % (m["id"], v["id"])
            ids.add(i)
            if m.get("nsfw") or (m.get("nsfwLevel") or 0) > 1:
                nsfw.add(i)
    # Hugging Face: every listed repo but the gated, disabled and private ones.
    with open(os.path.join(FIXTURES, "hf", "models.json")) as f:
        for r in json.load(f):
            if not r.get("gated") and not r.get("disabled") and not r.get("private"):
                ids.add("hf:%s@%s" % (r["id"], r["sha"]))
    return ids - REUPLOADS, nsfw - REUPLOADS


def wait_done(cat, shard, cluster, timeout=240):
    start = time.time()
    while time.time() - start < timeout:
        cluster.check_alive()
        s, sh = status(cat), status(shard)
        if s and sh:
            src = s.get("sources", {})
            done = src and all(v["done"] for v in src.values())
            busy = sum(j["pending"] + j["leased"] for j in s["jobs"].values())
            if done and busy == 0 and sh["applied_seq"] >= s["head_seq"]:
                return s, sh
        time.sleep(0.5)
    raise AssertionError("pipeline not done after %ds: %s %s" % (timeout, status(cat), status(shard)))


def ids_of(answer):
    return [a["id"] for a in answer.get("adapters", [])]


def check_prompts(http, nsfw_ids):
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        cases = json.load(f)
    if isinstance(cases, dict):
        cases = cases.get("prompts", cases.get("cases", []))
    with open(os.path.join(FIXTURES, "truth.json")) as f:
        low = {i for i, a in json.load(f)["adapters"].items() if a.get("quality") == "low"}
    failures = []
    for case in cases:
        body = {"prompt": case["prompt"]}
        if case.get("base_model"):
            body["base_model"] = case["base_model"]
        code, ans = post(http + "/v1/compose", body)
        assert code == 200, (case["prompt"], code, ans)
        got = ids_of(ans)
        for group in case.get("must_include_any", []):
            if not set(group) & set(got):
                failures.append("%r: none of %s in %s" % (case["prompt"], sorted(group)[:4], got))
        for bad in case.get("must_exclude", []):
            if bad in got:
                failures.append("%r: excluded %s was chosen" % (case["prompt"], bad))
        leaked = set(got) & nsfw_ids
        if leaked:
            failures.append("%r: NSFW adapters %s without allow_nsfw" % (case["prompt"], leaked))
        poor = set(got) & low  # rated poorly by many (the composer's min_rating)
        if poor:
            failures.append("%r: low-quality adapters %s" % (case["prompt"], sorted(poor)))
        base = case.get("base_model")
        for a in ans.get("adapters", []):
            if base and a.get("base_model") != base:
                failures.append("%r: %s has base %s" % (case["prompt"], a["id"], a.get("base_model")))
        print("%-3s %-60s -> %s" % ("ok" if not failures else "..", case["prompt"][:60], ", ".join(got)))
    return len(cases), failures


def check_errors(http):
    code, ans = post(http + "/v1/compose", None, raw=b"{not json")
    assert code == 400 and "error" in ans, (code, ans)
    code, ans = post(http + "/v1/compose", {"prompt": 42})
    assert code == 400 and "error" in ans, (code, ans)
    code, ans = post(http + "/v1/compose", None, raw=b"x" * (70 << 10))
    assert code == 413 and "error" in ans, (code, ans)
    code, ans = post(http + "/v1/nope", {"prompt": "x"})
    assert code == 404, (code, ans)
    code, ans = post(http + "/v1/retrieve", {"prompt": "watercolor painting", "k": 5})
    assert code == 200 and len(ans["candidates"]) <= 5, (code, ans)


def check_adapters_and_blocked(http):
    """GET /v1/adapters/{id} for ids an answer names (Civitai and Hugging Face), its errors, and
    blocked ids: the adapters of an answer, blocked, are gone from the next one, over HTTP and
    through stylus ask --block."""
    body = {"prompt": "a corgi dog in watercolor style with an umbrella", "k": 60}
    code, first = post(http + "/v1/compose", body)
    assert code == 200 and first["adapters"], (code, first)
    code, cands = post(http + "/v1/retrieve", dict(body, k=300))
    ids = [a["id"] for a in first["adapters"]]
    hf = [c["id"] for c in cands["candidates"] if c["id"].startswith("hf:")][:1]
    for a in first["adapters"]:
        code, ans = get(http + "/v1/adapters/" + a["id"])
        assert code == 200 and ans["adapter"]["id"] == a["id"], (a["id"], code, ans)
        assert ans["adapter"]["name"] == a["name"] and ans["save_as"] == a["save_as"], (a, ans)
    for hf_id in hf:
        code, ans = get(http + "/v1/adapters/" + hf_id)
        assert code == 200 and ans["adapter"]["id"] == hf_id, (hf_id, code, ans)
        assert "__" in ans["save_as"] and "/" not in ans["save_as"], ans
    code, ans = get(http + "/v1/adapters/civitai:999999999@1")
    assert code == 404 and ans["error"]["code"], (code, ans)
    assert get(http + "/v1/adapters/")[0] == 400
    assert get(http + "/v1/adapters/" + ids[0], method="POST")[0] == 405

    code, second = post(http + "/v1/compose", dict(body, blocked=ids))
    assert code == 200, (code, second)
    again = set(ids) & set(ids_of(second))
    assert not again, ("blocked adapters came back", again)
    code, cands = post(http + "/v1/retrieve", dict(body, k=300, blocked=ids))
    assert code == 200 and not set(ids) & {c["id"] for c in cands["candidates"]}, cands
    code, ans = post(http + "/v1/compose", dict(body, blocked="civitai:1@1"))
    assert code == 400 and "blocked" in ans["error"]["message"], (code, ans)
    out = subprocess.run([BIN, "ask", body["prompt"], "--server", http, "--format", "json"]
                         + [w for i in ids for w in ("--block", i)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not set(ids) & set(ids_of(json.loads(out.stdout))), out.stdout[:500]
    print("adapters by id (%d, %d from the Hub) and blocked ids: ok; without %s: %s"
          % (len(ids) + len(hf), len(hf), ids, ids_of(second)))


def check_download(http, workdir):
    """stylus ask --download DIR: every chosen adapter's file (Civitai through its 307, the Hub
    through resolve) lands in DIR under its save_as, checked against the answer's SHA256 when it
    has one (Hub listings give none); a second run downloads only the unchecked ones again; a
    damaged file is fetched again."""
    prompt = "pixel art of a dragon guarding treasure"
    dest = os.path.join(workdir, "loras")
    code, ans = post(http + "/v1/compose", {"prompt": prompt, "base_model": "sd15"})
    assert code == 200 and ans["adapters"], ans
    checked = [a for a in ans["adapters"] if a["sha256"]]
    assert checked and any(a["id"].startswith("hf:") for a in ans["adapters"]), ans["adapters"]
    ask = [BIN, "ask", prompt, "--server", http, "--base-model", "sd15", "--download", dest]
    out = subprocess.run(ask, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for a in ans["adapters"]:
        with open(os.path.join(dest, a["save_as"]), "rb") as f:
            data = f.read()
        assert data and (not a["sha256"] or hashlib.sha256(data).hexdigest() == a["sha256"].lower()), a
    assert sorted(os.listdir(dest)) == sorted(a["save_as"] for a in ans["adapters"]), os.listdir(dest)
    out = subprocess.run(ask, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.count("already there") == len(checked), out.stdout
    victim = os.path.join(dest, checked[0]["save_as"])
    with open(victim, "ab") as f:
        f.write(b"x")
    out = subprocess.run(ask, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.count("already there") == len(checked) - 1, out.stdout
    with open(victim, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == checked[0]["sha256"].lower()
    print("ask --download: %d files saved under save_as (%d checked by SHA256), kept on a second "
          "run, a damaged one fetched again" % (len(ans["adapters"]), len(checked)))


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-it-")
    cluster = Cluster(workdir)
    try:
        civitai = cluster.start_fixtures()
        cat = "tcp://127.0.0.1:%d" % free_port()
        shard = "tcp://127.0.0.1:%d" % free_port()
        http_port = free_port()
        http = "http://127.0.0.1:%d" % http_port
        cluster.start("catalog", [BIN, "catalog", "--data", os.path.join(workdir, "catalog"), "--bind", cat,
                                  "--source", "civitai", "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", civitai, "--rate", "0",
                                  "--hf-url", civitai, "--hf-rate", "0"])
        cluster.start("refiner", [BIN, "refiner", "--connect", cat])
        cluster.start("indexer", [BIN, "indexer", "--connect", cat])
        cluster.start("shard", [BIN, "shard", "0/1", "--data", os.path.join(workdir, "shard0"),
                                "--bind", shard, "--catalog", cat])
        cluster.start("serve", [BIN, "serve", "--shard", shard, "--listen", "127.0.0.1:%d" % http_port])

        t0 = time.time()
        s, sh = wait_done(cat, shard, cluster)
        print("pipeline done in %.1fs: %d records, %d docs, %d vectors; shard %d docs"
              % (time.time() - t0, s["records"], s["docs"], s["vectors"], sh["count"]))

        ids, nsfw = eligible_ids()
        assert s["records"] == len(ids) + len(REUPLOADS), ("records", s["records"], "eligible", len(ids))
        assert s["duplicates"] == len(REUPLOADS), s
        assert s["docs"] == len(ids) and s["vectors"] == len(ids), s
        assert sh["count"] == len(ids), sh
        assert s["dead"] == 0, s

        check_errors(http)
        check_adapters_and_blocked(http)
        check_download(http, workdir)
        n, failures = check_prompts(http, nsfw)
        cluster.check_alive()
        if failures:
            print("\n".join(failures))
            raise AssertionError("%d of %d prompt checks failed" % (len(failures), n))
        print("all %d prompts answered as expected" % n)
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
