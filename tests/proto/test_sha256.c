/*
 * test_sha256.c - SHA-256 against the FIPS 180-4 example vectors, and
 * streaming in pieces of every size against the one-shot digest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sha256.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

static int test_vectors(void)
{
        static const struct {
                const char *input;
                const char *digest;
        } vectors[] = {
            {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
            {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
            {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
            {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmno"
             "pqrlmnopqrsmnopqrstnopqrstu",
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
        };
        char hex[SHA256_HEX_SIZE];
        size_t i;

        for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
                sha256_hex(vectors[i].input, strlen(vectors[i].input), hex);
                if (strcmp(hex, vectors[i].digest) != 0) {
                        fprintf(stderr, "sha256(\"%s\") = %s, want %s\n", vectors[i].input, hex,
                                vectors[i].digest);
                        return 1;
                }
        }
        return 0;
}

/* One million 'a', fed 1000 at a time. */
static int test_million_a(void)
{
        char block[1000];
        char hex[SHA256_HEX_SIZE];
        struct sha256 h;
        int i;

        memset(block, 'a', sizeof(block));
        sha256_init(&h);
        for (i = 0; i < 1000; i++)
                sha256_update(&h, block, sizeof(block));
        sha256_final_hex(&h, hex);
        CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
        return 0;
}

/* Every length around the padding boundaries, streamed in every piece size. */
static int test_streaming(void)
{
        unsigned char data[200];
        char want[SHA256_HEX_SIZE], got[SHA256_HEX_SIZE];
        unsigned char digest[SHA256_DIGEST_SIZE];
        struct sha256 h;
        size_t len, piece, off;

        for (len = 0; len < sizeof(data); len++)
                data[len] = (unsigned char)(len * 37 + 11);
        for (len = 0; len <= sizeof(data); len++) {
                sha256_hex(data, len, want);
                for (piece = 1; piece <= 65; piece++) {
                        sha256_init(&h);
                        for (off = 0; off < len; off += piece)
                                sha256_update(&h, data + off,
                                              len - off < piece ? len - off : piece);
                        sha256_final_hex(&h, got);
                        CHECK(strcmp(want, got) == 0);
                }
        }
        sha256_init(&h);
        sha256_update(&h, "abc", 3);
        sha256_final(&h, digest);
        CHECK(digest[0] == 0xba && digest[31] == 0xad);
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_vectors();
        failed |= test_million_a();
        failed |= test_streaming();
        if (failed)
                return 1;
        printf("test_sha256: ok\n");
        return 0;
}
