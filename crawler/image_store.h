/*
 * image_store.h - a content-addressed store of example images in one
 * directory: the same bytes are kept once however many records and URLs
 * point at them, and a URL already fetched is found without a request.
 *
 * Layout (DIR is the store's directory; a file is never modified in place,
 * only replaced whole by a rename):
 *
 *   path                        content                      invariant
 *   DIR/sha256/<aa>/<64 hex>    the image bytes, exactly     name = SHA-256 of the bytes (lowercase
 *                                                            hex), aa = its first 2 digits; 1 ..
 *                                                            max_bytes bytes; PNG, JPEG, WebP or
 *                                                            GIF by its magic bytes
 *   DIR/urls/<bb>/<64 hex>      65 bytes: "<64 hex>\n", the  name = SHA-256 of the URL string, bb =
 *                                 SHA-256 of the bytes that    its first 2 digits; only fetches that
 *                                 URL gave                     stored an image have an entry
 *   DIR/tmp/put.XXXXXX          a file being written         removed when older than
 *                                                            IMAGE_STORE_TMP_MAX_AGE_S (see open)
 *
 * Writes: the bytes go to a new temp file in DIR/tmp, which is fsync'ed and
 * renamed over its final name.  Readers therefore see a whole file or none,
 * and a crash leaves at most a stray temp file (never a half file under a
 * final name).  The parent directory is not fsync'ed: a rename lost in a
 * crash costs one fetch again, never a wrong answer.
 *
 * Reads trust nothing on disk: a content file counts only when it is a
 * regular file (not a symlink, FIFO or directory) of 1 .. max_bytes bytes
 * whose bytes hash to its name, and a URL entry only when it is exactly
 * the 65 bytes above naming such a file.  Anything else (truncated,
 * oversized, corrupt, planted) is ST_ENOTFOUND with the reason in err, so
 * the caller fetches again and the next put repairs it.  Every read hashes
 * the whole file: at most max_bytes per image, a few ms, which is cheap next
 * to a download or a VLM request and makes a shared or copied store safe.
 *
 * Names from the network never become paths: a URL is hashed, and a sha256
 * given by a caller (from a record on the wire) must be 64 lowercase hex
 * digits (ST_EINVAL otherwise), so "../" and friends cannot escape DIR.
 *
 * Thread rules: a handle holds only its directory and limits, fixed at
 * open; every call works on the file system alone, so one handle may be
 * used by several threads at once, and several processes (or machines
 * sharing the directory over NFS) may use one store at once.  Two writers
 * of the same image write the same bytes; the last rename wins.
 */
#ifndef STYLUS_CRAWLER_IMAGE_STORE_H
#define STYLUS_CRAWLER_IMAGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/errors.h"
#include "proto/sha256.h"

#define IMAGE_STORE_DEFAULT_MAX_BYTES ((size_t)8 << 20)
#define IMAGE_STORE_MAX_MAX_BYTES     ((size_t)256 << 20) /* largest cap open accepts */
#define IMAGE_STORE_TMP_MAX_AGE_S     3600 /* older temp files are a crashed writer's */
#define IMAGE_STORE_PATH_MAX          4096
#define IMAGE_STORE_TRIM_MIN_AGE_S    600         /* images younger than this are never trimmed */
#define IMAGE_STORE_TRIM_MAX_FILES    (16u << 20) /* images one trim sorts, at most */

struct image_store;

enum image_store_mode {
        IMAGE_STORE_READ,  /* lookups only; DIR must exist, nothing is written */
        IMAGE_STORE_WRITE, /* lookups and puts; DIR and its subdirectories are made */
};

/* A stored image, as found or put. */
struct image_store_entry {
        char sha256[SHA256_HEX_SIZE];    /* 64 lowercase hex digits */
        uint64_t size;                   /* bytes */
        char path[IMAGE_STORE_PATH_MAX]; /* DIR/sha256/aa/<sha256> */
};

/* What a store holds, from a walk of its directories (one stat per file). */
struct image_store_usage {
        uint64_t images; /* content files with a well-formed name */
        uint64_t bytes;  /* their sizes summed */
        uint64_t urls;   /* URL entries with a well-formed name */
        uint64_t temp;   /* files in DIR/tmp */
};

/* What a trim found and did. */
struct image_store_trim {
        uint64_t images, bytes; /* held before */
        uint64_t removed;       /* images removed */
        uint64_t removed_bytes; /* their bytes */
        uint64_t urls_removed;  /* URL entries whose image was gone */
        bool young;             /* stopped above the cap: the rest is younger than min_age_s */
};

/*
 * Open the store at dir.  max_bytes is the cap of one image (0 means
 * IMAGE_STORE_DEFAULT_MAX_BYTES; at most IMAGE_STORE_MAX_MAX_BYTES): puts
 * over it fail and files over it are not read.  IMAGE_STORE_WRITE makes
 * dir (and missing parents), sha256/, urls/ and tmp/, checks that a file
 * can be created in tmp/, and removes temp files older than
 * IMAGE_STORE_TMP_MAX_AGE_S (a younger one may be another writer's).
 * Returns 0, ST_EINVAL (NULL or empty dir, bad max_bytes, dir too long),
 * ST_ENOTFOUND (READ: dir missing or not a directory), ST_EIO (cannot make
 * or write dir: err names the directory and the system's reason) or
 * ST_ENOMEM.  Close with image_store_close().
 */
int image_store_open(const char *dir, enum image_store_mode mode, size_t max_bytes,
                     struct image_store **out, struct st_error *err);

/* Free s; *s becomes NULL.  NULL is fine.  Files stay. */
void image_store_close(struct image_store **s);

/* The directory s was opened on (borrowed until close). */
const char *image_store_dir(const struct image_store *s);

/* The cap of one image in bytes. */
size_t image_store_max_bytes(const struct image_store *s);

/* Whether sha is 64 lowercase hex digits (the only names the store uses). */
bool image_store_valid_sha(const char *sha);

/*
 * The raster type of an image by its magic bytes: "image/png",
 * "image/jpeg", "image/webp" or "image/gif" (static strings), or NULL for
 * anything else (SVG, HTML, video, a truncated header).
 */
const char *image_store_media_type(const void *data, size_t len);

/*
 * Find the image with this sha256: 0 with *out filled when its file is
 * intact (read whole and hashed).  ST_EINVAL when sha is not 64 lowercase
 * hex digits; ST_ENOTFOUND when absent or unusable (err says why).
 */
int image_store_find(const struct image_store *s, const char *sha, struct image_store_entry *out,
                     struct st_error *err);

/*
 * Find the image url was stored from: 0 with *out filled when url has an
 * entry naming an intact file.  ST_EINVAL for a NULL or empty url;
 * ST_ENOTFOUND when never stored, or when the entry or its file is unusable
 * (err says why).  Any string is a safe url: it is only hashed.
 */
int image_store_lookup_url(const struct image_store *s, const char *url,
                           struct image_store_entry *out, struct st_error *err);

/*
 * Read the image with this sha256 into a: 0 with *data (in the arena) and
 * *len when its file is intact and at most max bytes.  ST_ETOOBIG (*len set
 * to its size) when it is intact but over max; ST_EINVAL for a bad sha;
 * ST_ENOTFOUND when absent or unusable; ST_ENOMEM when the arena is full.
 */
int image_store_read(const struct image_store *s, const char *sha, size_t max, struct arena *a,
                     const unsigned char **data, size_t *len, struct st_error *err);

/*
 * Store len bytes that url gave (url may be NULL: content only) and fill
 * *out.  The content file is written unless an intact one is already there;
 * the URL entry is written unless it already says the same.  When
 * expect_sha is not NULL the bytes must hash to it.
 * Errors, with nothing written:
 *   ST_EINVAL   len 0, or the bytes do not hash to expect_sha
 *   ST_ETOOBIG  len over the store's max_bytes
 *   ST_EPROTO   the bytes are not a PNG, JPEG, WebP or GIF image
 * Errors of the store itself (the caller's batch broke down):
 *   ST_EIO      a file could not be written, synced or renamed (err names
 *               the directory and the system's reason: full disk, read-only,
 *               permissions); a READ store
 *   ST_ENOMEM
 */
int image_store_put(const struct image_store *s, const char *url, const void *data, size_t len,
                    const char *expect_sha, struct image_store_entry *out, struct st_error *err);

/*
 * Walk the store and count what it holds.  Costs one stat per file: run it
 * at start or on demand, not per job.  Returns 0, or ST_EIO when a
 * directory cannot be read.
 */
int image_store_usage(const struct image_store *s, struct image_store_usage *out,
                      struct st_error *err);

/*
 * Remove the regular files in DIR/tmp last modified more than max_age_s
 * seconds ago (0: all of them; only when no other writer is running) and
 * count them in *removed.  Returns 0, ST_EIO (tmp unreadable) or ST_EINVAL
 * (a READ store).
 */
int image_store_clean_tmp(const struct image_store *s, long max_age_s, size_t *removed,
                          struct st_error *err);

/*
 * Keep the images of the store at max_total bytes or under: remove the
 * oldest written first (file mtime: the store never rewrites a file, so
 * that is when it was fetched), never one written less than min_age_s
 * seconds ago (an image the refiner may not have read yet), then the URL
 * entries whose image is gone (a later lookup of such a URL would fetch it
 * again anyway).  A reader racing a trim finds an image or nothing, never a
 * part.  Costs one stat per image and a sort; memory for each image's name
 * and age.  Returns 0, ST_EINVAL (a READ store), ST_EIO (a directory cannot
 * be read), ST_ETOOBIG (more than IMAGE_STORE_TRIM_MAX_FILES images),
 * ST_ENOMEM.
 */
int image_store_trim(const struct image_store *s, uint64_t max_total, long min_age_s,
                     struct image_store_trim *out, struct st_error *err);

#endif
