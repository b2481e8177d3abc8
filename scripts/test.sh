#!/usr/bin/env bash
# Run the whole test suite; "no tests collected" (pytest exit 5) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
cmd=(.venv/bin/python -m pytest "$@")
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
  cmd=(xvfb-run -a -s "-screen 0 1280x1024x24" "${cmd[@]}")
fi
"${cmd[@]}"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: no tests were collected; failing" >&2
  exit 1
fi
exit "$status"
