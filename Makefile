# Shorthands for the scripts, which do the work and install whatever is missing.
#   make test            the whole suite on PostgreSQL 15 (same as ./scripts/test.sh)
#   make test PG=17      ... on one major (14, 15, 16, 17 or 18)
#   make test-all        ... on every supported major, one after the other
#   make demo [PG=..]    the demo on a throwaway server
#   make bench [PG=..]   every benchmark, then BENCHMARKS.md (about an hour)
#   make install [PG=..] build (release) and install into PostgreSQL PG, or PG_CONFIG=/path/to/pg_config
#   make package [PG=..] the .deb and .tar.gz of this version for every supported major (or PG's),
#                        with SHA256SUMS, in dist/
# PG as given on the command line; package builds every major unless told otherwise.
PACKAGE_PG := $(if $(filter command line environment,$(origin PG)),$(PG),all)
PG ?= 15

.PHONY: test test-all demo bench install package
test:
	PG='$(PG)' ./scripts/test.sh
test-all:
	PG=all ./scripts/test.sh
demo:
	PG='$(PG)' ./scripts/demo.sh
bench:
	PG='$(PG)' ./bench/run.sh
install:
	PG='$(PG)' ./scripts/install.sh
package:
	PG='$(PACKAGE_PG)' ./scripts/package.sh
