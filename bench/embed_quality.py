#!/usr/bin/python3
"""Retrieval quality of the built-in embedder on the fixture catalog.

Helper of bench/embed_quality.sh.  From a `stylus export` (docs.jsonl +
embeddings.npy) and tests/fixtures/expected.json it measures, for each
embedder variant (a set of `stylus embed` flags such as --embed-idf FILE),
how well a brute-force cosine scan over the docs finds the adapters each
prompt expects:

  R@k   share of the expected adapters (every id of every must_include_any
        group, pooled over the prompts, that the catalog has: a re-upload
        kept out of the index and a gated repo are not) ranked in the top k
  hit@k share of the groups (one per topic of a prompt) with at least one
        of their ids in the top k: what test_pipeline.py needs
  MRR   mean over groups of 1 / the rank of the group's best-ranked id

twice: over every doc ("raw"), and over the docs a shard would scan for the
prompt ("filtered": the prompt's base model, no NSFW), as /v1/retrieve
does.  Doc vectors are embedded from the same text the indexer embeds
(embed_doc_text(), rebuilt here and checked against embeddings.npy with the
plain built-in, so the two cannot drift apart unnoticed).

With --wordnet DIR (Debian's wordnet-base, /usr/share/wordnet), each
variant is measured again with the prompt's words expanded by WordNet
synonyms (the lemmas of each word's most frequent sense), docs unchanged.

No third-party modules: /usr/bin/python3 alone.
"""
import argparse
import array
import ast
import json
import math
import os
import re
import shlex
import subprocess
import sys

DESCRIPTION_MAX = 2000  # bytes, as DESCRIPTION_MAX in proto/embed.c
KS = (10, 20, 50)
BATCH = 64  # texts per `stylus embed` call


# ---- the doc text, as embed_doc_text() in proto/embed.c builds it ----

def utf8_prefix(b, limit):
    if len(b) <= limit:
        return b
    n = limit
    while n > 0 and (b[n] & 0xC0) == 0x80:
        n -= 1
    return b[:n]


def doc_text(d):
    parts = []
    if d.get("name"):
        parts.append(b"Title: " + d["name"].encode() + b";")
    desc = d.get("description")
    if desc:
        parts.append(b"Description: " + utf8_prefix(desc.encode(), DESCRIPTION_MAX) + b";")
    for label, key in ((b"Tags: ", "tags"), (b"Trigger words: ", "trigger_words")):
        vals = [v.encode() for v in d.get(key) or [] if v]
        if vals:
            parts.append(label + b", ".join(vals) + b";")
    return b" ".join(parts).decode("utf-8", errors="surrogateescape")


# ---- vectors ----

def load_npy(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:6] != b"\x93NUMPY":
        raise SystemExit("%s: not a .npy file" % path)
    hlen = raw[8] | raw[9] << 8
    header = ast.literal_eval(raw[10:10 + hlen].decode())
    n, dim = header["shape"]
    data = array.array("f")
    data.frombytes(raw[10 + hlen:10 + hlen + 4 * n * dim])
    if sys.byteorder != "little":
        data.byteswap()
    return [data[i * dim:(i + 1) * dim] for i in range(n)], dim


def embed(stylus, flags, texts):
    """Vectors of texts from `stylus embed FLAGS TEXT...`, and the model name."""
    out, model = [], None
    for i in range(0, len(texts), BATCH):
        argv = [stylus, "embed", "-q"] + flags + ["--"] + texts[i:i + BATCH]
        r = subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape")
        if r.returncode != 0:
            raise SystemExit("stylus embed %s failed: %s" % (" ".join(flags), r.stderr.strip()))
        for line in r.stdout.splitlines():
            j = json.loads(line)
            model = j["model"]
            out.append(j["vector"])
    if len(out) != len(texts):
        raise SystemExit("stylus embed gave %d vectors for %d texts" % (len(out), len(texts)))
    return out, model


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


# ---- WordNet ----

class WordNet:
    """Synonyms from WordNet 3.0's index.* and data.* files (wordnet-base)."""

    POS = ("noun", "adj", "verb")

    def __init__(self, root):
        self.root = root
        self.index = {p: {} for p in self.POS}
        for p in self.POS:
            with open(os.path.join(root, "index." + p), encoding="latin-1") as f:
                for line in f:
                    if line.startswith(" "):
                        continue
                    fields = line.split()
                    n_ptr = int(fields[3])
                    offsets = fields[4 + n_ptr + 2:]
                    self.index[p][fields[0]] = [int(o) for o in offsets]
        self.data = {p: open(os.path.join(root, "data." + p), encoding="latin-1") for p in self.POS}

    def lemmas(self, pos, offset):
        f = self.data[pos]
        f.seek(offset)
        fields = f.readline().split()
        n = int(fields[3], 16)
        return [fields[4 + 2 * i].lower() for i in range(n)]

    def synonyms(self, word):
        """Lemmas of the most frequent sense of word (noun first), word itself left out."""
        for pos in self.POS:
            offsets = self.index[pos].get(word)
            if offsets:
                words = []
                for lemma in self.lemmas(pos, offsets[0]):
                    lemma = re.sub(r"\(.*\)$", "", lemma).replace("_", " ")
                    if lemma != word.replace("_", " ") and lemma not in words:
                        words.append(lemma)
                return words
        return []


QUERY_STOP = set("a an the of in on at to for with and or by from into under over above across "
                 "through during as is are be wearing".split())


def expand(prompt, wn, vocabulary=None):
    """prompt; synonyms of its words and two-word terms, as one extra phrase.
    With a vocabulary, only words it lacks (that no doc has) are expanded."""
    words = [w for w in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)?", prompt.lower())]
    extra, used = [], set()
    for i in range(len(words) - 1):
        pair = words[i] + "_" + words[i + 1]
        syn = wn.synonyms(pair) if vocabulary is None else []
        if syn:
            extra += syn
            used.update((i, i + 1))
    for i, w in enumerate(words):
        if i in used or w in QUERY_STOP or len(w) < 3:
            continue
        if vocabulary is not None and (w in vocabulary or w.rstrip("s") in vocabulary):
            continue
        syn = wn.synonyms(w) or (wn.synonyms(w[:-1]) if w.endswith("s") else [])
        extra += syn
    extra = [e for e in dict.fromkeys(extra)]
    return prompt + ("; " + ", ".join(extra) if extra else "")


# ---- metrics ----

def ranks(qvec, vectors, keep):
    scored = [(-dot(qvec, v), i) for i, v in enumerate(vectors) if keep(i)]
    scored.sort()
    return {i: r + 1 for r, (_, i) in enumerate(scored)}


def measure(cases, docs, vectors, qvecs, filtered):
    ids = [d["id"] for d in docs]
    known = set(ids)
    expected_ranks, group_ranks = [], []
    for case, q in zip(cases, qvecs):
        if filtered:
            base = case.get("base_model")
            keep = lambda i: not docs[i].get("nsfw") and (not base or docs[i].get("base_model") == base)
        else:
            keep = lambda i: True
        rank_of = {ids[i]: r for i, r in ranks(q, vectors, keep).items()}
        for group in case["must_include_any"]:
            rs = [rank_of.get(a, math.inf) for a in group if a in known]
            expected_ranks += rs
            group_ranks.append(min(rs))
    res = {}
    for k in KS:
        res["R@%d" % k] = sum(r <= k for r in expected_ranks) / len(expected_ranks)
        res["hit@%d" % k] = sum(r <= k for r in group_ranks) / len(group_ranks)
    res["MRR"] = sum(1.0 / r for r in group_ranks) / len(group_ranks)
    res["n_expected"], res["n_groups"] = len(expected_ranks), len(group_ranks)
    return res


COLUMNS = ["R@10", "R@20", "R@50", "hit@10", "hit@20", "hit@50", "MRR"]


def table(title, rows):
    lines = ["", "### " + title, "",
             "| variant | model | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for name, model, res in rows:
        lines.append("| %s | `%s` | %s |" % (name, model, " | ".join("%.3f" % res[c] for c in COLUMNS)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stylus", required=True, help="the stylus binary")
    ap.add_argument("--export", required=True, help="a `stylus export` directory")
    ap.add_argument("--expected", required=True, help="tests/fixtures/expected.json")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=FLAGS: flags of `stylus embed` (e.g. 'idf=--embed-idf idf.bin')")
    ap.add_argument("--wordnet", help="WordNet dict dir (/usr/share/wordnet): also measure expansion")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()

    with open(os.path.join(args.export, "docs.jsonl")) as f:
        docs = [json.loads(line) for line in f]
    stored, dim = load_npy(os.path.join(args.export, "embeddings.npy"))
    with open(args.expected) as f:
        cases = [c for c in json.load(f) if c["must_include_any"]]
    texts = [doc_text(d) for d in docs]

    # The rebuilt doc texts must give the indexer's vectors.
    plain, model = embed(args.stylus, ["--dim", str(dim)], texts)
    worst = max(max(abs(a - b) for a, b in zip(x, y)) for x, y in zip(plain, stored))
    if worst > 1e-6:
        raise SystemExit("doc texts differ from the indexer's (max diff %g): fix doc_text()" % worst)
    print("%d docs, %d prompts with expected adapters; doc texts match the indexer's (%s)"
          % (len(docs), len(cases), model), file=sys.stderr)

    wn = WordNet(args.wordnet) if args.wordnet else None
    prompts = [c["prompt"] for c in cases]
    queries = [("", prompts)]
    if wn:
        vocabulary = set(re.findall(r"[a-z0-9]+", " ".join(texts).lower()))
        expanded = [expand(p, wn) for p in prompts]
        unseen = [expand(p, wn, vocabulary) for p in prompts]
        queries.append((" + WordNet", expanded))
        queries.append((" + WordNet, unseen words only", unseen))
        for p, e, u in zip(prompts, expanded, unseen):
            print("wordnet: %r -> %r; unseen only: %r" % (p, e[len(p):], u[len(p):]), file=sys.stderr)

    rows = {"raw": [], "filtered": []}
    for spec in args.variant or ["built-in="]:
        name, _, flags = spec.partition("=")
        flags = shlex.split(flags) + ["--dim", str(dim)]
        vecs, model = embed(args.stylus, flags, texts)
        for suffix, qtexts in queries:
            qvecs, _ = embed(args.stylus, flags, qtexts)
            for view in rows:
                rows[view].append((name + suffix, model, measure(cases, docs, vecs, qvecs, view == "filtered")))
    first = rows["raw"][0][2]
    listed = {a for c in cases for g in c["must_include_any"] for a in g}
    print("%d docs; %d prompts, %d topic groups, %d expected adapters (%d more listed are not in "
          "the catalog)" % (len(docs), len(cases), first["n_groups"], first["n_expected"],
                            len(listed - {d["id"] for d in docs})))
    print(table("Raw retrieval (every doc)", rows["raw"]))
    print(table("Filtered as a shard does (the prompt's base model, no NSFW)", rows["filtered"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({v: [{"variant": n, "model": m, **r} for n, m, r in rs] for v, rs in rows.items()}, f, indent=1)


if __name__ == "__main__":
    main()
