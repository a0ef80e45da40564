#!/usr/bin/env bash
# Usage: bench/replace-section.sh RESULTS.md SECTION.md
# Puts SECTION.md (which starts with its "# Title" line) into RESULTS.md in place of the section with the same title,
# keeping every other section; appends it when RESULTS.md has no such section yet. Each benchmark script owns one
# section, so re-running one never drops another's figures.
set -euo pipefail
results="$1"
section="$2"
# The title is the first non-blank line (a script that starts its section with a blank line must still replace it).
title="$(grep -m1 -v '^[[:space:]]*$' "$section")"
touch "$results"
awk -v sec="$section" -v title="$title" '
  BEGIN { while ((getline line < sec) > 0) { if (body == "" && line ~ /^[[:space:]]*$/) continue; body = body line "\n" } }
  /^# / { skip = 0; if ($0 == title) { printf "%s\n", body; done = 1; skip = 1; next } }
  !skip { print }
  END { if (!done) printf "%s%s", (NR > 0 ? "\n" : ""), body }
' "$results" > "$results.tmp"
mv "$results.tmp" "$results"
