/*
 * cli.h - what every modelfs subcommand shares: option parsing helpers,
 * opening the store, naming repos, printing sizes.  tools/ is the only layer
 * that prints to the terminal and decides exit codes.
 */
#ifndef MFS_CLI_H
#define MFS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Exit codes of every subcommand. */
enum { MFS_EXIT_OK = 0, MFS_EXIT_ERROR = 1, MFS_EXIT_USAGE = 2 };

/* The store chosen by the global or per-command --store (NULL: default). */
extern const char *mfs_cli_store_dir;

/**
 * Open the store for a command: --store, else $MODELFS_STORE, else the default.
 * Prints the error itself. @return 0 or -1.
 */
int mfs_cli_open_store(const char *cmd, unsigned flags, mfs_store **out);

/**
 * Turn a command-line repo name into a store repo id: "org/name" and "name"
 * become "models/org/name" and "models/name"; "models/...", "datasets/..."
 * and "spaces/..." are kept.  Checks the result.
 * @return 0, or -1 after printing why the name is invalid
 */
int mfs_cli_repo_id(const char *cmd, const char *arg, char out[MFS_REPO_ID_MAX + 1]);

/**
 * A store repo id as people type it, the reverse of mfs_cli_repo_id:
 * "models/org/name" is "org/name" (the hub's and `hf`'s spelling);
 * "datasets/..." and "spaces/..." are kept whole.
 * @return a pointer into @p repo (valid as long as it)
 */
const char *mfs_cli_repo_name(const char *repo);

/**
 * Parse a --threads value: a whole number from 1 to 256.
 * @return 0, or -1 after printing the error
 */
int mfs_cli_parse_threads(const char *cmd, const char *arg, int *out);


/** Print "modelfs CMD: message" to stderr (printf-style). */
void mfs_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Resolve a commit for a repo: @p rev as a ref name, else as a 40-hex commit
 * of the repo; NULL means "main", else the newest commit.
 * @return 0 or -1 after printing the error
 */
int mfs_cli_resolve_rev(const char *cmd, mfs_txn *t, const char *repo, const char *rev,
			char commit[MFS_COMMIT_LEN + 1]);

/**
 * Is @p repo in the store and intact (every record of it passes the record
 * checker, index/check.h)?
 * @param[in] flags  MFS_CHECK_* (MFS_CHECK_CHUNKS also looks up every chunk)
 * @return 0, or -1 after printing "no repo ..." or "REPO is damaged: its
 *         files record for ... (run `modelfs verify` ...)"
 */
int mfs_cli_repo_intact(const char *cmd, mfs_txn *t, const char *repo, unsigned flags);

/**
 * Text read from the index or a file (a path, a ref or tensor name), quoted
 * for the terminal with mfs_str_quote: no control character or escape
 * sequence reaches the screen.  @p buf of at least MFS_CLI_QUOTED bytes.
 * @return buf
 */
#define MFS_CLI_QUOTED (4 * 255 + 8)
const char *mfs_cli_quote(const char *s, char *buf);

/**
 * The tests' pause between a command's committed steps (they kill it there):
 * when @p ms (an environment variable's value, may be NULL) is a number of
 * milliseconds, print "modelfs CMD: step: WHAT" to stderr and sleep that
 * long; otherwise do nothing.
 */
void mfs_cli_test_pause(const char *cmd, const char *ms, const char *what);

#endif
