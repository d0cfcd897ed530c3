/*
 * log.h - one-line logs to stderr: "2026-11-27T15:04:05Z crawler info: text".
 * The role name is set once per process.  Never pass secrets to these.
 */
#ifndef STYLUS_LOG_H
#define STYLUS_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Name printed on every line; level below which lines are dropped. */
void log_setup(const char *role, enum log_level min);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
