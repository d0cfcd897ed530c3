/*
 * refiner_bench.c - docs per second of the offline card refiner on one
 * core, against the goal of 2,000 docs/s per core.
 *
 * The fixture catalog (tests/fixtures/civitai/models.json) is parsed with
 * the crawler's own parser into raw records, which are replicated until
 * there are at least MIN_RECORDS of them (50,000 by default), then refined
 * single-threaded twice:
 *   card_refine  card_refine() alone, one arena per job as the worker has;
 *   worker path  what one refine job costs the worker besides the network:
 *                the record decoded from msgpack, card_refine(), the doc
 *                encoded to msgpack.
 * Each pass prints docs per CPU second of this process (the per-core
 * figure, steady on a shared machine) and docs/s of wall time, each with its
 * ratio to the goal; the exit status is 0 either way (it measures, it does
 * not judge).  The records repeat, so caches are warmer than on a real catalog
 * of that size: read the figure as an upper bound for these card sizes.
 *
 *   bash bench/refiner_bench.sh            # builds, then runs this
 *   refiner_bench tests/fixtures [MIN_RECORDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crawler/civitai.h"
#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/log.h"
#include "refiner/card.h"

#define GOAL_DOCS_PER_S 2000.0
#define JOB_MEMORY      ((size_t)256 << 20) /* the worker's per-job cap (proto/cli.h) */
#define PAGE_MEMORY     ((size_t)512 << 20)

struct clock_pair {
        double wall, cpu; /* seconds */
};

static struct clock_pair now(void)
{
        struct timespec w, c;

        clock_gettime(CLOCK_MONOTONIC, &w);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
        return (struct clock_pair){w.tv_sec + w.tv_nsec / 1e9, c.tv_sec + c.tv_nsec / 1e9};
}

/* The whole file as a NUL-terminated string wrapped as {"items": <file>}; NULL on error. */
static char *read_page(const char *path, size_t *len)
{
        static const char head[] = "{\"items\":", tail[] = "}";
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        long size;

        if (!f)
                return NULL;
        if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
                goto out;
        buf = malloc(sizeof(head) + (size_t)size + sizeof(tail));
        if (!buf)
                goto out;
        memcpy(buf, head, sizeof(head) - 1);
        if (fread(buf + sizeof(head) - 1, 1, (size_t)size, f) != (size_t)size) {
                free(buf);
                buf = NULL;
                goto out;
        }
        memcpy(buf + sizeof(head) - 1 + size, tail, sizeof(tail));
        *len = sizeof(head) - 1 + (size_t)size + sizeof(tail) - 1;
out:
        fclose(f);
        return buf;
}

/* What one pass adds up, so the work cannot be optimized away and runs can be compared. */
struct tally {
        size_t docs;
        double weights;
        size_t bytes; /* descriptions (card_refine) or encoded docs (worker path) */
};

static void report(const char *pass, const struct tally *t, struct clock_pair t0,
                   struct clock_pair t1)
{
        double wall = t1.wall - t0.wall, cpu = t1.cpu - t0.cpu;

        printf("%-12s %zu docs: %.0f docs per cpu second = %.2fx the goal of %.0f per core; "
               "wall %.3f s, %.0f docs/s = %.2fx  [weights %.2f, %zu bytes out]\n",
               pass, t->docs, t->docs / cpu, t->docs / cpu / GOAL_DOCS_PER_S, GOAL_DOCS_PER_S, wall,
               t->docs / wall, t->docs / wall / GOAL_DOCS_PER_S, t->weights, t->bytes);
}

static int pass_card(const char *label, const struct st_raw_record *records, size_t n, size_t total)
{
        struct tally t = {0, 0, 0};
        struct clock_pair t0, t1;
        struct st_error err = {0};
        struct arena a;
        struct st_doc d;
        size_t i;

        t0 = now();
        for (i = 0; i < total; i++) {
                arena_init(&a, JOB_MEMORY);
                if (card_refine(&records[i % n], &a, &d, &err) != 0) {
                        fprintf(stderr, "card_refine: %s\n", err.msg);
                        arena_release(&a);
                        return 1;
                }
                t.docs++;
                t.weights += d.recommended_weight;
                t.bytes += strlen(d.description);
                arena_release(&a);
        }
        t1 = now();
        if (label)
                report(label, &t, t0, t1);
        return 0;
}

static int pass_worker(const struct st_raw_record *records, size_t n, size_t total)
{
        struct tally t = {0, 0, 0};
        struct clock_pair t0, t1;
        struct st_error err = {0};
        struct st_raw_record r;
        struct st_doc d;
        struct arena a;
        char **packed, *out;
        size_t *packed_len, out_len, i;
        int rc = 1;

        packed = calloc(n, sizeof(*packed));
        packed_len = calloc(n, sizeof(*packed_len));
        if (!packed || !packed_len)
                goto out;
        for (i = 0; i < n; i++)
                if (st_raw_record_to_msgpack(&records[i], &packed[i], &packed_len[i]) != 0)
                        goto out;
        t0 = now();
        for (i = 0; i < total; i++) {
                arena_init(&a, JOB_MEMORY);
                rc = st_raw_record_from_msgpack(packed[i % n], packed_len[i % n], &a, &r, &err);
                if (!rc)
                        rc = card_refine(&r, &a, &d, &err);
                if (!rc)
                        rc = st_doc_to_msgpack(&d, &out, &out_len);
                if (rc) {
                        fprintf(stderr, "worker path: %s\n", st_error_text(&err, rc));
                        arena_release(&a);
                        goto out;
                }
                t.docs++;
                t.weights += d.recommended_weight;
                t.bytes += out_len;
                free(out);
                arena_release(&a);
        }
        t1 = now();
        report("worker path", &t, t0, t1);
        rc = 0;
out:
        for (i = 0; packed && i < n; i++)
                free(packed[i]);
        free(packed);
        free(packed_len);
        return rc;
}

int main(int argc, char **argv)
{
        struct civitai_page page;
        struct st_error err = {0};
        struct arena a;
        char path[4096], *json;
        size_t len, min_records = 50000, total;
        int rc = 1;

        if (argc < 2 || argc > 3) {
                fprintf(stderr, "usage: %s FIXTURES_DIR [MIN_RECORDS]\n", argv[0]);
                return 2;
        }
        if (argc == 3)
                min_records = strtoul(argv[2], NULL, 10);
        log_setup("bench", LOG_WARN);
        snprintf(path, sizeof(path), "%s/civitai/models.json", argv[1]);
        json = read_page(path, &len);
        if (!json) {
                perror(path);
                return 1;
        }
        arena_init(&a, PAGE_MEMORY);
        if (civitai_parse_models_page(json, len, "http://127.0.0.1:1", "2026-01-01T00:00:00Z", &a,
                                      &page, &err) != 0 ||
            page.n_records == 0) {
                fprintf(stderr, "%s: %s\n", path, err.msg[0] ? err.msg : "no records");
                goto out;
        }
        total = (min_records + page.n_records - 1) / page.n_records * page.n_records;
        printf("%zu records from %s (%zu models), replicated to %zu; one core, one arena per "
               "job\n",
               page.n_records, path, page.n_items, total);
        /* warm-up: one round over the distinct records, not reported */
        if (pass_card(NULL, page.records, page.n_records, page.n_records) != 0)
                goto out;
        if (pass_card("card_refine", page.records, page.n_records, total) == 0 &&
            pass_worker(page.records, page.n_records, total) == 0)
                rc = 0;
out:
        arena_release(&a);
        free(json);
        return rc;
}
