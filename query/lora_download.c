/* lora_download.c - an adapter's file into a LoRA folder, verified (see lora_download.h). */
#include "query/lora_download.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "proto/sha256.h"

#define PATH_BYTES 4096

/* A file name the answer may give: plain, no dot file, no path. */
static bool plain_name(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > LORA_DOWNLOAD_MAX_NAME || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '/' || s[i] == '\\')
                        return false;
        return true;
}

static bool hex64(const char *s)
{
        return s && strlen(s) == 64 && strspn(s, "0123456789abcdefABCDEF") == 64;
}

/* SHA256 (lowercase hex) of the file at path and its size; false when it cannot be read. */
static bool hash_file(const char *path, char hex[SHA256_HEX_SIZE], uint64_t *size)
{
        unsigned char buf[65536];
        struct sha256 h;
        FILE *f = fopen(path, "rb");
        size_t n;

        if (!f)
                return false;
        sha256_init(&h);
        *size = 0;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
                sha256_update(&h, buf, n);
                *size += n;
        }
        n = (size_t)ferror(f);
        fclose(f);
        if (n)
                return false;
        sha256_final_hex(&h, hex);
        return true;
}

/* The transfer's sink: the part file and the running hash. */
struct sink {
        FILE *f;
        struct sha256 hash;
        uint64_t bytes;
        bool too_big, write_failed;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *user)
{
        struct sink *s = user;
        size_t n = size * nmemb;

        if (s->bytes + n > LORA_DOWNLOAD_MAX_BYTES) {
                s->too_big = true;
                return 0;
        }
        if (fwrite(data, 1, n, s->f) != n) {
                s->write_failed = true;
                return 0;
        }
        sha256_update(&s->hash, data, n);
        s->bytes += n;
        return n;
}

/* GET url into sink; 0, or the failure with why in err. */
static int fetch(const char *url, const char *user_agent, struct sink *s, const char *name,
                 struct st_error *err)
{
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *e = curl_easy_init();
        CURLcode code;
        long status = 0;

        if (!e)
                return st_fail(err, ST_ENOMEM, "%s: out of memory", name);
        if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK) {
                curl_easy_cleanup(e);
                return st_fail(err, ST_EINVAL, "%s: not an http(s) URL", name);
        }
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)LORA_DOWNLOAD_MAX_REDIRECTS);
        curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)LORA_DOWNLOAD_STALL_S);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        code = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
        if (s->too_big)
                return st_fail(err, ST_ETOOBIG, "%s: over %llu bytes", name,
                               (unsigned long long)LORA_DOWNLOAD_MAX_BYTES);
        if (s->write_failed)
                return st_fail(err, ST_EIO, "%s: cannot write: %s", name, strerror(errno));
        if (code == CURLE_UNSUPPORTED_PROTOCOL || code == CURLE_URL_MALFORMAT)
                return st_fail(err, ST_EINVAL, "%s: not an http(s) URL (redirects too)", name);
        if (code == CURLE_OPERATION_TIMEDOUT)
                return st_fail(err, ST_ETIMEOUT, "%s: stalled: %s", name, errbuf);
        if (code != CURLE_OK)
                return st_fail(err, ST_ENET, "%s: %s", name,
                               errbuf[0] ? errbuf : curl_easy_strerror(code));
        if (status != 200)
                return st_fail(err, ST_EHTTP, "%s: HTTP %ld", name, status);
        return 0;
}

int lora_download(const char *dir, const char *save_as, const char *url, const char *sha256,
                  const char *user_agent, struct lora_download_result *out, struct st_error *err)
{
        char path[PATH_BYTES], part[PATH_BYTES], hex[SHA256_HEX_SIZE];
        struct sink s = {0};
        int rc;

        memset(out, 0, sizeof(*out));
        if (!plain_name(save_as))
                return st_fail(err, ST_EINVAL, "save_as '%.64s' is not a plain file name",
                               save_as ? save_as : "");
        if (sha256 && !hex64(sha256))
                return st_fail(err, ST_EINVAL, "%s: the SHA256 is not 64 hex digits", save_as);
        if (!url || !*url)
                return st_fail(err, ST_EINVAL, "%s: no download URL", save_as);
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, save_as) >= sizeof(path) ||
            (size_t)snprintf(part, sizeof(part), "%s/.%s.part.%ld", dir, save_as, (long)getpid()) >=
                sizeof(part))
                return st_fail(err, ST_EINVAL, "%s: path too long", save_as);
        if (sha256 && hash_file(path, hex, &out->bytes) && strcasecmp(hex, sha256) == 0) {
                out->already = out->verified = true;
                return 0;
        }
        s.f = fopen(part, "wb");
        if (!s.f)
                return st_fail(err, ST_EIO, "%s: %s", part, strerror(errno));
        sha256_init(&s.hash);
        rc = fetch(url, user_agent, &s, save_as, err);
        if (fflush(s.f) || fsync(fileno(s.f)))
                rc = rc ? rc : st_fail(err, ST_EIO, "%s: %s", part, strerror(errno));
        fclose(s.f);
        sha256_final_hex(&s.hash, hex);
        if (!rc && sha256 && strcasecmp(hex, sha256) != 0)
                rc = st_fail(err, ST_EPARSE, "%s: SHA256 %.12s..., the answer says %.12s...",
                             save_as, hex, sha256);
        if (!rc && rename(part, path) != 0)
                rc = st_fail(err, ST_EIO, "%s: %s", path, strerror(errno));
        if (rc) {
                unlink(part);
                return rc;
        }
        out->verified = sha256 != NULL;
        out->bytes = s.bytes;
        return 0;
}
