/*
 * commands.h - the subcommands of the stylus binary.  Each role folder
 * defines its own in a <name>_cmd.c file; ops/main_cmd.c dispatches.
 * Every command parses its own flags, answers --help with usage and
 * examples, and returns a process exit status (0 ok, 1 failure, 2 usage).
 */
#ifndef STYLUS_COMMANDS_H
#define STYLUS_COMMANDS_H

int cmd_catalog(int argc, char **argv);
int cmd_crawler(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_refiner(int argc, char **argv);
int cmd_indexer(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_idf(int argc, char **argv);
int cmd_shard(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_ask(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_catalog_backup(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_requeue(int argc, char **argv);

#endif
