/*
 * lora_download.h - fetch an adapter's file into a tool's LoRA folder under
 * the name the forms use (the answer's save_as), verified against the
 * answer's SHA256: what `stylus ask --download DIR` does for each chosen
 * adapter, so that the A1111 prompt or ComfyUI graph it prints works as is.
 *
 * Nothing from the answer is trusted: save_as must be a plain file name (no
 * '/', '\', NUL or control byte, not starting with '.', at most
 * LORA_DOWNLOAD_MAX_NAME bytes); the URL must be http or https, and so must
 * every redirect (at most LORA_DOWNLOAD_MAX_REDIRECTS: Civitai answers 307
 * to its storage, the Hub 302 to its CDN); the body is capped at
 * LORA_DOWNLOAD_MAX_BYTES.  The bytes go to DIR/.<save_as>.part.<pid>,
 * hashed as they arrive, and are renamed to DIR/<save_as> only when the
 * status was 200 and the SHA256 matches (any case); otherwise the part file
 * is removed and the old file, if any, stays.  A file already there with the
 * right SHA256 is kept without a request.
 *
 * Errors (err says which file and why): ST_EINVAL (a bad name or URL),
 * ST_EIO (DIR not writable, a write failed), ST_EHTTP (a status other than
 * 200), ST_ENET / ST_ETIMEOUT (the transfer failed or stalled: under 1 KiB/s
 * for LORA_DOWNLOAD_STALL_S seconds), ST_ETOOBIG, ST_EPARSE (the SHA256 does
 * not match: the file is not the one the catalog describes).
 * Thread rules: none; curl_global_init() is the caller's.
 */
#ifndef STYLUS_QUERY_LORA_DOWNLOAD_H
#define STYLUS_QUERY_LORA_DOWNLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/errors.h"

#define LORA_DOWNLOAD_MAX_NAME      255
#define LORA_DOWNLOAD_MAX_REDIRECTS 5
#define LORA_DOWNLOAD_MAX_BYTES     ((uint64_t)8 << 30)
#define LORA_DOWNLOAD_STALL_S       60

struct lora_download_result {
        bool already;   /* the file was there with the right SHA256: no request */
        bool verified;  /* a SHA256 was given and matched */
        uint64_t bytes; /* of the file */
};

/*
 * Make DIR/save_as the file at url, whose SHA256 is sha256 (64 hex digits;
 * NULL: not verified, and an existing file is replaced).  user_agent is sent
 * as is.
 */
int lora_download(const char *dir, const char *save_as, const char *url, const char *sha256,
                  const char *user_agent, struct lora_download_result *out, struct st_error *err);

#endif
