/*
 * errors.h - the one error-code table of stylus-catalog.
 *
 * Every function that can fail returns int: 0 on success or one of the
 * negative ST_E* codes below.  st_strerror() names a code.  Where a caller
 * needs context ("field 'name': expected string"), functions also take a
 * struct st_error *, which may be NULL, and fill it with the code and a
 * message.  Messages never contain secrets (tokens, keys).
 *
 *   code             value  meaning
 *   ST_OK              0    success
 *   ST_ENOMEM         -1    out of memory
 *   ST_EINVAL         -2    invalid argument or configuration
 *   ST_ETOOBIG        -3    input over a size limit
 *   ST_EPARSE         -4    malformed input (JSON, msgpack, HTML, URL ...)
 *   ST_ETYPE          -5    well-formed input with a value of the wrong type
 *   ST_ETRUNC         -6    input ended early
 *   ST_EIO            -7    file or socket I/O failed
 *   ST_EDB            -8    LMDB error
 *   ST_ENET           -9    network error (connect, DNS, reset)
 *   ST_EHTTP         -10    HTTP status not acceptable
 *   ST_ETIMEOUT      -11    deadline passed
 *   ST_ENOTFOUND     -12    no such item
 *   ST_EPROTO        -13    peer broke the wire protocol
 *   ST_EDIM          -14    vector dimension or embedding model mismatch
 *   ST_EAGAIN        -15    try again later (rate limited, busy)
 *   ST_EMISSING      -16    required field absent
 */
#ifndef STYLUS_ERRORS_H
#define STYLUS_ERRORS_H

#include <stddef.h>

enum {
        ST_OK = 0,
        ST_ENOMEM = -1,
        ST_EINVAL = -2,
        ST_ETOOBIG = -3,
        ST_EPARSE = -4,
        ST_ETYPE = -5,
        ST_ETRUNC = -6,
        ST_EIO = -7,
        ST_EDB = -8,
        ST_ENET = -9,
        ST_EHTTP = -10,
        ST_ETIMEOUT = -11,
        ST_ENOTFOUND = -12,
        ST_EPROTO = -13,
        ST_EDIM = -14,
        ST_EAGAIN = -15,
        ST_EMISSING = -16,
};

/* A code and a human message with context.  Fixed size: never allocates. */
struct st_error {
        int code;
        char msg[256];
};

/* Name of an error code; never NULL.  Unknown codes give "unknown error". */
const char *st_strerror(int code);

/*
 * Record code and a printf-style message in err (if not NULL) and return
 * code, so a failing path reads `return st_fail(err, ST_EPARSE, "...")`.
 * The message is truncated to fit.
 */
int st_fail(struct st_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Message of err, or st_strerror(code) when err has no message. */
const char *st_error_text(const struct st_error *err, int code);

#endif
