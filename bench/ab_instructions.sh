#!/usr/bin/env bash
# A/B of two tokenward builds by instructions executed, not by time: on a
# shared machine whose speed moves by tens of per cent within minutes (as
# stop 52's did), a change of one or two per cent is lost in wall and CPU
# time however the runs alternate (bench/ab.sh), but the count of
# instructions `valgrind --tool=callgrind` gives is the same from run to
# run to 0.02 % with one worker thread (RAYON_NUM_THREADS=1; with two,
# which worker takes which batch moves it by about 1 %). Instructions are
# not time (a cache miss costs no more of them than a hit), so confirm a
# change that matters with bench/ab.sh or bench/matrix.sh.
#
# Valgrind runs the hunt about 50 times slower: give it a few tens of MB.
# With SHARE=N (a percentage), a directory INPUT of plain-text logs is cut
# to the first N % of the lines of each file (the bench matrix's shapes at
# SHARE=4 are about 20 MB each); compressed and UTF-16 files are left out
# of the copy, and said so.
#
# Prints, per build, the instructions of the whole hunt and of loading the
# Sigma rules (a fixed cost that weighs more on a small input), their
# ratio, and whether the two builds' findings are byte-identical.
# The callgrind profiles stay in the work directory it names, for
# callgrind_annotate.
#
# Usage: [SHARE=N] bench/ab_instructions.sh OLD_BIN NEW_BIN INPUT [builtin|sigma]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ] || [ ! -x "$1" ] || [ ! -x "$2" ] || [ ! -e "$3" ]; then
    echo "usage: [SHARE=N] $0 OLD_BIN NEW_BIN INPUT [builtin|sigma]" >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "$0: needs valgrind (apt install valgrind)" >&2; exit 2; }
OLD=$1 NEW=$2 INPUT=$3 CONFIG=${4:-sigma}
extra=()
case $CONFIG in
    builtin) ;;
    sigma) extra=(--rules tests/fixtures/sigma/rules --rules rules) ;;
    *) echo "configuration must be builtin or sigma, not $CONFIG" >&2; exit 2 ;;
esac
WORK=$(mktemp -d /tmp/tokenward-abi.XXXXXX)
echo "work directory: $WORK"
if [ -n "${SHARE:-}" ]; then
    [ -d "$INPUT" ] || { echo "SHARE needs a directory INPUT" >&2; exit 2; }
    mkdir "$WORK/input"
    find "$INPUT" -type f | sort | while read -r f; do
        rel=${f#"$INPUT"/}
        # A head of a gzip member or of UTF-16 text is not a smaller log.
        if [ "$(head -c 2 "$f" | od -An -tx1 | tr -d ' ')" = 1f8b ] || \
           head -c 2 "$f" | od -An -tx1 | grep -qE 'ff fe|fe ff'; then
            echo "  left out (compressed or UTF-16): $rel" >&2
            continue
        fi
        mkdir -p "$WORK/input/$(dirname "$rel")"
        lines=$(wc -l < "$f")
        head -n $(( lines * SHARE / 100 + 1 )) "$f" > "$WORK/input/$rel"
    done
    INPUT=$WORK/input
    echo "input: the first $SHARE % of the lines of each file, $(du -sh "$INPUT" | cut -f1)"
fi
for build in old new; do
    bin=$OLD
    [ "$build" = new ] && bin=$NEW
    RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/$build.callgrind" \
        "$bin" hunt "$INPUT" -q --output-format jsonl -o "$WORK/$build.jsonl" "${extra[@]}" \
        > /dev/null 2> "$WORK/$build.log" || {
        status=$?
        [ "$status" = 1 ] || { echo "$build build exited $status:" >&2; tail -5 "$WORK/$build.log" >&2; exit 1; }
    }
done
python3 - "$WORK" <<'PY'
import re, subprocess, sys
work = sys.argv[1]

def counts(build):
    total = load = 0
    for line in open(f"{work}/{build}.log"):
        m = re.search(r"I\s+refs:\s+([\d,]+)", line)
        if m:
            total = int(m.group(1).replace(",", ""))
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", f"{work}/{build}.callgrind"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "tokenward_sigma::RuleSet::load [" in line:
            load = int(line.split()[0].replace(",", ""))
    return total, load

(ot, ol), (nt, nl) = counts("old"), counts("new")
print(f"{'':8}{'instructions':>16}{'loading rules':>16}{'the rest':>16}")
for name, t, l in (("old", ot, ol), ("new", nt, nl)):
    print(f"{name:8}{t:>16,}{l:>16,}{t - l:>16,}")
if ot and ot - ol:
    print(f"new / old: {nt / ot:.4f} in all, {(nt - nl) / (ot - ol):.4f} past loading the rules")
PY
if cmp -s "$WORK/old.jsonl" "$WORK/new.jsonl"; then
    echo "findings: byte-identical ($(wc -l < "$WORK/new.jsonl") lines)"
else
    echo "findings: DIFFER (diff $WORK/old.jsonl $WORK/new.jsonl)"
    exit 1
fi
