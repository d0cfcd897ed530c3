/*
 * replay_main.c - a main() for fuzz targets built without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every regular file named on the command
 * line or found (not recursively) in a directory named there, so each
 * committed seed corpus is replayed in every ctest pass.  A crash or an
 * abort() in the target fails the test; an unreadable path returns 1.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (64u << 20) /* larger seeds are a mistake */

/* Run the target on the file at path; 0, or -1 when it cannot be read. */
static int replay_file(const char *path, size_t size)
{
        FILE *f;
        uint8_t *data;
        int rc = -1;

        if (size > REPLAY_MAX_INPUT) {
                fprintf(stderr, "%s: %zu bytes, over %u\n", path, size, REPLAY_MAX_INPUT);
                return -1;
        }
        f = fopen(path, "rb");
        if (!f)
                goto out;
        /* A buffer of exactly size bytes, so ASan sees reads past the end. */
        data = malloc(size ? size : 1);
        if (!data)
                goto out_file;
        if (fread(data, 1, size, f) == size) {
                LLVMFuzzerTestOneInput(data, size);
                rc = 0;
        }
        free(data);
out_file:
        fclose(f);
out:
        if (rc)
                perror(path);
        return rc;
}

/* Replay every regular file in dir; returns the number replayed, or -1. */
static long replay_dir(const char *dir)
{
        char path[4096];
        struct dirent *e;
        struct stat st;
        long n = 0;
        DIR *d;

        d = opendir(dir);
        if (!d) {
                perror(dir);
                return -1;
        }
        while ((e = readdir(d)) != NULL) {
                int len = snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);

                if (len < 0 || (size_t)len >= sizeof(path) || stat(path, &st) != 0 ||
                    !S_ISREG(st.st_mode))
                        continue;
                if (replay_file(path, (size_t)st.st_size) != 0) {
                        n = -1;
                        break;
                }
                n++;
        }
        closedir(d);
        return n;
}

int main(int argc, char **argv)
{
        struct stat st;
        long total = 0, n;
        int i;

        if (argc < 2) {
                fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
                return 2;
        }
        for (i = 1; i < argc; i++) {
                if (stat(argv[i], &st) != 0) {
                        perror(argv[i]);
                        return 1;
                }
                if (S_ISDIR(st.st_mode))
                        n = replay_dir(argv[i]);
                else
                        n = replay_file(argv[i], (size_t)st.st_size) == 0 ? 1 : -1;
                if (n < 0)
                        return 1;
                total += n;
        }
        printf("replayed %ld inputs\n", total);
        return 0;
}
