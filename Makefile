# Shorthands for the scripts, which do the work and install whatever is missing.
#   make test            the whole suite on PostgreSQL 15 (same as ./scripts/test.sh)
#   make test PG=17      ... on one major (14, 15, 16, 17 or 18)
#   make test-all        ... on every supported major, one after the other
#   make demo [PG=..]    the demo on a throwaway server
#   make bench [PG=..]   every benchmark, then BENCHMARKS.md (about an hour)
PG ?= 15

.PHONY: test test-all demo bench
test:
	PG='$(PG)' ./scripts/test.sh
test-all:
	PG=all ./scripts/test.sh
demo:
	PG='$(PG)' ./scripts/demo.sh
bench:
	PG='$(PG)' ./bench/run.sh
