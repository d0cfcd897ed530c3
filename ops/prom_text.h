/*
 * prom_text.h - a STATUS answer of a catalog or a shard (proto/wire.h) as
 * Prometheus text exposition, for `stylus status --prometheus` (a
 * node_exporter textfile collector, or a scrape through a small wrapper).
 *
 * Every number and bool in the map becomes one gauge sample (bools 0/1),
 * named stylus_<role>_<path>: role "shard" when the map has a "shard"
 * [I, N] array (its samples then carry shard="I/N"), else "catalog"; path
 * the keys from the top joined by '_', bytes outside [A-Za-z0-9_] as '_'.
 * The maps under these keys are collections whose keys become a label:
 *
 *   key           label        example
 *   jobs          stage        stylus_catalog_jobs_pending{stage="refine"} 12
 *   sources       source       stylus_catalog_sources_pages{source="civitai"} 40
 *   subscribers   subscriber   stylus_catalog_changelog_subscribers_seq{subscriber="s0a"} 51
 *
 * Strings and arrays are left out (dead letters, cursors, model names).
 * Samples of one name are grouped under one "# TYPE name gauge" line, as the
 * format requires.  Label values are escaped (\\, \", \n).
 *
 * Errors: ST_ETYPE (status not a map), ST_ETOOBIG (more than
 * PROM_MAX_SAMPLES samples or nesting deeper than PROM_MAX_DEPTH),
 * ST_ENOMEM, ST_EIO (writing out failed).
 * Thread rules: none; no state is kept.
 */
#ifndef STYLUS_OPS_PROM_TEXT_H
#define STYLUS_OPS_PROM_TEXT_H

#include <stdio.h>

#include <msgpack.h>

#include "proto/errors.h"

#define PROM_MAX_SAMPLES 10000
#define PROM_MAX_DEPTH   8

int prom_write_status(const msgpack_object *status, FILE *out, struct st_error *err);

#endif
