/* SPDX-License-Identifier: MIT */
/* A library with a stray exported helper: the export check must reject it. */
int stray_helper(int x);

int stray_helper(int x)
{
    return x + 1;
}
