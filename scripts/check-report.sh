#!/usr/bin/env bash
# Renders a bench-harness --report in a real browser (Debian's chromium,
# headless) and fails unless every chart drew and the page logged nothing
# to its console. A short run of every workload makes the report; the
# report and a screenshot stay in target/report-check/ to look at.
# Installs chromium when it is missing (apt-get, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

out=target/report-check
mkdir -p "$out"
report="$PWD/$out/report.html"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

echo "== a short run of every workload with --report"
cargo run -q -p bench-harness -- --quiet --actors 2000 --messages 20000 --think-ms 20 \
    --report "$report" >"$out/table.txt"
charts=$(grep -c '<figure class="chart"' "$report")

# No network for the page: any request it made would fail and log.
chromium_flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --user-data-dir="$profile" --enable-logging=stderr --v=0)

echo "== chromium renders $charts charts"
chromium "${chromium_flags[@]}" --dump-dom "file://$report" >"$out/dom.html" 2>"$out/console.log"
chromium "${chromium_flags[@]}" --window-size=1400,6000 --screenshot="$out/report.png" \
    "file://$report" >/dev/null 2>>"$out/console.log"

# The page's own check marks <body data-charts="ok N"> once each chart has
# an <svg> of some size with lines in it; a chart that has none logs a
# console error. The page logs nothing else.
failed=0
if ! grep -q "data-charts=\"ok $charts\"" "$out/dom.html"; then
    mark=$(grep -o 'data-charts="[^"]*"' "$out/dom.html" || echo "no mark: the script did not run")
    echo "FAIL: not every chart rendered ($mark, $charts charts in the file)"
    failed=1
fi
if grep -E 'CONSOLE|Uncaught' "$out/console.log"; then
    echo "FAIL: the page logged to its console (above)"
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "report renders: $charts charts, no console message ($out/report.png)"
