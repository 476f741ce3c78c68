#!/usr/bin/env bash
# Issue 2 budgets: warm `hil lab up` (< 45 s) and `hil lab down` (< 15 s), 3 hubs (+ hub-vuln).
# TAKES THE SHARED LAB DOWN: run only when nobody else uses it. Leaves the lab up at the end.
#   bench/lab_times.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
hil=.venv/bin/hil
stamp() { date +%s.%N; }
t0=$(stamp); $hil lab up --with-vulnerable >/dev/null; t1=$(stamp)   # warm: images cached, lab may be up
t2=$(stamp); $hil lab down; t3=$(stamp)
t4=$(stamp); $hil lab up --with-vulnerable >/dev/null; t5=$(stamp)  # warm up from nothing running
mem=$(docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' | grep -E '^hil-lab-hub-0[1-3] ' || true)
printf 'hil lab up (already up, warm)    %6.1f s\n' "$(echo "$t1 - $t0" | bc)"
printf 'hil lab down                     %6.1f s   (budget 15 s)\n' "$(echo "$t3 - $t2" | bc)"
printf 'hil lab up (warm, from down)     %6.1f s   (budget 45 s)\n' "$(echo "$t5 - $t4" | bc)"
echo "memory of hub-01..03 right after up (budget: 3 hubs < 3 GB):"
echo "$mem"
