#!/bin/sh
# The version canaryd is built as (make build, make release, the Dockerfile's
# VERSION): the nearest v* tag as `git describe` gives it (v1.2.0 on the tag,
# v1.2.0-3-gabc1234 three commits after, -dirty with uncommitted changes);
# before any tag v0.0.0-<commits>-g<commit>; outside a git checkout "dev".
set -eu
cd "$(dirname "$0")/.."
if v=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
	echo "$v"
elif h=$(git rev-parse --short=12 HEAD 2>/dev/null); then
	dirty=""
	git diff --quiet HEAD -- 2>/dev/null || dirty="-dirty"
	echo "v0.0.0-$(git rev-list --count HEAD)-g$h$dirty"
else
	echo dev
fi
