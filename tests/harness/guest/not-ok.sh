#!/bin/sh
# Harness self-test: a test point fails, though the program exits 0.
echo "TAP version 13"
echo "1..2"
echo "ok 1 fine"
echo "not ok 2 deliberately failing test point"
exit 0
