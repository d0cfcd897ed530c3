#!/usr/bin/python3
"""The refiner end to end, with a VLM and without.

Run 1 (VLM): the fixture server (Civitai and Hugging Face wire formats), the test VLM server
(OpenAI chat-completions wire format, tests/fixtures/vlm_server.py) with a
key and injected 429s and 500s, a catalog, a crawler, and a refiner with
--vlm-url, --vlm-key-file and --vlm-json-mode.  Run 2 (offline): the same
without the VLM, so the built-in card refiner works.  Each run waits until
every eligible adapter has a doc and the refine queue is empty; the refiner
writes every doc it makes to --docs-out, which is what is checked:

  - one complete, valid StylusDoc per eligible fixture adapter in each run
    (task of the list, weight in 0.05..2.0, description non-empty and within
    its limit, identity fields equal to the record's);
  - run 1's docs are all refined by "vlm:fixture-vlm@p1" (the injected
    errors were retried), run 2's by "card";
  - weights equal tests/fixtures/truth.json in both runs: in run 1 the fake
    VLM reads the card's weight but ignores <lora:..:w> tags, so the 36
    lora-tag weights prove the refiner's override;
  - the VLM server saw no contract violation (data-URL images, "Prompt:"
    parts, no negative prompt, the key), and the tokens the refiner logs at
    exit equal the usage the server reported.

The two docs of one adapter are printed side by side.  Every process is
stopped by PID whatever happens.

Environment: STYLUS_BIN (the stylus binary), STYLUS_FIXTURES (fixture dir).
"""
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pipeline import BIN, FIXTURES, REUPLOADS, Cluster, eligible_ids, free_port, status  # noqa: E402

MODEL = "fixture-vlm"
KEY = "sk-fixture-0123456789abcdef"
TASKS = {"concept", "style", "pose", "action", "character", "celebrity", "clothing", "background",
         "building", "vehicle", "animal", "other"}
DESCRIPTION_MAX = {"card": 1000, "vlm": 2000}


def wait_port(cluster, path):
    for _ in range(400):
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read().strip())
        cluster.check_alive()
        time.sleep(0.05)
    raise AssertionError("no port file %s" % path)


def wait_refined(cat, cluster, expected, timeout=300):
    start, s = time.time(), None
    while time.time() - start < timeout:
        cluster.check_alive()
        s = status(cat)
        if s:
            src = s.get("sources", {})
            done = src and all(v["done"] for v in src.values())
            refine = s["jobs"].get("refine", {})
            if done and s["records"] == expected and s["docs"] == s["records"] - s["duplicates"] and \
                    refine.get("pending", 0) + refine.get("leased", 0) == 0:
                return s
        time.sleep(0.5)
    raise AssertionError("refining not done after %ds: %s" % (timeout, s))


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def read_docs(path):
    """The last doc written for each id."""
    docs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs[d["id"]] = d
    return docs


def run(workdir, name, vlm):
    """One cluster; returns (docs by id, VLM server stats or None, refiner log)."""
    cluster = Cluster(os.path.join(workdir, name))
    os.makedirs(cluster.workdir)
    docs_out = os.path.join(cluster.workdir, "docs.jsonl")
    try:
        port_file = os.path.join(cluster.workdir, "fixture.port")
        cluster.start("fixtures", ["/usr/bin/python3", os.path.join(FIXTURES, "server.py"), "--port", "0",
                                   "--port-file", port_file, "--data", FIXTURES])
        civitai = "http://127.0.0.1:%d" % wait_port(cluster, port_file)
        refiner = [BIN, "refiner", "--docs-out", docs_out]
        vlm_url = None
        if vlm:
            vlm_port_file = os.path.join(cluster.workdir, "vlm.port")
            cluster.start("vlm", ["/usr/bin/python3", os.path.join(FIXTURES, "vlm_server.py"), "--port", "0",
                                  "--port-file", vlm_port_file, "--key", KEY, "--data", FIXTURES,
                                  "--fault", "r429:37", "--fault", "r500:23"])
            vlm_url = "http://127.0.0.1:%d" % wait_port(cluster, vlm_port_file)
            key_file = os.path.join(cluster.workdir, "vlm.key")
            with open(key_file, "w") as f:
                f.write(KEY + "\n")
            refiner += ["--vlm-url", vlm_url + "/v1", "--vlm-model", MODEL, "--vlm-key-file", key_file,
                        "--vlm-json-mode", "--vlm-concurrency", "4", "--vlm-tokens-per-min", "10000000",
                        "--allow-private"]  # the fixture images are on 127.0.0.1
        cat = "tcp://127.0.0.1:%d" % free_port()
        cluster.start("catalog", [BIN, "catalog", "--data", os.path.join(cluster.workdir, "catalog"),
                                  "--bind", cat, "--source", "civitai", "--source", "hf"])
        cluster.start("crawler", [BIN, "crawler", "--connect", cat, "--civitai-url", civitai, "--rate", "0",
                                  "--hf-url", civitai, "--hf-rate", "0"])
        cluster.start("refiner", refiner + ["--connect", cat])
        t0 = time.time()
        ids, _ = eligible_ids()
        s = wait_refined(cat, cluster, len(ids) + len(REUPLOADS))
        print("%s run: %d records, %d docs in %.1fs" % (name, s["records"], s["docs"], time.time() - t0))
        assert s["dead"] == 0, s
        stats = http_json(vlm_url + "/__stats") if vlm else None
        cluster.stop()
        log = cluster.log("refiner")
        assert KEY not in log and KEY[:12] not in log, "the key is in the refiner log"
        return read_docs(docs_out), stats, log
    except Exception:
        for proc_name, _ in cluster.procs:
            print("---- %s log (tail) ----\n%s" % (proc_name, cluster.log(proc_name)))
        raise
    finally:
        cluster.stop()


def check_docs(docs, kind, truth):
    ids, _ = eligible_ids()
    # A re-upload may be refined before its original is crawled; the catalog drops it after.
    docs = {i: d for i, d in docs.items() if i not in REUPLOADS}
    assert set(docs) == ids, ("missing", sorted(ids - set(docs))[:5], "extra", sorted(set(docs) - ids)[:5])
    wrong_weight, task_agrees = [], 0
    for i, d in docs.items():
        t = truth[i]
        for key in ("id", "source", "name", "base_model", "task", "description", "refined_by",
                    "content_hash", "card_url"):
            assert isinstance(d.get(key), str) and d[key], (i, key, d.get(key))
        assert d["task"] in TASKS, (i, d["task"])
        assert 0.05 <= d["recommended_weight"] <= 2.0, (i, d["recommended_weight"])
        assert len(d["description"].encode()) <= DESCRIPTION_MAX[kind], (i, len(d["description"]))
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", d["description"]), (i, d["description"])
        assert "refine_error" not in d, (i, d.get("refine_error"))
        if kind == "vlm":
            assert d["refined_by"] == "vlm:%s@p1" % MODEL, (i, d["refined_by"])
        else:
            assert d["refined_by"] == "card", (i, d["refined_by"])
        if abs(d["recommended_weight"] - t["recommended_weight"]) > 1e-6:
            wrong_weight.append((i, t["weight_source"], t["recommended_weight"], d["recommended_weight"]))
        task_agrees += d["task"] == t["task"]
    assert not wrong_weight, "%d weights differ from truth.json: %s" % (len(wrong_weight), wrong_weight[:8])
    print("%s docs: %d complete and valid, every weight as in truth.json, task as in truth.json for %d"
          % (kind, len(docs), task_agrees))


def check_vlm_side(stats, log, docs):
    assert stats["violations"] == 0, stats["violation_messages"]
    assert stats["auth_failures"] == 0, stats
    assert stats["faults"] > 0 and stats["by_status"].get("429") and stats["by_status"].get("500"), stats
    assert stats["json_mode"] == stats["requests"], stats
    assert set(stats["models"]) == {MODEL}, stats["models"]
    assert stats["images"] > 0 and stats["images"] == stats["prompt_parts"], stats
    ok = stats["by_status"].get("200", 0)
    assert ok == len(docs), ("200 answers", ok, "docs", len(docs))
    m = re.search(r"totals: (\d+) jobs, (\d+) vlm docs, (\d+) card fallbacks; (\d+) requests \((\d+) retries, "
                  r"(\d+) rate limited, (\d+) server errors.*?(\d+) images sent, (\d+) skipped; tokens (\d+) "
                  r"prompt \+ (\d+) completion", log)
    assert m, "no totals line in the refiner log"
    jobs, vlm_docs, fallbacks, requests, retries, limited, errors, sent, skipped, pt, ct = map(int, m.groups())
    assert jobs == vlm_docs == len(docs) and fallbacks == 0, m.group(0)
    assert requests == stats["requests"] and retries == requests - jobs, (m.group(0), stats)
    assert limited == stats["by_status"]["429"] and errors == stats["by_status"]["500"], (m.group(0), stats)
    in_docs = sum(min(10, len([im for im in d.get("images", []) if im.get("url")])) for d in docs.values())
    assert skipped == 0 and sent == in_docs, (m.group(0), "images in the docs", in_docs)
    assert stats["images"] >= sent, (m.group(0), stats["images"])  # retries send them again
    assert pt == stats["prompt_tokens"] and ct == stats["completion_tokens"], (m.group(0), stats)
    print("VLM server: %d requests (%d answered 429, %d answered 500, all retried), %d example images "
          "with their prompts, %d+%d tokens, as the refiner counted; no violations"
          % (requests, limited, errors, sent, pt, ct))


def same_but_port(a, b):
    base = re.compile(r"http://127\.0\.0\.1:\d+")
    return base.sub("{BASE}", json.dumps(a)) == base.sub("{BASE}", json.dumps(b))


def side_by_side(vlm_docs, card_docs, truth):
    pick = next(i for i in sorted(vlm_docs) if truth[i]["weight_source"] == "lora_tag"
                and truth[i]["n_images"] >= 2 and not truth[i]["nsfw"])
    keys = ["id", "name", "task", "description", "recommended_weight", "trigger_words", "refined_by"]
    print("one adapter, refined both ways:")
    print(json.dumps({"vlm": {k: vlm_docs[pick].get(k) for k in keys},
                      "card": {k: card_docs[pick].get(k) for k in keys}}, indent=2, ensure_ascii=False))


def main():
    with open(os.path.join(FIXTURES, "truth.json")) as f:
        truth = json.load(f)["adapters"]
    workdir = tempfile.mkdtemp(prefix="stylus-refiner-vlm-")
    vlm_docs, stats, log = run(workdir, "vlm", vlm=True)
    check_docs(vlm_docs, "vlm", truth)
    check_vlm_side(stats, log, vlm_docs)
    card_docs, _, _ = run(workdir, "offline", vlm=False)
    check_docs(card_docs, "card", truth)
    for i in vlm_docs:  # the same records, but for the fixture server's port in their URLs
        for key in ("name", "base_model", "files", "images", "trigger_words", "tags", "stats", "nsfw"):
            assert same_but_port(vlm_docs[i].get(key), card_docs[i].get(key)), (i, key)
    side_by_side(vlm_docs, card_docs, truth)
    shutil.rmtree(workdir)  # kept when a check failed, for its logs
    return 0


if __name__ == "__main__":
    sys.exit(main())
