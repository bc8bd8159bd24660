#!/usr/bin/env bash
# slow-uploads: can slow uploaders starve canaryd's upstream connections?
#
# Starts two backends (scripts/slowclients serve) and canaryd with its
# default limits (CANARY_MAX_CONNS_PER_BACKEND=1024, CANARY_REQUEST_BUFFER
# 64 KiB, CANARY_BODY_READ_TIMEOUT 60s) at CANARY_WEIGHT=WEIGHT (0: every
# request goes to stable, so 1,100 slow uploads exceed its 1,024
# connections), opens SMALL slow uploads of a small
# body and LARGE of a large one (64 KiB at once), each then sending one byte
# every DRIP, and meanwhile measures ordinary requests (a GET and a 1 KiB
# POST, alternately, RATE a second) for DURATION. Everything on 127.0.0.1,
# torn down on exit.
#
# Environment: CANARYD (bin/canaryd), SMALL (1100), LARGE (0), DRIP (5s),
# DURATION (30s), RATE (50), WEIGHT (0).
set -euo pipefail
cd "$(dirname "$0")/.."

CANARYD=${CANARYD:-bin/canaryd}
SMALL=${SMALL:-1100} LARGE=${LARGE:-0} DRIP=${DRIP:-5s} DURATION=${DURATION:-30s} RATE=${RATE:-50} WEIGHT=${WEIGHT:-0}
[ -x "$CANARYD" ] || { echo "slow-uploads: $CANARYD not built (make build)" >&2; exit 2; }
OUT=$(mktemp -d /tmp/canaryd-slow-uploads.XXXXXX)
P_STABLE=18181 P_CANARY=18182 P_CANARYD=18191 P_ADMIN=18192

pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

go build -o "$OUT/slowclients" ./scripts/slowclients
"$OUT/slowclients" serve -listen 127.0.0.1:$P_STABLE 2>"$OUT/stable.log" & pids+=($!)
"$OUT/slowclients" serve -listen 127.0.0.1:$P_CANARY 2>"$OUT/canary.log" & pids+=($!)
CANARY_STABLE_URL=http://127.0.0.1:$P_STABLE CANARY_CANARY_URL=http://127.0.0.1:$P_CANARY \
CANARY_TOKEN=slow-token-0123456789abcdef CANARY_LISTEN=127.0.0.1:$P_CANARYD CANARY_ADMIN_LISTEN=127.0.0.1:$P_ADMIN \
CANARY_WEIGHT="$WEIGHT" CANARY_STATE_FILE="$OUT/state.json" CANARY_SLO_MIN_REQUESTS=1000000000 CANARY_LOG_LEVEL=warn \
  "$CANARYD" > "$OUT/canaryd.log" 2>&1 & pids+=($!)
for port in $P_STABLE $P_CANARY $P_CANARYD; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
"$OUT/slowclients" attack -target "http://127.0.0.1:$P_CANARYD" -small "$SMALL" -large "$LARGE" -drip "$DRIP" -duration "$DURATION" -rate "$RATE"
