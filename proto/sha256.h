/*
 * sha256.h - SHA-256 (FIPS 180-4), streaming and one-shot.
 *
 * Used for content hashes of raw records and for checking downloaded files
 * against the sha256 a hub publishes.  No allocation, no errors: every input
 * length is valid.  A struct sha256 belongs to one thread.
 *
 *   struct sha256 h;
 *   sha256_init(&h);
 *   sha256_update(&h, chunk, n);   (any number of times)
 *   sha256_final_hex(&h, hex);     (hex is 64 lowercase digits + NUL)
 */
#ifndef STYLUS_SHA256_H
#define STYLUS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE    65 /* 64 hex digits and a NUL */

struct sha256 {
        uint32_t state[8];       /* H0..H7 */
        uint64_t length;         /* bytes hashed so far */
        unsigned char block[64]; /* input not yet compressed: used bytes */
        size_t used;
};

/* Start a new hash. */
void sha256_init(struct sha256 *h);

/* Hash len more bytes of data. */
void sha256_update(struct sha256 *h, const void *data, size_t len);

/* Finish: write the 32-byte digest.  h must be re-initialized before reuse. */
void sha256_final(struct sha256 *h, unsigned char digest[SHA256_DIGEST_SIZE]);

/* Finish: write the digest as 64 lowercase hex digits and a NUL. */
void sha256_final_hex(struct sha256 *h, char out[SHA256_HEX_SIZE]);

/* One-shot: hex digest of len bytes of data. */
void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_SIZE]);

#endif
