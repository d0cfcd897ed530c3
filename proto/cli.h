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
int cli_run_worker(const char *role, const char *endpoint, const char *stage, worker_handler handle,
                   void *ctx, long max_jobs);

#endif
