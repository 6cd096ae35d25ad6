#!/bin/sh
# One line per set-up step: `sh scripts/step.sh "WHAT" COMMAND...` prints WHAT and where the log is, sends
# COMMAND's own output (apt's and pip's progress) to the log, and shows the log's end only when it fails.
set -u
what=$1
shift
log=${SETUP_LOG:-$PWD/build/setup.log}
mkdir -p "$(dirname "$log")"
printf '%s (log: %s)\n' "$what" "$log"
printf '\n### %s: %s\n' "$what" "$*" >>"$log"
"$@" >>"$log" 2>&1 || {
    status=$?
    printf 'failed (exit %s): %s; the last lines of %s:\n' "$status" "$what" "$log" >&2
    tail -n 40 "$log" >&2
    exit "$status"
}
