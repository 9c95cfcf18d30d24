/*
 * lmdblock.h - the lock LMDB keeps on lock.mdb, and who holds it.  The
 * compaction (env.c) and the format upgrade (upgrade.c) replace data.mdb
 * only while they hold the write lock on lock.mdb's first byte, the lock
 * LMDB's own exclusive-open test takes, so no LMDB user (a modelfs, an
 * mdb_dump) has the environment open meanwhile; when they cannot take it
 * they name the process that holds it.
 *
 * Module convention: 0 or -errno.
 */
#ifndef MFS_LMDBLOCK_H
#define MFS_LMDBLOCK_H

#include <fcntl.h>
#include <stddef.h>
#include <sys/types.h>

/**
 * fcntl() on the byte lock of a file's first byte: lock.mdb's, as LMDB
 * takes it, or (F_OFD_SETLKW) users.lock's, the lock store creators and
 * openers meet on (env.c) (retried on EINTR).
 * @param[in]  fd    the file, open for writing (for reading: F_RDLCK only)
 * @param[in]  type  F_WRLCK, F_RDLCK or F_UNLCK
 * @param[in]  cmd   F_SETLK, F_SETLKW, F_GETLK or their F_OFD_ forms
 * @param[out] out   optional: the struct flock after the call (F_GETLK: the
 *                   holder's l_pid and l_type, F_UNLCK when none)
 * @return 0 or -errno (-EAGAIN / -EACCES: F_SETLK found it held)
 */
int mfs_lmdb_lock_byte(int fd, short type, int cmd, struct flock *out);

/**
 * The command name of process @p pid (the first line of /proc/PID/comm,
 * "mdb_dump"), into @p buf of @p cap bytes; "" when it cannot be read.
 */
void mfs_proc_comm(pid_t pid, char *buf, size_t cap);

#endif
