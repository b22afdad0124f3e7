#!/bin/sh
# Harness self-test: run the real device server, then die of SIGABRT once it
# has exited normally: an abort that only the server's exit status shows.
"$NPU_REAL_DEVICE_SERVER" "$@"
kill -ABRT $$
