/*
 * fixture_server.h - start tests/fixtures/server.py (the Civitai + Hugging
 * Face stand-in) on a loopback port it picks, and stop it by its pid.
 * Functions are static inline so each test uses only what it needs.
 *
 *	struct fixture_server s;
 *	const char *args[] = {"--fault", "500:4", NULL};
 *
 *	fixture_server_start(&s, "test_hf", args);   exits the test on failure
 *	... s.base is "http://127.0.0.1:PORT" ...
 *	fixture_server_stop(&s);
 *
 * The server dies with the test even when the test dies by a signal
 * (PR_SET_PDEATHSIG); call fixture_server_stop on every normal path.
 */
#ifndef STYLUS_TEST_FIXTURE_SERVER_H
#define STYLUS_TEST_FIXTURE_SERVER_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FIXTURE_SERVER_MAX_ARGS 16

struct fixture_server {
        pid_t pid;          /* 0 when not running */
        char base[64];      /* "http://127.0.0.1:PORT" */
        char port_file[96]; /* where the server writes its port */
};

/* Fork/exec the server with the extra args (NULL-terminated, may be NULL); wait for its port. */
static inline void fixture_server_start(struct fixture_server *s, const char *name,
                                        const char *const *extra)
{
        const char *fixtures = getenv("STYLUS_FIXTURES");
        const char *argv[8 + FIXTURE_SERVER_MAX_ARGS];
        struct timespec pause = {0, 50 * 1000 * 1000};
        char script[1024];
        int port = 0, n = 0;

        if (!fixtures) {
                fprintf(stderr, "STYLUS_FIXTURES is not set (run through ctest)\n");
                exit(1);
        }
        snprintf(script, sizeof(script), "%s/server.py", fixtures);
        snprintf(s->port_file, sizeof(s->port_file), "/tmp/%s.%d.port", name, (int)getpid());
        unlink(s->port_file);
        argv[n++] = "python3";
        argv[n++] = script;
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--port-file";
        argv[n++] = s->port_file;
        argv[n++] = "--data";
        argv[n++] = fixtures;
        for (int i = 0; extra && extra[i] && i < FIXTURE_SERVER_MAX_ARGS - 1; i++)
                argv[n++] = extra[i];
        argv[n] = NULL;
        s->pid = fork();
        if (s->pid < 0) {
                perror("fork");
                exit(1);
        }
        if (s->pid == 0) {
                int quiet = open("/dev/null", O_WRONLY);

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (quiet >= 0)
                        dup2(quiet, 1);
                execv("/usr/bin/python3", (char *const *)argv);
                _exit(127);
        }
        for (int i = 0; i < 200 && port <= 0; i++) {
                FILE *f = fopen(s->port_file, "r");

                if (f) {
                        if (fscanf(f, "%d", &port) != 1)
                                port = 0;
                        fclose(f);
                }
                if (port <= 0)
                        nanosleep(&pause, NULL);
        }
        if (port <= 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
                fprintf(stderr, "fixture server wrote no port\n");
                exit(1);
        }
        snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", port);
}

/* SIGTERM the server by its pid and reap it; safe to call twice. */
static inline void fixture_server_stop(struct fixture_server *s)
{
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
        }
        unlink(s->port_file);
}

#endif
