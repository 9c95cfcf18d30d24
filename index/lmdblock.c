/* lmdblock.c - lock.mdb's first-byte lock and its holder's name (lmdblock.h). */
#include "lmdblock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int mfs_lmdb_lock_byte(int fd, short type, int cmd, struct flock *out)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	int rc;
	while ((rc = fcntl(fd, cmd, &fl)) < 0 && errno == EINTR)
		;
	if (out)
		*out = fl;
	return rc < 0 ? -errno : 0;
}

void mfs_proc_comm(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	if (!cap)
		return;
	buf[0] = '\0';
	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, (int)cap, f))
		buf[strcspn(buf, "\n")] = '\0';
	else
		buf[0] = '\0';
	fclose(f);
}
