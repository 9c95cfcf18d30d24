/*
 * config.c - mount.conf parsing and key setting (see config.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store.h"
#include "units.h"

static const mfs_config_key keys[] = {
    {"store", "--store", 0, "DIR", "store directory"},
    {"mountpoint", "--mountpoint", 0, "DIR", "directory to mount on"},
    {"cache_bytes", "--cache-bytes", 0, "SIZE", "decoded-chunk cache budget (e.g. 512M, 2G)"},
    {"threads", "--threads", 0, "N", "FUSE worker threads (1..256)"},
    {"prefetch", "--prefetch", 0, "N", "chunks decoded ahead of a sequential reader (0..256)"},
    {"prefetch_file", "--prefetch-file", 0, "SIZE",
     "files up to this size are decoded whole once read out of order (e.g. 256M; 0 = off)"},
    {"prefetch_model", "--prefetch-model", 1, "[yes|no]",
     "the first read of a snapshot's config.json decodes the *.safetensors beside it, "
     "within prefetch_file"},
    {"gpu", "--gpu", 0, "auto|on|off",
     "decode rans chunks on the GPU: auto/on use a usable CUDA device (on says in the log "
     "why not, when there is none), off never; other codecs always decode on the CPU"},
    {"gpu_memory", "--gpu-memory", 0, "SIZE",
     "device memory GPU decoding may use (e.g. 512M; 0 = min(1G, an eighth of the "
     "device); at least 16M)"},
    {"log_level", "--log-level", 0, "LEVEL", "error|warn|info|debug"},
    {"allow_other", "--allow-other", 1, "[yes|no]", "let other users read the mount"},
    {"foreground", "--foreground", 1, "[yes|no]", "do not daemonize; log to stderr"},
    {"log_file", "--log", 0, "FILE",
     "append the log to FILE (what the foreground prints to stderr; a daemon logs there, "
     "not to syslog)"},
    {"remote_poll", "--remote-poll", 0, "SECONDS",
     "with --remote: read the bucket's LATEST this often and take a newer pushed index "
     "in while serving (0 = never; default 30)"},
    {"spill_dir", "--spill-dir", 0, "DIR",
     "where removed files still held open are copied once they would hold more than 32 "
     "store snapshots (default $TMPDIR, else /var/tmp)"},
};

const mfs_config_key *mfs_config_keys(size_t *n)
{
	*n = sizeof(keys) / sizeof(keys[0]);
	return keys;
}

void mfs_config_defaults(mfs_mount_config *c)
{
	memset(c, 0, sizeof(*c));
	if (mfs_store_default_dir(c->store, sizeof(c->store)) < 0)
		c->store[0] = 0;
	c->cache_bytes = (uint64_t)1 << 30;
	c->threads = 4;
	c->prefetch = 8;
	c->prefetch_file = (uint64_t)256 << 20;
	c->prefetch_model = 1;
	c->gpu = MFS_GPU_AUTO;
	c->log_level = MFS_LOG_INFO;
	c->remote_poll = 30;
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	if (!isdigit((unsigned char)*s))
		return MFS_E_INVAL;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return MFS_E_INVAL;
	*out = (unsigned)v;
	return 0;
}

int mfs_config_parse_bool(const char *s, int *out)
{
	static const char *yes[] = {"yes", "true", "on", "1"};
	static const char *no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *out = 0, 0;
	}
	return MFS_E_INVAL;
}

static const char *log_names[] = {"error", "warn", "info", "debug"};
static const char *gpu_names[] = {"auto", "on", "off"};

const char *mfs_config_log_level_name(int level)
{
	return level >= 0 && level <= MFS_LOG_DEBUG ? log_names[level] : "?";
}

const char *mfs_config_gpu_name(int gpu)
{
	return gpu >= 0 && gpu <= MFS_GPU_OFF ? gpu_names[gpu] : "?";
}

static int parse_enum(const char *s, const char *const *names, int n, int *out)
{
	for (int i = 0; i < n; i++)
		if (strcasecmp(s, names[i]) == 0)
			return *out = i, 0;
	return MFS_E_INVAL;
}

static int set_path(char *dst, const char *value, const char *where, const char *key,
		    const char *what, mfs_errmsg *err)
{
	char buf[MFS_CONFIG_PATH_MAX];
	const char *home = getenv("HOME");
	if (value[0] == '~' && (value[1] == '/' || value[1] == 0) && home) {
		if ((size_t)snprintf(buf, sizeof(buf), "%s%s", home, value + 1) >=
		    sizeof(buf))
			goto toolong;
		value = buf;
	}
	if (!*value)
		return mfs_err(err, MFS_E_INVAL, "%s: %s is empty; give a %s", where,
			       key, what);
	if (strlen(value) >= MFS_CONFIG_PATH_MAX)
		goto toolong;
	memmove(dst, value, strlen(value) + 1);
	return 0;
toolong:
	return mfs_err(err, MFS_E_INVAL, "%s: %s is longer than %d bytes", where, key,
		       MFS_CONFIG_PATH_MAX - 1);
}

int mfs_config_set(mfs_mount_config *c, const char *key, const char *value,
		   const char *where, mfs_errmsg *err)
{
	if (!value)
		return mfs_err(err, MFS_E_INVAL, "%s: %s needs a value", where, key);
	if (strcmp(key, "store") == 0)
		return set_path(c->store, value, where, key, "directory", err);
	if (strcmp(key, "mountpoint") == 0)
		return set_path(c->mountpoint, value, where, key, "directory", err);
	if (strcmp(key, "log_file") == 0)
		return set_path(c->log_file, value, where, key, "file", err);
	if (strcmp(key, "spill_dir") == 0)
		return set_path(c->spill_dir, value, where, key, "directory", err);
	if (strcmp(key, "cache_bytes") == 0) {
		uint64_t v;
		if (mfs_size_parse(value, &v) < 0 || v < (1u << 20))
			return mfs_err(
			    err, MFS_E_INVAL,
			    "%s: cache_bytes '%s' is not a size of at least 1M "
			    "(bytes, or a number with K, M, G or T: 512M, 2G)",
			    where, value);
		c->cache_bytes = v;
		return 0;
	}
	if (strcmp(key, "threads") == 0) {
		if (parse_uint(value, 1, 256, &c->threads) < 0)
			return mfs_err(
			    err, MFS_E_INVAL,
			    "%s: threads '%s' is not a whole number from 1 to 256", where,
			    value);
		return 0;
	}
	if (strcmp(key, "prefetch") == 0) {
		if (parse_uint(value, 0, 256, &c->prefetch) < 0)
			return mfs_err(
			    err, MFS_E_INVAL,
			    "%s: prefetch '%s' is not a whole number from 0 to 256 "
			    "(chunks ahead; 0 turns prefetch off)",
			    where, value);
		return 0;
	}
	if (strcmp(key, "prefetch_file") == 0) {
		if (mfs_size_parse(value, &c->prefetch_file) < 0)
			return mfs_err(
			    err, MFS_E_INVAL,
			    "%s: prefetch_file '%s' is not a size (bytes, or a number "
			    "with K, M, G or T: 256M; 0 turns it off)",
			    where, value);
		return 0;
	}
	if (strcmp(key, "remote_poll") == 0) {
		if (parse_uint(value, 0, 86400, &c->remote_poll) < 0)
			return mfs_err(
			    err, MFS_E_INVAL,
			    "%s: remote_poll '%s' is not a whole number of seconds from 0 "
			    "to 86400 (0 turns polling off)",
			    where, value);
		return 0;
	}
	if (strcmp(key, "gpu") == 0) {
		if (parse_enum(value, gpu_names, 3, &c->gpu) < 0)
			return mfs_err(err, MFS_E_INVAL,
				       "%s: gpu '%s' is not one of auto, on, off", where,
				       value);
		return 0;
	}
	if (strcmp(key, "gpu_memory") == 0) {
		uint64_t v;
		if (mfs_size_parse(value, &v) < 0 || (v != 0 && v < MFS_GPU_MEMORY_MIN_BYTES))
			return mfs_err(
			    err, MFS_E_INVAL,
			    "%s: gpu_memory '%s' is not 0 or a size of at least 16M "
			    "(bytes, or a number with K, M, G or T: 512M, 2G)",
			    where, value);
		c->gpu_memory = v;
		return 0;
	}
	if (strcmp(key, "log_level") == 0) {
		if (parse_enum(value, log_names, 4, &c->log_level) < 0)
			return mfs_err(
			    err, MFS_E_INVAL,
			    "%s: log_level '%s' is not one of error, warn, info, debug",
			    where, value);
		return 0;
	}
	if (strcmp(key, "allow_other") == 0 || strcmp(key, "foreground") == 0 ||
	    strcmp(key, "prefetch_model") == 0) {
		int *dst = key[0] == 'a' ? &c->allow_other
			   : key[0] == 'f' ? &c->foreground
					   : &c->prefetch_model;
		if (mfs_config_parse_bool(value, dst) < 0)
			return mfs_err(err, MFS_E_INVAL, "%s: %s '%s' is not yes or no",
				       where, key, value);
		return 0;
	}
	return mfs_err(
	    err, MFS_E_INVAL,
	    "%s: unknown key '%s' (known: store, mountpoint, cache_bytes, threads, "
	    "prefetch, prefetch_file, prefetch_model, gpu, gpu_memory, log_level, "
	    "allow_other, "
	    "foreground, log_file, remote_poll, spill_dir)",
	    where, key);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

int mfs_config_load_file(mfs_mount_config *c, const char *path, mfs_errmsg *err)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		return mfs_err(err, -e, "cannot read config %s: %s", path, strerror(e));
	}
	char line[2 * MFS_CONFIG_PATH_MAX];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char where[MFS_CONFIG_PATH_MAX + 32];
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (!strchr(line, '\n') && !feof(f)) {
			rc = mfs_err(err, MFS_E_INVAL, "%s: line too long", where);
			break;
		}
		/* a '#' outside quotes starts a comment */
		int inq = 0;
		for (char *p = line; *p; p++) {
			if (*p == '"')
				inq = !inq;
			else if (*p == '#' && !inq) {
				*p = 0;
				break;
			}
		}
		char *s = trim(line);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			rc = mfs_err(err, MFS_E_INVAL,
				     "%s: expected 'key = value', got '%s'", where, s);
			break;
		}
		*eq = 0;
		char *key = trim(s), *val = trim(eq + 1);
		size_t vl = strlen(val);
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = 0;
			val++;
		} else if (strchr(val, '"')) {
			rc = mfs_err(err, MFS_E_INVAL,
				     "%s: unbalanced quote in value of %s", where, key);
			break;
		}
		if (!*key) {
			rc = mfs_err(err, MFS_E_INVAL, "%s: missing key before '='",
				     where);
			break;
		}
		if ((rc = mfs_config_set(c, key, val, where, err)) < 0)
			break;
	}
	if (rc == 0 && ferror(f))
		rc = mfs_err(err, -EIO, "%s: read error", path);
	fclose(f);
	return rc;
}
