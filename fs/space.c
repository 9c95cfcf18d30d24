/* space.c - the store's size on disk and the free space under it (space.h). */
#include "space.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "pack.h"

/* st_blocks of @p name in directory @p dfd, in bytes; 0 when it is not there. */
static uint64_t blocks_at(int dfd, const char *name)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return 0;
	return (uint64_t)st.st_blocks * 512;
}

int mfs_space_get(const char *store_dir, mfs_space *out)
{
	memset(out, 0, sizeof *out);
	struct statvfs sv;
	if (statvfs(store_dir, &sv) < 0)
		return -errno;
	uint64_t unit = sv.f_frsize ? (uint64_t)sv.f_frsize : (uint64_t)sv.f_bsize;
	mfs_space sp = {
	    .fs_bytes = (uint64_t)sv.f_blocks * unit,
	    .fs_free_bytes = (uint64_t)sv.f_bfree * unit,
	    .fs_avail_bytes = (uint64_t)sv.f_bavail * unit,
	};
	int dfd = open(store_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		sp.store_bytes = blocks_at(dfd, "data.mdb");
		int pfd = openat(dfd, "packs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d = pfd >= 0 ? fdopendir(pfd) : NULL;
		if (!d && pfd >= 0)
			close(pfd);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			uint64_t id;
			/* only packs, not gc's temporary files or strays */
			if (mfs_pack_name_parse(de->d_name, &id))
				sp.store_bytes += blocks_at(dirfd(d), de->d_name);
		}
		if (d)
			closedir(d);
		close(dfd);
	}
	*out = sp;
	return 0;
}
