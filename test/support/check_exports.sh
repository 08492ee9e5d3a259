#!/usr/bin/env bash
# Exits 1 if the library is missing or exports any symbol that is neither coho_<public> nor a
# name listed in the allowlist (syscall_hook/hooked.list, one name a line, # comments).
# Usage: check_exports.sh LIBRARY ALLOWLIST
set -uo pipefail
lib=$1 list=$2
[ -f "$lib" ] || { echo "check_exports: no library at $lib"; exit 1; }
[ -f "$list" ] || { echo "check_exports: no allowlist at $list"; exit 1; }
syms=$(nm -D --defined-only "$lib" | awk 'NF == 3 {print $3}') || { echo "check_exports: nm failed on $lib"; exit 1; }
allow=$(grep -vE '^[[:space:]]*(#|$)' "$list" | sed 's/[[:space:]]//g')
# Versioned names (name@@VER) are compared by their bare name.
extra=$(printf '%s\n' "$syms" | sed 's/@.*//' | grep -vE '^coho_[a-z0-9]' | grep -vE '^(_init|_fini)$' |
        { if [ -n "$allow" ]; then grep -vxF -f <(printf '%s\n' "$allow"); else cat; fi; } | grep -v '^$')
if [ -n "$extra" ]; then
    echo "check_exports: $lib exports names that are neither coho_* nor in $list:"
    printf '  %s\n' $extra
    exit 1
fi
echo "check_exports: $lib exports $(printf '%s\n' "$syms" | grep -c .) allowed names"
exit 0
