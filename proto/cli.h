/*
 * cli.h - what every worker subcommand shares: the common flags, the
 * per-job memory cap, and running the job loop of proto/worker.h.
 */
#ifndef STYLUS_CLI_H
#define STYLUS_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "proto/worker.h"

#define CLI_JOB_MEMORY ((size_t)256 << 20) /* per-job arena cap */

/*
 * Run stage's worker loop against endpoint until SIGINT/SIGTERM (or
 * max_jobs jobs when > 0), logging as role.  CURVE keys come from the
 * STYLUS_CURVE_KEY and STYLUS_CURVE_SERVER_KEY environment variables (paths
 * of key files, proto/security.h); an endpoint beyond loopback needs them.
 * Returns a process exit status.
 */
/* "90", "90s", "30m", "6h", "7d" as seconds (at most 100 years); -1 when malformed. */
long cli_parse_duration(const char *text);

int cli_run_worker(const char *role, const char *endpoint, const char *stage, worker_handler handle,
                   void *ctx, long max_jobs);

#endif
