#!/usr/bin/env bash
# Regenerate link/symbol-order.txt: the functions a running daemon executes, hottest first,
# which build.rs hands to the linker (lld's --symbol-ordering-file) so that they sit
# together at the start of .text.
#
#   bash scripts/symbol-order.sh          # profile and rewrite the file (about a minute)
#   bash scripts/symbol-order.sh --check  # how many listed symbols today's binary still has
#
# Why: a file-backed page is resident once anything on it ran, and the kernel maps code in
# 64 KiB blocks around each fault ("fault-around"). A daemon's working set is a few hundred
# KiB of functions spread over 3 MB of .text, so unordered it touches most blocks and holds
# about 1.9 MiB of code resident; packed together, well under 1 MiB.
#
# The profile is callgrind's list of functions (mangled names) executed by one daemon that
# starts, syncs to a second one on loopback, serves loadgen's requests from many clients
# with rate limiting on, answers ntpq's queries, writes its statistics and drift file and
# stops on SIGTERM. Names carry a hash that changes with the crate graph (a dependency's
# version, the compiler); names no longer in the binary are skipped by the linker, so a
# stale file only packs less well: `--check` says how well, and bench/serve.sh prints it.
#
# Safety: both daemons run `--observe` under `setpriv --bounding-set -sys_time`, on
# 127.0.0.1 high ports, for a bounded time; only the processes started here are stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ORDER=link/symbol-order.txt
T=target/release
PORT=${PORT:-12470}

# check: listed names that today's binary defines, as "present of listed".
check() {
    python3 - "$ORDER" "$T/meridian" <<'EOF'
import subprocess, sys
listed = [l.strip() for l in open(sys.argv[1]) if l.strip() and not l.startswith('#')]
nm = subprocess.run(['nm', sys.argv[2]], capture_output=True, text=True, check=True).stdout
defined = {p[2] for p in (l.split() for l in nm.splitlines()) if len(p) == 3}
present = sum(1 for s in listed if s in defined)
print(f"symbol order: {present} of {len(listed)} listed functions are in {sys.argv[2]}"
      f" ({100 * present / max(len(listed), 1):.0f}%; below 80%, run scripts/symbol-order.sh)")
EOF
}

if [[ ${1:-} == --check ]]; then
    check
    exit 0
fi

command -v valgrind >/dev/null || { echo "symbol-order: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p meridian -p meridian-bench

WORK=$(mktemp -d /tmp/meridian-order.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

NOSYSTIME=(setpriv --bounding-set -sys_time --)
upstream=$PORT profiled=$((PORT + 2))

cat >"$WORK/upstream.conf" <<EOF
server 127.127.1.0
fudge 127.127.1.0 stratum 2
restrict default
interface listen 127.0.0.1
EOF
cat >"$WORK/profiled.conf" <<EOF
server 127.127.1.0
fudge 127.127.1.0 stratum 5
server 127.0.0.1 port $upstream iburst minpoll 3 maxpoll 3
restrict default limited kod nomodify notrap nopeer
restrict 127.0.0.1
discard average 1 minimum 1
mru maxdepth 20000
interface listen 127.0.0.1
driftfile $WORK/drift
statsdir $WORK/
statistics loopstats peerstats
EOF

"${NOSYSTIME[@]}" "$T/meridian" ntpd -n --observe -c "$WORK/upstream.conf" --port "$upstream" \
    --workers 1 2>"$WORK/upstream.log" &
PIDS+=($!)
"${NOSYSTIME[@]}" valgrind -q --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.out" \
    "$T/meridian" ntpd -n --observe -c "$WORK/profiled.conf" --port "$profiled" --workers 1 \
    2>"$WORK/profiled.log" &
profiled_pid=$!
PIDS+=("$profiled_pid")

# Under valgrind the daemon runs some fifty times slower: give it time to start and poll.
for _ in $(seq 60); do
    if "$T/meridian" ntpq -p 127.0.0.1 --port "$profiled" >/dev/null 2>&1; then break; fi
    sleep 1
done
sleep 12
# Serving dominates, as on a real server, so that "hottest first" puts the serving path
# first; the rest (polls, control queries) runs at least once.
for _ in 1 2 3; do
    # Many clients (the rate-limit table fills and evicts), a few over their limits (KoDs).
    "$T/loadgen" --target "127.0.0.1:$profiled" --rate 5000 --duration 3 --clients 2000 \
        --sockets 8 -q >/dev/null
    "$T/loadgen" --target "127.0.0.1:$profiled" --rate 2000 --duration 1 --clients 4 \
        --sockets 4 -q >/dev/null
    sleep 4
done
for q in -p "-c rv" "-c as" "-c mrulist"; do
    # shellcheck disable=SC2086 # $q is an option and its argument
    "$T/meridian" ntpq -n $q 127.0.0.1 --port "$profiled" >/dev/null 2>&1 || true
done
kill -TERM "$profiled_pid"
wait "$profiled_pid" || true

# Functions of the meridian binary with their own instruction counts, hottest first.
mkdir -p "$(dirname "$ORDER")"
python3 - "$WORK/cg.out" "$ORDER" <<'EOF'
import re, sys
objects, names, cost = {}, {}, {}
obj = fn = None
after_calls = False
for line in open(sys.argv[1]):
    line = line.rstrip('\n')
    # Compressed names: "fn=(7) name" defines id 7, a later "fn=(7)" refers to it;
    # objects (ob, cob) and functions (fn, cfn) have separate ids.
    m = re.match(r'^(c?)(ob|fn)=\((\d+)\)(?: (.*))?$', line)
    if m:
        table = objects if m.group(2) == 'ob' else names
        if m.group(4) is not None:
            table[m.group(3)] = m.group(4)
        if m.group(1) == '' and m.group(2) == 'ob':
            obj = objects[m.group(3)]
        elif m.group(1) == '' and m.group(2) == 'fn':
            fn = names[m.group(3)] if obj and obj.endswith('/meridian') else None
        continue
    if line.startswith('calls='):
        after_calls = True
        continue
    if fn and (line[:1].isdigit() or line[:1] in '+-*'):
        if not after_calls:
            parts = line.split()
            if len(parts) >= 2:
                cost[fn] = cost.get(fn, 0) + int(parts[1])
    after_calls = False
# Recursive calls show as "name'2", "name'3": one function for the linker.
total = {}
for f, c in cost.items():
    base = re.sub(r"'\d+$", '', f)
    total[base] = total.get(base, 0) + c
order = [f for f in sorted(total, key=lambda f: -total[f]) if not f.startswith('0x') and ' ' not in f]
with open(sys.argv[2], 'w') as out:
    out.write('# Functions a running daemon executes, hottest first: see scripts/symbol-order.sh.\n')
    for f in order:
        out.write(f + '\n')
print(f"symbol-order: {len(order)} functions written to {sys.argv[2]}")
EOF
check
