#!/usr/bin/env bash
# The differential fuzzer: random pool operations across every option set (decay, no userfaultfd, no mremap,
# collapse, small memory limit / arena / handle table, checked, background compactor, the C API, OS failures
# injected), checked against a model. Prints totals, every mismatch with the operations before it, and exits
# non-zero on a mismatch.
#   scripts/fuzz.sh --ops 10000000                      # plain build
#   scripts/fuzz.sh --ops 1000000 --sanitize address    # AddressSanitizer + UBSan
# Other flags go to mova-fuzz: --seed N, --sets default,c-api,... , --ops_per_pool N, --verbose.
exec bash "$(dirname "$0")/stress-run.sh" mova-fuzz "$@"
