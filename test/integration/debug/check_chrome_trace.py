#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Structural check of a Chrome trace event file (coho-trace --chrome), for coho_trace_chrome_test.

    check_chrome_trace.py FILE [--track NAME]... [--parked WHAT]... [--flow PARENT>CHILD]...
                               [--instant TEXT]... [--parked-on TRACK=WHAT]... [--no-parked]
                               [--no-instant TEXT]...

Checks that the file is JSON with a traceEvents list; that every event has ph, ts, pid and
tid, with numeric ts >= 0; that on each track (pid, tid) B and E events balance in time order
(never an E without an open B, none left open) and spans nest; that every flow start (ph s)
has exactly one flow end (ph f) with its id, not earlier, and that both lie inside a span of
their tracks. Then the expectations: a track whose thread_name contains NAME, a span named
"parked: WHAT..." (prefix), a flow from the track named PARENT to the track named CHILD
(names as thread_name ends: "COID NAME"), an instant whose name contains TEXT, a span named exactly "parked: WHAT" on the track named
TRACK (with the wake's "result" in its args when it came from park/wake lines), no
"parked: ..." span at all, no instant whose name contains TEXT. Prints a
one-line summary; exit status 0 when all holds, 1 with the failures listed otherwise. A FILE
ending in .html is a coho-trace --html page; the trace embedded in it is checked.
"""

import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--track", action="append", default=[])
    ap.add_argument("--parked", action="append", default=[])
    ap.add_argument("--flow", action="append", default=[])
    ap.add_argument("--instant", action="append", default=[])
    ap.add_argument("--parked-on", action="append", default=[])
    ap.add_argument("--no-parked", action="store_true")
    ap.add_argument("--no-instant", action="append", default=[])
    args = ap.parse_args()
    errors = []
    try:
        with open(args.file) as f:
            text = f.read()
        if args.file.endswith(".html"):
            # a coho-trace --html page: the events it embeds
            start = '<script id="trace-data" type="application/json">'
            at = text.index(start) + len(start)
            text = text[at:text.index("</script>", at)]
        doc = json.loads(text)
    except (OSError, ValueError) as e:
        print("not a readable JSON file: %s" % e)
        return 1
    events = doc.get("traceEvents") if isinstance(doc, dict) else None
    if not isinstance(events, list) or not events:
        print("no traceEvents list")
        return 1
    for i, e in enumerate(events):
        for key in ("ph", "ts", "pid", "tid"):
            if key not in e:
                errors.append("event %d lacks %s: %s" % (i, key, e))
        if not isinstance(e.get("ts"), (int, float)) or e.get("ts", -1) < 0:
            errors.append("event %d has a bad ts: %s" % (i, e))
    if errors:
        print("\n".join(errors[:20]))
        return 1

    names = {}
    tracks = {}
    for i, e in enumerate(events):
        key = (e["pid"], e["tid"])
        if e["ph"] == "M" and e.get("name") == "thread_name":
            names[key] = e["args"]["name"]
        tracks.setdefault(key, []).append((e["ts"], i, e))
    spans = {}  # track -> [(begin, end, name)]
    for key, evs in tracks.items():
        evs.sort(key=lambda x: (x[0], x[1]))
        stack = []
        for ts, i, e in evs:
            if e["ph"] == "B":
                stack.append((ts, e.get("name", "")))
            elif e["ph"] == "E":
                if not stack:
                    errors.append("track %s: E at %s without an open B" % (key, ts))
                    continue
                b, name = stack.pop()
                spans.setdefault(key, []).append((b, ts, name))
        for b, name in stack:
            errors.append("track %s: B %r at %s never ends" % (key, name, b))

    def inside(key, ts):
        return any(b <= ts <= end for b, end, _ in spans.get(key, []))

    starts, ends = {}, {}
    for e in events:
        if e["ph"] == "s":
            if e["id"] in starts:
                errors.append("flow id %s starts twice" % e["id"])
            starts[e["id"]] = e
        elif e["ph"] == "f":
            if e["id"] in ends:
                errors.append("flow id %s ends twice" % e["id"])
            ends[e["id"]] = e
    for fid in set(starts) | set(ends):
        s, f = starts.get(fid), ends.get(fid)
        if s is None or f is None:
            errors.append("flow id %s has no %s" % (fid, "start" if s is None else "end"))
            continue
        if f["ts"] < s["ts"]:
            errors.append("flow id %s ends before it starts" % fid)
        if not inside((s["pid"], s["tid"]), s["ts"]):
            errors.append("flow id %s starts outside any span of its track" % fid)
        if not inside((f["pid"], f["tid"]), f["ts"]):
            errors.append("flow id %s ends outside any span of its track" % fid)

    def track_named(name):
        return [k for k, v in names.items() if v == name or v.endswith(" " + name)]

    for name in args.track:
        if not track_named(name):
            errors.append("no track named %r (tracks: %s)" % (name, sorted(names.values())))
    all_spans = [n for ss in spans.values() for _, _, n in ss]
    for what in args.parked:
        if not any(n.startswith("parked: " + what) for n in all_spans):
            errors.append("no span 'parked: %s...'" % what)
    for pair in args.flow:
        parent, child = pair.split(">", 1)
        pk, ck = set(track_named(parent)), set(track_named(child))
        if not any((s["pid"], s["tid"]) in pk and fid in ends
                   and (ends[fid]["pid"], ends[fid]["tid"]) in ck for fid, s in starts.items()):
            errors.append("no flow from %r to %r" % (parent, child))
    for text in args.instant:
        if not any(e["ph"] == "i" and text in e.get("name", "") for e in events):
            errors.append("no instant with %r" % text)
    for text in args.no_instant:
        if any(e["ph"] == "i" and text in e.get("name", "") for e in events):
            errors.append("an instant with %r" % text)
    parked_b = {}  # (track, name) -> the B events of parked spans
    for e in events:
        if e["ph"] == "B" and e.get("name", "").startswith("parked: "):
            parked_b.setdefault(((e["pid"], e["tid"]), e["name"]), []).append(e)
    if args.no_parked and parked_b:
        errors.append("parked spans: %s" % sorted({n for _, n in parked_b}))
    for pair in args.parked_on:
        track, what = pair.split("=", 1)
        found = [e for k in track_named(track) for e in parked_b.get((k, "parked: " + what), [])]
        if not found:
            errors.append("no span 'parked: %s' on the track %r (its parked spans: %s)"
                          % (what, track, sorted(n for k, n in parked_b
                                                 if k in track_named(track))))
        elif not all("result" in e.get("args", {}) for e in found):
            errors.append("the span 'parked: %s' on %r has no wake result" % (what, track))
    if errors:
        print("\n".join(errors[:40]))
        return 1
    print("ok: %d events, %d tracks, %d spans, %d flows"
          % (len(events), len(tracks), sum(len(s) for s in spans.values()), len(starts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
