/*
 * embedder_choice.h - which embedder a process uses, chosen by the same
 * flags in every command that embeds (stylus indexer, serve, embed): the
 * built-in offline embedder (proto/embed.h, the default) or an
 * OpenAI-compatible /v1/embeddings endpoint (indexer/embed_http.h).
 *
 *   flag                 meaning
 *   --embed-url URL      use the endpoint at URL (base URL, origin or .../embeddings)
 *   --embed-model NAME   model name sent to the endpoint; required with --embed-url
 *   --embed-dim D        floats per vector; required with --embed-url
 *   --embed-key-file F   file holding the bearer key (else $STYLUS_EMBED_KEY)
 *   --embed-batch N      texts per request (64)
 *   --embed-send-dim     send "dimensions": D (models that shorten their output)
 *   --embed-timeout-ms   one request (30000)
 *   --embed-deadline-ms  one batch with its retries (the command's default)
 *   --embed-idf FILE     the built-in with the IDF table FILE (`stylus idf`);
 *                        not with --embed-url
 *
 * The model name: with an endpoint, the index's model name is NAME exactly
 * as given (e.g. "text-embedding-3-small"; 1..63 printable ASCII bytes,
 * names starting "stylus-hash-" are the built-in's and refused).  It goes
 * into every embed RESULT and every QUERY, and a shard given the same
 * --embed-model NAME --embed-dim D accepts them; the dimension is checked
 * apart from the name, everywhere.  The built-in's name is
 * "stylus-hash-v1/<dim>", or with --embed-idf
 * "stylus-hash-v1+idf-<8 hex of the table's SHA-256>/<dim>" (`stylus idf`
 * prints it; shards need it as their --embed-model).
 *
 * Usage in a command:
 *
 *	static const struct option opts[] = {..., EMBEDDER_CHOICE_OPTIONS, {NULL, 0, NULL, 0}};
 *	struct embedder_flags ef;
 *	embedder_flags_init(&ef);
 *	while ((c = getopt_long(...)) != -1) {
 *		switch (embedder_flags_take(&ef, c, optarg, &err)) {
 *		case 1: continue;          (an --embed-* flag, taken)
 *		case 0: break;             (not one: the command's own)
 *		default: usage error, err.msg says why
 *		}
 *		...
 *	}
 *	if (embedder_choice_open(&choice, &ef, dim, EMBEDDER_DEADLINE_QUERY_MS, &err)) ...
 *	embedder_choice_embed(&choice, texts, n, vectors, &err);
 *	embedder_choice_close(&choice);
 *
 * Thread rules: an open choice belongs to one thread at a time (see
 * embed_http.h); embedder_choice_open reads the key file and the
 * environment, so call it before starting threads.
 */
#ifndef STYLUS_INDEXER_EMBEDDER_CHOICE_H
#define STYLUS_INDEXER_EMBEDDER_CHOICE_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "indexer/embed_http.h"
#include "proto/embed.h"
#include "proto/errors.h"

#define EMBEDDER_KEY_ENV            "STYLUS_EMBED_KEY"
#define EMBEDDER_DEADLINE_WORKER_MS 120000L /* indexer, stylus embed: leases are extended */
#define EMBEDDER_DEADLINE_QUERY_MS  10000L  /* query node: a caller is waiting */

/* getopt_long values of the flags; outside the range of any short option. */
enum {
        EMBED_OPT_URL = 0x4500,
        EMBED_OPT_MODEL,
        EMBED_OPT_DIM,
        EMBED_OPT_KEY_FILE,
        EMBED_OPT_BATCH,
        EMBED_OPT_SEND_DIM,
        EMBED_OPT_TIMEOUT,
        EMBED_OPT_DEADLINE,
        EMBED_OPT_IDF,
};

/* Entries for a command's getopt_long table. */
/* clang-format off */
#define EMBEDDER_CHOICE_OPTIONS                                                 \
        {"embed-url", required_argument, NULL, EMBED_OPT_URL},                  \
        {"embed-model", required_argument, NULL, EMBED_OPT_MODEL},              \
        {"embed-dim", required_argument, NULL, EMBED_OPT_DIM},                  \
        {"embed-key-file", required_argument, NULL, EMBED_OPT_KEY_FILE},        \
        {"embed-batch", required_argument, NULL, EMBED_OPT_BATCH},              \
        {"embed-send-dim", no_argument, NULL, EMBED_OPT_SEND_DIM},              \
        {"embed-timeout-ms", required_argument, NULL, EMBED_OPT_TIMEOUT},       \
        {"embed-deadline-ms", required_argument, NULL, EMBED_OPT_DEADLINE},     \
        {"embed-idf", required_argument, NULL, EMBED_OPT_IDF}

/* The flags' lines of a command's --help. */
#define EMBEDDER_CHOICE_USAGE                                                                   \
        "  --embed-url URL      embed with an OpenAI-compatible /v1/embeddings endpoint:\n"     \
        "                       base URL (https://api.openai.com/v1), bare origin\n"           \
        "                       (/v1/embeddings is added) or the full .../embeddings URL;\n"   \
        "                       default: the built-in offline embedder stylus-hash-v1\n"       \
        "  --embed-model NAME   model name (required with --embed-url); it is also the\n"     \
        "                       index's model name: give shards the same\n"                    \
        "  --embed-dim D        floats per vector (required with --embed-url); every\n"       \
        "                       answer is checked against it\n"                                \
        "  --embed-key-file F   file holding the API key (else $STYLUS_EMBED_KEY; servers\n"   \
        "                       without keys need neither); never logged\n"                    \
        "  --embed-batch N      texts per request (default 64, at most 2048)\n"                 \
        "  --embed-send-dim     send \"dimensions\": D (text-embedding-3-* can shorten)\n"      \
        "  --embed-timeout-ms MS   one request (default 30000)\n"                               \
        "  --embed-deadline-ms MS  one batch with its retries (429, 5xx, timeouts and\n"       \
        "                       resets are retried, Retry-After obeyed, else 1 s\n"            \
        "                       doubling to 30 s with jitter)\n"                                \
        "  --embed-idf FILE     weigh the built-in embedder's features by the IDF table\n"      \
        "                       FILE (made by `stylus idf`); the model name becomes\n"          \
        "                       stylus-hash-v1+idf-<sha>/<dim>: give shards the same\n"
/* clang-format on */

/* What the flags said; filled by embedder_flags_take. */
struct embedder_flags {
        const char *url;      /* NULL: the built-in */
        const char *model;    /* borrowed from argv */
        const char *key_file; /* NULL: $STYLUS_EMBED_KEY or no key */
        const char *idf_file; /* NULL: the built-in without IDF weights */
        int dim;              /* 0 when not given */
        unsigned batch;       /* 0: the default */
        bool send_dim;
        long timeout_ms;  /* 0: the default */
        long deadline_ms; /* 0: the command's default */
        bool others;      /* an --embed-* flag other than --embed-url was given */
};

/* An embedder ready to use. */
struct embedder_choice {
        struct embedder builtin; /* always set up (the composer takes one) */
        struct embed_idf *idf;   /* the --embed-idf table builtin uses, or NULL; owned */
        struct embed_http *http; /* NULL: the built-in embeds */
        const char *model;       /* the index's model name: builtin.model or the endpoint's */
        int dim;                 /* floats per vector */
};

void embedder_flags_init(struct embedder_flags *f);

/*
 * Take getopt_long's answer opt with its arg when it is one of the flags
 * above: 1 (taken), 0 (not one of them), or ST_EINVAL with err saying which
 * value is bad.
 */
int embedder_flags_take(struct embedder_flags *f, int opt, const char *arg, struct st_error *err);

/*
 * Set up c from f: the built-in of builtin_dim floats, and the endpoint
 * when f->url is set, with its key read from f->key_file or
 * $STYLUS_EMBED_KEY.  default_deadline_ms applies when f gives none
 * (EMBEDDER_DEADLINE_*).  Logs the choice (never the key).  Returns 0 or
 * ST_EINVAL (err: --embed-* flags without --embed-url, a missing
 * --embed-model or --embed-dim, a reserved or bad model name, an unreadable
 * key file, a bad URL, --embed-idf with --embed-url), ST_ENOMEM, or the
 * errors of embed_idf_load() for --embed-idf (err names the file and what
 * is wrong with it).  On error c needs no close.
 */
int embedder_choice_open(struct embedder_choice *c, const struct embedder_flags *f, int builtin_dim,
                         long default_deadline_ms, struct st_error *err);

/*
 * Embed texts[0..n-1] into out[n * c->dim], each L2-normalized (or zero for
 * a text without words, with the built-in).  Errors: those of
 * embedder_embed() or embed_http_embed(), err saying which.
 */
int embedder_choice_embed(struct embedder_choice *c, const char *const *texts, size_t n, float *out,
                          struct st_error *err);

/* Release what open made; c may be closed twice. */
void embedder_choice_close(struct embedder_choice *c);

#endif
