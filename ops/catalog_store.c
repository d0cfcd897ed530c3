/*
 * catalog_store.c - LMDB layout of the catalog (format version 1).
 *
 *   DB           key                   value (msgpack unless said)           notes
 *   meta         "version"             u32 LE = 1                            format version
 *                "next_job"            u64 LE                                last job id handed out
 *                "head_seq"            u64 LE                                last changelog seq used
 *   sources      source name           {cursor: str|nil, done: bool,         crawl cursor of a source
 *                                       pages: uint, passes: uint}
 *   records      doc id                raw_record (proto/doc.h)              content_hash inside
 *   docs         doc id                st_doc                                content_hash = record's
 *   vectors      doc id                {model: str, dim: uint,               dim f32 little-endian
 *                                       content_hash: str, vector: bin}
 *   jobs_crawl   job id (u64 BE)       {source: str, cursor: str|nil}        pending crawl jobs
 *   jobs_refine  job id (u64 BE)       {id: str}                             pending refine jobs
 *   jobs_embed   job id (u64 BE)       {id: str}                             pending embed jobs
 *   jobs_images  job id (u64 BE)       {id: str}                             pending image downloads
 *   dead         stage (u8) + job id   {job: map, error: str}                jobs that kept failing;
 *                                                                            stage 0 crawl, 1 refine,
 *                                                                            2 embed, 3 images
 *   changelog    seq (u64 BE)          {op: "put"|"del", id: str}            doc/vector changes
 *   subscribers  name (str)            {seq: uint, shard: uint,              changelog readers: last
 *                                       shards: uint, seen: uint}            applied seq, unix time
 *   seen         doc id                u64 LE                                crawl pass (source's
 *                                                                            passes + 1) that last
 *                                                                            listed the record
 *   gone         doc id                {reason: str, at: uint}               tombstones: records the
 *                                                                            source no longer has
 *   by_sha       file sha256 (64 hex)  "" (empty)                            which records carry a
 *                + 0x00 + doc id                                             file: duplicates
 *   dups         doc id                canonical doc id (str bytes)          re-uploads: kept as
 *                                                                            records, never indexed
 *
 * More meta keys: "low_seq" (u64 LE): changelog entries up to it were
 * compacted away; a SYNC from below it is told to re-snapshot.  Crawl jobs
 * may also carry pass: "incremental" and check: [ids] (ids to verify with
 * the source, tombstoned when it answers 404/410) or by_hash: [sha256s] (ask
 * the source which version owns a file; the others become dups).  Sources
 * also keep kind
 * ("full" | "incremental", the pass under way).  The databases from
 * jobs_images on were added within format 1: a store without them gets them
 * created, empty, when the catalog opens it.
 *
 * Job ids and sequence numbers are big-endian so LMDB's byte order is their
 * numeric order: the oldest job is first.  Leases are the broker's, in
 * memory: a restarted catalog simply offers every pending job again.
 * Records whose id does not fit an LMDB key (511 bytes) or whose encoding is
 * over ST_LIMIT_RECORD are rejected: they could not be read back.
 */
#include "ops/catalog_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include <lmdb.h>

#include "proto/log.h"
#include "proto/wire.h"

#define FORMAT_VERSION 1
#define MAP_SIZE       ((size_t)1 << 30) /* first map size; it doubles when full */
#define MAP_SIZE_MAX   ((size_t)1 << 40)
#define DEAD_SHOWN     20 /* dead letters listed in STATUS */
#define DECODE_LIMIT   (64u << 20)
#define ORPHANS_MAX    64 /* orphaned jobs remembered between catalog_drop_orphans() calls */
#define CHECK_IDS      50 /* ids per verification crawl job */

enum {
        DB_META,
        DB_SOURCES,
        DB_RECORDS,
        DB_DOCS,
        DB_VECTORS,
        DB_JOBS_CRAWL,
        DB_JOBS_REFINE,
        DB_JOBS_EMBED,
        DB_JOBS_IMAGES, /* jobs_dbi(): the job databases follow the stage order */
        DB_DEAD,
        DB_CHANGELOG,
        DB_SUBSCRIBERS,
        DB_SEEN,
        DB_GONE,
        DB_BY_SHA,
        DB_DUPS,
        DB_COUNT
};

static const char *const db_names[DB_COUNT] = {
    "meta",        "sources",    "records",     "docs", "vectors",   "jobs_crawl",
    "jobs_refine", "jobs_embed", "jobs_images", "dead", "changelog", "subscribers",
    "seen",        "gone",       "by_sha",      "dups",
};

struct catalog {
        MDB_env *env;
        size_t map_size; /* current map size; doubled on MDB_MAP_FULL */
        MDB_txn *batch;  /* open group-commit transaction, or NULL (catalog_batch_begin) */
        char dir[1024];  /* the data directory, for messages */
        bool batch_full; /* a write in the batch found the map full */
        bool images;     /* crawled records with images go through the images stage */
        MDB_dbi dbi[DB_COUNT];
        uint64_t orphans[ORPHANS_MAX]; /* jobs whose item is gone, seen by catalog_pack_next_job */
        enum catalog_stage orphan_stage[ORPHANS_MAX];
        size_t n_orphans;
};

static const char *const stage_names[STAGE_COUNT] = {"crawl", "refine", "embed", "images"};

const char *catalog_stage_name(enum catalog_stage s)
{
        return s < STAGE_COUNT ? stage_names[s] : "unknown";
}

enum catalog_stage catalog_stage_from_name(const char *name)
{
        for (int s = 0; s < STAGE_COUNT; s++)
                if (!strcmp(name, stage_names[s]))
                        return (enum catalog_stage)s;
        return STAGE_COUNT;
}

/*
 * Finish a write function: an MDB_MAP_FULL attempt (its transaction already
 * aborted) grows the map, and *again tells the caller to run it once more;
 * LMDB codes become ST_EDB with what and LMDB's message; our own codes pass.
 */
static int db_fail(struct st_error *err, int mdb_rc, const char *what);

static int finish_write(struct catalog *c, int rc, const char *what, bool *again,
                        struct st_error *err)
{
        *again = false;
        if (rc == MDB_MAP_FULL && c->batch) {
                /* The map cannot grow under an open transaction: the batch will. */
                c->batch_full = true;
                return st_fail(err, ST_EAGAIN, "%s: map full; it grows when the batch ends", what);
        }
        if (rc == MDB_MAP_FULL && c->map_size < MAP_SIZE_MAX) {
                int grc = mdb_env_set_mapsize(c->env, c->map_size * 2);

                if (grc == 0) {
                        c->map_size *= 2;
                        log_info("catalog map grown to %zu MiB", c->map_size >> 20);
                        *again = true;
                        return 0;
                }
                rc = grc;
        }
        if (rc > ST_EMISSING - 1 && rc <= 0)
                return rc; /* 0 or one of ours (proto/errors.h) */
        return db_fail(err, rc, what);
}

static int db_fail(struct st_error *err, int mdb_rc, const char *what)
{
        return st_fail(err, ST_EDB, "%s: %s", what, mdb_strerror(mdb_rc));
}

static void be64(unsigned char out[8], uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                out[i] = (unsigned char)v;
}

static uint64_t from_be64(const void *p)
{
        const unsigned char *b = p;
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | b[i];
        return v;
}

static MDB_val str_val(const char *s)
{
        MDB_val v = {strlen(s), (void *)s};
        return v;
}

static int meta_get_u64(struct catalog *c, MDB_txn *txn, const char *key, uint64_t *out)
{
        MDB_val k = str_val(key), v;
        int rc = mdb_get(txn, c->dbi[DB_META], &k, &v);

        *out = 0;
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc)
                return rc;
        if (v.mv_size != 8)
                return MDB_CORRUPTED;
        memcpy(out, v.mv_data, 8);
        return 0;
}

static int meta_put_u64(struct catalog *c, MDB_txn *txn, const char *key, uint64_t value)
{
        MDB_val k = str_val(key), v = {8, &value};
        return mdb_put(txn, c->dbi[DB_META], &k, &v, 0);
}

int catalog_open(const char *dir, struct catalog **out, struct st_error *err)
{
        return catalog_open_sized(dir, MAP_SIZE, out, err);
}

int catalog_open_readonly(const char *dir, struct catalog **out, struct st_error *err)
{
        struct catalog *c = calloc(1, sizeof(*c));
        MDB_txn *txn;
        int rc;

        if (!c)
                return st_fail(err, ST_ENOMEM, "out of memory");
        rc = mdb_env_create(&c->env);
        if (rc)
                goto out_free;
        mdb_env_set_maxdbs(c->env, DB_COUNT);
        rc = mdb_env_open(c->env, dir, MDB_RDONLY | MDB_NOTLS, 0644);
        if (!rc)
                rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                goto out_env;
        for (int i = 0; i < DB_COUNT && !rc; i++)
                rc = mdb_dbi_open(txn, db_names[i], 0, &c->dbi[i]);
        /* Committing a read transaction keeps its database handles. */
        rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
        if (rc)
                goto out_env;
        *out = c;
        return 0;
out_env:
        mdb_env_close(c->env);
out_free:
        free(c);
        if (rc == MDB_NOTFOUND || rc == ENOENT)
                return st_fail(err, ST_ENOTFOUND, "%s holds no catalog", dir);
        return db_fail(err, rc, dir);
}

int catalog_each_doc(struct catalog *c, catalog_doc_fn fn, void *ctx)
{
        MDB_txn *txn;
        MDB_cursor *cur;
        MDB_val k, v;
        int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);

        if (rc)
                return ST_EDB;
        rc = mdb_cursor_open(txn, c->dbi[DB_DOCS], &cur);
        if (rc) {
                mdb_txn_abort(txn);
                return ST_EDB;
        }
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                MDB_val vec = {0, NULL};
                int cb;

                if (mdb_get(txn, c->dbi[DB_VECTORS], &k, &vec))
                        vec.mv_size = 0;
                cb = fn(ctx, v.mv_data, v.mv_size, vec.mv_size ? vec.mv_data : NULL, vec.mv_size);
                if (cb) {
                        rc = cb;
                        break;
                }
        }
        mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? 0 : rc < 0 && rc > ST_EMISSING - 1 ? rc : ST_EDB;
}

int catalog_open_sized(const char *dir, size_t map_size, struct catalog **out, struct st_error *err)
{
        MDB_envinfo info;
        struct catalog *c;
        MDB_txn *txn;
        uint32_t version = FORMAT_VERSION;
        int rc, dead;

        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
                return st_fail(err, ST_EIO, "cannot create %s: %s", dir, strerror(errno));
        c = calloc(1, sizeof(*c));
        if (!c)
                return st_fail(err, ST_ENOMEM, "out of memory");
        rc = mdb_env_create(&c->env);
        if (rc)
                goto out_free;
        mdb_env_set_maxdbs(c->env, DB_COUNT);
        mdb_env_set_mapsize(c->env, map_size);
        rc = mdb_env_open(c->env, dir, MDB_NOTLS, 0644);
        if (rc)
                goto out_env;
        snprintf(c->dir, sizeof(c->dir), "%s", dir);
        /* An existing store keeps its own, larger size. */
        mdb_env_info(c->env, &info);
        c->map_size = info.me_mapsize;
        mdb_reader_check(c->env, &dead);
        rc = mdb_txn_begin(c->env, NULL, 0, &txn);
        if (rc)
                goto out_env;
        for (int i = 0; i < DB_COUNT && !rc; i++)
                rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &c->dbi[i]);
        if (!rc) {
                MDB_val k = str_val("version"), v;

                rc = mdb_get(txn, c->dbi[DB_META], &k, &v);
                if (rc == MDB_NOTFOUND) {
                        v.mv_size = sizeof(version);
                        v.mv_data = &version;
                        rc = mdb_put(txn, c->dbi[DB_META], &k, &v, 0);
                } else if (!rc && (v.mv_size != 4 || memcmp(v.mv_data, &version, 4))) {
                        mdb_txn_abort(txn);
                        mdb_env_close(c->env);
                        free(c);
                        return st_fail(err, ST_EDB, "%s: unsupported catalog format", dir);
                }
        }
        if (rc) {
                mdb_txn_abort(txn);
                goto out_env;
        }
        rc = mdb_txn_commit(txn);
        if (rc)
                goto out_env;
        *out = c;
        return 0;
out_env:
        mdb_env_close(c->env);
out_free:
        free(c);
        return db_fail(err, rc, dir);
}

void catalog_close(struct catalog **c)
{
        if (!*c)
                return;
        mdb_env_close((*c)->env);
        free(*c);
        *c = NULL;
}

static MDB_dbi jobs_dbi(struct catalog *c, enum catalog_stage s)
{
        return c->dbi[DB_JOBS_CRAWL + s];
}

/* Put a packed job (sb) in stage s's queue under a new job id. */
static int enqueue(struct catalog *c, MDB_txn *txn, enum catalog_stage s, msgpack_sbuffer *sb)
{
        uint64_t id;
        unsigned char key[8];
        MDB_val k = {8, key}, v = {sb->size, sb->data};
        int rc = meta_get_u64(c, txn, "next_job", &id);

        if (rc)
                return rc;
        id++;
        be64(key, id);
        rc = mdb_put(txn, jobs_dbi(c, s), &k, &v, 0);
        return rc ? rc : meta_put_u64(c, txn, "next_job", id);
}

static int enqueue_id(struct catalog *c, MDB_txn *txn, enum catalog_stage s, const char *id)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        wire_pack_kv_str(&pk, "id", id);
        rc = enqueue(c, txn, s, &sb);
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

/* A crawl job for one page of source's pass; incremental passes say so. */
static int enqueue_crawl(struct catalog *c, MDB_txn *txn, const char *source, const char *cursor,
                         bool incremental)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, incremental ? 3 : 2);
        wire_pack_kv_str(&pk, "source", source);
        wire_pack_kv_str(&pk, "cursor", cursor);
        if (incremental)
                wire_pack_kv_str(&pk, "pass", "incremental");
        rc = enqueue(c, txn, STAGE_CRAWL, &sb);
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

static int delete_job(struct catalog *c, MDB_txn *txn, enum catalog_stage s, uint64_t job_id)
{
        unsigned char key[8];
        MDB_val k = {8, key};
        int rc;

        be64(key, job_id);
        rc = mdb_del(txn, jobs_dbi(c, s), &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* MDB_NOTFOUND when job_id is no longer queued: its result was applied already. */
static int job_exists(struct catalog *c, MDB_txn *txn, enum catalog_stage s, uint64_t job_id)
{
        unsigned char key[8];
        MDB_val k = {8, key}, v;

        be64(key, job_id);
        return mdb_get(txn, jobs_dbi(c, s), &k, &v);
}

/* End a write transaction: commit on success; a result already applied is no error. */
static int finish(MDB_txn *txn, int rc)
{
        if (rc) {
                mdb_txn_abort(txn);
                return rc == MDB_NOTFOUND ? 0 : rc;
        }
        return mdb_txn_commit(txn);
}

struct source_state {
        char *cursor;
        bool done;
        bool incremental; /* the pass under way (or last done) is incremental */
        uint64_t pages;
        uint64_t passes;
};

static int source_get(struct catalog *c, MDB_txn *txn, const char *source, struct arena *a,
                      struct source_state *st)
{
        MDB_val k = str_val(source), v;
        msgpack_unpacked u;
        size_t off = 0;
        int rc = mdb_get(txn, c->dbi[DB_SOURCES], &k, &v);

        memset(st, 0, sizeof(*st));
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc)
                return rc;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, v.mv_data, v.mv_size, &off) != MSGPACK_UNPACK_SUCCESS) {
                msgpack_unpacked_destroy(&u);
                return MDB_CORRUPTED;
        }
        wire_get_str(&u.data, "cursor", a, &st->cursor);
        wire_get_bool(&u.data, "done", &st->done);
        wire_get_u64(&u.data, "pages", &st->pages);
        wire_get_u64(&u.data, "passes", &st->passes);
        {
                const char *kind;
                size_t len;

                st->incremental = !wire_get_bytes(&u.data, "kind", &kind, &len) && len == 11 &&
                                  !memcmp(kind, "incremental", 11);
        }
        msgpack_unpacked_destroy(&u);
        return 0;
}

static int source_put(struct catalog *c, MDB_txn *txn, const char *source,
                      const struct source_state *st)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        MDB_val k = str_val(source), v;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 5);
        wire_pack_kv_str(&pk, "cursor", st->cursor);
        wire_pack_kv_bool(&pk, "done", st->done);
        wire_pack_kv_str(&pk, "kind", st->incremental ? "incremental" : "full");
        wire_pack_kv_u64(&pk, "pages", st->pages);
        wire_pack_kv_u64(&pk, "passes", st->passes);
        v.mv_size = sb.size;
        v.mv_data = sb.data;
        rc = mdb_put(txn, c->dbi[DB_SOURCES], &k, &v, 0);
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

/* True when a crawl job for source is already queued. */
static int crawl_queued(struct catalog *c, MDB_txn *txn, const char *source, bool *queued)
{
        MDB_cursor *cur;
        MDB_val k, v;
        int rc = mdb_cursor_open(txn, jobs_dbi(c, STAGE_CRAWL), &cur);

        *queued = false;
        if (rc)
                return rc;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && !*queued;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                msgpack_unpacked u;
                size_t off = 0;
                const char *s;
                size_t len;

                msgpack_unpacked_init(&u);
                if (msgpack_unpack_next(&u, v.mv_data, v.mv_size, &off) == MSGPACK_UNPACK_SUCCESS &&
                    !wire_get_bytes(&u.data, "source", &s, &len))
                        *queued = len == strlen(source) && !memcmp(s, source, len);
                msgpack_unpacked_destroy(&u);
        }
        mdb_cursor_close(cur);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

static int start_source_once(struct catalog *c, const char *source, bool restart, bool incremental)
{
        struct source_state st;
        struct arena a;
        MDB_txn *txn;
        bool queued;
        int rc;

        arena_init(&a, 1 << 20);
        rc = mdb_txn_begin(c->env, c->batch, 0, &txn);
        if (rc)
                goto out;
        rc = source_get(c, txn, source, &a, &st);
        if (!rc)
                rc = crawl_queued(c, txn, source, &queued);
        if (!rc && !queued && (!st.done || restart)) {
                if (st.done) {
                        st.done = false;
                        st.cursor = NULL;
                        st.incremental = incremental;
                }
                rc = source_put(c, txn, source, &st);
                if (!rc)
                        rc = enqueue_crawl(c, txn, source, st.cursor, st.incremental);
        }
        if (rc)
                mdb_txn_abort(txn);
        else
                rc = mdb_txn_commit(txn);
out:
        arena_release(&a);
        return rc;
}

/*
 * A record is kept only if it can be read back: its id must fit an LMDB key
 * and its encoding the ST_LIMIT_RECORD that st_raw_record_from_msgpack checks.
 */
static int storable(struct catalog *c, const struct st_raw_record *r, size_t encoded_len,
                    struct st_error *err)
{
        size_t id_len = strlen(r->id);
        int max_key = mdb_env_get_maxkeysize(c->env);

        if (id_len == 0)
                return st_fail(err, ST_EMISSING, "record with an empty id");
        if (id_len > (size_t)max_key)
                return st_fail(err, ST_ETOOBIG, "id '%.40s...': %zu bytes, limit %d", r->id, id_len,
                               max_key);
        if (encoded_len > ST_LIMIT_RECORD)
                return st_fail(err, ST_ETOOBIG, "record %.80s: %zu bytes encoded, limit %u", r->id,
                               encoded_len, ST_LIMIT_RECORD);
        return 0;
}

static int append_change(struct catalog *c, MDB_txn *txn, const char *op, const char *id);

/* Remember that the crawl pass `pass` listed id (for tombstone checks after a full pass). */
static int mark_seen(struct catalog *c, MDB_txn *txn, const char *id, uint64_t pass)
{
        MDB_val k = str_val(id), v = {8, &pass};

        if (!*id || strlen(id) > (size_t)mdb_env_get_maxkeysize(c->env))
                return 0;
        return mdb_put(txn, c->dbi[DB_SEEN], &k, &v, 0);
}

/*
 * Tombstone id: its record, doc and vector go, a "del" enters the changelog
 * (shards drop the doc) and gone[id] keeps why.  Jobs still queued for it
 * find nothing and are dropped (catalog_drop_orphans()).
 */
static int tombstone(struct catalog *c, MDB_txn *txn, const char *id, const char *reason)
{
        MDB_val k = str_val(id), v;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        bool indexed;
        int rc;

        if (!*id || strlen(id) > (size_t)mdb_env_get_maxkeysize(c->env))
                return 0;
        rc = mdb_del(txn, c->dbi[DB_RECORDS], &k, NULL);
        if (rc == MDB_NOTFOUND)
                return 0; /* unknown, or tombstoned already */
        if (rc)
                return rc;
        mdb_del(txn, c->dbi[DB_DOCS], &k, NULL);
        mdb_del(txn, c->dbi[DB_SEEN], &k, NULL);
        indexed = mdb_del(txn, c->dbi[DB_VECTORS], &k, NULL) == 0;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_str(&pk, "reason", reason);
        wire_pack_kv_u64(&pk, "at", (uint64_t)time(NULL));
        v.mv_size = sb.size;
        v.mv_data = sb.data;
        rc = mdb_put(txn, c->dbi[DB_GONE], &k, &v, 0);
        msgpack_sbuffer_destroy(&sb);
        if (!rc && indexed)
                rc = append_change(c, txn, "del", id);
        if (!rc)
                log_info("tombstoned %s: %s", id, reason);
        return rc;
}

/*
 * A Hugging Face record is one repo at one commit (hf:<repo>@<sha>): a new
 * commit supersedes the others of the repo, which are tombstoned.
 */
static int supersede(struct catalog *c, MDB_txn *txn, const char *id, struct arena *a)
{
        const char *at = strrchr(id, '@');
        char *old[16];
        size_t prefix, n = 0;
        MDB_cursor *cur;
        MDB_val k, v;
        int rc;

        if (strncmp(id, "hf:", 3) || !at)
                return 0;
        prefix = (size_t)(at - id) + 1; /* "hf:<repo>@" */
        rc = mdb_cursor_open(txn, c->dbi[DB_RECORDS], &cur);
        if (rc)
                return rc;
        k.mv_size = prefix;
        k.mv_data = (void *)id;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !rc && n < 16;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                if (k.mv_size < prefix || memcmp(k.mv_data, id, prefix))
                        break;
                /* "hf:<repo>@..." with no second '@': another commit of this repo */
                if (!memchr((char *)k.mv_data + prefix, '@', k.mv_size - prefix) &&
                    (old[n] = arena_strndup(a, k.mv_data, k.mv_size)) != NULL)
                        n++;
        }
        mdb_cursor_close(cur);
        if (rc && rc != MDB_NOTFOUND)
                return rc;
        rc = 0;
        for (size_t i = 0; i < n && !rc; i++)
                if (strcmp(old[i], id))
                        rc = tombstone(c, txn, old[i], "superseded by a newer commit");
        return rc;
}

/* A crawl job {source, <key>: [strs]} (check or by_hash) from n strs packed in items. */
static int enqueue_list(struct catalog *c, MDB_txn *txn, const char *source, const char *key,
                        const msgpack_sbuffer *items, size_t n)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_str(&pk, "source", source);
        wire_pack_key(&pk, key);
        msgpack_pack_array(&pk, n);
        msgpack_sbuffer_write(&sb, items->data, items->size);
        rc = enqueue(c, txn, STAGE_CRAWL, &sb);
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

static bool is_sha256(const char *s)
{
        return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/*
 * Index the files of record r by sha256; when a Civitai record carries a file
 * another Civitai record carries too, queue a by_hash crawl job: the source
 * says which version owns the file, the others become duplicates
 * (apply_canonical()).  *held says r waits for that answer before it is
 * refined (so a re-upload is never indexed, even for a moment).
 */
static int index_files(struct catalog *c, MDB_txn *txn, const struct st_raw_record *r, bool *held)
{
        size_t id_len = strlen(r->id);
        int rc = 0;

        if (65 + id_len > (size_t)mdb_env_get_maxkeysize(c->env))
                return 0;
        for (size_t i = 0; i < r->n_files && !rc; i++) {
                char key[512];
                MDB_val k = {65 + id_len, key}, v = {0, ""};
                MDB_cursor *cur;
                bool other = false;

                if (!is_sha256(r->files[i].sha256))
                        continue;
                memcpy(key, r->files[i].sha256, 64);
                key[64] = '\0';
                memcpy(key + 65, r->id, id_len);
                rc = mdb_put(txn, c->dbi[DB_BY_SHA], &k, &v, 0);
                if (rc || strcmp(r->source, "civitai"))
                        continue;
                rc = mdb_cursor_open(txn, c->dbi[DB_BY_SHA], &cur);
                if (rc)
                        break;
                k.mv_size = 65;
                k.mv_data = key;
                for (int g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !g;
                     g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                        const char *other_id = (const char *)k.mv_data + 65;

                        if (k.mv_size <= 65 || memcmp(k.mv_data, key, 65))
                                break;
                        if ((k.mv_size != 65 + id_len || memcmp(other_id, r->id, id_len)) &&
                            k.mv_size > 65 + 8 && !memcmp(other_id, "civitai:", 8))
                                other = true;
                }
                mdb_cursor_close(cur);
                if (other) {
                        msgpack_sbuffer items;
                        msgpack_packer ipk;

                        log_info("%s shares file %.12s... with another record: asking the source",
                                 r->id, r->files[i].sha256);
                        msgpack_sbuffer_init(&items);
                        msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
                        wire_pack_str(&ipk, r->files[i].sha256);
                        rc = enqueue_list(c, txn, "civitai", "by_hash", &items, 1);
                        msgpack_sbuffer_destroy(&items);
                        *held = true;
                }
        }
        return rc;
}

/*
 * A by_hash answer {sha256: canonical id | nil}: every other record carrying
 * that file becomes a duplicate of the canonical one (kept as a record so a
 * re-crawl finds it unchanged; its doc and vector removed, a "del" for the
 * shards).  Nothing changes when the source knows no owner or the owner is
 * not in the catalog.
 */
/* Queue the next stage of stored record id: images (stage on, record has some) or refine. */
static int queue_next(struct catalog *c, MDB_txn *txn, const char *id, struct arena *a)
{
        struct st_raw_record r;
        MDB_val k = str_val(id), v;
        int rc = mdb_get(txn, c->dbi[DB_RECORDS], &k, &v);

        if (rc)
                return rc == MDB_NOTFOUND ? 0 : rc;
        if (c->images && !st_raw_record_from_msgpack(v.mv_data, v.mv_size, a, &r, NULL) &&
            r.n_images)
                return enqueue_id(c, txn, STAGE_IMAGES, id);
        return enqueue_id(c, txn, STAGE_REFINE, id);
}

/* A record held for a by_hash answer (no doc, not a duplicate) goes on to its next stage. */
static int release_held(struct catalog *c, MDB_txn *txn, const char *id, struct arena *a)
{
        MDB_val k = str_val(id), v;

        if (!mdb_get(txn, c->dbi[DB_DOCS], &k, &v) || !mdb_get(txn, c->dbi[DB_DUPS], &k, &v))
                return 0;
        return queue_next(c, txn, id, a);
}

static int apply_canonical(struct catalog *c, MDB_txn *txn, const msgpack_object *map,
                           struct arena *a, size_t *marked)
{
        int rc = 0;

        if (!map || map->type != MSGPACK_OBJECT_MAP)
                return 0;
        for (uint32_t i = 0; i < map->via.map.size && !rc; i++) {
                const msgpack_object *ko = &map->via.map.ptr[i].key, *vo = &map->via.map.ptr[i].val;
                char sha[65], *ids[32];
                size_t n = 0;
                bool owner_known = false;
                MDB_cursor *cur;
                MDB_val k, v;

                if (ko->type != MSGPACK_OBJECT_STR || ko->via.str.size != 64)
                        continue;
                if (vo->type != MSGPACK_OBJECT_STR || !vo->via.str.size ||
                    vo->via.str.size > ST_LIMIT_STRING)
                        vo = NULL; /* no owner named: nil (404) or garbage */
                memcpy(sha, ko->via.str.ptr, 64);
                sha[64] = '\0';
                if (!is_sha256(sha))
                        continue;
                rc = mdb_cursor_open(txn, c->dbi[DB_BY_SHA], &cur);
                if (rc)
                        break;
                k.mv_size = 65;
                k.mv_data = sha; /* sha[64] is the 0x00 separator */
                for (int g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !g && n < 32;
                     g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                        if (k.mv_size <= 65 || memcmp(k.mv_data, sha, 65))
                                break;
                        ids[n] = arena_strndup(a, (char *)k.mv_data + 65, k.mv_size - 65);
                        if (!ids[n])
                                continue;
                        if (vo && strlen(ids[n]) == vo->via.str.size &&
                            !memcmp(ids[n], vo->via.str.ptr, vo->via.str.size))
                                owner_known = true;
                        else
                                n++;
                }
                mdb_cursor_close(cur);
                /* Records held for this answer and never refined go on now: the owner, or
                   every one of them when the source names no owner we have. */
                if (owner_known) {
                        char owner[ST_LIMIT_STRING + 1];

                        memcpy(owner, vo->via.str.ptr, vo->via.str.size);
                        owner[vo->via.str.size] = '\0';
                        rc = release_held(c, txn, owner, a);
                } else {
                        for (size_t j = 0; j < n && !rc; j++)
                                rc = release_held(c, txn, ids[j], a);
                }
                for (size_t j = 0; j < n && owner_known && !rc; j++) {
                        MDB_val dk = str_val(ids[j]);
                        MDB_val dv = {vo->via.str.size, (void *)vo->via.str.ptr};
                        bool indexed;

                        if (mdb_get(txn, c->dbi[DB_RECORDS], &dk, &v))
                                continue; /* the index entry outlived its record */
                        rc = mdb_put(txn, c->dbi[DB_DUPS], &dk, &dv, 0);
                        if (rc)
                                break;
                        mdb_del(txn, c->dbi[DB_DOCS], &dk, NULL);
                        indexed = mdb_del(txn, c->dbi[DB_VECTORS], &dk, NULL) == 0;
                        if (indexed)
                                rc = append_change(c, txn, "del", ids[j]);
                        log_info("%s is a re-upload of %.*s: kept out of the index", ids[j],
                                 (int)vo->via.str.size, vo->via.str.ptr);
                        (*marked)++;
                }
        }
        return rc;
}

/*
 * Store one crawled record when new or changed and queue its next stage
 * (images when that stage is on and the record has images, else refine);
 * mark it seen by pass.
 */
static int apply_record(struct catalog *c, MDB_txn *txn, const msgpack_object *o, uint64_t pass,
                        struct catalog_crawl_counts *counts)
{
        struct st_raw_record r;
        struct st_error e = {0};
        struct arena a;
        char hash[65];
        char *buf = NULL;
        size_t len;
        MDB_val k, v;
        bool held = false;
        int rc;

        arena_init(&a, DECODE_LIMIT);
        rc = st_raw_record_from_object(o, &a, &r, &e);
        if (!rc)
                rc = st_raw_record_hash(&r, hash);
        if (!rc) {
                r.content_hash = hash;
                if (st_raw_record_to_msgpack(&r, &buf, &len)) {
                        rc = MDB_PANIC;
                        goto out;
                }
                rc = storable(c, &r, len, &e);
        }
        if (rc) {
                log_warn("rejected a crawled record: %s", st_error_text(&e, rc));
                counts->rejected++;
                rc = 0;
                goto out;
        }
        rc = mark_seen(c, txn, r.id, pass);
        if (rc)
                goto out;
        k = str_val(r.id);
        rc = mdb_get(txn, c->dbi[DB_RECORDS], &k, &v);
        if (rc == 0) {
                struct st_raw_record old;

                if (!st_raw_record_from_msgpack(v.mv_data, v.mv_size, &a, &old, NULL) &&
                    old.content_hash && !strcmp(old.content_hash, hash)) {
                        counts->unchanged++;
                        goto out;
                }
                counts->changed++;
        } else if (rc == MDB_NOTFOUND) {
                counts->added++;
                rc = supersede(c, txn, r.id, &a);
                if (rc)
                        goto out;
                mdb_del(txn, c->dbi[DB_GONE], &k, NULL); /* back from the dead */
        } else {
                goto out;
        }
        v.mv_size = len;
        v.mv_data = buf;
        rc = mdb_put(txn, c->dbi[DB_RECORDS], &k, &v, 0);
        if (!rc)
                rc = index_files(c, txn, &r, &held);
        if (!rc && mdb_get(txn, c->dbi[DB_DUPS], &k, &v) == 0) {
                counts->duplicates++; /* a known re-upload: stored, never indexed */
                goto out;
        }
        if (held)
                goto out; /* refined once the source says whose file it is */
        if (!rc)
                rc =
                    enqueue_id(c, txn, c->images && r.n_images ? STAGE_IMAGES : STAGE_REFINE, r.id);
out:
        free(buf);
        arena_release(&a);
        return rc;
}

/* Each str of the array at key, NUL-terminated in a; bad entries skipped. */
static size_t str_list(const msgpack_object *payload, const char *key, struct arena *a, char ***out)
{
        const msgpack_object *arr = wire_get(payload, key);
        size_t n = 0;

        *out = NULL;
        if (!arr || arr->type != MSGPACK_OBJECT_ARRAY || !arr->via.array.size)
                return 0;
        *out = arena_alloc(a, arr->via.array.size * sizeof(char *));
        if (!*out)
                return 0;
        for (uint32_t i = 0; i < arr->via.array.size; i++) {
                const msgpack_object *o = &arr->via.array.ptr[i];

                if (o->type != MSGPACK_OBJECT_STR || !o->via.str.size ||
                    memchr(o->via.str.ptr, '\0', o->via.str.size))
                        continue;
                (*out)[n] = arena_strndup(a, o->via.str.ptr, o->via.str.size);
                if ((*out)[n])
                        n++;
        }
        return n;
}

/*
 * After a full pass of source: every record of the source that the pass did
 * not list is checked with the source, CHECK_IDS ids per crawl job; those
 * it answers 404/410 for come back as "gone" and are tombstoned.
 */
static int queue_checks(struct catalog *c, MDB_txn *txn, const char *source, uint64_t pass,
                        size_t *queued)
{
        size_t prefix = strlen(source);
        msgpack_sbuffer ids;
        msgpack_packer ipk;
        size_t n = 0;
        MDB_cursor *cur;
        MDB_val k, v;
        int rc;

        *queued = 0;
        msgpack_sbuffer_init(&ids);
        msgpack_packer_init(&ipk, &ids, msgpack_sbuffer_write);
        rc = mdb_cursor_open(txn, c->dbi[DB_RECORDS], &cur);
        if (rc)
                return rc;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc || n;
             rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                MDB_val sv;
                uint64_t seen = 0;

                if (!rc) {
                        if (k.mv_size <= prefix + 1 || memcmp(k.mv_data, source, prefix) ||
                            ((char *)k.mv_data)[prefix] != ':')
                                continue;
                        if (!mdb_get(txn, c->dbi[DB_SEEN], &k, &sv) && sv.mv_size == 8)
                                memcpy(&seen, sv.mv_data, 8);
                        if (seen >= pass)
                                continue;
                        msgpack_pack_str(&ipk, k.mv_size);
                        msgpack_pack_str_body(&ipk, k.mv_data, k.mv_size);
                        n++;
                        if (n < CHECK_IDS)
                                continue;
                }
                {
                        msgpack_sbuffer sb;
                        msgpack_packer pk;
                        int qrc;

                        msgpack_sbuffer_init(&sb);
                        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                        msgpack_pack_map(&pk, 2);
                        wire_pack_kv_str(&pk, "source", source);
                        wire_pack_key(&pk, "check");
                        msgpack_pack_array(&pk, n);
                        msgpack_sbuffer_write(&sb, ids.data, ids.size);
                        qrc = enqueue(c, txn, STAGE_CRAWL, &sb);
                        msgpack_sbuffer_destroy(&sb);
                        ids.size = 0;
                        *queued += n;
                        n = 0;
                        if (qrc) {
                                rc = qrc;
                                break;
                        }
                }
        }
        mdb_cursor_close(cur);
        msgpack_sbuffer_destroy(&ids);
        return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The queued crawl job job_id, decoded into u (MDB_NOTFOUND: applied already). */
static int job_get(struct catalog *c, MDB_txn *txn, enum catalog_stage s, uint64_t job_id,
                   msgpack_unpacked *u)
{
        unsigned char key[8];
        MDB_val k = {8, key}, v;
        size_t off = 0;
        int rc;

        be64(key, job_id);
        rc = mdb_get(txn, jobs_dbi(c, s), &k, &v);
        if (rc)
                return rc;
        if (msgpack_unpack_next(u, v.mv_data, v.mv_size, &off) != MSGPACK_UNPACK_SUCCESS)
                return MDB_CORRUPTED;
        return 0;
}

static int apply_crawl_once(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                            struct catalog_crawl_counts *counts, struct st_error *err)
{
        struct arena a;
        struct source_state st;
        const msgpack_object *records = wire_get(payload, "records");
        const msgpack_object *cursor = wire_get(payload, "next_cursor");
        char *source = NULL, *next = NULL;
        char **gone = NULL, **unchanged = NULL;
        size_t n_gone, n_unchanged;
        bool check = false, stop = false;
        uint64_t pass;
        msgpack_unpacked job;
        MDB_txn *txn;
        int rc;

        memset(counts, 0, sizeof(*counts));
        arena_init(&a, 1 << 20);
        /* A next_cursor that is not str or nil must not read as "pass done". */
        if (wire_get_str(payload, "source", &a, &source) || !records ||
            records->type != MSGPACK_OBJECT_ARRAY ||
            (cursor && cursor->type != MSGPACK_OBJECT_NIL &&
             wire_get_str(payload, "next_cursor", &a, &next))) {
                arena_release(&a);
                return st_fail(err, ST_EPROTO,
                               "crawl result needs source, records and next_cursor (str or nil)");
        }
        wire_get_bool(payload, "stop", &stop);
        n_gone = str_list(payload, "gone", &a, &gone);
        n_unchanged = str_list(payload, "unchanged", &a, &unchanged);
        msgpack_unpacked_init(&job);
        rc = mdb_txn_begin(c->env, c->batch, 0, &txn);
        if (rc)
                goto out;
        rc = job_get(c, txn, STAGE_CRAWL, job_id, &job);
        if (!rc)
                check = wire_get(&job.data, "check") || wire_get(&job.data, "by_hash");
        if (!rc)
                rc = source_get(c, txn, source, &a, &st);
        pass = st.passes + 1;
        for (uint32_t i = 0; i < records->via.array.size && !rc; i++)
                rc = apply_record(c, txn, &records->via.array.ptr[i], pass, counts);
        {
                /* Unchanged ids we do not have (a lost result behind the crawler's cache): check. */
                msgpack_sbuffer unknown;
                msgpack_packer upk;
                size_t n_unknown = 0;

                msgpack_sbuffer_init(&unknown);
                msgpack_packer_init(&upk, &unknown, msgpack_sbuffer_write);
                for (size_t i = 0; i < n_unchanged && !rc; i++) {
                        MDB_val k = str_val(unchanged[i]), v;

                        if (strlen(unchanged[i]) > (size_t)mdb_env_get_maxkeysize(c->env))
                                continue;
                        if (!mdb_get(txn, c->dbi[DB_RECORDS], &k, &v)) {
                                rc = mark_seen(c, txn, unchanged[i], pass);
                                counts->unchanged++;
                        } else if (n_unknown < CHECK_IDS) {
                                wire_pack_str(&upk, unchanged[i]);
                                n_unknown++;
                        }
                }
                if (!rc && n_unknown) {
                        log_info("%zu ids said unchanged are not in the catalog: checking them",
                                 n_unknown);
                        rc = enqueue_list(c, txn, source, "check", &unknown, n_unknown);
                        counts->checks += n_unknown;
                }
                msgpack_sbuffer_destroy(&unknown);
        }
        if (!rc)
                rc = apply_canonical(c, txn, wire_get(payload, "canonical"), &a,
                                     &counts->duplicates);
        for (size_t i = 0; i < n_gone && !rc; i++) {
                rc = tombstone(c, txn, gone[i], "the source answers 404/410");
                counts->gone++;
        }
        if (!rc && !check) {
                /* A page of the pass: move the cursor on, or end the pass. */
                if (stop)
                        next = NULL;
                st.pages++;
                st.cursor = next;
                st.done = next == NULL;
                if (st.done)
                        st.passes++;
                rc = source_put(c, txn, source, &st);
                if (!rc && next)
                        rc = enqueue_crawl(c, txn, source, next, st.incremental);
                if (!rc && st.done && !st.incremental)
                        rc = queue_checks(c, txn, source, pass, &counts->checks);
        }
        if (!rc)
                rc = delete_job(c, txn, STAGE_CRAWL, job_id);
        rc = finish(txn, rc);
out:
        msgpack_unpacked_destroy(&job);
        arena_release(&a);
        return rc;
}

static bool is_dup(struct catalog *c, MDB_txn *txn, const char *id)
{
        MDB_val k = str_val(id), v;

        return strlen(id) <= (size_t)mdb_env_get_maxkeysize(c->env) &&
               mdb_get(txn, c->dbi[DB_DUPS], &k, &v) == 0;
}

/* Content hash of the record currently stored under id (into a), or NULL. */
static int current_hash(struct catalog *c, MDB_txn *txn, const char *id, struct arena *a,
                        char **hash)
{
        struct st_raw_record r;
        MDB_val k = str_val(id), v;
        int rc = mdb_get(txn, c->dbi[DB_RECORDS], &k, &v);

        *hash = NULL;
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc)
                return rc;
        if (st_raw_record_from_msgpack(v.mv_data, v.mv_size, a, &r, NULL))
                return MDB_CORRUPTED;
        *hash = r.content_hash;
        return 0;
}

static int apply_doc_once(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                          struct st_error *err)
{
        struct st_doc d;
        struct st_error e = {0};
        struct arena a;
        char *hash, *buf = NULL;
        size_t len;
        MDB_txn *txn;
        MDB_val k, v;
        const msgpack_object *o = wire_get(payload, "doc");
        int rc;

        arena_init(&a, DECODE_LIMIT);
        rc = o ? st_doc_from_object(o, &a, &d, &e) : ST_EMISSING;
        if (!rc && !d.content_hash)
                rc = ST_EMISSING;
        if (!rc)
                rc = st_doc_to_msgpack(&d, &buf, &len);
        if (rc) {
                arena_release(&a);
                return st_fail(err, ST_EPROTO, "refine result: %s", st_error_text(&e, rc));
        }
        rc = mdb_txn_begin(c->env, c->batch, 0, &txn);
        if (rc)
                goto out;
        rc = job_exists(c, txn, STAGE_REFINE, job_id);
        if (!rc)
                rc = current_hash(c, txn, d.id, &a, &hash);
        if (!rc && hash && is_dup(c, txn, d.id))
                hash = NULL; /* a re-upload found meanwhile: never indexed */
        if (!rc && hash && !strcmp(hash, d.content_hash)) {
                k = str_val(d.id);
                v.mv_size = len;
                v.mv_data = buf;
                rc = mdb_put(txn, c->dbi[DB_DOCS], &k, &v, 0);
                if (!rc)
                        rc = enqueue_id(c, txn, STAGE_EMBED, d.id);
        } else if (!rc) {
                log_info("dropped a stale doc for %s", d.id);
        }
        if (!rc)
                rc = delete_job(c, txn, STAGE_REFINE, job_id);
        rc = finish(txn, rc);
out:
        free(buf);
        arena_release(&a);
        return rc;
}

static int append_change(struct catalog *c, MDB_txn *txn, const char *op, const char *id)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        unsigned char key[8];
        MDB_val k = {8, key}, v;
        uint64_t seq;
        int rc = meta_get_u64(c, txn, "head_seq", &seq);

        if (rc)
                return rc;
        seq++;
        be64(key, seq);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_str(&pk, "op", op);
        wire_pack_kv_str(&pk, "id", id);
        v.mv_size = sb.size;
        v.mv_data = sb.data;
        rc = mdb_put(txn, c->dbi[DB_CHANGELOG], &k, &v, MDB_APPEND);
        msgpack_sbuffer_destroy(&sb);
        return rc ? rc : meta_put_u64(c, txn, "head_seq", seq);
}

static int apply_vector_once(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                             struct st_error *err)
{
        struct arena a;
        char *id = NULL, *hash = NULL, *model = NULL, *current;
        const char *vec;
        size_t vec_len;
        uint64_t dim;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        MDB_txn *txn;
        MDB_val k, v;
        int rc;

        arena_init(&a, DECODE_LIMIT); /* current_hash() decodes a whole stored record */
        if (wire_get_str(payload, "id", &a, &id) ||
            wire_get_str(payload, "content_hash", &a, &hash) ||
            wire_get_str(payload, "model", &a, &model) || wire_get_u64(payload, "dim", &dim) ||
            wire_get_bytes(payload, "vector", &vec, &vec_len) || dim == 0 ||
            vec_len % sizeof(float) || dim != vec_len / sizeof(float)) {
                arena_release(&a);
                return st_fail(err, ST_EPROTO,
                               "embed result needs id, content_hash, model, "
                               "dim and a vector of dim floats");
        }
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        wire_pack_kv_str(&pk, "model", model);
        wire_pack_kv_u64(&pk, "dim", dim);
        wire_pack_kv_str(&pk, "content_hash", hash);
        wire_pack_kv_bin(&pk, "vector", vec, vec_len);
        rc = mdb_txn_begin(c->env, c->batch, 0, &txn);
        if (rc)
                goto out;
        rc = job_exists(c, txn, STAGE_EMBED, job_id);
        if (!rc)
                rc = current_hash(c, txn, id, &a, &current);
        if (!rc && current && is_dup(c, txn, id))
                current = NULL; /* a re-upload found meanwhile: never indexed */
        if (!rc && current && !strcmp(current, hash)) {
                k = str_val(id);
                v.mv_size = sb.size;
                v.mv_data = sb.data;
                rc = mdb_put(txn, c->dbi[DB_VECTORS], &k, &v, 0);
                if (!rc)
                        rc = append_change(c, txn, "put", id);
        } else if (!rc) {
                log_info("dropped a stale vector for %s", id);
        }
        if (!rc)
                rc = delete_job(c, txn, STAGE_EMBED, job_id);
        rc = finish(txn, rc);
out:
        msgpack_sbuffer_destroy(&sb);
        arena_release(&a);
        return rc;
}

static int bury_job_once(struct catalog *c, enum catalog_stage s, uint64_t job_id, const char *why)
{
        unsigned char key[9];
        MDB_val k = {8, key + 1}, v, dk = {9, key};
        msgpack_sbuffer sb;
        msgpack_packer pk;
        MDB_txn *txn;
        int rc;

        key[0] = (unsigned char)s;
        be64(key + 1, job_id);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        rc = mdb_txn_begin(c->env, c->batch, 0, &txn);
        if (rc)
                goto out;
        rc = mdb_get(txn, jobs_dbi(c, s), &k, &v);
        if (!rc) {
                msgpack_pack_map(&pk, 2);
                wire_pack_key(&pk, "job");
                msgpack_sbuffer_write(&sb, v.mv_data, v.mv_size);
                wire_pack_kv_str(&pk, "error", why);
                v.mv_size = sb.size;
                v.mv_data = sb.data;
                rc = mdb_put(txn, c->dbi[DB_DEAD], &dk, &v, 0);
                if (!rc)
                        rc = delete_job(c, txn, s, job_id);
        }
        if (rc)
                mdb_txn_abort(txn);
        else
                rc = mdb_txn_commit(txn);
out:
        msgpack_sbuffer_destroy(&sb);
        if (rc == MDB_NOTFOUND)
                return 0;
        return rc;
}

/* Write the map stored under id in db as the value of key into pk's buffer. */
static int pack_stored(struct catalog *c, MDB_txn *txn, int db, const char *id, const char *key,
                       msgpack_packer *pk)
{
        MDB_val k = str_val(id), v;
        int rc = mdb_get(txn, c->dbi[db], &k, &v);

        if (rc)
                return rc;
        wire_pack_key(pk, key);
        msgpack_sbuffer_write(pk->data, v.mv_data, v.mv_size);
        return 0;
}

/* Pack the payload of one job; MDB_NOTFOUND when what it refers to is gone. */
static int pack_payload(struct catalog *c, MDB_txn *txn, enum catalog_stage s, const MDB_val *job,
                        msgpack_packer *pk)
{
        struct arena a;
        msgpack_unpacked u;
        size_t off = 0;
        char *id = NULL;
        int rc = MDB_CORRUPTED;

        if (s == STAGE_CRAWL) {
                msgpack_sbuffer_write(pk->data, job->mv_data, job->mv_size);
                return 0;
        }
        arena_init(&a, 1 << 16);
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, job->mv_data, job->mv_size, &off) == MSGPACK_UNPACK_SUCCESS &&
            !wire_get_str(&u.data, "id", &a, &id)) {
                msgpack_pack_map(pk, 1);
                if (s == STAGE_REFINE || s == STAGE_IMAGES)
                        rc = pack_stored(c, txn, DB_RECORDS, id, "record", pk);
                else
                        rc = pack_stored(c, txn, DB_DOCS, id, "doc", pk);
        }
        msgpack_unpacked_destroy(&u);
        arena_release(&a);
        return rc;
}

int catalog_pack_next_job(struct catalog *c, enum catalog_stage s, catalog_job_busy busy, void *ctx,
                          msgpack_packer *pk, uint64_t *job_id)
{
        MDB_txn *txn;
        MDB_cursor *cur;
        MDB_val k, v;
        int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);

        if (rc)
                return db_fail(NULL, rc, "");
        rc = mdb_cursor_open(txn, jobs_dbi(c, s), &cur);
        for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                uint64_t id = k.mv_size == 8 ? from_be64(k.mv_data) : 0;

                if (!id || busy(ctx, s, id))
                        continue;
                msgpack_pack_map(pk, 3);
                wire_pack_kv_u64(pk, "job_id", id);
                wire_pack_kv_str(pk, "stage", catalog_stage_name(s));
                wire_pack_key(pk, "payload");
                rc = pack_payload(c, txn, s, &v, pk);
                if (rc) {
                        /* The record or doc went away: nothing to do; packing starts over. */
                        log_info("%s job %llu refers to a missing item: dropped",
                                 catalog_stage_name(s), (unsigned long long)id);
                        if (c->n_orphans < ORPHANS_MAX) {
                                c->orphan_stage[c->n_orphans] = s;
                                c->orphans[c->n_orphans++] = id;
                        }
                        ((msgpack_sbuffer *)pk->data)->size = 0;
                        continue;
                }
                *job_id = id;
                break;
        }
        mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? ST_ENOTFOUND : rc ? ST_EDB : 0;
}

static size_t db_count(struct catalog *c, MDB_txn *txn, int db)
{
        MDB_stat st;

        if (mdb_stat(txn, c->dbi[db], &st))
                return 0;
        return st.ms_entries;
}

static void pack_sources(struct catalog *c, MDB_txn *txn, msgpack_packer *pk)
{
        struct arena a;
        MDB_cursor *cur;
        MDB_val k, v;
        size_t n = db_count(c, txn, DB_SOURCES), i = 0;

        arena_init(&a, 1 << 20);
        msgpack_pack_map(pk, n);
        if (mdb_cursor_open(txn, c->dbi[DB_SOURCES], &cur))
                return;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && i < n;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), i++) {
                char *name = arena_strndup(&a, k.mv_data, k.mv_size);
                struct source_state st;

                source_get(c, txn, name, &a, &st);
                msgpack_pack_str(pk, k.mv_size);
                msgpack_pack_str_body(pk, k.mv_data, k.mv_size);
                msgpack_pack_map(pk, 5);
                wire_pack_kv_str(pk, "cursor", st.cursor);
                wire_pack_kv_bool(pk, "done", st.done);
                wire_pack_kv_str(pk, "kind", st.incremental ? "incremental" : "full");
                wire_pack_kv_u64(pk, "pages", st.pages);
                wire_pack_kv_u64(pk, "passes", st.passes);
        }
        mdb_cursor_close(cur);
        arena_release(&a);
}

/* Dead letters are keyed stage (1 byte) + job id (8 bytes BE). */
static bool dead_key(const MDB_val *k, enum catalog_stage *s, uint64_t *job_id)
{
        const unsigned char *b = k->mv_data;

        if (k->mv_size != 9 || b[0] >= STAGE_COUNT)
                return false;
        *s = (enum catalog_stage)b[0];
        *job_id = from_be64(b + 1);
        return true;
}

/* The first DEAD_SHOWN dead letters: [{stage, job_id, error}]. */
static void pack_dead(struct catalog *c, MDB_txn *txn, msgpack_packer *pk)
{
        MDB_cursor *cur;
        MDB_val k, v;
        size_t n = db_count(c, txn, DB_DEAD), i = 0;

        if (n > DEAD_SHOWN)
                n = DEAD_SHOWN;
        msgpack_pack_array(pk, n);
        if (n == 0 || mdb_cursor_open(txn, c->dbi[DB_DEAD], &cur))
                return;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && i < n;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), i++) {
                msgpack_unpacked u;
                size_t off = 0;
                const char *why = "";
                size_t why_len = 0;
                enum catalog_stage s = STAGE_CRAWL;
                uint64_t job_id = 0;

                dead_key(&k, &s, &job_id);
                msgpack_unpacked_init(&u);
                if (msgpack_unpack_next(&u, v.mv_data, v.mv_size, &off) != MSGPACK_UNPACK_SUCCESS ||
                    wire_get_bytes(&u.data, "error", &why, &why_len))
                        why_len = 0;
                msgpack_pack_map(pk, 3);
                wire_pack_kv_str(pk, "stage", catalog_stage_name(s));
                wire_pack_kv_u64(pk, "job_id", job_id);
                wire_pack_key(pk, "error");
                msgpack_pack_str(pk, why_len);
                msgpack_pack_str_body(pk, why, why_len);
                msgpack_unpacked_destroy(&u);
        }
        mdb_cursor_close(cur);
}

int catalog_pack_status(struct catalog *c, const size_t leased[STAGE_COUNT], size_t workers,
                        msgpack_packer *pk)
{
        MDB_txn *txn;
        uint64_t head = 0;
        int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);

        if (rc)
                return ST_EDB;
        meta_get_u64(c, txn, "head_seq", &head);
        msgpack_pack_map(pk, 11);
        wire_pack_kv_u64(pk, "records", db_count(c, txn, DB_RECORDS));
        wire_pack_kv_u64(pk, "duplicates", db_count(c, txn, DB_DUPS));
        wire_pack_kv_u64(pk, "docs", db_count(c, txn, DB_DOCS));
        wire_pack_kv_u64(pk, "vectors", db_count(c, txn, DB_VECTORS));
        wire_pack_kv_u64(pk, "dead", db_count(c, txn, DB_DEAD));
        wire_pack_kv_u64(pk, "head_seq", head);
        wire_pack_kv_u64(pk, "workers", workers);
        wire_pack_key(pk, "sources");
        pack_sources(c, txn, pk);
        wire_pack_key(pk, "dead_letters");
        pack_dead(c, txn, pk);
        wire_pack_key(pk, "jobs");
        msgpack_pack_map(pk, STAGE_COUNT);
        for (int s = 0; s < STAGE_COUNT; s++) {
                wire_pack_key(pk, stage_names[s]);
                msgpack_pack_map(pk, 2);
                wire_pack_kv_u64(pk, "pending", db_count(c, txn, DB_JOBS_CRAWL + s));
                wire_pack_kv_u64(pk, "leased", leased[s]);
        }
        mdb_txn_abort(txn);
        wire_pack_key(pk, "changelog");
        return catalog_pack_subscribers(c, pk);
}

static int requeue_dead_once(struct catalog *c, int stage, size_t *n)
{
        MDB_txn *txn;
        MDB_cursor *cur;
        MDB_val k, v;
        int rc = mdb_txn_begin(c->env, c->batch, 0, &txn);

        *n = 0;
        if (rc)
                return rc;
        rc = mdb_cursor_open(txn, c->dbi[DB_DEAD], &cur);
        for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                enum catalog_stage s;
                uint64_t job_id;
                unsigned char key[8];
                MDB_val jk = {8, key}, jv;
                msgpack_unpacked u;
                size_t off = 0;
                const msgpack_object *job;

                if (!dead_key(&k, &s, &job_id) || (stage >= 0 && (int)s != stage))
                        continue;
                msgpack_unpacked_init(&u);
                if (msgpack_unpack_next(&u, v.mv_data, v.mv_size, &off) != MSGPACK_UNPACK_SUCCESS ||
                    !(job = wire_get(&u.data, "job"))) {
                        msgpack_unpacked_destroy(&u);
                        continue;
                }
                /* The job goes back under its own id, its payload unchanged. */
                {
                        msgpack_sbuffer sb;
                        msgpack_packer jp;

                        msgpack_sbuffer_init(&sb);
                        msgpack_packer_init(&jp, &sb, msgpack_sbuffer_write);
                        msgpack_pack_object(&jp, *job);
                        be64(key, job_id);
                        jv.mv_size = sb.size;
                        jv.mv_data = sb.data;
                        rc = mdb_put(txn, jobs_dbi(c, s), &jk, &jv, 0);
                        msgpack_sbuffer_destroy(&sb);
                }
                msgpack_unpacked_destroy(&u);
                if (!rc)
                        rc = mdb_cursor_del(cur, 0);
                if (rc)
                        break;
                (*n)++;
        }
        if (rc == MDB_NOTFOUND)
                rc = 0;
        return finish(txn, rc);
}

int catalog_requeue_dead(struct catalog *c, int stage, size_t *n, struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, requeue_dead_once(c, stage, n), "requeue dead letters", &again,
                                  err);
        while (again);
        return rc;
}

/* Pack one changelog entry {seq, op, id[, doc, vector]}. */
static int pack_change(struct catalog *c, MDB_txn *txn, uint64_t seq, const msgpack_object *e,
                       struct arena *a, msgpack_packer *pk)
{
        char *op = NULL, *id = NULL;
        MDB_val k, doc, vec;
        const char *vp;
        size_t vlen;
        msgpack_unpacked u;
        size_t off = 0;
        bool put;

        if (wire_get_str(e, "op", a, &op) || wire_get_str(e, "id", a, &id))
                return MDB_CORRUPTED;
        put = !strcmp(op, "put");
        k = str_val(id);
        if (put &&
            (mdb_get(txn, c->dbi[DB_DOCS], &k, &doc) || mdb_get(txn, c->dbi[DB_VECTORS], &k, &vec)))
                put = false; /* gone since: a later entry says so */
        msgpack_pack_map(pk, put ? 6 : 3);
        wire_pack_kv_u64(pk, "seq", seq);
        wire_pack_kv_str(pk, "op", put ? "put" : "del");
        wire_pack_kv_str(pk, "id", id);
        if (!put)
                return 0;
        wire_pack_kv_bin(pk, "doc", doc.mv_data, doc.mv_size);
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, vec.mv_data, vec.mv_size, &off) != MSGPACK_UNPACK_SUCCESS ||
            wire_get_bytes(&u.data, "vector", &vp, &vlen)) {
                msgpack_unpacked_destroy(&u);
                return MDB_CORRUPTED;
        }
        wire_pack_kv_bin(pk, "vector", vp, vlen);
        wire_pack_key(pk, "model");
        if (wire_get_bytes(&u.data, "model", &vp, &vlen)) {
                vp = "";
                vlen = 0;
        }
        msgpack_pack_str(pk, vlen);
        msgpack_pack_str_body(pk, vp, vlen);
        msgpack_unpacked_destroy(&u);
        return 0;
}

int catalog_pack_changes(struct catalog *c, uint64_t from_seq, size_t max, uint64_t shard,
                         uint64_t shards, msgpack_packer *pk)
{
        msgpack_sbuffer entries;
        msgpack_packer epk;
        struct arena a;
        MDB_txn *txn;
        MDB_cursor *cur;
        MDB_val k, v;
        unsigned char key[8];
        uint64_t head = 0, last = from_seq;
        size_t n = 0, scanned = 0;
        int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);

        if (rc)
                return ST_EDB;
        if (shards == 0 || shard >= shards) {
                mdb_txn_abort(txn);
                return ST_EINVAL;
        }
        meta_get_u64(c, txn, "head_seq", &head);
        if (from_seq < head) {
                uint64_t low = 0;

                meta_get_u64(c, txn, "low_seq", &low);
                if (from_seq < low) {
                        /* Entries it needs were compacted: it must take a snapshot. */
                        mdb_txn_abort(txn);
                        msgpack_pack_map(pk, 5);
                        wire_pack_key(pk, "entries");
                        msgpack_pack_array(pk, 0);
                        wire_pack_kv_u64(pk, "last_seq", from_seq);
                        wire_pack_kv_u64(pk, "head_seq", head);
                        wire_pack_kv_u64(pk, "low_seq", low);
                        wire_pack_kv_bool(pk, "resnapshot", true);
                        return 0;
                }
        }
        msgpack_sbuffer_init(&entries);
        msgpack_packer_init(&epk, &entries, msgpack_sbuffer_write);
        arena_init(&a, 1 << 20);
        rc = mdb_cursor_open(txn, c->dbi[DB_CHANGELOG], &cur);
        be64(key, from_seq + 1);
        k.mv_size = 8;
        k.mv_data = key;
        for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !rc && scanned < max;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), scanned++) {
                msgpack_unpacked u;
                size_t off = 0;
                const char *id;
                size_t id_len;
                char idbuf[ST_LIMIT_STRING + 1];

                last = from_be64(k.mv_data);
                msgpack_unpacked_init(&u);
                if (msgpack_unpack_next(&u, v.mv_data, v.mv_size, &off) != MSGPACK_UNPACK_SUCCESS ||
                    wire_get_bytes(&u.data, "id", &id, &id_len) || id_len > ST_LIMIT_STRING) {
                        msgpack_unpacked_destroy(&u);
                        continue;
                }
                memcpy(idbuf, id, id_len);
                idbuf[id_len] = '\0';
                if (wire_id_hash(idbuf) % shards == shard &&
                    !pack_change(c, txn, last, &u.data, &a, &epk))
                        n++;
                msgpack_unpacked_destroy(&u);
                arena_release(&a); /* per entry: a scan of max entries must not hit its limit */
        }
        mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        arena_release(&a);
        msgpack_pack_map(pk, 3);
        wire_pack_key(pk, "entries");
        msgpack_pack_array(pk, n);
        msgpack_sbuffer_write(pk->data, entries.data, entries.size);
        wire_pack_kv_u64(pk, "last_seq", last);
        wire_pack_kv_u64(pk, "head_seq", head);
        msgpack_sbuffer_destroy(&entries);
        return 0;
}

uint64_t catalog_head_seq(struct catalog *c)
{
        MDB_txn *txn;
        uint64_t head = 0;

        if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
                return 0;
        meta_get_u64(c, txn, "head_seq", &head);
        mdb_txn_abort(txn);
        return head;
}

/* ---- images stage ---- */

void catalog_set_images(struct catalog *c, bool on)
{
        c->images = on;
}

/*
 * Apply an images RESULT ({id, content_hash, images: [{url, sha256?, bytes,
 * error?}]}): the record's images get the sha256 of their stored bytes (its
 * content_hash stays the crawled one: the hash of the record as the source
 * gave it), and its refine job is queued.  Stale results are dropped.
 */
static int apply_images_once(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                             size_t *stored, struct st_error *err)
{
        const msgpack_object *images = wire_get(payload, "images");
        struct st_raw_record r;
        struct arena a;
        char *id = NULL, *hash = NULL, *buf = NULL;
        size_t len;
        MDB_txn *txn;
        MDB_val k, v;
        int rc;

        *stored = 0;
        arena_init(&a, DECODE_LIMIT);
        if (wire_get_str(payload, "id", &a, &id) ||
            wire_get_str(payload, "content_hash", &a, &hash) || !images ||
            images->type != MSGPACK_OBJECT_ARRAY) {
                arena_release(&a);
                return st_fail(err, ST_EPROTO, "images result needs id, content_hash and images");
        }
        rc = mdb_txn_begin(c->env, c->batch, 0, &txn);
        if (rc)
                goto out;
        rc = job_exists(c, txn, STAGE_IMAGES, job_id);
        k = str_val(id);
        if (!rc && strlen(id) <= (size_t)mdb_env_get_maxkeysize(c->env))
                rc = mdb_get(txn, c->dbi[DB_RECORDS], &k, &v);
        else if (!rc)
                rc = MDB_NOTFOUND;
        if (!rc && st_raw_record_from_msgpack(v.mv_data, v.mv_size, &a, &r, NULL))
                rc = MDB_CORRUPTED;
        if (rc == MDB_NOTFOUND) {
                rc = delete_job(c, txn, STAGE_IMAGES, job_id); /* the record went away */
                goto done;
        }
        if (rc)
                goto done;
        if (!r.content_hash || strcmp(r.content_hash, hash)) {
                log_info("dropped stale images of %s", id);
                rc = delete_job(c, txn, STAGE_IMAGES, job_id);
                goto done;
        }
        for (uint32_t i = 0; i < images->via.array.size; i++) {
                const msgpack_object *im = &images->via.array.ptr[i];
                char *url = NULL, *sha = NULL;

                if (wire_get_str(im, "url", &a, &url) || wire_get_str(im, "sha256", &a, &sha) ||
                    strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64)
                        continue;
                for (size_t j = 0; j < r.n_images; j++)
                        if (r.images[j].url && !strcmp(r.images[j].url, url)) {
                                r.images[j].sha256 = sha;
                                (*stored)++;
                        }
        }
        rc = st_raw_record_to_msgpack(&r, &buf, &len) ? MDB_PANIC : 0;
        if (!rc && len > ST_LIMIT_RECORD)
                rc = ST_ETOOBIG;
        if (!rc) {
                v.mv_size = len;
                v.mv_data = buf;
                rc = mdb_put(txn, c->dbi[DB_RECORDS], &k, &v, 0);
        }
        if (rc == ST_ETOOBIG) {
                log_warn("%s: record with image hashes over the size limit; kept without", id);
                rc = 0;
        }
        if (!rc)
                rc = enqueue_id(c, txn, STAGE_REFINE, id);
        if (!rc)
                rc = delete_job(c, txn, STAGE_IMAGES, job_id);
done:
        rc = finish(txn, rc);
out:
        free(buf);
        arena_release(&a);
        return rc;
}

/* ---- orphaned jobs ---- */

static int drop_orphans_once(struct catalog *c)
{
        MDB_txn *txn;
        int rc = mdb_txn_begin(c->env, c->batch, 0, &txn);

        for (size_t i = 0; i < c->n_orphans && !rc; i++)
                rc = delete_job(c, txn, c->orphan_stage[i], c->orphans[i]);
        if (rc) {
                mdb_txn_abort(txn);
                return rc;
        }
        rc = mdb_txn_commit(txn);
        if (!rc)
                c->n_orphans = 0;
        return rc;
}

/* ---- changelog subscribers, compaction and snapshots ---- */

static int note_subscriber_once(struct catalog *c, const char *name, uint64_t shard,
                                uint64_t shards, uint64_t seq)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        MDB_txn *txn;
        MDB_val k = str_val(name), v;
        int rc;

        if (!*name || strlen(name) > (size_t)mdb_env_get_maxkeysize(c->env))
                return 0;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        wire_pack_kv_u64(&pk, "seq", seq);
        wire_pack_kv_u64(&pk, "shard", shard);
        wire_pack_kv_u64(&pk, "shards", shards);
        wire_pack_kv_u64(&pk, "seen", (uint64_t)time(NULL));
        v.mv_size = sb.size;
        v.mv_data = sb.data;
        rc = mdb_txn_begin(c->env, c->batch, 0, &txn);
        if (!rc)
                rc = finish(txn, mdb_put(txn, c->dbi[DB_SUBSCRIBERS], &k, &v, 0));
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

/*
 * Drop subscribers not heard from for ttl seconds, then delete changelog
 * entries every remaining subscriber has applied (all of them when none is
 * registered: a newcomer takes a snapshot), at most max per call.
 */
static int compact_once(struct catalog *c, uint64_t ttl, size_t max, size_t *deleted,
                        size_t *dropped)
{
        uint64_t now = (uint64_t)time(NULL), low = 0, head = 0, upto;
        MDB_txn *txn;
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        int rc = mdb_txn_begin(c->env, c->batch, 0, &txn);

        *deleted = *dropped = 0;
        if (rc)
                return rc;
        meta_get_u64(c, txn, "head_seq", &head);
        meta_get_u64(c, txn, "low_seq", &low);
        upto = head;
        rc = mdb_cursor_open(txn, c->dbi[DB_SUBSCRIBERS], &cur);
        for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                msgpack_unpacked u;
                size_t off = 0;
                uint64_t seq = 0, seen = 0;

                msgpack_unpacked_init(&u);
                if (msgpack_unpack_next(&u, v.mv_data, v.mv_size, &off) == MSGPACK_UNPACK_SUCCESS) {
                        wire_get_u64(&u.data, "seq", &seq);
                        wire_get_u64(&u.data, "seen", &seen);
                }
                msgpack_unpacked_destroy(&u);
                if (seen + ttl < now) {
                        log_info("changelog subscriber %.*s silent for %llu s: dropped (it "
                                 "re-snapshots if it comes back behind the compacted entries)",
                                 (int)k.mv_size, (char *)k.mv_data,
                                 (unsigned long long)(now - seen));
                        rc = mdb_cursor_del(cur, 0);
                        if (rc)
                                break;
                        (*dropped)++;
                        continue;
                }
                if (seq < upto)
                        upto = seq;
        }
        if (cur)
                mdb_cursor_close(cur);
        if (rc && rc != MDB_NOTFOUND) {
                mdb_txn_abort(txn);
                return rc;
        }
        rc = 0;
        if (upto > low) {
                rc = mdb_cursor_open(txn, c->dbi[DB_CHANGELOG], &cur);
                for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && *deleted < max;
                     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                        uint64_t seq = k.mv_size == 8 ? from_be64(k.mv_data) : 0;

                        if (seq > upto)
                                break;
                        rc = mdb_cursor_del(cur, 0);
                        if (rc)
                                break;
                        low = seq;
                        (*deleted)++;
                }
                if (cur)
                        mdb_cursor_close(cur);
                if (rc == MDB_NOTFOUND || !rc) {
                        /* Up to upto when the walk ended there, else to the last deleted. */
                        if (*deleted < max)
                                low = upto;
                        rc = meta_put_u64(c, txn, "low_seq", low);
                }
        }
        return finish(txn, rc);
}

int catalog_pack_snapshot(struct catalog *c, const char *after, size_t max, uint64_t shard,
                          uint64_t shards, msgpack_packer *pk)
{
        msgpack_sbuffer entries;
        msgpack_packer epk;
        struct arena a;
        MDB_txn *txn;
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        uint64_t head = 0;
        size_t n = 0, scanned = 0;
        char *next = NULL, *last = NULL;
        int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);

        if (rc)
                return ST_EDB;
        if (shards == 0 || shard >= shards || !after || max == 0 ||
            strlen(after) > (size_t)mdb_env_get_maxkeysize(c->env)) {
                mdb_txn_abort(txn);
                return ST_EINVAL;
        }
        meta_get_u64(c, txn, "head_seq", &head);
        msgpack_sbuffer_init(&entries);
        msgpack_packer_init(&epk, &entries, msgpack_sbuffer_write);
        arena_init(&a, 1 << 20);
        rc = mdb_cursor_open(txn, c->dbi[DB_VECTORS], &cur);
        k = str_val(after);
        if (!rc)
                rc = *after ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                            : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        /* Ids after `after`: skip after itself. */
        if (!rc && *after && k.mv_size == strlen(after) && !memcmp(k.mv_data, after, k.mv_size))
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        for (; !rc; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                char idbuf[ST_LIMIT_STRING + 1];
                msgpack_object e;
                msgpack_object_kv kv[2];

                if (scanned == max) {
                        next = last; /* more follow: the next page starts after the last id */
                        break;
                }
                scanned++;
                last = arena_strndup(&a, k.mv_data, k.mv_size);
                if (k.mv_size > ST_LIMIT_STRING)
                        continue;
                memcpy(idbuf, k.mv_data, k.mv_size);
                idbuf[k.mv_size] = '\0';
                if (wire_id_hash(idbuf) % shards != shard)
                        continue;
                /* A put entry of the current doc and vector, as pack_change() makes. */
                kv[0].key.type = MSGPACK_OBJECT_STR;
                kv[0].key.via.str.ptr = "op";
                kv[0].key.via.str.size = 2;
                kv[0].val.type = MSGPACK_OBJECT_STR;
                kv[0].val.via.str.ptr = "put";
                kv[0].val.via.str.size = 3;
                kv[1].key.type = MSGPACK_OBJECT_STR;
                kv[1].key.via.str.ptr = "id";
                kv[1].key.via.str.size = 2;
                kv[1].val.type = MSGPACK_OBJECT_STR;
                kv[1].val.via.str.ptr = idbuf;
                kv[1].val.via.str.size = (uint32_t)k.mv_size;
                e.type = MSGPACK_OBJECT_MAP;
                e.via.map.size = 2;
                e.via.map.ptr = kv;
                if (!pack_change(c, txn, head, &e, &a, &epk))
                        n++;
        }
        /* After the last vector the walk ends (MDB_NOTFOUND); next stays NULL. */
        msgpack_pack_map(pk, 3);
        wire_pack_key(pk, "entries");
        msgpack_pack_array(pk, n);
        msgpack_sbuffer_write(pk->data, entries.data, entries.size);
        wire_pack_kv_str(pk, "next", next);
        wire_pack_kv_u64(pk, "head_seq", head);
        if (cur)
                mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        arena_release(&a);
        msgpack_sbuffer_destroy(&entries);
        return 0;
}

int catalog_pack_subscribers(struct catalog *c, msgpack_packer *pk)
{
        MDB_txn *txn;
        MDB_cursor *cur = NULL;
        MDB_val k, v;
        uint64_t low = 0;
        size_t n;
        int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);

        if (rc) {
                msgpack_pack_nil(pk); /* the value the caller's key waits for */
                return ST_EDB;
        }
        meta_get_u64(c, txn, "low_seq", &low);
        n = db_count(c, txn, DB_SUBSCRIBERS);
        msgpack_pack_map(pk, 3);
        wire_pack_kv_u64(pk, "low_seq", low);
        wire_pack_kv_u64(pk, "tombstones", db_count(c, txn, DB_GONE));
        wire_pack_key(pk, "subscribers");
        msgpack_pack_map(pk, n);
        rc = mdb_cursor_open(txn, c->dbi[DB_SUBSCRIBERS], &cur);
        for (size_t i = 0; !rc && i < n; i++) {
                rc = mdb_cursor_get(cur, &k, &v, i ? MDB_NEXT : MDB_FIRST);
                if (rc) {
                        msgpack_pack_nil(pk);
                        msgpack_pack_nil(pk);
                        continue;
                }
                msgpack_pack_str(pk, k.mv_size);
                msgpack_pack_str_body(pk, k.mv_data, k.mv_size);
                msgpack_sbuffer_write(pk->data, v.mv_data, v.mv_size);
        }
        if (cur)
                mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        return 0;
}

/* ---- write functions: each retried after the map grew ---- */

int catalog_start_source(struct catalog *c, const char *source, bool restart, bool incremental,
                         struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, start_source_once(c, source, restart, incremental),
                                  "start source", &again, err);
        while (again);
        return rc;
}

int catalog_apply_crawl(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                        struct catalog_crawl_counts *counts, struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, apply_crawl_once(c, job_id, payload, counts, err),
                                  "apply crawl result", &again, err);
        while (again);
        return rc;
}

int catalog_apply_doc(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                      struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, apply_doc_once(c, job_id, payload, err), "apply doc", &again,
                                  err);
        while (again);
        return rc;
}

int catalog_apply_vector(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                         struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, apply_vector_once(c, job_id, payload, err), "apply vector",
                                  &again, err);
        while (again);
        return rc;
}

int catalog_bury_job(struct catalog *c, enum catalog_stage s, uint64_t job_id, const char *why,
                     struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, bury_job_once(c, s, job_id, why), "bury job", &again, err);
        while (again);
        return rc;
}

int catalog_apply_images(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                         size_t *stored, struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, apply_images_once(c, job_id, payload, stored, err),
                                  "apply images", &again, err);
        while (again);
        return rc;
}

int catalog_drop_orphans(struct catalog *c, struct st_error *err)
{
        bool again;
        int rc;

        if (!c->n_orphans)
                return 0;
        do
                rc = finish_write(c, drop_orphans_once(c), "drop orphaned jobs", &again, err);
        while (again);
        return rc;
}

int catalog_note_subscriber(struct catalog *c, const char *name, uint64_t shard, uint64_t shards,
                            uint64_t seq, struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, note_subscriber_once(c, name, shard, shards, seq),
                                  "note subscriber", &again, err);
        while (again);
        return rc;
}

int catalog_compact_changelog(struct catalog *c, uint64_t ttl, size_t max, size_t *deleted,
                              size_t *dropped, struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(c, compact_once(c, ttl, max, deleted, dropped),
                                  "compact the changelog", &again, err);
        while (again);
        return rc;
}

int catalog_check_readers(struct catalog *c)
{
        int dead = 0;

        mdb_reader_check(c->env, &dead);
        return dead;
}

static int grow(struct catalog *c)
{
        int rc = mdb_env_set_mapsize(c->env, c->map_size * 2);

        if (rc == 0) {
                c->map_size *= 2;
                log_info("catalog map grown to %zu MiB", c->map_size >> 20);
        }
        return rc;
}

int catalog_batch_begin(struct catalog *c, struct st_error *err)
{
        MDB_envinfo info;
        MDB_stat st;
        int rc;

        if (c->batch)
                return st_fail(err, ST_EINVAL, "a batch is already open");
        /* Grow ahead of need, while no transaction is open. */
        mdb_env_info(c->env, &info);
        mdb_env_stat(c->env, &st);
        if ((info.me_last_pgno + 1) * (size_t)st.ms_psize > c->map_size / 4 * 3 &&
            c->map_size < MAP_SIZE_MAX)
                grow(c);
        c->batch_full = false;
        rc = mdb_txn_begin(c->env, NULL, 0, &c->batch);
        if (rc) {
                c->batch = NULL;
                return db_fail(err, rc, "begin batch");
        }
        return 0;
}

int catalog_batch_commit(struct catalog *c, struct st_error *err)
{
        MDB_txn *txn = c->batch;
        int rc;

        if (!txn)
                return 0;
        c->batch = NULL;
        if (c->batch_full) {
                mdb_txn_abort(txn);
                rc = MDB_MAP_FULL;
        } else {
                rc = mdb_txn_commit(txn);
        }
        if (rc == MDB_MAP_FULL) {
                grow(c);
                return st_fail(err, ST_EAGAIN,
                               "map full: this batch is dropped; its jobs run again");
        }
        if (rc == EIO || rc == ENOSPC || rc == EDQUOT) {
                struct statvfs fs;
                unsigned long long kib = 0;

                if (statvfs(c->dir, &fs) == 0)
                        kib = (unsigned long long)fs.f_bavail * fs.f_frsize / 1024;
                return st_fail(err, ST_EIO,
                               "cannot write the catalog in %s (%s; %llu KiB free on its disk); "
                               "nothing of this batch was kept, its jobs run again",
                               c->dir, strerror(rc), kib);
        }
        return rc ? db_fail(err, rc, "commit batch") : 0;
}

size_t catalog_pending(struct catalog *c, enum catalog_stage s)
{
        MDB_txn *txn;
        size_t n;

        if (s >= STAGE_COUNT || mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
                return 0;
        n = db_count(c, txn, DB_JOBS_CRAWL + s);
        mdb_txn_abort(txn);
        return n;
}

/* Whether a stored doc was refined by someone else than want, or failed and fell back. */
static bool stale_doc(const MDB_val *v, const char *want)
{
        msgpack_unpacked u;
        size_t off = 0, len = 0;
        const char *by = NULL, *why;
        size_t why_len;
        bool stale = false;

        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, v->mv_data, v->mv_size, &off) == MSGPACK_UNPACK_SUCCESS) {
                if (wire_get_bytes(&u.data, "refined_by", &by, &len))
                        by = NULL;
                stale = !by || len != strlen(want) || memcmp(by, want, len) ||
                        !wire_get_bytes(&u.data, "refine_error", &why, &why_len);
        }
        msgpack_unpacked_destroy(&u);
        return stale;
}

/* Whether doc id has no vector, or one of another model than want. */
static bool stale_vector(struct catalog *c, MDB_txn *txn, const MDB_val *id, const char *want)
{
        MDB_val v;
        msgpack_unpacked u;
        size_t off = 0, len = 0;
        const char *model = NULL;
        bool stale = true;

        if (mdb_get(txn, c->dbi[DB_VECTORS], (MDB_val *)id, &v))
                return true;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, v.mv_data, v.mv_size, &off) == MSGPACK_UNPACK_SUCCESS &&
            !wire_get_bytes(&u.data, "model", &model, &len))
                stale = len != strlen(want) || memcmp(model, want, len);
        msgpack_unpacked_destroy(&u);
        return stale;
}

/*
 * One step of a sweep over the docs after `after`: refine (s == STAGE_REFINE:
 * docs not refined_by want, or whose VLM refine failed) or embed (STAGE_EMBED:
 * docs without a vector of model want) jobs for at most max of them.
 */
static int requeue_once(struct catalog *c, enum catalog_stage s, const char *want, char *after,
                        size_t after_size, size_t max, size_t *queued, bool *done)
{
        MDB_txn *txn;
        MDB_cursor *cur;
        MDB_val k = {strlen(after), after}, v;
        size_t scanned = 0;
        int rc = mdb_txn_begin(c->env, c->batch, 0, &txn);

        *queued = 0;
        *done = false;
        if (rc)
                return rc;
        rc = mdb_cursor_open(txn, c->dbi[DB_DOCS], &cur);
        if (!rc)
                rc = mdb_cursor_get(cur, &k, &v, k.mv_size ? MDB_SET_RANGE : MDB_FIRST);
        /* SET_RANGE lands on `after` itself when it still exists: it was done. */
        if (!rc && k.mv_size == strlen(after) && !memcmp(k.mv_data, after, k.mv_size))
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        for (; !rc && *queued < max && scanned < 50 * max;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), scanned++) {
                char id[ST_LIMIT_STRING + 1];

                if (k.mv_size >= sizeof(id) || k.mv_size >= after_size)
                        continue;
                memcpy(id, k.mv_data, k.mv_size);
                id[k.mv_size] = '\0';
                memcpy(after, id, k.mv_size + 1);
                if (s == STAGE_REFINE ? !stale_doc(&v, want) : !stale_vector(c, txn, &k, want))
                        continue;
                rc = enqueue_id(c, txn, s, id);
                if (!rc)
                        (*queued)++;
        }
        if (rc == MDB_NOTFOUND) {
                *done = true;
                rc = 0;
        }
        if (!rc)
                mdb_cursor_close(cur);
        return finish(txn, rc);
}

int catalog_requeue_stale(struct catalog *c, const char *want, char *after, size_t after_size,
                          size_t max, size_t *queued, bool *done, struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(
                    c, requeue_once(c, STAGE_REFINE, want, after, after_size, max, queued, done),
                    "re-refine sweep", &again, err);
        while (again);
        return rc;
}

int catalog_requeue_embed(struct catalog *c, const char *model, char *after, size_t after_size,
                          size_t max, size_t *queued, bool *done, struct st_error *err)
{
        bool again;
        int rc;

        do
                rc = finish_write(
                    c, requeue_once(c, STAGE_EMBED, model, after, after_size, max, queued, done),
                    "re-embed sweep", &again, err);
        while (again);
        return rc;
}
