# mount_lib.bash - what the mount benchmarks share (sourced, not run: not
# a *.sh, so `./run bench` does not take it for a benchmark): a
# daemon over a store at $MNT, started fresh and always unmounted.
# The caller sets MODELFS, MNT and WORK (the daemon's log goes to
# $WORK/mount.log) before sourcing.
DAEMON_PID=""

is_mounted() { awk -v m="$MNT" '$2 == m && $3 ~ /^fuse/ {f=1} END {exit !f}' /proc/mounts; }

# unmount: stop the daemon (waiting for it), lazily unmount if it is stuck
unmount() {
	if is_mounted; then
		fusermount3 -u "$MNT" 2>/dev/null || true
	fi
	if [ -n "$DAEMON_PID" ]; then
		for _ in $(seq 100); do
			kill -0 "$DAEMON_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$DAEMON_PID" 2>/dev/null; then
			kill "$DAEMON_PID" 2>/dev/null || true
			wait "$DAEMON_PID" 2>/dev/null || true
		fi
		DAEMON_PID=""
	fi
	if is_mounted; then
		fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	fi
}

# mount_store STORE [FLAG...]: a new daemon over STORE at $MNT (1G cache)
mount_store() {
	local store="$1"
	shift
	unmount
	"$MODELFS" --store "$store" mount -f --cache-bytes 1G "$@" "$MNT" \
		>>"$WORK/mount.log" 2>&1 &
	DAEMON_PID=$!
	for _ in $(seq 300); do
		is_mounted && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "mount failed:" >&2
	cat "$WORK/mount.log" >&2
	exit 1
}

CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ]; then
	CAN_DROP=1
fi
drop_caches() {
	sync
	if [ "$CAN_DROP" = 1 ]; then
		echo 3 >/proc/sys/vm/drop_caches
	fi
}
