#!/usr/bin/env bash
# Extra CI checks, run by .ci/run after the main jobs. Each check is a step function listed in
# STEPS below; a failing step fails the script (non-zero exit). To add a check, write a
# function and append its name to STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."

# The aarch64 context switch: one self-contained static binary, run under qemu-aarch64.
step_aarch64_ctx_switch() {
    local cc=aarch64-linux-gnu-gcc qemu=qemu-aarch64 out=build-ci-extra/aarch64
    command -v "$cc" >/dev/null || { echo "ci-extra: $cc missing (tools/deps.sh test)" >&2; return 1; }
    command -v "$qemu" >/dev/null || { echo "ci-extra: $qemu missing (qemu-user)" >&2; return 1; }
    mkdir -p "$out"
    "$cc" -std=gnu11 -O2 -g -static -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -I. \
        -o "$out/ctx_switch_arch_test" \
        test/arch/ctx_switch_arch_test.c coroutine/ctx.c coroutine/ctx_aarch64.S
    "$qemu" "$out/ctx_switch_arch_test"
}

# The shared libraries that `make test` built carry no text relocations (the asm switch is
# PIC-clean) and ask for no executable stack (every .S has .note.GNU-stack).
step_shared_libs_pic_clean() {
    local lib bad=0
    for lib in build/libcoho.so build/libcoho_preload.so; do
        [ -f "$lib" ] || { echo "ci-extra: $lib missing (run make test first)" >&2; return 1; }
        if readelf -dW "$lib" | grep -q TEXTREL; then
            echo "ci-extra: $lib has text relocations" >&2
            bad=1
        fi
        if readelf -lW "$lib" | grep GNU_STACK | grep -q RWE; then
            echo "ci-extra: $lib asks for an executable stack" >&2
            bad=1
        fi
    done
    return $bad
}

STEPS=(
    step_aarch64_ctx_switch
    step_shared_libs_pic_clean
)

for s in "${STEPS[@]}"; do
    echo "--- ci-extra: $s"
    "$s"
done
echo "--- ci-extra: all steps passed"
