#!/usr/bin/env bash
# The soak: worker threads allocate, free, pin-write and verify their own objects, hold pins across moves and
# read shared objects that a writer replaces, while the background compactor and explicit compact() /
# defragment() run. Prints operations, verifications, objects moved and mismatches; non-zero exit on a mismatch.
#   scripts/soak.sh --minutes 10
#   scripts/soak.sh --minutes 2 --sanitize thread
# Other flags go to mova-soak: --seconds N, --threads N, --seed N.
exec bash "$(dirname "$0")/stress-run.sh" mova-soak "$@"
