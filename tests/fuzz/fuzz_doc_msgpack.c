/*
 * fuzz_doc_msgpack.c - the msgpack decoders of st_raw_record and st_doc: no
 * input may crash them or make them allocate more than its size warrants,
 * and whatever they accept must survive re-encoding in both codecs
 * (doc_fixed_point.h).
 */
#include <stdint.h>

#include "doc_fixed_point.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct st_raw_record r;
        struct st_doc d;
        struct arena a;

        arena_init(&a, FUZZ_ARENA_LIMIT);
        if (st_raw_record_from_msgpack((const char *)data, size, &a, &r, NULL) == 0)
                fixed_point_raw_record(&r);
        arena_release(&a);
        if (st_doc_from_msgpack((const char *)data, size, &a, &d, NULL) == 0)
                fixed_point_doc(&d);
        arena_release(&a);
        return 0;
}
