#!/usr/bin/env bash
# Set up a fresh machine and run the demo: generate a month of events for 8 units and score
# them with the batch replay (the live streaming demo replaces this with the streaming issue).
source "$(dirname "$0")/setup.sh"
out="${TMPDIR:-/tmp}/cemi-demo"
mkdir -p "$out"
python - "$out/events.jsonl" <<'PY'
import sys, orjson
from streams.simulate.generator import DAY_MS, Generator, Incident
start = 1_793_466_000_000
gen = Generator(span_ms=30 * DAY_MS, start_ms=start, seed=42,
                incidents=(Incident("install_backlog", "HPG", start + 10 * DAY_MS, start + 14 * DAY_MS),))
with open(sys.argv[1], "wb") as out:
    for e in gen.events(200_000):
        out.write(orjson.dumps(e) + b"\n")
PY
cemi score --events "$out/events.jsonl" --window month --out "$out/scores.jsonl"
python - "$out/scores.jsonl" <<'PY'
import sys, orjson
from rich.console import Console
from rich.table import Table
records = [orjson.loads(line) for line in open(sys.argv[1], "rb")]
table = Table(title="CEMI by unit and service, November 2026 (batch replay)")
services = [r["service"] for r in records if r["level"] == "service" and r["unit"] == records[0]["unit"]]
table.add_column("unit")
for s in services:
    table.add_column(s)
table.add_column("unit CEMI")
cells = {(r["unit"], r["service"]): r for r in records if r["level"] in ("service", "unit")}
for unit in sorted({r["unit"] for r in records if r["level"] == "unit"}):
    row = [unit]
    for s in [*services, None]:
        r = cells[(unit, s)]
        row.append("-" if r["score"] is None else f"{r['score']:.2f} {r['class']}")
    table.add_row(*row)
Console().print(table)
PY
echo "events: $out/events.jsonl  scores: $out/scores.jsonl"
