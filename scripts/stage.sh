#!/usr/bin/env bash
# Run a command as a named, timed stage: scripts/stage.sh "NAME" CMD...
. "$(dirname "$0")/common.sh"
stage "$1"
shift
"$@"
stage_done
