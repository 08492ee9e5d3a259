#!/usr/bin/env bash
# Installs the built coho into a temporary prefix and compiles every installed public header on
# its own, against that prefix only: each C header as C11 and as C++17, each C++ header as C++17,
# all with -Wall -Wextra -Wpedantic -Werror. The header list comes from the install manifest, so
# a newly installed header is checked without editing this script.
# Usage: check_headers.sh BUILD_DIR WORK_DIR [CC [CXX]]
set -euo pipefail
build=$1 work=$2 cc=${3:-cc} cxx=${4:-c++}
rm -rf "$work"; mkdir -p "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >"$work/install.log"
# cmake --install writes the manifest into the build tree; keep this run's copy.
cp "$build/install_manifest.txt" "$work/install_manifest.txt"

# The include directory is where the umbrella header went; every header under it is public.
umbrella=$(grep -m 1 '/coho\.h$' "$work/install_manifest.txt") || {
    echo "check_headers: coho.h is not in the install manifest" >&2
    exit 1
}
incdir=${umbrella%/coho.h}
mapfile -t headers < <(awk -v d="$incdir/" 'index($0, d) == 1 && /\.(h|hpp)$/' \
    "$work/install_manifest.txt" | sort)

warn=(-Wall -Wextra -Wpedantic -Werror)
checked=0 failed=0
# compile LANG STD COMPILER HEADER: one translation unit that includes only HEADER.
compile()
{
    local lang=$1 std=$2 compiler=$3 rel=$4 ext src
    [ "$lang" = c ] && ext=c || ext=cpp
    src=$work/tu/$(printf '%s' "$rel" | tr '/.' '__').$std.$ext
    mkdir -p "$work/tu"
    printf '#include <%s>\n' "$rel" >"$src"
    checked=$((checked + 1))
    if ! "$compiler" -x "$lang" "-std=$std" "${warn[@]}" -I "$incdir" -fsyntax-only "$src" \
        >"$src.log" 2>&1; then
        echo "FAIL: <$rel> alone as $std" >&2
        cat "$src.log" >&2
        failed=$((failed + 1))
    fi
}

for h in "${headers[@]}"; do
    rel=${h#"$incdir"/}
    case $rel in
    *.h)
        compile c c11 "$cc" "$rel"
        compile c++ c++17 "$cxx" "$rel"
        ;;
    *.hpp)
        compile c++ c++17 "$cxx" "$rel"
        ;;
    esac
done

if [ "$failed" -ne 0 ]; then
    echo "check_headers: $failed of $checked header compilations failed" >&2
    exit 1
fi
echo "check_headers: ${#headers[@]} installed headers, $checked compilations, all clean"
