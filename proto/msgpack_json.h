/*
 * msgpack_json.h - bounded conversion between msgpack and JSON values
 * (jansson's json_t), for fronts that take the HTTP API's JSON requests as
 * msgpack (query/zmq_front.h).
 *
 *   msgpack                      JSON (json_t)    back to msgpack
 *   nil                          null             nil
 *   true / false                 true / false     true / false
 *   int 0 .. 2^63-1              integer          int (smallest encoding of the int64)
 *   negative int                 integer          int
 *   float 32 / float 64          real             float 64
 *   str, UTF-8                   string           str
 *   array                        array            array
 *   map, str keys                object           map, keys in the object's order
 *   bin, ext                     refused
 *
 * Decoding refuses, with the place named in err ("$.tags[2]"):
 *   ST_ETOOBIG  input over max_len bytes; an int over 2^63-1 (JSON integers
 *               are int64 here)
 *   ST_ETRUNC   input that ends inside a value, or declares more elements or
 *               bytes than it holds (checked before anything is allocated)
 *   ST_EPARSE   bytes after the value, the unused byte 0xc1, arrays and maps
 *               nested deeper than MSGPACK_JSON_MAX_DEPTH, a string or key
 *               that is not UTF-8, a key given twice
 *   ST_ETYPE    bin, ext, a map key that is not a str, a NaN or infinite float
 *   ST_ENOMEM   out of memory
 * Memory stays proportional to the input: every element a container
 * declares needs an input byte.  Strings may hold NUL (JSON writes \u0000).
 *
 * Encoding takes every json_t; it refuses nesting deeper than
 * MSGPACK_JSON_MAX_DEPTH and output over max_len bytes (both ST_ETOOBIG),
 * so whatever it writes decodes again to an equal value.
 *
 * Thread rules: none; no state is kept between calls.
 */
#ifndef STYLUS_MSGPACK_JSON_H
#define STYLUS_MSGPACK_JSON_H

#include <stddef.h>

#include <jansson.h>
#include <msgpack.h>

#include "proto/errors.h"

/* Arrays and maps nested in one another, at most; msgpack-c's unpacker stops at 32 too. */
#define MSGPACK_JSON_MAX_DEPTH 32

/*
 * Unpack the one msgpack value that fills buf[0..len) into u, after checking
 * its shape (the limits above but the types).  Initializes u whatever the
 * outcome: the caller always calls msgpack_unpacked_destroy(u).  u.data
 * points into u's zone, not into buf.
 */
int msgpack_json_unpack(const char *buf, size_t len, size_t max_len, msgpack_unpacked *u,
                        struct st_error *err);

/* JSON value of o (checked as above); on success the caller owns *out (json_decref). */
int msgpack_json_from_object(const msgpack_object *o, json_t **out, struct st_error *err);

/* msgpack_json_unpack() and msgpack_json_from_object() in one call. */
int msgpack_json_decode(const char *buf, size_t len, size_t max_len, json_t **out,
                        struct st_error *err);

/*
 * Append j to a packer.  ST_ETOOBIG when j nests too deep, ST_EIO when the
 * packer's writer fails (msgpack_json_encode() names the cause).
 */
int msgpack_json_pack(msgpack_packer *pk, const json_t *j, struct st_error *err);

/*
 * Encode j into a new buffer of at most max_len bytes: *out is malloc'd and
 * the caller frees it; on error *out is NULL.
 */
int msgpack_json_encode(const json_t *j, size_t max_len, char **out, size_t *len,
                        struct st_error *err);

#endif
