#!/usr/bin/python3
"""The LLM composer end to end: a query node composing with a fake OpenAI chat server.

Starts a fake LLM (tests/fixtures/llm_server.py, chat-completions wire format,
requiring a bearer key), the fixture server, catalog, crawler, refiner,
indexer, one shard and a query node with --composer-url pointing at the fake
and the key in --composer-key-file.  Once everything is indexed it asks
/v1/compose once per scenario (a "[[llm:MODE]]" marker in the prompt picks
the fake's answer) and checks:

  good        composer == the model name; the adapters are the refs the fake
              chose, never its hallucinated "c999", all among the retrieved
              candidates; weights follow the paper (the topic with two adapters:
              on image 1, where one is masked off, the other has twice its
              image-0 weight); reasons name the model
  fenced      the same, from JSON inside ```json fences
  garbage, r500, r429, sleep (past --composer-timeout-ms)
              200, composer "rules", composer_fallback says why
  r429_retry  429 with Retry-After: 60 falls back, and the next request falls
              back without calling the fake at all

and that every request carried "Authorization: Bearer <key>", the metrics
count calls and fallbacks, and the key appears in no log file, answer or
metrics.  Every process it starts, it stops by PID.  No timing assertions.
Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import json
import os
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, Cluster, free_port, post, wait_done  # noqa: E402

KEY = "sk-composer-test-7f3a9c21e5b84d60"
MODEL = "fake-gpt-composer"
PROMPT = "a corgi dog in watercolor style [[llm:%s]]"
FALLBACKS = {"garbage": "no JSON object", "r500": "HTTP 500", "r429": "HTTP 429",
             "sleep": "no answer within"}


def wait_port(cluster, portfile):
    for _ in range(200):
        if os.path.exists(portfile):
            return int(open(portfile).read().strip())
        cluster.check_alive()
        time.sleep(0.05)
    raise AssertionError("no port file %s" % portfile)


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def fake_stats(llm):
    return json.loads(get(llm + "/__stats"))


def compose(http, mode):
    code, ans = post(http + "/v1/compose", {"prompt": PROMPT % mode, "base_model": "sd15",
                                            "n_images": 2})
    assert code == 200, (mode, code, ans)
    assert KEY not in json.dumps(ans), mode
    return ans


def check_llm_answer(http, llm, mode):
    ans = compose(http, mode)
    chosen = fake_stats(llm)["last_choice"]
    assert ans["composer"] == MODEL, (mode, ans["composer"], ans.get("composer_fallback"))
    assert ans["composer_fallback"] is None, ans["composer_fallback"]
    names = [a["name"] for a in ans["adapters"]]
    assert names and set(names) <= set(chosen["names"]), (names, chosen)
    code, ret = post(http + "/v1/retrieve", {"prompt": PROMPT % mode, "base_model": "sd15"})
    retrieved = {c["id"] for c in ret["candidates"]}
    assert {a["id"] for a in ans["adapters"]} <= retrieved, "an adapter that was not offered"
    topics = {t["topic"]: t["adapters"] for t in ans["topics"]}
    assert list(topics) == ["subject", "look", "nothing here"], topics
    assert topics["nothing here"] == []
    for a in ans["adapters"]:
        assert a["reason"].startswith("chosen by %s for topic '" % MODEL), a["reason"]
    # The paper's weights: w = refiner weight x 0.8 / adapters of the topic active on the image.
    pair = topics["subject"]
    assert len(pair) == 2, topics
    img0, img1 = ans["images"][0], ans["images"][1]
    w0 = dict(zip(img0["adapters"], img0["weights"]))
    w1 = dict(zip(img1["adapters"], img1["weights"]))
    active = [i for i in pair if i in w1]
    assert len(active) == 1, (pair, img1)  # image 1 masks one adapter of the pair off
    assert abs(w1[active[0]] - 2 * w0[active[0]]) <= 0.011, (w0, w1)
    for i in pair:
        assert 0 < w0[i] <= 0.8, w0  # refiner weight <= 2, x 0.8, / 2
    print("%-8s composer=%s adapters=%s weights=%s" % (mode, ans["composer"], names,
                                                      img0["weights"]))


def check_fallback(http, mode, says):
    ans = compose(http, mode)
    assert ans["composer"] == "rules", (mode, ans["composer"])
    why = ans["composer_fallback"]
    assert isinstance(why, str) and says in why and len(why) <= 200, (mode, why)
    print("%-8s composer=rules fallback=%r" % (mode, why))


def metric(http, name):
    for line in get(http + "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


def check_lanes(http, zmq_endpoint, llm):
    """Four slow LLM calls at once, over HTTP and then over ZeroMQ: with 4 lanes they overlap
    at the LLM server (a query node answering one request at a time would show 1), and every
    request gets the LLM's answer."""
    import msgpack
    import threading
    import zmq

    def reset():
        req = urllib.request.Request(llm + "/__reset_flight", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    reset()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(compose(http, "slow")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    over_http = fake_stats(llm)["max_in_flight"]
    assert len(answers) == 4 and all(a["composer"] == MODEL for a in answers), \
        [(a["composer"], a.get("composer_fallback")) for a in answers]
    assert over_http >= 2, ("HTTP requests did not overlap", over_http)

    reset()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(zmq_endpoint)
    try:
        for i in range(4):
            sock.send(msgpack.packb({"id": i, "prompt": PROMPT % "slow", "base_model": "sd15"}))
        ids = []
        for _ in range(4):
            assert sock.poll(30000), "no ZeroMQ reply"
            reply = msgpack.unpackb(sock.recv())
            assert reply["status"] == 200 and reply["composer"] == MODEL, reply
            ids.append(reply["id"])
    finally:
        sock.close(0)
        ctx.term()
    over_zmq = fake_stats(llm)["max_in_flight"]
    assert sorted(ids) == [0, 1, 2, 3], ids
    assert over_zmq >= 2, ("ZeroMQ requests did not overlap", over_zmq)
    print("lanes: 4 slow LLM calls at once overlapped %d-fold over HTTP, %d-fold over ZeroMQ"
          % (over_http, over_zmq))


def check_no_key_in_logs(workdir, key_file):
    for root, _, files in os.walk(workdir):
        for f in files:
            path = os.path.join(root, f)
            if path == key_file or not f.endswith(".log"):
                continue
            with open(path, "rb") as fh:
                assert KEY.encode() not in fh.read(), "the key is in " + path


def main():
    workdir = tempfile.mkdtemp(prefix="stylus-composer-llm-")
    cluster = Cluster(workdir)
    try:
        key_file = os.path.join(workdir, "composer.key")
        with open(key_file, "w") as f:
            f.write(KEY + "\n")
        llm_port_file = os.path.join(workdir, "llm.port")
        cluster.start("llm", ["/usr/bin/python3", os.path.join(FIXTURES, "llm_server.py"),
                              "--port", "0", "--port-file", llm_port_file, "--key", KEY,
                              "--sleep-ms", "4000"])
        llm = "http://127.0.0.1:%d" % wait_port(cluster, llm_port_file)
        web = cluster.start_fixtures()
        cat = "tcp://127.0.0.1:%d" % free_port()
        shard = "tcp://127.0.0.1:%d" % free_port()
        http_port = free_port()
        http = "http://127.0.0.1:%d" % http_port
        zmq_endpoint = "tcp://127.0.0.1:%d" % free_port()
        cluster.start("catalog", [BIN, "catalog", "--data", os.path.join(workdir, "catalog"),
                                  "--bind", cat, "--source", "civitai", "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", web,
                                  "--rate", "0", "--hf-url", web, "--hf-rate", "0"])
        cluster.start("refiner", [BIN, "refiner", "--connect", cat])
        cluster.start("indexer", [BIN, "indexer", "--connect", cat])
        cluster.start("shard", [BIN, "shard", "0/1", "--data", os.path.join(workdir, "shard0"),
                                "--bind", shard, "--catalog", cat])
        cluster.start("serve", [BIN, "serve", "--shard", shard,
                                "--listen", "127.0.0.1:%d" % http_port,
                                "--composer-url", llm + "/v1", "--composer-model", MODEL,
                                "--composer-key-file", key_file, "--composer-timeout-ms", "1500",
                                "--zmq-listen", zmq_endpoint, "--lanes", "4"])
        wait_done(cat, shard, cluster)

        check_llm_answer(http, llm, "good")
        check_llm_answer(http, llm, "fenced")
        check_lanes(http, zmq_endpoint, llm)  # before the 429 that rests the endpoint
        for mode, says in FALLBACKS.items():
            check_fallback(http, mode, says)
        check_fallback(http, "r429_retry", "HTTP 429")
        before = fake_stats(llm)["requests"]
        check_fallback(http, "good", "rate limited")  # resting per Retry-After: no call
        stats = fake_stats(llm)
        assert stats["requests"] == before, (before, stats["requests"])
        # 7 calls of the scenarios, 8 slow ones of check_lanes
        assert stats["auth_ok"] == stats["requests"] == 15 and stats["auth_failures"] == 0, stats
        assert stats["violations"] == [], stats["violations"]
        assert metric(http, "stylus_composer_llm_calls_total") == 15
        assert metric(http, "stylus_composer_llm_fallbacks_total") == 6
        assert metric(http, "stylus_composer_llm_seconds_total") > 0
        assert KEY not in get(http + "/metrics")
        cluster.check_alive()
    except Exception:
        for name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (name, cluster.log(name)))
        raise
    finally:
        cluster.stop()
    check_no_key_in_logs(workdir, key_file)
    os.remove(key_file)
    print("LLM composer: choices used, grounded, paper weights; 6 fallbacks answered by rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
