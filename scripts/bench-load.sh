#!/usr/bin/env bash
# bench-load: canaryd against nginx as a 90/10 canary proxy, side by side.
#
# Two nginx backends (stable, canary) answer ~100-byte bodies on loopback.
# Four contestants: nginx, canaryd (its server loop and fast path, proxy/h1),
# canaryd with CANARY_FAST_PATH=off (net/http's server and every request
# through the standard path, httputil.ReverseProxy: what the loop and the
# fast path save), and a bare httputil.ReverseProxy (scripts/stdproxy, the
# standard-library floor).
# Each contestant proxies to them with the same 90/10 split, pinned to core 0;
# wrk, hey and the backends run on core 1. Rounds are interleaved so drift on
# the machine hits both contestants alike. Everything is on 127.0.0.1,
# bounded in time, and torn down on exit.
#
# Environment: ROUNDS (3), DURATION (10s), CONNS (64), RATE (2000; 0 = no
# fixed-rate run),
# CANARYD (bin/canaryd), COMPARE (another canaryd build, e.g. main's, run as
# a further contestant "canaryd-compare"; empty = none), CORE_PROXY (0),
# CORE_LOAD (1), OUT (a temp folder),
# PROFILE (0; 1 = take a CPU profile of canaryd during its first measured run
# and an allocation profile after it, into $OUT/cpu.prof and $OUT/allocs.prof;
# the profiled run's figures are biased by the profiler and are not used),
# FLEET (0; 1 = a further contestant, canaryd-fleet: a replica of a fleet of
# two on a local etcd (Debian's etcd-server), the other replica and etcd on
# the load core; it publishes its evidence and watches the fleet while it
# proxies, so the table shows what the fleet costs the request path),
# POOL3 (0; 1 = a further contestant, canaryd-pool3: the same canaryd with a
# stable pool of three endpoints, the stable nginx listening on three ports,
# CANARY_LB as POOL_LB (least_request); the table shows what a pool costs
# against canaryd's one-endpoint stable),
# ONLY (the contestants to measure, space-separated, e.g.
# "canaryd canaryd-compare canaryd-pool3"; empty = all): on a shared machine,
# fewer contestants make shorter rounds, and more of them in the same time.
# canaryd against nginx, and each pair of canaryd contestants, are also
# compared round by round (the median of the per-round ratios), which
# cancels most of the drift a busy machine puts between rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
RATE=${RATE:-2000}
CANARYD=${CANARYD:-bin/canaryd}
CORE_PROXY=${CORE_PROXY:-0}
CORE_LOAD=${CORE_LOAD:-1}
PROFILE=${PROFILE:-0}
FLEET=${FLEET:-0}
POOL3=${POOL3:-0}
POOL_LB=${POOL_LB:-least_request}
ONLY=${ONLY:-}
wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
OUT=${OUT:-$(mktemp -d /tmp/canaryd-bench-load.XXXXXX)}
for tool in nginx wrk hey taskset; do
  command -v "$tool" >/dev/null || { echo "bench-load: $tool is not installed (apt-get install nginx wrk hey util-linux)" >&2; exit 2; }
done
[ -x "$CANARYD" ] || { echo "bench-load: $CANARYD not built (make build)" >&2; exit 2; }
if [ "$FLEET" = 1 ]; then
  command -v etcd >/dev/null || { echo "bench-load: FLEET=1 needs etcd (apt-get install etcd-server)" >&2; exit 2; }
fi
mkdir -p "$OUT"

P_STABLE=18081 P_CANARY=18082 P_NGINX=18090 P_CANARYD=18091 P_ADMIN=18092 P_PPROF=18093 P_STD=18094
P_FLEET=18095 P_FLEET_ADMIN=18096 P_FLEET2=18097 P_FLEET2_ADMIN=18098 P_ETCD=18099 P_ETCD_PEER=18100
P_SLOW=18101 P_SLOW_ADMIN=18102 P_CMP=18103 P_CMP_ADMIN=18104
P_STABLE2=18105 P_STABLE3=18106 P_POOL=18107 P_POOL_ADMIN=18108
BODY='{"service":"demo","version":"1.0.0","status":"ok","items":[1,2,3],"note":"hundred-byte answer!"}'

pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  for f in "$OUT"/nginx-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

backend_conf() { # name port [more ports]
  local listens="" port
  for port in "${@:2}"; do listens="$listens    listen 127.0.0.1:$port reuseport backlog=4096;
"; done
  cat > "$OUT/nginx-$1.conf" <<CONF
worker_processes 1;
pid $OUT/nginx-$1.pid;
error_log $OUT/nginx-$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
$listens    location = /__status { stub_status; }
    location / { default_type application/json; return 200 '$BODY'; }
  }
}
CONF
}
# The stable nginx also listens on two more ports for POOL3's three-endpoint
# pool: one stub_status counts them all.
backend_conf stable $P_STABLE $P_STABLE2 $P_STABLE3
backend_conf canary $P_CANARY
cat > "$OUT/nginx-proxy.conf" <<CONF
worker_processes 1;
pid $OUT/nginx-proxy.pid;
error_log $OUT/nginx-proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app {
    server 127.0.0.1:$P_STABLE weight=9;
    server 127.0.0.1:$P_CANARY weight=1;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$P_NGINX reuseport backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF

taskset -c "$CORE_LOAD" nginx -c "$OUT/nginx-stable.conf" -e "$OUT/nginx-stable.err"
taskset -c "$CORE_LOAD" nginx -c "$OUT/nginx-canary.conf" -e "$OUT/nginx-canary.err"
taskset -c "$CORE_PROXY" nginx -c "$OUT/nginx-proxy.conf" -e "$OUT/nginx-proxy.err"

CANARY_STABLE_URL=http://127.0.0.1:$P_STABLE CANARY_CANARY_URL=http://127.0.0.1:$P_CANARY \
CANARY_TOKEN=bench-token-0123456789abcdef CANARY_LISTEN=127.0.0.1:$P_CANARYD CANARY_ADMIN_LISTEN=127.0.0.1:$P_ADMIN \
CANARY_WEIGHT=10 CANARY_STATE_FILE="$OUT/state.json" CANARY_SLO_MIN_REQUESTS=1000000000 CANARY_LOG_LEVEL=warn \
CANARY_PPROF_LISTEN=$([ "$PROFILE" = 1 ] && echo "127.0.0.1:$P_PPROF") \
  taskset -c "$CORE_PROXY" "$CANARYD" > "$OUT/canaryd.log" 2>&1 &
pids+=($!)
CANARYD_PID=$!
# The standard-library floor: a bare httputil.ReverseProxy, same split, no measurement.
STDPROXY="$OUT/stdproxy"
go build -o "$STDPROXY" ./scripts/stdproxy
taskset -c "$CORE_PROXY" "$STDPROXY" 127.0.0.1:$P_STD http://127.0.0.1:$P_STABLE http://127.0.0.1:$P_CANARY > "$OUT/stdproxy.log" 2>&1 &
pids+=($!)
STD_PID=$!
# The same canaryd with the fast path off.
CANARY_STABLE_URL=http://127.0.0.1:$P_STABLE CANARY_CANARY_URL=http://127.0.0.1:$P_CANARY \
CANARY_TOKEN=bench-token-0123456789abcdef CANARY_LISTEN=127.0.0.1:$P_SLOW CANARY_ADMIN_LISTEN=127.0.0.1:$P_SLOW_ADMIN \
CANARY_WEIGHT=10 CANARY_STATE_FILE="$OUT/state-std.json" CANARY_SLO_MIN_REQUESTS=1000000000 CANARY_LOG_LEVEL=warn \
CANARY_FAST_PATH=off taskset -c "$CORE_PROXY" "$CANARYD" > "$OUT/canaryd-std.log" 2>&1 &
pids+=($!)
CANARYD_STD_PID=$!
COMPARE=${COMPARE:-}
if [ -n "$COMPARE" ]; then
  CANARY_STABLE_URL=http://127.0.0.1:$P_STABLE CANARY_CANARY_URL=http://127.0.0.1:$P_CANARY \
  CANARY_TOKEN=bench-token-0123456789abcdef CANARY_LISTEN=127.0.0.1:$P_CMP CANARY_ADMIN_LISTEN=127.0.0.1:$P_CMP_ADMIN \
  CANARY_WEIGHT=10 CANARY_STATE_FILE="$OUT/state-cmp.json" CANARY_SLO_MIN_REQUESTS=1000000000 CANARY_LOG_LEVEL=warn \
    taskset -c "$CORE_PROXY" "$COMPARE" > "$OUT/canaryd-compare.log" 2>&1 &
  pids+=($!)
  CANARYD_CMP_PID=$!
fi
if [ "$POOL3" = 1 ]; then
  CANARY_STABLE_URL=http://127.0.0.1:$P_STABLE,http://127.0.0.1:$P_STABLE2,http://127.0.0.1:$P_STABLE3 CANARY_CANARY_URL=http://127.0.0.1:$P_CANARY \
  CANARY_LB=$POOL_LB CANARY_TOKEN=bench-token-0123456789abcdef CANARY_LISTEN=127.0.0.1:$P_POOL CANARY_ADMIN_LISTEN=127.0.0.1:$P_POOL_ADMIN \
  CANARY_WEIGHT=10 CANARY_STATE_FILE="$OUT/state-pool.json" CANARY_SLO_MIN_REQUESTS=1000000000 CANARY_LOG_LEVEL=warn \
    taskset -c "$CORE_PROXY" "$CANARYD" > "$OUT/canaryd-pool3.log" 2>&1 &
  pids+=($!)
  CANARYD_POOL_PID=$!
fi
CONTESTANTS="nginx canaryd canaryd-fast-path-off stdlib"
PORTS="$P_STABLE $P_CANARY $P_NGINX $P_CANARYD $P_SLOW $P_STD"
if [ -n "$COMPARE" ]; then
  CONTESTANTS="$CONTESTANTS canaryd-compare"
  PORTS="$PORTS $P_CMP"
fi
if [ "$POOL3" = 1 ]; then
  CONTESTANTS="$CONTESTANTS canaryd-pool3"
  PORTS="$PORTS $P_POOL $P_STABLE2 $P_STABLE3"
fi
if [ "$FLEET" = 1 ]; then
  taskset -c "$CORE_LOAD" etcd --name bench --data-dir "$OUT/etcd" \
    --listen-client-urls http://127.0.0.1:$P_ETCD --advertise-client-urls http://127.0.0.1:$P_ETCD \
    --listen-peer-urls http://127.0.0.1:$P_ETCD_PEER --initial-advertise-peer-urls http://127.0.0.1:$P_ETCD_PEER \
    --initial-cluster bench=http://127.0.0.1:$P_ETCD_PEER --log-level error > "$OUT/etcd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$P_ETCD/health" && break; sleep 0.1; done
  fleet_replica() { # id listen admin core
    CANARY_STABLE_URL=http://127.0.0.1:$P_STABLE CANARY_CANARY_URL=http://127.0.0.1:$P_CANARY \
    CANARY_TOKEN=bench-token-0123456789abcdef CANARY_LISTEN=127.0.0.1:$2 CANARY_ADMIN_LISTEN=127.0.0.1:$3 \
    CANARY_WEIGHT=10 CANARY_SLO_MIN_REQUESTS=1000000000 CANARY_LOG_LEVEL=warn \
    CANARY_ETCD_ENDPOINTS=http://127.0.0.1:$P_ETCD CANARY_ETCD_PREFIX=/bench/ CANARY_REPLICA_ID="$1" \
      taskset -c "$4" "$CANARYD" > "$OUT/canaryd-$1.log" 2>&1 &
  }
  fleet_replica fleet-1 $P_FLEET $P_FLEET_ADMIN "$CORE_PROXY"
  pids+=($!)
  FLEET_PID=$!
  fleet_replica fleet-2 $P_FLEET2 $P_FLEET2_ADMIN "$CORE_LOAD"
  pids+=($!)
  CONTESTANTS="$CONTESTANTS canaryd-fleet"
  PORTS="$PORTS $P_FLEET"
fi
sleep 0.5
for port in $PORTS; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
NGINX_PID=$(cat "$OUT/nginx-proxy.pid")
# nginx's worker is the child of the master.
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)

hits() { curl -s "http://127.0.0.1:$1/__status" | awk '/^ [0-9]/ {print $3}'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
TCK=$(getconf CLK_TCK)

run_one() { # name port pid
  local name=$1 port=$2 pid=$3
  # warm-up
  taskset -c "$CORE_LOAD" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null
  local s0 c0 t0 s1 c1 t1 out
  s0=$(hits $P_STABLE); c0=$(hits $P_CANARY); t0=$(cpu_ticks "$pid")
  out=$(taskset -c "$CORE_LOAD" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  t1=$(cpu_ticks "$pid"); s1=$(hits $P_STABLE); c1=$(hits $P_CANARY)
  # stub_status counts its own status requests: one per hits() call on that backend.
  local ds=$(( s1 - s0 - 1 )) dc=$(( c1 - c0 - 1 ))
  local reqs rps p50 p99 errs
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errs" ] && echo "$name wrk: $errs" >> "$OUT/errors"
  local cpu_us=$(awk -v t=$(( t1 - t0 )) -v k="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", t/k*1e6/n}')
  local share=$(awk -v c=$dc -v s=$ds 'BEGIN {printf "%.2f", 100*c/(c+s)}')
  # The split must really be 90/10, counted at the backends.
  if ! awk -v sh="$share" 'BEGIN {exit !(sh >= 9.95 && sh <= 10.05)}'; then
    echo "  $name: canary share $share% is not 10%" >&2
    echo "$name" >> "$OUT/bad-split"
  fi
  # p99 at a fixed rate
  local fixed heyout
  fixed=0 # RATE=0 skips the fixed-rate run: shorter rounds, more of them
  if [ "$RATE" -gt 0 ]; then
    heyout=$(taskset -c "$CORE_LOAD" hey -z 5s -c 20 -q $(( RATE / 20 )) "http://127.0.0.1:$port/")
    fixed=$(echo "$heyout" | awk '/ 99% in/ {print $3*1000}')
    # Any status but 200, or any error, is an error.
    echo "$heyout" | awk '/^  \[[0-9]+\]/ && $1 != "[200]" {bad = 1} /Error distribution/ {bad = 1} END {exit !bad}' &&
      echo "$name hey: $(echo "$heyout" | awk '/Status code distribution/,0' | tr '\n' ' ')" >> "$OUT/errors"
  fi
  echo "$name $rps $cpu_us $p50 $p99 $fixed $share $ds $dc ${errs:-none}" >> "$OUT/results.txt"
  echo "  $name: $rps req/s, $cpu_us µs CPU/req, p50 $p50, p99 $p99, p99@${RATE}/s ${fixed}ms, canary share $share% ($dc of $((ds+dc))), errors: ${errs:-none}" >&2
}

: > "$OUT/results.txt"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$PROFILE" = 1 ]; then
  echo "profiling canaryd (not measured)" >&2
  taskset -c "$CORE_LOAD" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$P_CANARYD/" >/dev/null
  secs=${DURATION%s}
  curl -s -o "$OUT/cpu.prof" "http://127.0.0.1:$P_PPROF/debug/pprof/profile?seconds=$(( secs > 2 ? secs - 1 : 1 ))" &
  cpid=$!
  taskset -c "$CORE_LOAD" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$P_CANARYD/" | awk '/Requests\/sec/ {print "  profiled run: " $2 " req/s"}' >&2
  wait "$cpid"
  curl -s -o "$OUT/allocs.prof" "http://127.0.0.1:$P_PPROF/debug/pprof/allocs"
  echo "  profiles: $OUT/cpu.prof $OUT/allocs.prof (go tool pprof -top $CANARYD $OUT/cpu.prof)" >&2
fi
# run_contestant measures one contestant by name.
run_contestant() {
  case $1 in
    nginx) run_one nginx $P_NGINX "$NGINX_WORKER" ;;
    canaryd) run_one canaryd $P_CANARYD "$CANARYD_PID" ;;
    canaryd-fast-path-off) run_one canaryd-fast-path-off $P_SLOW "$CANARYD_STD_PID" ;;
    canaryd-compare) run_one canaryd-compare $P_CMP "$CANARYD_CMP_PID" ;;
    canaryd-pool3) run_one canaryd-pool3 $P_POOL "$CANARYD_POOL_PID" ;;
    stdlib) run_one stdlib $P_STD "$STD_PID" ;;
    canaryd-fleet) run_one canaryd-fleet $P_FLEET "$FLEET_PID" ;;
  esac
}
ORDER=()
for c in $CONTESTANTS; do wanted "$c" && ORDER+=("$c"); done
# Each round starts one contestant further along, so that no contestant is
# always the one measured first (or right after another).
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for i in "${!ORDER[@]}"; do
    run_contestant "${ORDER[$(( (i + r - 1) % ${#ORDER[@]} ))]}"
  done
done
CONTESTANTS="${ORDER[*]}"
if [ "$FLEET" = 1 ]; then
  echo "fleet: $(curl -s -H 'Authorization: Bearer bench-token-0123456789abcdef' http://127.0.0.1:$P_FLEET_ADMIN/dashboard/fleet)" >&2
fi
NGINX_RSS=$(hwm_kb "$NGINX_WORKER")
CANARYD_RSS=$(hwm_kb "$CANARYD_PID")
STD_RSS=$(hwm_kb "$STD_PID")
FLEET_RSS=$([ "$FLEET" = 1 ] && hwm_kb "$FLEET_PID" || echo 0)
CANARYD_STD_RSS=$(hwm_kb "$CANARYD_STD_PID")
CMP_RSS=$([ -n "$COMPARE" ] && hwm_kb "$CANARYD_CMP_PID" || echo 0)
POOL_RSS=$([ "$POOL3" = 1 ] && hwm_kb "$CANARYD_POOL_PID" || echo 0)
if [ "$POOL3" = 1 ]; then
  echo "canaryd-pool3's stable endpoints: $(curl -s -H 'Authorization: Bearer bench-token-0123456789abcdef' http://127.0.0.1:$P_POOL_ADMIN/dashboard/health_summary |
    python3 -c 'import json,sys; print(", ".join("%s %d requests" % (e["address"], e["requests"]) for e in json.load(sys.stdin)["stable"]["endpoints"]))' 2>/dev/null || echo n/a)" >&2
fi

# Median of each column per contestant, then the table.
awk -v conns="$CONNS" -v rsslist="nginx=$NGINX_RSS canaryd=$CANARYD_RSS canaryd-fast-path-off=$CANARYD_STD_RSS canaryd-compare=$CMP_RSS canaryd-pool3=$POOL_RSS canaryd-fleet=$FLEET_RSS stdlib=$STD_RSS" -v contestants="$CONTESTANTS" '
function median(arr, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
  return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2 }
# paired prints the median, lowest and highest of the per-round ratios of
# a to b (round i of a against round i of b): throughput, CPU per request
# and p99, and keeps the medians in PR, PC, PP (by "a/b"), with the median
# of the per-round differences of the fixed-rate p99 in PF.
function paired(a, b,   m, i, rr, cr, pr, fr) {
  m = n[a] < n[b] ? n[a] : n[b]; if (m == 0) return
  for (i = 1; i <= m; i++) { rr[i] = rps[a, i] / rps[b, i]; cr[i] = cpu[a, i] / cpu[b, i]; pr[i] = p99[a, i] / p99[b, i]; fr[i] = fx[a, i] - fx[b, i] }
  PR[a "/" b] = median(rr, m); PC[a "/" b] = median(cr, m); PP[a "/" b] = median(pr, m); PF[a "/" b] = median(fr, m)
  printf "%s/%s, round by round (%d pairs): throughput median %.3fx", a, b, m, PR[a "/" b]; printf " (%.2f-%.2f),", rr[1], rr[m]
  printf " CPU per request median %.3fx", PC[a "/" b]; printf " (%.2f-%.2f),", cr[1], cr[m]
  printf " p99 median %.3fx", PP[a "/" b]; printf " (%.2f-%.2f)\n", pr[1], pr[m] }
function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
{ k = $1; n[k]++; rps[k, n[k]] = $2; cpu[k, n[k]] = $3; p50[k, n[k]] = ms($4); p99[k, n[k]] = ms($5); fx[k, n[k]] = $6; sh[k, n[k]] = $7 }
END {
  nr = split(rsslist, pairs, " "); for (x = 1; x <= nr; x++) { split(pairs[x], kv, "="); rss[kv[1]] = kv[2] }
  printf "| contestant | req/s | CPU µs/req | p50 ms | p99 ms | p99 ms @ fixed rate | peak RSS MB | canary share %% |\n"
  printf "|---|---:|---:|---:|---:|---:|---:|---:|\n"
  nc = split(contestants, names, " ")
  for (x = 1; x <= nc; x++) { k = names[x]; m = n[k]; if (m == 0) continue
    for (i = 1; i <= m; i++) { a[i] = rps[k, i] } R[k] = median(a, m)
    for (i = 1; i <= m; i++) { a[i] = cpu[k, i] } C[k] = median(a, m)
    for (i = 1; i <= m; i++) { a[i] = p50[k, i] } P5 = median(a, m)
    for (i = 1; i <= m; i++) { a[i] = p99[k, i] } P9 = median(a, m); P99[k] = P9
    for (i = 1; i <= m; i++) { a[i] = fx[k, i] } F[k] = median(a, m)
    for (i = 1; i <= m; i++) { a[i] = sh[k, i] } S = median(a, m)
    printf "| %s | %.0f | %.1f | %.2f | %.2f | %.2f | %.1f | %.2f |\n", k, R[k], C[k], P5, P9, F[k], rss[k] / 1024, S }
  printf "\n"
  if (n["canaryd"] > 0 && n["nginx"] > 0) printf "canaryd/nginx: throughput %.2fx, CPU per request %.2fx, p99 at fixed rate %+.2f ms\n", R["canaryd"] / R["nginx"], C["canaryd"] / C["nginx"], F["canaryd"] - F["nginx"]
  if (n["canaryd"] > 0 && n["stdlib"] > 0) printf "canaryd/stdlib ReverseProxy: throughput %.2fx, CPU per request %.2fx\n", R["canaryd"] / R["stdlib"], C["canaryd"] / C["stdlib"]
  if (n["canaryd"] > 0 && n["canaryd-fast-path-off"] > 0) printf "fast path on/off: throughput %.2fx, CPU per request %.2fx\n", R["canaryd"] / R["canaryd-fast-path-off"], C["canaryd"] / C["canaryd-fast-path-off"]
  paired("canaryd", "nginx")
  paired("canaryd-pool3", "canaryd")
  paired("canaryd", "canaryd-compare")
  paired("canaryd-fleet", "canaryd")
  if (n["canaryd-pool3"] > 0 && n["canaryd"] > 0) printf "canaryd-pool3/canaryd (three stable endpoints against one): throughput %.3fx, CPU per request %.3fx, p99 at fixed rate %+.2f ms\n", R["canaryd-pool3"] / R["canaryd"], C["canaryd-pool3"] / C["canaryd"], F["canaryd-pool3"] - F["canaryd"]
  if (n["canaryd-compare"] > 0 && n["canaryd"] > 0) printf "canaryd/canaryd-compare: throughput %.2fx, CPU per request %.2fx\n", R["canaryd"] / R["canaryd-compare"], C["canaryd"] / C["canaryd-compare"]
  if (("canaryd-fleet", 1) in rps) printf "canaryd-fleet/canaryd: throughput %.2fx, CPU per request %.2fx, p99 at fixed rate %+.2f ms\n", R["canaryd-fleet"] / R["canaryd"], C["canaryd-fleet"] / C["canaryd"], F["canaryd-fleet"] - F["canaryd"]
  # The targets of "as fast as nginx on one core" (README, Performance).
  if (n["canaryd"] == 0 || n["nginx"] == 0) exit
  # The verdict is on the ratio of the medians; the median of the
  # round-by-round ratios (which cancels drift between rounds) is shown
  # beside it, in brackets.
  printf "\ntargets (canaryd against nginx, ratio of the medians [median of the per-round ratios, or differences]):\n"
  target("throughput >= 0.85x nginx", R["canaryd"] / R["nginx"], ">=", 0.85, "x", PR["canaryd/nginx"])
  target("p99 at " conns " connections <= 1.5x nginx", P99["canaryd"] / P99["nginx"], "<=", 1.5, "x", PP["canaryd/nginx"])
  target("p99 at the fixed rate <= nginx", F["canaryd"] - F["nginx"], "<=", 0, " ms more", F["canaryd"] > 0 ? PF["canaryd/nginx"] : "")
  target("CPU per request <= 1.2x nginx", C["canaryd"] / C["nginx"], "<=", 1.2, "x", PC["canaryd/nginx"])
  target("peak RSS < 32 MB", rss["canaryd"] / 1024, "<", 32, " MB")
}
function target(what, v, op, limit, unit, pv,   ok) {
  ok = (op == ">=" && v >= limit) || (op == "<=" && v <= limit) || (op == "<" && v < limit)
  printf "  %-40s %8.2f%s  %s", what, v, unit, ok ? "met" : "NOT MET"
  if (pv != "") printf "  [%.2f%s]", pv, unit
  printf "\n"
}' "$OUT/results.txt"
echo "  no errors                                    $([ -s "$OUT/errors" ] && echo "NOT MET: $(tr '\n' ' ' < "$OUT/errors")" || echo met)"
echo "(medians of $ROUNDS interleaved rounds of $DURATION, $CONNS connections; load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after; raw figures in $OUT/results.txt)"
if [ -s "$OUT/bad-split" ]; then
  echo "bench-load: the 90/10 split was off for: $(sort -u "$OUT/bad-split" | tr '\n' ' ')" >&2
  exit 1
fi
