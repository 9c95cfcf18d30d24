/*
 * commands.h - the modelfs subcommands.  Each takes (argc, argv) with argv[0]
 * the command name, parses its own options (every one has --help) and
 * returns an exit code (MFS_EXIT_*).
 */
#ifndef MFS_COMMANDS_H
#define MFS_COMMANDS_H

int cmd_ingest(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_gc(int argc, char **argv);
/* `modelfs gc --remote URL ...`: cmd_gc hands its arguments over (cmd_gc_remote.c) */
int cmd_gc_remote(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_upgrade(int argc, char **argv);

#endif
