/*
 * ask_cmd.c - `stylus ask "prompt"`: the CLI client of a query node.
 * Sends POST /v1/compose and prints the answer: the A1111 prompt of the
 * first image and a table of adapters, or one raw form with --format.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ops/commands.h"
#include "query/lora_download.h"

#define MAX_ANSWER     (8u << 20)
#define ASK_USER_AGENT "stylus-catalog/0.1 (stylus ask --download)"

struct answer {
        char *data;
        size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata)
{
        struct answer *a = userdata;
        size_t len = size * n;
        char *q;

        if (a->len + len > MAX_ANSWER)
                return 0;
        q = realloc(a->data, a->len + len + 1);
        if (!q)
                return 0;
        memcpy(q + a->len, p, len);
        a->data = q;
        a->len += len;
        a->data[a->len] = '\0';
        return len;
}

static void print_table(json_t *root)
{
        json_t *adapters = json_object_get(root, "adapters");
        json_t *images = json_object_get(root, "images");
        json_t *a1111 = json_object_get(json_array_get(images, 0), "a1111_prompt");
        json_t *topics = json_object_get(root, "topics");
        json_t *ad, *t;
        size_t i;

        printf("topics:");
        json_array_foreach(topics, i, t)
            printf("%s \"%s\" (%zu)", i ? "," : "", json_string_value(json_object_get(t, "topic")),
                   json_array_size(json_object_get(t, "adapters")));
        printf("\nadapters (%zu):\n", json_array_size(adapters));
        json_array_foreach(adapters, i, ad)
            printf("  %-5.2f %-11s %-34s %s\n", json_number_value(json_object_get(ad, "weight")),
                   json_string_value(json_object_get(ad, "task")),
                   json_string_value(json_object_get(ad, "id")),
                   json_string_value(json_object_get(ad, "name")));
        if (json_is_string(a1111))
                printf("a1111 prompt:\n  %s\n", json_string_value(a1111));
        if (json_is_true(json_object_get(root, "partial")))
                printf("(partial answer: coverage %.2f)\n",
                       json_number_value(json_object_get(root, "coverage")));
}

/*
 * Download every chosen adapter's file into dir under its save_as, verified
 * by SHA256; 0 when all are there, 1 when one failed (the others still go).
 */
static int download_all(json_t *root, const char *dir)
{
        json_t *adapters = json_object_get(root, "adapters"), *ad;
        struct lora_download_result got;
        struct st_error err = {0};
        size_t i;
        int rc = 0;

        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
                fprintf(stderr, "stylus ask: --download %s: %s\n", dir, strerror(errno));
                return 1;
        }
        printf("downloads into %s:\n", dir);
        json_array_foreach(adapters, i, ad)
        {
                const char *name = json_string_value(json_object_get(ad, "save_as"));

                if (lora_download(dir, name, json_string_value(json_object_get(ad, "download_url")),
                                  json_string_value(json_object_get(ad, "sha256")), ASK_USER_AGENT,
                                  &got, &err)) {
                        fprintf(stderr, "stylus ask: %s\n", err.msg);
                        rc = 1;
                        continue;
                }
                printf("  %-40s %s (%llu bytes%s)\n", name, got.already ? "already there" : "saved",
                       (unsigned long long)got.bytes, got.verified ? ", SHA256 checked" : "");
        }
        return rc;
}

static void usage(FILE *f)
{
        fputs("usage: stylus ask PROMPT [--server URL] [--base-model NAME] [--images N]\n"
              "                  [--k N] [--nsfw] [--characters] [--block ID]...\n"
              "                  [--format table|json|a1111|comfyui|diffusers]\n"
              "\n"
              "Ask a query node which adapters suit a prompt, at which weights.\n"
              "\n"
              "  --server URL       query node (default http://127.0.0.1:8080)\n"
              "  --base-model NAME  sd15, sdxl, pony, illustrious, flux1 ... (default any)\n"
              "  --images N         images to plan masks for (default 1)\n"
              "  --k N              candidates to retrieve (default 150)\n"
              "  --nsfw             allow NSFW adapters\n"
              "  --characters       allow character/celebrity adapters not named in the prompt\n"
              "  --block ID         never return this adapter (repeat for more)\n"
              "  --download DIR     save each chosen adapter's file into DIR (a LoRA folder)\n"
              "                     under the name the forms use, checked by SHA256\n"
              "  --format F         table (default) or the raw JSON / a form of the answer\n"
              "\n"
              "examples:\n"
              "  stylus ask \"a corgi in watercolor style\" --base-model sd15\n"
              "  stylus ask \"samurai in armor, snowy mountains\" --format comfyui\n"
              "  stylus ask \"a fox, pixel art\" --block civitai:1234@5678\n"
              "  stylus ask \"a corgi, watercolor\" --base-model sdxl \\\n"
              "      --download ~/stable-diffusion-webui/models/Lora\n",
              f);
}

int cmd_ask(int argc, char **argv)
{
        static const struct option opts[] = {
            {"server", required_argument, NULL, 's'},
            {"base-model", required_argument, NULL, 'b'},
            {"images", required_argument, NULL, 'i'},
            {"k", required_argument, NULL, 'k'},
            {"nsfw", no_argument, NULL, 'n'},
            {"characters", no_argument, NULL, 'c'},
            {"format", required_argument, NULL, 'f'},
            {"block", required_argument, NULL, 'x'},
            {"download", required_argument, NULL, 'd'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *server = "http://127.0.0.1:8080", *base = NULL, *format = "table";
        const char *download = NULL;
        long images = 1, k = 150;
        int nsfw = 0, characters = 0, c, rc = 1;
        struct answer ans = {0};
        struct curl_slist *headers = NULL;
        char url[1024], err[CURL_ERROR_SIZE] = "";
        json_t *req, *root = NULL, *blocked = json_array();
        char *body;
        long status = 0;
        CURL *curl;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                        server = optarg;
                        break;
                case 'b':
                        base = optarg;
                        break;
                case 'i':
                        images = strtol(optarg, NULL, 10);
                        break;
                case 'k':
                        k = strtol(optarg, NULL, 10);
                        break;
                case 'n':
                        nsfw = 1;
                        break;
                case 'c':
                        characters = 1;
                        break;
                case 'f':
                        format = optarg;
                        break;
                case 'd':
                        download = optarg;
                        break;
                case 'x':
                        if (json_array_append_new(blocked, json_string(optarg))) {
                                fprintf(stderr, "stylus ask: --block %s: not an adapter id\n",
                                        optarg);
                                json_decref(blocked);
                                return 2;
                        }
                        break;
                case 'h':
                        json_decref(blocked);
                        usage(stdout);
                        return 0;
                default:
                        json_decref(blocked);
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc - 1) {
                json_decref(blocked);
                usage(stderr);
                return 2;
        }
        req = json_pack("{s:s,s:I,s:I,s:b,s:b}", "prompt", argv[optind], "n_images",
                        (json_int_t)images, "k", (json_int_t)k, "allow_nsfw", nsfw,
                        "allow_characters", characters);
        if (!req) {
                json_decref(blocked);
                fprintf(stderr, "stylus ask: the prompt is not valid UTF-8\n");
                return 2;
        }
        if (base)
                json_object_set_new(req, "base_model", json_string(base));
        if (json_array_size(blocked))
                json_object_set(req, "blocked", blocked);
        json_decref(blocked);
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        snprintf(url, sizeof(url), "%s/v1/compose", server);
        curl = curl_easy_init();
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ans);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
        if (curl_easy_perform(curl) != CURLE_OK) {
                fprintf(stderr, "stylus ask: %s: %s\n", url, err);
                goto out;
        }
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        root = ans.data ? json_loads(ans.data, 0, NULL) : NULL;
        if (status != 200 || !root) {
                json_t *e = json_object_get(json_object_get(root, "error"), "message");

                fprintf(stderr, "stylus ask: HTTP %ld: %s\n", status,
                        json_is_string(e) ? json_string_value(e) : "unreadable answer");
                goto out;
        }
        rc = 0;
        if (!strcmp(format, "table")) {
                print_table(root);
        } else if (!strcmp(format, "json")) {
                puts(ans.data);
        } else {
                json_t *form = json_object_get(json_object_get(root, "forms"), format);
                char *s = json_is_string(form) ? NULL : json_dumps(form, JSON_INDENT(2));

                if (!form) {
                        fprintf(stderr, "stylus ask: no form '%s' in the answer\n", format);
                        rc = 1;
                } else {
                        puts(s ? s : json_string_value(form));
                }
                free(s);
        }
        if (rc == 0 && download)
                rc = download_all(root, download);
out:
        json_decref(root);
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);
        free(body);
        free(ans.data);
        return rc;
}
