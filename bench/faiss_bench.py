#!/usr/bin/python3
"""faiss_bench.py - the FAISS side of bench/run_search_bench.sh, and its report.

Run mode: load DIR/base.npy and DIR/queries.npy (written by shard_bench for the
same data set), build faiss.IndexFlatIP and faiss.IndexScalarQuantizer(QT_8bit,
METRIC_INNER_PRODUCT) (trained on all of base), and for 1 and 2 threads
(faiss.omp_set_num_threads and OpenBLAS's openblas_set_num_threads, which FAISS
uses for its sgemm), batches of 1 and 32 queries cycling through the queries,
measure queries/s, top-150 (best of up to 3 slices over --seconds: measure()).
Run it with OMP_WAIT_POLICY=PASSIVE (run_search_bench.sh does): with libgomp's
default spinning, idle OpenMP threads take the cores OpenBLAS's threads need.
Then recall@150 of SQ8 against flat.  Appends tab-separated lines to --out:
    qps     faiss DATA ROWS THREADS flat|sq8 BATCH QPS
    recall  faiss DATA ROWS sq8 RECALL

Report mode (--report FILE...): read the lines of both sides and print the
tables of docs/search.md: queries/s, ratios against FAISS, recall, bandwidth;
with several files (runs), the best figure of each cell, or with --stat
median the median of the runs (ratios then are medians of each run's own
ratio, both sides of a ratio measured minutes apart in the same run).

Needs Debian's python3-faiss and python3-numpy: run with /usr/bin/python3.
"""
import argparse
import ctypes
import os
import sys
import time

K = 150


def openblas_threads(n):
    """Set OpenBLAS's threads in this process (FAISS's BLAS); False if not found."""
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            getattr(ctypes.CDLL(name), "openblas_set_num_threads")(ctypes.c_int(n))
            return True
        except (OSError, AttributeError):
            continue
    return False


def measure(index, queries, batch, seconds):
    """Queries/s of index.search on batches cycling through queries: after a
    warm-up query, timed slices of at least seconds / 3 (and one batch) until
    seconds have passed, at most 3; the best slice counts.  shard_bench.c
    measures the same way."""
    import numpy as np

    nq = len(queries)
    start = 0
    best = 0.0
    total = 0.0
    index.search(np.ascontiguousarray(queries[:1]), K)
    for slice_no in range(3):
        if slice_no > 0 and total >= seconds:
            break
        t0 = time.perf_counter()
        done = 0
        while True:
            rows = [(start + j) % nq for j in range(batch)]
            start = (start + batch) % nq
            index.search(np.ascontiguousarray(queries[rows]), K)
            done += batch
            if time.perf_counter() - t0 >= seconds / 3:
                break
        elapsed = time.perf_counter() - t0
        total += elapsed
        best = max(best, done / elapsed)
    return best


def recall(truth, found):
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist()))
    return hits / float(truth.size)


def run(args):
    import faiss
    import numpy as np

    base = np.load(os.path.join(args.dir, "base.npy"), mmap_mode="r")
    queries = np.load(os.path.join(args.dir, "queries.npy"))
    rows, dim = base.shape
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(np.ascontiguousarray(base))
    sq8 = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit,
                                     faiss.METRIC_INNER_PRODUCT)
    sq8.train(np.ascontiguousarray(base))
    sq8.add(np.ascontiguousarray(base))
    del base
    print("faiss %s %d: indexes built in %.1f s (faiss %s, %s)"
          % (args.data, rows, time.perf_counter() - t0, faiss.__version__,
             faiss.get_compile_options().strip()))
    if not openblas_threads(1):
        print("faiss: cannot set OpenBLAS threads; OPENBLAS_NUM_THREADS rules", file=sys.stderr)
    with open(args.out, "a") as out:
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            openblas_threads(threads)
            for name, index in (("flat", flat), ("sq8", sq8)):
                for batch in (1, 32):
                    qps = measure(index, queries, batch, args.seconds)
                    print("faiss %-7s %7d rows  %d thr  %-5s batch %2d: %8.1f q/s"
                          % (args.data, rows, threads, name, batch, qps), flush=True)
                    out.write("qps\tfaiss\t%s\t%d\t%d\t%s\t%d\t%.2f\n"
                              % (args.data, rows, threads, name, batch, qps))
        faiss.omp_set_num_threads(2)
        openblas_threads(2)
        _, truth = flat.search(queries, K)
        _, found = sq8.search(queries, K)
        r = recall(truth, found)
        print("faiss %-7s %7d rows  recall@%d of sq8 vs flat: %.4f (%d queries)"
              % (args.data, rows, K, r, len(queries)))
        out.write("recall\tfaiss\t%s\t%d\tsq8\t%.4f\n" % (args.data, rows, r))


def median(values):
    v = sorted(values)
    n = len(v)
    return 0.0 if n == 0 else v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def report(paths, stat="best"):
    """Print the tables; with several result files, each figure is the best
    of the runs (load from other processes only ever lowers a figure), or
    their median with stat "median"."""
    runs = {}  # key -> [figure of each run]
    ratios = {}  # (ours key, faiss key) -> [ratio of each run]
    rec = {}
    bandwidth = {}
    for path in paths:
        run = {}
        for line in open(path):
            f = line.rstrip("\n").split("\t")
            if f[0] == "qps":
                key = (f[1], f[2], int(f[3]), int(f[4]), f[5], int(f[6]))
                run[key] = float(f[7])
                runs.setdefault(key, []).append(float(f[7]))
            elif f[0] == "recall":
                rec[(f[1], f[2], int(f[3]))] = float(f[5])
            elif f[0] == "bandwidth":
                bandwidth.setdefault(int(f[1]), []).append(float(f[2]))
        for key, value in run.items():
            if key[0] != "ours":
                continue
            for mode in ("flat", "sq8"):
                other = ("faiss",) + key[1:4] + (mode, key[5])
                if run.get(other):
                    ratios.setdefault((key, other), []).append(value / run[other])
    pick = median if stat == "median" else max
    qps = {key: pick(v) for key, v in runs.items()}
    bandwidth = {t: pick(v) for t, v in bandwidth.items()}

    def ratio(ours_key, faiss_key):
        if stat == "median" and (ours_key, faiss_key) in ratios:
            return "%.2fx" % median(ratios[(ours_key, faiss_key)])
        a, b = qps.get(ours_key, 0.0), qps.get(faiss_key, 0.0)
        return "%.2fx" % (a / b) if a and b else "-"

    if len(paths) > 1:
        print("\n%s of %d runs for each figure" % (stat, len(paths)))
    sets = sorted({(k[1], k[2]) for k in qps}, key=lambda s: (s[1], s[0] != "random"))
    print("\nqueries/s, top-150, dim 384 (ratios: ours / FAISS)\n")
    head = ("| data | rows | threads | batch | ours exact | FAISS flat | exact/flat "
            "| ours int8 | FAISS SQ8 | int8/flat | int8/SQ8 |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for data, rows in sets:
        for threads in (1, 2):
            for batch in (1, 32):
                def key(side, mode):
                    return (side, data, rows, threads, mode, batch)

                def get(side, mode):
                    return qps.get(key(side, mode), 0.0)

                print("| %s | %d | %d | %d | %.1f | %.1f | %s | %.1f | %.1f | %s | %s |"
                      % (data, rows, threads, batch, get("ours", "exact"), get("faiss", "flat"),
                         ratio(key("ours", "exact"), key("faiss", "flat")),
                         get("ours", "int8"), get("faiss", "sq8"),
                         ratio(key("ours", "int8"), key("faiss", "flat")),
                         ratio(key("ours", "int8"), key("faiss", "sq8"))))
    print("\nrecall@150 against exact (same queries)\n")
    print("| data | rows | ours int8 (re-ranked) | FAISS SQ8 |")
    print("|---|---|---|---|")
    for data, rows in sets:
        print("| %s | %d | %.4f | %.4f |" % (data, rows, rec.get(("ours", data, rows), -1),
                                           rec.get(("faiss", data, rows), -1)))
    print("\nmemory read bandwidth (STREAM-like sum over 1 GiB) and the batch-1 scans\n")
    print("| data | rows | threads | machine GB/s | ours fp32 scan GB/s | fraction "
          "| FAISS flat GB/s |")
    print("|---|---|---|---|---|---|---|")
    for data, rows in sets:
        for threads in (1, 2):
            gb = bandwidth.get(threads, 0.0)
            fp32 = rows * 384 * 4 / 1e9
            ours = qps.get(("ours", data, rows, threads, "exact", 1), 0.0) * fp32
            flat = qps.get(("faiss", data, rows, threads, "flat", 1), 0.0) * fp32
            print("| %s | %d | %d | %.1f | %.1f | %.0f%% | %.1f |"
                  % (data, rows, threads, gb, ours, 100.0 * ours / gb if gb else 0.0, flat))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", help="data set directory (base.npy, queries.npy)")
    p.add_argument("--data", help="data set name for the results")
    p.add_argument("--out", help="results file to append to")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--report", nargs="+", metavar="FILE",
                   help="print the tables of results files (best of them per figure)")
    p.add_argument("--stat", choices=("best", "median"), default="best",
                   help="with several --report files: best (default) or median of the runs")
    args = p.parse_args()
    if args.report:
        report(args.report, args.stat)
    elif args.dir and args.data and args.out:
        run(args)
    else:
        p.error("give --dir, --data and --out, or --report")


if __name__ == "__main__":
    main()
