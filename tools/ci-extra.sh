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

STEPS=(
    step_aarch64_ctx_switch
)

for s in "${STEPS[@]}"; do
    echo "--- ci-extra: $s"
    "$s"
done
echo "--- ci-extra: all steps passed"
