/*
 * worker.h - the job loop every pipeline worker runs (crawler, refiner,
 * indexer): a DEALER connected to the catalog's broker, in the manner of
 * zguide's Paranoid Pirate worker.
 *
 * Credit-based flow control: a worker holds at most `window` jobs (default
 * WORKER_DEFAULT_WINDOW): one running on its own thread, the others queued
 * behind it, so the next job is already there when one ends and a fast
 * stage never waits a round trip, while a slow stage is never sent more
 * than its window.  It announces itself with a HEARTBEAT (below) and says
 * READY {credit: 1} after each RESULT.  Every WIRE_HEARTBEAT_MS it sends a
 * HEARTBEAT {stage, idle, free, job_id, job_ids}: the jobs it holds (the
 * broker extends their leases) and how many more it could take (the broker
 * resets its credit from that, counting the JOBs still in flight, so lost
 * messages or a restarted catalog never leave credit wrong for long).  A
 * JOB beyond the window is handed back with NACK, and so are queued jobs
 * when the worker stops.  When the broker has been
 * silent for WIRE_LIVENESS heartbeats it closes the socket and reconnects,
 * waiting 1 s, then 2, 4 ... up to 32 s between attempts.  A restarted
 * catalog learns about an idle worker from its heartbeat.
 *
 * Thread rules: worker_run() owns its ZeroMQ context and socket; run one per
 * thread or process.
 */
#ifndef STYLUS_WORKER_H
#define STYLUS_WORKER_H

#include <signal.h>
#include <stddef.h>

#include <msgpack.h>

#include "proto/arena.h"
#include "proto/errors.h"
#include "proto/security.h"

#define WORKER_DEFAULT_WINDOW 2 /* jobs a worker holds at once: one running, one waiting */
#define WORKER_MAX_WINDOW     16

/*
 * Handle one job.  payload is the JOB's payload map (borrowed until
 * return); the handler packs exactly one map (the RESULT payload) into pk
 * on success and returns 0, or returns an error with err filled, in which
 * case anything packed is discarded.  a is a fresh arena for this job.
 */
typedef int (*worker_handler)(void *ctx, const msgpack_object *payload, struct arena *a,
                              msgpack_packer *pk, struct st_error *err);

struct worker_config {
        const char *endpoint; /* catalog broker, e.g. tcp://127.0.0.1:5555 */
        const char *stage;    /* "crawl", "refine" or "embed" */
        worker_handler handle;
        void *ctx;                       /* passed to handle */
        size_t arena_limit;              /* per-job memory cap */
        volatile sig_atomic_t *stop;     /* loop ends when *stop becomes nonzero */
        long max_jobs;                   /* stop after this many jobs; 0 = no limit */
        const struct security *security; /* CURVE keys (proto/security.h), or NULL */
        size_t window;                   /* jobs held at once (0: WORKER_DEFAULT_WINDOW) */
};

/* Run until *stop; returns 0, or an error if the socket cannot be made. */
int worker_run(const struct worker_config *cfg);

/* Install SIGINT/SIGTERM handlers that set *flag. */
void worker_stop_on_signals(volatile sig_atomic_t *flag);

#endif
