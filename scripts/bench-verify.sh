#!/usr/bin/env bash
# bench-verify.sh: time `canaryd verify` against coreutils sha256sum on the
# same generated release (default 3,003 files, 1 GiB in total).
#
#   FILES=3003 TOTAL_MB=1024 CANARYD=./bin/canaryd scripts/bench-verify.sh
#
# Files of varied sizes (many small, a few large) are filled from
# /dev/urandom in a temporary folder, a manifest is written with sha256sum,
# then each contestant runs twice and the second (page-cache warm) run is
# kept, since caches cannot be dropped without root (RUNS=n: fastest of n
# warm runs):
#
#   canaryd verify MANIFEST ROOT          (must exit 0 and print N/N files verified)
#   xargs -P2 -n 64 sha256sum             (the baseline to match or beat)
#   sha256sum -c --quiet MANIFEST         (single process)
#
# Then one file is corrupted and canaryd verify must exit non-zero.
# Exit status: 0 when canaryd verified everything, caught the corruption and
# was at least as fast as the xargs baseline; 1 when canaryd gave a wrong
# answer; 3 when it was only slower; 2 on bad settings.
# Environment: FILES, TOTAL_MB, CANARYD, TMPDIR (where the files go),
# RUNS (timed runs after the warm-up, fastest kept; default 1, raise it on a
# busy machine), RUN_TIMEOUT (seconds per run, default 600), KEEP=1 keeps
# the folder.
set -euo pipefail

FILES=${FILES:-3003}
TOTAL_MB=${TOTAL_MB:-1024}
CANARYD=${CANARYD:-./bin/canaryd}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
RUNS=${RUNS:-1}

die() { echo "bench-verify: $*" >&2; exit 2; }

[[ $FILES =~ ^[0-9]+$ ]] && ((FILES >= 1 && FILES <= 100000)) || die "FILES must be 1..100000, got $FILES"
[[ $TOTAL_MB =~ ^[0-9]+$ ]] && ((TOTAL_MB >= 1 && TOTAL_MB <= 16384)) || die "TOTAL_MB must be 1..16384, got $TOTAL_MB"
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 10)) || die "RUNS must be 1..10, got $RUNS"
[[ -x $CANARYD ]] || die "no executable canaryd at $CANARYD (set CANARYD)"
for tool in sha256sum xargs awk head timeout; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-verify.XXXXXX")
cleanup() { [[ ${KEEP:-0} == 1 ]] && echo "kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT INT TERM

avail_mb=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
((avail_mb > TOTAL_MB + TOTAL_MB / 10 + 64)) || die "need about $((TOTAL_MB + TOTAL_MB / 10 + 64)) MB free in $work, have $avail_mb"

root=$work/root
manifest=$work/SHA256SUMS
mkdir -p "$root"

now() { date +%s.%N; }

# Sizes: a deterministic mix (awk's fixed seed): 80% similar small weights
# and 20% heavy-tailed large ones (up to ~100x), scaled so that they sum to
# exactly TOTAL_MB MiB; the last file takes the rounding remainder.
echo "generating $FILES files, $TOTAL_MB MiB in $root ..." >&2
t0=$(now)
awk -v n="$FILES" -v total="$((TOTAL_MB * 1024 * 1024))" 'BEGIN {
	srand(42)
	for (i = 1; i <= n; i++) {
		r = rand()
		w[i] = (r < 0.8) ? 1 + rand() * 8 : 1 / (0.002 + rand() * rand())
		sum += w[i]
	}
	left = total
	for (i = 1; i <= n; i++) {
		s = (i == n) ? left : int(w[i] / sum * total)
		if (s > left) s = left
		left -= s
		printf "%d d%02d/f%05d.bin\n", s, i % 32, i
	}
}' >"$work/sizes"
awk '{ sub(/\/.*/, "", $2); print $2 }' "$work/sizes" | sort -u | (cd "$root" && xargs mkdir -p)
while read -r size name; do
	head -c "$size" /dev/urandom >"$root/$name"
done <"$work/sizes"
(cd "$root" && awk '{ print $2 }' "$work/sizes" | xargs -n 256 sha256sum) >"$manifest"
bytes=$(awk '{ s += $1 } END { print s }' "$work/sizes")
echo "generated $(wc -l <"$manifest") files, $bytes bytes, manifest included, in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s" >&2

declare -a names secs cpus
# run NAME CMD...: runs CMD once to warm the page cache, then RUNS times
# (each bounded by RUN_TIMEOUT) and records the fastest timed run's wall and
# CPU (user+sys) seconds; the last output is kept in $work/out.
run() {
	local name=$1 rc=0 best="" bestcpu="" wall cpu i
	shift
	timeout "$RUN_TIMEOUT" "$@" >"$work/out" 2>&1 || true
	for ((i = 0; i < RUNS; i++)); do
		{ time timeout "$RUN_TIMEOUT" "$@" >"$work/out" 2>&1; } 2>"$work/time" || rc=$?
		read -r wall cpu < <(awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' "$work/time")
		if [[ -z $best ]] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
			best=$wall bestcpu=$cpu
		fi
	done
	names+=("$name")
	secs+=("$best")
	cpus+=("$bestcpu")
	return "$rc"
}
TIMEFORMAT='%R %U %S'

status=0
if ! run "canaryd verify" "$CANARYD" verify "$manifest" "$root"; then
	echo "FAIL: canaryd verify exited non-zero on an intact release:" >&2
	tail -n 5 "$work/out" >&2
	status=1
fi
summary=$(tail -n 1 "$work/out")
if [[ $summary != "$FILES/$FILES files verified"* ]]; then
	echo "FAIL: canaryd verify summary is '$summary'; want '$FILES/$FILES files verified'" >&2
	status=1
fi
run "xargs -P2 -n 64 sha256sum" bash -c 'cd "$1" && awk "{ print \$2 }" "$2" | xargs -P2 -n 64 sha256sum' _ "$root" "$work/sizes" ||
	die "xargs sha256sum failed"
run "sha256sum -c" bash -c 'cd "$1" && sha256sum -c --quiet "$2"' _ "$root" "$manifest" ||
	die "sha256sum -c failed"

# One changed byte in the middle of the largest file must be caught.
read -r vsize victim < <(sort -rn "$work/sizes" | head -n 1)
((vsize > 0)) || die "all generated files are empty"
old=$(dd if="$root/$victim" bs=1 skip=$((vsize / 2)) count=1 status=none | od -An -tx1 | tr -d ' ')
new=X
[[ $old == 58 ]] && new=Y
printf '%s' "$new" | dd of="$root/$victim" bs=1 seek=$((vsize / 2)) conv=notrunc status=none
if "$CANARYD" verify "$manifest" "$root" >"$work/out" 2>&1; then
	echo "FAIL: canaryd verify exited 0 after $victim was corrupted" >&2
	status=1
elif ! grep -q "$victim" "$work/out"; then
	echo "FAIL: canaryd verify did not name the corrupted $victim:" >&2
	tail -n 5 "$work/out" >&2
	status=1
fi

mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
printf '\n%-28s %9s %9s %9s   (%d files, %s MiB, warm cache, %s CPUs, load %s)\n' \
	contestant seconds 'MiB/s' 'CPU s' "$FILES" "$mb" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo ?)"
for i in "${!names[@]}"; do
	printf '%-28s %9s %9s %9s\n' "${names[$i]}" "${secs[$i]}" \
		"$(awk -v m="$mb" -v s="${secs[$i]}" 'BEGIN { printf "%.1f", (s > 0 ? m / s : 0) }')" "${cpus[$i]}"
done
echo "canaryd verify summary: $summary"

if ((status == 0)) && awk -v c="${secs[0]}" -v x="${secs[1]}" 'BEGIN { exit !(c > x) }'; then
	echo "SLOWER: canaryd verify took ${secs[0]}s, xargs -P2 sha256sum ${secs[1]}s" >&2
	status=3
fi
exit "$status"
