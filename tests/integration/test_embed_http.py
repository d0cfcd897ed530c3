#!/usr/bin/python3
"""The /v1/embeddings client, alone and in a small cluster.

Part 1 (`stylus embed` against tests/fixtures/embed_server.py, a key on the
server): the vectors are the server's (hashed bag of words) L2-normalized and
in input order, also when the server shuffles its entries and across
batches (--embed-batch) and for texts that need JSON escapes or carry
invalid UTF-8; the URL may be an origin, a /v1 base or the full path; the
key comes from --embed-key-file or STYLUS_EMBED_KEY; 429 (Retry-After in
seconds or as an HTTP date), 500, 503 and a truncated answer are retried
and recover, a server that keeps failing is given up after bounded
attempts or at the deadline; every malformed answer (wrong dimension, wrong
count, missing or repeated index, NaN, 1e999, base64, a huge body, HTML, an
error object with status 200) and every refusal (401 without the key, 400)
fails at once with a clear message, and the key is never printed, also
when the server echoes it.  Usage errors exit 2.

Part 2 (a small cluster: the fixture server's Hugging Face catalog, a
catalog, crawler, refiner, an indexer with --embed-url, one shard and a
query node with --embed-url): every adapter gets a vector although the
endpoint answers the first embed job with a wrong dimension (the failed job
is retried by the broker); /v1/retrieve and /v1/compose answer with
adapters; an endpoint that refuses (400) or rate-limits (429) gives the
HTTP caller 502 or 503 with the reason, and /metrics counts it; a query
node on the built-in embedder against that shard, and a query node on the
endpoint against a shard on the built-in, get a clear model-mismatch error
naming both models, over HTTP and through `stylus ask`.  The shard takes
its model from --embed-model and --embed-dim; a stylus whose shard has no
such flags cannot serve the endpoint's vectors: then only the second
mismatch is checked and the test exits 77 (skipped) after everything else
passed, saying so.

Every process is stopped by PID whatever happens.
Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, Cluster, free_port, post, status  # noqa: E402

sys.path.insert(0, FIXTURES)
import embed_server  # noqa: E402

MODEL = "fixture-embed-v1"
DIM = 16
KEY = "sk-emb-7Qx2Lr9Vt4Zp0Wm8Kc3Hy6Jn5Bd"
BUILTIN = "stylus-hash-v1/384"
TEXTS = ["a corgi in watercolor style", "pixel art of a castle", "ukiyo-e woodblock print of waves"]


# ---- helpers ----

def wait_port(cluster, path):
    for _ in range(400):
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read().strip())
        cluster.check_alive()
        time.sleep(0.05)
    raise AssertionError("no port file %s" % path)


def start_embed_server(cluster, name="embed"):
    port_file = os.path.join(cluster.workdir, name + ".port")
    cluster.start(name, ["/usr/bin/python3", os.path.join(FIXTURES, "embed_server.py"), "--port", "0",
                         "--port-file", port_file, "--key", KEY, "--dim", str(DIM), "--sleep-ms", "3000"])
    return "http://127.0.0.1:%d" % wait_port(cluster, port_file)


def control(url, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def set_mode(url, mode, count=None):
    control(url, "/__mode", {"mode": mode, "count": count})
    control(url, "/__reset", {})


def expected(text, dim):
    v = embed_server.vector(text, dim)
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


class Embed:
    """One `stylus embed` run against the server at url."""

    def __init__(self, workdir, url):
        self.url = url
        self.key_file = os.path.join(workdir, "embed.key")
        with open(self.key_file, "w") as f:
            f.write(KEY + "\n")

    def run(self, texts, *flags, url=None, key="file", dim=DIM, timeout=120):
        argv = [BIN, "embed", "--embed-url", url or self.url, "--embed-model", MODEL,
                "--embed-dim", str(dim)] + list(flags)
        env = dict(os.environ)
        env.pop("STYLUS_EMBED_KEY", None)
        if key == "file":
            argv += ["--embed-key-file", self.key_file]
        elif key == "env":
            env["STYLUS_EMBED_KEY"] = KEY
        t0 = time.time()
        p = subprocess.run(argv + list(texts), capture_output=True, timeout=timeout, env=env)
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        for secret in (KEY, KEY[:12], KEY[-12:]):
            assert secret not in out and secret not in err, ("the key was printed", argv, out, err)
        return p.returncode, out, err, time.time() - t0


def check_vectors(out, texts, dim=DIM, model=MODEL):
    lines = out.splitlines()
    assert len(lines) == len(texts), (len(lines), len(texts), out[:500])
    for line, text in zip(lines, texts):
        got = json.loads(line)
        assert got["model"] == model and got["dim"] == dim, got
        v = got["vector"]
        assert len(v) == dim, len(v)
        assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-5, "not normalized"
        if model == MODEL:
            want = expected(text if isinstance(text, str) else text.decode("utf-8", "replace"), dim)
            assert max(abs(a - b) for a, b in zip(v, want)) < 1e-6, (text, v[:4], want[:4])


def expect_ok(e, srv, texts, *flags, mode="good", count=None, **kw):
    set_mode(srv, mode, count)
    rc, out, err, took = e.run(texts, *flags, **kw)
    assert rc == 0, (mode, flags, rc, err)
    check_vectors(out, texts, kw.get("dim", DIM))
    return control(srv, "/__stats"), err, took


def expect_fail(e, srv, mode, needles, *flags, count=None, requests=1, **kw):
    set_mode(srv, mode, count)
    rc, out, err, took = e.run(TEXTS, *flags, **kw)
    assert rc == 1 and out == "", (mode, rc, out[:200], err)
    for n in needles:
        assert n in err, (mode, "missing %r in stderr" % n, err)
    st = control(srv, "/__stats")
    if requests is not None:
        assert st["requests"] == requests, (mode, "requests", st["requests"], requests, err)
    line = [x for x in err.splitlines() if "stylus embed:" in x][-1]
    print("  %-13s -> %s" % (mode, line.split("stylus embed: ", 1)[1][:150]))
    return err, took


# ---- part 1: the client ----

def client_checks(workdir):
    cluster = Cluster(os.path.join(workdir, "client"))
    os.makedirs(cluster.workdir)
    try:
        url = start_embed_server(cluster)
        e = Embed(cluster.workdir, url)

        st, err, _ = expect_ok(e, url, TEXTS)
        assert st["batches"] == [3] and st["models"] == {MODEL: 1} and st["dimensions"] == {"None": 1}, st
        assert "embedding with %s (16 dims) at %s/v1/embeddings, with a key" % (MODEL, url) in err, err
        for form in (url + "/v1", url + "/v1/", url + "/v1/embeddings"):
            expect_ok(e, url, TEXTS, url=form)
        expect_ok(e, url, TEXTS, key="env")
        odd = ['say "hi"\n\\ and\ttab', "caf\u00e9 \u6c34\u5f69 \U0001f98a", "", "   "]
        expect_ok(e, url, odd)
        set_mode(url, "good")
        rc, out, err, _ = e.run([b"caf\xe9 \xff\xfe latte"])
        assert rc == 0, err
        check_vectors(out, ["caf? ?? latte"])
        five = ["text %d about %s" % (i, w) for i, w in enumerate(["cats", "dogs", "owls", "fox", "elk"])]
        st, _, _ = expect_ok(e, url, five, "--embed-batch", "2")
        assert st["batches"] == [2, 2, 1], st
        st, _, _ = expect_ok(e, url, five, mode="shuffle")
        assert st["by_mode"] == {"shuffle": 1}, st
        st, _, _ = expect_ok(e, url, TEXTS, "--embed-send-dim", dim=8)
        assert st["dimensions"] == {"8": 1}, st
        print("vectors: normalized, in order (shuffled entries, batches of 2), escapes and invalid UTF-8, "
              "URL forms, key from file and env, dimensions sent")

        st, _, took = expect_ok(e, url, TEXTS, mode="r429", count=2)
        assert st["by_status"] == {"429": 2, "200": 1} and took >= 1.9, (st, took)
        st, _, took = expect_ok(e, url, TEXTS, mode="r429date", count=1)
        assert st["by_status"] == {"429": 1, "200": 1} and took >= 0.9, (st, took)
        st, err, took = expect_ok(e, url, TEXTS, mode="r500", count=1)
        assert st["by_status"] == {"500": 1, "200": 1} and took >= 0.45, (st, took)
        assert "retry 1 in" in err, err
        st, _, _ = expect_ok(e, url, TEXTS, mode="r503", count=2)
        assert st["by_status"] == {"503": 2, "200": 1}, st
        st, _, _ = expect_ok(e, url, TEXTS, mode="truncated", count=1)
        assert st["requests"] == 2, st
        print("retries: 429 (Retry-After seconds and HTTP date), 500, 503, a truncated answer: recovered")

        _, took = expect_fail(e, url, "r503", ["HTTP 503", "(6 attempts)"], requests=6)
        assert took < 15, took
        _, took = expect_fail(e, url, "r429", ["HTTP 429", "Rate limit reached", "no retry",
                                               "deadline"], "--embed-deadline-ms", "2500", requests=None)
        assert took < 6, took
        expect_fail(e, url, "slow", ["timed out"], "--embed-timeout-ms", "400", "--embed-deadline-ms", "1200",
                    requests=None)
        print("bounded: 6 attempts at most, the deadline, the request timeout")

        expect_fail(e, url, "wrong_dim", ["17 dimensions", "configured dimension is 16"])
        expect_fail(e, url, "wrong_count", ["expected 3 embeddings, got 2"])
        expect_fail(e, url, "missing_index", ["data[0] has no index"])
        expect_fail(e, url, "dup_index", ["index 0 appears twice"])
        expect_fail(e, url, "nan", ["non-finite number"])
        expect_fail(e, url, "overflow", ["non-finite number"])
        expect_fail(e, url, "base64", ["base64", "encoding_format"])
        expect_fail(e, url, "huge", ["over its cap"])
        expect_fail(e, url, "garbage", ["not JSON", "text/html"])
        expect_fail(e, url, "error200", ["response is an error", "does not exist"])
        expect_fail(e, url, "r400", ["HTTP 400", "maximum context length"])
        expect_fail(e, url, "r401", ["HTTP 401", "Incorrect API key provided", "--embed-key-file"])
        expect_fail(e, url, "good", ["HTTP 401", "STYLUS_EMBED_KEY"], key=None)
        expect_fail(e, url, "echo_key", ["HTTP 400", "withheld"])
        assert control(url, "/__stats")["violations"] == 0
        closed = "http://127.0.0.1:%d" % free_port()
        set_mode(url, "good")
        rc, _, err, _ = e.run(TEXTS, "--embed-deadline-ms", "1500", url=closed)
        assert rc == 1 and "embeddings:" in err, (rc, err)
        print("  %-13s -> %s" % ("refused", err.strip().splitlines()[-1][:150]))
        print("malformed answers and refusals: clear errors, not retried; the key never printed")

        for bad, needle in ((["--embed-url", url], "needs --embed-model"),
                            (["--embed-url", url, "--embed-model", MODEL], "needs --embed-dim"),
                            (["--embed-url", url, "--embed-model", "stylus-hash-v1", "--embed-dim", "4"],
                             "built-in"),
                            (["--embed-dim", "4"], "need --embed-url"),
                            (["--embed-url", url, "--embed-model", MODEL, "--embed-dim", "0"], "--embed-dim"),
                            (["--embed-url", "ftp://x", "--embed-model", MODEL, "--embed-dim", "4"], "http")):
            p = subprocess.run([BIN, "embed"] + bad + ["text"], capture_output=True, text=True, timeout=30)
            assert p.returncode == 2 and needle in p.stderr, (bad, p.returncode, p.stderr)
        p = subprocess.run([BIN, "embed", "--help"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and "examples:" in p.stdout and "--embed-url" in p.stdout, p.stdout
        p = subprocess.run([BIN, "embed", "a corgi in watercolor style"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        check_vectors(p.stdout, ["a corgi in watercolor style"], 384, BUILTIN)
        print("usage errors exit 2; --help; the built-in through `stylus embed`")
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()


# ---- part 2: a small cluster ----

def hf_ids():
    with open(os.path.join(FIXTURES, "hf", "models.json")) as f:
        return {"hf:%s@%s" % (r["id"], r["sha"]) for r in json.load(f)
                if not r.get("gated") and not r.get("disabled") and not r.get("private")}


def shard_has_model_flags():
    p = subprocess.run([BIN, "shard", "--help"], capture_output=True, text=True, timeout=30)
    return "--embed-model" in p.stdout and "--embed-dim" in p.stdout


def wait_indexed(cat, shard, cluster, n, timeout=180):
    start, s, sh = time.time(), None, None
    while time.time() - start < timeout:
        cluster.check_alive()
        s, sh = status(cat), status(shard)
        if s and sh:
            src = s.get("sources", {})
            done = src and all(v["done"] for v in src.values())
            busy = sum(j["pending"] + j["leased"] for j in s["jobs"].values())
            if done and busy == 0 and s["vectors"] >= n and sh["applied_seq"] >= s["head_seq"]:
                return s, sh
        time.sleep(0.5)
    raise AssertionError("not indexed after %ds: %s %s" % (timeout, s, sh))


def mismatch_checks(http, ours, theirs):
    """A query node whose model differs from the shard's: a 5xx naming both models."""
    code, ans = post(http + "/v1/compose", {"prompt": "a watercolor painting of a fox"})
    msg = ans.get("error", {}).get("message", "")
    assert code == 500 and ans["error"]["code"] == "dimension or model mismatch", (code, ans)
    assert ours in msg and theirs in msg and "mismatch" in msg, msg
    print("model mismatch over HTTP: %d %s" % (code, msg))
    p = subprocess.run([BIN, "ask", "a watercolor painting of a fox", "--server", http],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and ours in p.stderr and theirs in p.stderr, (p.returncode, p.stderr)
    print("and through stylus ask: %s" % p.stderr.strip())


def cluster_checks(workdir):
    cluster = Cluster(os.path.join(workdir, "cluster"))
    os.makedirs(cluster.workdir)
    e2e_dim = 64
    flags = shard_has_model_flags()
    try:
        port_file = os.path.join(cluster.workdir, "fixture.port")
        cluster.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                                   "--port-file", port_file, "--data", FIXTURES])
        hf = "http://127.0.0.1:%d" % wait_port(cluster, port_file)
        url = start_embed_server(cluster)
        key_file = os.path.join(cluster.workdir, "embed.key")
        with open(key_file, "w") as f:
            f.write(KEY + "\n")
        embed_flags = ["--embed-url", url + "/v1", "--embed-model", MODEL, "--embed-dim", str(e2e_dim),
                       "--embed-send-dim", "--embed-key-file", key_file]
        set_mode(url, "wrong_dim", 1)  # the first embed job fails; the broker retries it
        cat = "tcp://127.0.0.1:%d" % free_port()
        shard, builtin_shard = "tcp://127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()
        ports = {name: free_port() for name in ("serve", "serve-builtin", "serve-cross")}
        http = {name: "http://127.0.0.1:%d" % port for name, port in ports.items()}
        cluster.start("catalog", [BIN, "catalog", "--data", os.path.join(cluster.workdir, "catalog"),
                                  "--bind", cat, "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--hf-url", hf, "--hf-rate", "0"])
        cluster.start("refiner", [BIN, "refiner", "--connect", cat])
        cluster.start("indexer", [BIN, "indexer", "--connect", cat] + embed_flags)
        # The endpoint's shard and its query nodes: on the endpoint, and on the built-in.
        if flags:
            cluster.start("shard", [BIN, "shard", "0/1", "--data", os.path.join(cluster.workdir, "shard0"),
                                    "--bind", shard, "--catalog", cat, "--embed-model", MODEL,
                                    "--embed-dim", str(e2e_dim)])
            cluster.start("serve", [BIN, "serve", "--shard", shard, "--listen", "127.0.0.1:%d" % ports["serve"]]
                          + embed_flags)
            cluster.start("serve-builtin", [BIN, "serve", "--shard", shard, "--listen",
                                            "127.0.0.1:%d" % ports["serve-builtin"]])
        # A shard on the built-in model (it refuses the endpoint's vectors), and a query node on the endpoint.
        cluster.start("shard-builtin", [BIN, "shard", "0/1", "--data", os.path.join(cluster.workdir, "shard-b"),
                                        "--bind", builtin_shard, "--catalog", cat])
        cluster.start("serve-cross", [BIN, "serve", "--shard", builtin_shard, "--listen",
                                      "127.0.0.1:%d" % ports["serve-cross"]] + embed_flags)
        ids = hf_ids()
        t0 = time.time()
        s, sh = wait_indexed(cat, shard if flags else builtin_shard, cluster, len(ids))
        print("indexed in %.1fs: %d records, %d docs, %d vectors; shard %d docs"
              % (time.time() - t0, s["records"], s["docs"], s["vectors"], sh["count"]))
        assert s["records"] == len(ids) and s["docs"] == len(ids) and s["vectors"] == len(ids), s
        assert s["dead"] == 0, s
        st = control(url, "/__stats")
        assert st["by_mode"].get("wrong_dim") == 1 and st["violations"] == 0 and st["auth_failures"] == 0, st
        assert set(st["models"]) == {MODEL} and set(st["dimensions"]) == {str(e2e_dim)}, st
        assert "dimensions" in cluster.log("indexer"), "the failed job is not in the indexer log"
        print("embeddings endpoint: %d requests, the wrong-dimension answer failed its job, which the "
              "broker retried" % st["requests"])
        if flags:
            assert sh["count"] == len(ids) and sh.get("model") == MODEL, sh
            code, ans = post(http["serve"] + "/v1/retrieve",
                             {"prompt": "watercolor painting, soft watercolor washes", "k": 5})
            assert code == 200 and ans["candidates"], (code, ans)
            top = [c["id"] for c in ans["candidates"]]
            assert any("watercolor" in i for i in top[:2]), top
            code, ans = post(http["serve"] + "/v1/compose", {"prompt": "a fox in watercolor style",
                                                             "base_model": "sdxl"})
            assert code == 200 and any("watercolor" in a["id"] for a in ans.get("adapters", [])), (code, ans)
            print("retrieve: %s; compose: %s" % (top, [a["id"] for a in ans["adapters"]]))
            for mode, want, needle in (("r400", 502, "HTTP 400"), ("r429", 503, "HTTP 429")):
                set_mode(url, mode)
                code, ans = post(http["serve"] + "/v1/compose", {"prompt": "a fox in watercolor style"})
                msg = ans.get("error", {}).get("message", "")
                assert code == want and needle in msg and MODEL in msg, (mode, code, ans)
                print("endpoint failing (%s): %d %s" % (mode, code, msg))
            set_mode(url, "good")
            with urllib.request.urlopen(http["serve"] + "/metrics", timeout=10) as r:
                metrics = r.read().decode()
            assert "stylus_embed_requests_total" in metrics and "stylus_embed_failures_total 2" in metrics, metrics
            mismatch_checks(http["serve-builtin"], BUILTIN, MODEL)
        mismatch_checks(http["serve-cross"], MODEL, BUILTIN)
        cluster.stop()
        for name in ("indexer", "serve", "serve-builtin", "serve-cross", "embed"):
            log = cluster.log(name)
            assert KEY not in log and KEY[:12] not in log, "the key is in the %s log" % name
        return flags
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-embed-http-")
    client_checks(workdir)
    full = cluster_checks(workdir)
    shutil.rmtree(workdir)  # kept when a check failed, for its logs
    if not full:
        print("SKIPPED in part: `stylus shard` has no --embed-model/--embed-dim yet, so no shard can "
              "serve the endpoint's vectors; the mismatch was checked the other way round")
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
