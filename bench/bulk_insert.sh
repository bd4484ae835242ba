#!/usr/bin/env bash
# Bulk INSERT of ROWS (default 1,000,000) login_activities-shaped rows into identical tables (see
# setup.sql): no trigger, the trigger with no column to scrub (the floor any row trigger costs), the
# extension's trigger, and an equivalent PL/pgSQL trigger (network/set_masklen); then an UPDATE of a
# non-IP column of every row. Each round runs the cases back to back (the order rotates) and
# divides each by the no-trigger time of the same round, so load that comes and goes on a shared
# machine affects both sides of a ratio alike. Both wall time and the backend's own CPU time are
# taken; reported are the medians over ROUNDS (default 7) of times and of ratios.
#   bench/bulk_insert.sh        or, quicker:   ROWS=200000 ROUNDS=3 bench/bulk_insert.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-7}

# A stock server, except for checkpoints (see bench_server).
bench_server

say "Preparing $ROWS source rows"
psql_run -v rows="$ROWS" -f "$ROOT/bench/setup.sql" >/dev/null

cases=(la_none la_noop la_ours la_plpgsql)
declare -A samples
# samples[statement,measure,case]: space-separated values per round; measure is wall or cpu,
# each in seconds and as a ratio to the no-trigger case of the same round.
for ((round = 0; round < ROUNDS; round++)); do
    declare -A now=()
    for ((k = 0; k < ${#cases[@]}; k++)); do
        c=${cases[(k + round) % ${#cases[@]}]}
        psql_run -c "TRUNCATE $c" -c CHECKPOINT
        now[insert,$c]=$(psql_run -At -c "SELECT array_to_string(timed('INSERT INTO $c SELECT * FROM src'), ' ')")
        psql_run -c "VACUUM ANALYZE $c" -c CHECKPOINT
        now[update,$c]=$(psql_run -At -c "SELECT array_to_string(timed('UPDATE $c SET success = NOT success'), ' ')")
    done
    for statement in insert update; do
        read -r base_wall base_cpu <<<"${now[$statement,la_none]}"
        line="  round $((round + 1)) $statement:"
        for c in "${cases[@]}"; do
            read -r wall cpu <<<"${now[$statement,$c]}"
            samples[$statement,wall,$c]+="$wall "
            samples[$statement,cpu,$c]+="$cpu "
            samples[$statement,wall_ratio,$c]+="$(awk -v a="$wall" -v b="$base_wall" 'BEGIN { print a / b }') "
            samples[$statement,cpu_ratio,$c]+="$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN { print a / b }') "
            line+=$(printf '  %s %.3f s (cpu %.3f s)' "$c" "$wall" "$cpu")
        done
        echo "$line"
    done
done

# Every stored address in la_ours must be scrubbed: a benchmark of a broken trigger proves nothing.
psql_run -At -c "SELECT count(*) FROM la_ours WHERE ip IS DISTINCT FROM mastodon_ip_scrub.truncate(ip)" |
    grep -qx 0 || die "la_ours holds unscrubbed addresses"

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
say "$ROWS rows, PostgreSQL $PG_MAJOR, median of $ROUNDS rounds; ratios are to no trigger in the same round"
printf '| statement | case | wall s | wall ratio | backend CPU s | CPU ratio |\n|---|---|---|---|---|---|\n'
for statement in insert update; do
    for c in "${cases[@]}"; do
        m() { echo "${samples[$statement,$1,$c]}" | median; }
        printf '| %s | %s | %.3f | %.3fx | %.3f | %.3fx |\n' "$statement" "$c" \
            "$(m wall)" "$(m wall_ratio)" "$(m cpu)" "$(m cpu_ratio)"
    done
done
