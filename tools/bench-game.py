#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The game targets of bench/RESULTS.md: coho-bots against one coho-gate and two coho-logic
nodes (and MariaDB), started by tools/run-game.sh --serve-only. The gate is pinned to CPU 0, the
logic nodes and the bots to CPU 1 (COHO_GAME_GATE_CPUS and COHO_GAME_LOGIC_CPUS move the
servers for a diagnostic run; the bots stay on CPU 1). Prints markdown rows on stdout, progress
on stderr.

Usage: tools/bench-game.py BUILD_DIR [SCENARIO...]
  fwd    forward throughput: echo calls bot -> gate -> logic -> gate -> bot at fixed total rates
         (FWD_RATES, default "10000 30000 60000") with FWD_CONNS bots (default "1000 10000"),
         and back to back (rate 0) for the maximum
  stats  stats cost: the same fixed rate and the back-to-back maximum with the gate's
         per-route and per-connection accounting on and off (--no-stats); gate CPU per request
  storm  reconnect storm: STORM_BOTS (10000) bots log in over STORM_RAMP_S (bots / 1000, at
         least 2), then drop their sockets and REBIND at the same moment (coho-bots
         --rebind-aligned), STORM_EVERY_S (the ramp + 5) and twice that after the start, while 100 other
         bots make echo calls; rebinds, their p50/p99, re-logins, lost pushes, the other bots'
         p99
  floor  the same forward path without coho or the game protocol, as a same-run floor for the
         fwd rows: echo_client (bench/echo, paced with -r) -> echo_relay (a hand-written epoll
         relay, one upstream connection per client) -> echo_epoll, pinned as the game programs
         are (relay on CPU 0, client and echo server on CPU 1), FWD_CONNS[0] connections at each
         FWD_RATES rate, the sends timed exactly and, as a 1 ms timer wheel would time them,
         rounded up to whole milliseconds. Needs the bench programs (-DCOHO_BUILD_BENCH=ON)
  soak   SOAK_S (600) seconds at SOAK_RATE (half the fwd maximum unless set) in SOAK_CYCLES (5)
         full connect/disconnect cycles of SOAK_BOTS (1000) bots: gate RSS drift, fds,
         coroutines after each cycle (not in the default set: it takes SOAK_S). SOAK_CALLS
         (echo) picks coho-bots --calls: 'echo' is the forward load the rate is half the
         maximum of; 'all' adds chat, scenes and players, where each chat.say is pushed to every
         member of its channel (the bots spread over 4 channels: SOAK_BOTS / 4 pushes a say;
         give it a lower SOAK_RATE)
Default scenarios: fwd stats storm. DURATION_S (10) is each bot run's measured part. In fwd
the bots play WARMUP_S more seconds after the ramp before it (default: 2 s, and 1 s more per
2000 bots), left out of the latencies, the req/s and the gate's CPU per request: the ramp's
logins (HMAC, LOAD, chat and scene entries) and the first calls queued behind them are not
forwarding. The fwd bots are spread over one scene per ten bots, so that entering the world does
not flood everyone with AOI pushes.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = None
DURATION_S = int(os.environ.get("DURATION_S", "10"))
HERE = os.path.dirname(os.path.abspath(__file__))


def log(*a):
    print("bench-game:", *a, file=sys.stderr, flush=True)


def ticks_to_s(t):
    return t / os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """User + system CPU seconds of a process, threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return ticks_to_s(int(fields[11]) + int(fields[12]))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Servers:
    """MariaDB, two logic nodes and a gate, through run-game.sh --serve-only."""

    def __init__(self, gate_args=()):
        self.dir = tempfile.mkdtemp(prefix="coho-bench-game.")
        self.info_path = os.path.join(self.dir, "serve.env")
        args = [os.path.join(HERE, "run-game.sh"), BUILD, "--serve-only", self.info_path]
        for a in ["--admin", "127.0.0.1:0", "--heartbeat-ms", "30000", *gate_args]:
            args += ["--gate-arg", a]
        env = dict(os.environ)
        env.setdefault("COHO_GAME_GATE_CPUS", "0")
        env.setdefault("COHO_GAME_LOGIC_CPUS", "1")
        self.out = open(os.path.join(self.dir, "run-game.out"), "w")
        self.proc = subprocess.Popen(args, env=env, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not os.path.exists(self.info_path):
            if self.proc.poll() is not None or time.time() > deadline:
                self.out.flush()
                sys.exit("bench-game: run-game.sh did not start the servers:\n" +
                         open(self.out.name).read())
            time.sleep(0.2)
        self.info = {}
        for line in open(self.info_path):
            k, _, v = line.strip().partition("=")
            self.info[k] = v.strip('"')
        self.gate_pid = int(self.info["GATE_PID"])

    def metrics(self):
        url = f"http://{self.info['ADMIN']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def bots(srv, n, rate_per_bot, extra=(), duration=None, ramp=None, background=False):
    """coho-bots on CPU 1; returns its SUMMARY (dict) or, in the background, the Popen."""
    duration = DURATION_S if duration is None else duration
    ramp = max(1, n // 4000) if ramp is None else ramp
    args = ["taskset", "-c", "1", os.path.join(BUILD, "game/bots/coho-bots"),
            "--gate", srv.info["GATE"], "--secret", srv.info["SECRET"], "--bots", str(n),
            "--duration-s", str(duration), "--ramp-s", str(ramp), "--rate", str(rate_per_bot),
            "--quiet", "--log", "-", "--log-level", "3", "--threads", "1", *extra]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=BUILD)
    return p if background else summary_of(p)


def summary_of(p):
    out, _ = p.communicate()
    m = re.search(r"^SUMMARY (\{.*\})$", out, re.M)
    if not m:
        sys.exit("bench-game: coho-bots printed no SUMMARY:\n" + out[-3000:])
    s = json.loads(m.group(1))
    s["_status"] = p.returncode
    s["_out"] = out
    return s


def echo_row(s, seconds):
    e = s["routes"]["echo"]
    return e["ok"] / seconds, e["p50_us"], e["p99_us"]


def warmup_s(n):
    return int(os.environ.get("WARMUP_S", str(2 + n // 2000)))


def measure_fwd(srv, n, total_rate):
    """Echo calls at total_rate (0: back to back) after the ramp and a warm-up; req/s,
    latencies and the gate's CPU per request over the measured part only."""
    per_bot = 0 if total_rate == 0 else max(1, round(total_rate / n))
    warm, ramp = warmup_s(n), max(1, n // 4000)
    # Ten bots a scene: with the bots' default of 4 scenes, 10 000 bots entering them made
    # 1.6 million AOI entries and timed calls out (status 4) long after the ramp.
    p = bots(srv, n, per_bot, ["--calls", "echo", "--warmup-s", str(warm),
                               "--scenes", str(max(4, n // 10))],
             duration=DURATION_S + warm, background=True)
    # The gate's CPU and call count over the measured part (the bots' clock starts a little
    # after the process: a few ms of warm-up at each end, against DURATION_S s).
    time.sleep(ramp + warm)
    logic = [int(x) for x in srv.info["LOGIC_PIDS"].split()]
    c0, t0, m0 = cpu_s(srv.gate_pid), time.time(), srv.metrics()
    other0 = (sum(cpu_s(x) for x in logic), cpu_s(p.pid))
    time.sleep(DURATION_S)
    cpu, wall, m1 = cpu_s(srv.gate_pid) - c0, time.time() - t0, srv.metrics()
    logic_cpu, bots_cpu = sum(cpu_s(x) for x in logic) - other0[0], cpu_s(p.pid) - other0[1]
    s = summary_of(p)
    rps, p50, p99 = echo_row(s, s.get("measured_s", DURATION_S))
    calls = m1["coho_gate_calls_total"] - m0["coho_gate_calls_total"]
    per_call = (lambda c: 1e6 * c / calls) if calls else (lambda c: float("nan"))
    return {"rps": rps, "p50": p50, "p99": p99, "errors": s["errors"],
            "gate_us_per_req": per_call(cpu), "logic_us_per_req": per_call(logic_cpu),
            "bots_us_per_req": per_call(bots_cpu),
            "gate_cpu_pct": 100 * cpu / wall, "per_bot": per_bot,
            "logins_measured": s["routes"]["login"]["ok"], "warmup_s": warm}


def fwd():
    rates = [int(x) for x in os.environ.get("FWD_RATES", "10000 30000 60000").split()]
    conns = [int(x) for x in os.environ.get("FWD_CONNS", "1000 10000").split()]
    srv = Servers()
    rows = []
    try:
        for n in conns:
            for rate in rates + [0]:
                log(f"fwd: {n} bots, total rate {rate or 'back to back'}")
                r = measure_fwd(srv, n, rate)
                rows.append((n, rate, r))
    finally:
        srv.stop()
    print("| bots | warm-up s | asked req/s (per bot) | got req/s | p50 ms | p99 ms | errors "
          "| logins measured | gate CPU % | gate CPU us/req | logic nodes, bots CPU us/req "
          "| target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, rate, r in rows:
        asked = "back to back" if rate == 0 else f"{rate} ({r['per_bot']})"
        if rate == 0:
            target = ">= 30k: " + ("met" if r["rps"] >= 30000 else "missed") + \
                     ", strong 60k: " + ("met" if r["rps"] >= 60000 else "missed")
        elif rate <= 10000 and r["rps"] > 0:
            target = "p50 <= 0.1 ms: " + ("met" if r["p50"] <= 100 else "missed") + \
                     ", p99 <= 1 ms: " + ("met" if r["p99"] <= 1000 else "missed")
        elif r["rps"] == 0:
            target = "missed: no call answered in the measured part"
        else:
            target = "p99 <= 5 ms: " + ("met" if r["p99"] <= 5000 else "missed") + \
                     (" (rate reached)" if r["rps"] >= 0.95 * rate else " (rate NOT reached)")
        print(f"| {n} | {r['warmup_s']} | {asked} | {r['rps']:.0f} | {r['p50'] / 1e3:.2f} "
              f"| {r['p99'] / 1e3:.2f} | {r['errors']} | {r['logins_measured']} "
              f"| {r['gate_cpu_pct']:.0f} | {r['gate_us_per_req']:.2f} "
              f"| {r['logic_us_per_req']:.2f}, {r['bots_us_per_req']:.2f} | {target} |")
    return rows


def free_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def floor():
    rates = [int(x) for x in os.environ.get("FWD_RATES", "10000 30000 60000").split() if x != "0"]
    n = int(os.environ.get("FWD_CONNS", "1000").split()[0])
    prog = {p: os.path.join(BUILD, "bench", p) for p in ("echo_epoll", "echo_relay", "echo_client")}
    for p in prog.values():
        if not os.access(p, os.X_OK):
            sys.exit(f"bench-game: floor needs {p} (configure with -DCOHO_BUILD_BENCH=ON)")
    echo_port, relay_port = free_port(), free_port()
    procs = [subprocess.Popen(["taskset", "-c", "1", prog["echo_epoll"], str(echo_port)],
                              stdout=subprocess.DEVNULL)]
    rows = []
    try:
        time.sleep(0.3)
        procs.append(subprocess.Popen(["taskset", "-c", "0", prog["echo_relay"], str(relay_port),
                                       str(echo_port)], stdout=subprocess.DEVNULL))
        time.sleep(0.3)
        for rate in rates:
            for tick_us in (0, 1000):
                log(f"floor: {n} connections, rate {rate}, tick {tick_us} us")
                c0, e0 = cpu_s(procs[1].pid), cpu_s(procs[0].pid)
                cli = subprocess.Popen(["taskset", "-c", "1", prog["echo_client"], "-p",
                                        str(relay_port), "-c", str(n), "-s", "32", "-d",
                                        str(DURATION_S), "-w", "2", "-r", str(rate), "-t",
                                        str(tick_us)], stdout=subprocess.PIPE, text=True)
                out = cli.stdout.read()
                _, status, ru = os.wait4(cli.pid, 0)
                cli.returncode = os.waitstatus_to_exitcode(status)
                if cli.returncode != 0:
                    sys.exit(f"bench-game: echo_client failed ({cli.returncode}): {out}")
                f = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
                n_req = int(f["replies"])
                rows.append((rate, tick_us, float(f["rps"]), float(f["p50_us"]),
                             float(f["p99_us"]), 1e6 * (cpu_s(procs[1].pid) - c0) / n_req,
                             1e6 * (cpu_s(procs[0].pid) - e0) / n_req,
                             1e6 * (ru.ru_utime + ru.ru_stime) / n_req))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    print("| connections | asked req/s | send times | got req/s | p50 ms | p99 ms "
          "| relay CPU us/req | echo server, client CPU us/req |")
    print("|---|---|---|---|---|---|---|---|")
    for rate, tick_us, rps, p50, p99, relay, echo, client in rows:
        pacing = "exact" if tick_us == 0 else f"rounded up to {tick_us // 1000} ms"
        print(f"| {n} | {rate} | {pacing} | {rps:.0f} | {p50 / 1e3:.2f} | {p99 / 1e3:.2f} "
              f"| {relay:.2f} | {echo:.2f}, {client:.2f} |")
    return rows


def stats_ab():
    n = int(os.environ.get("STATS_BOTS", "1000"))
    rate = int(os.environ.get("STATS_RATE", "20000"))
    reps = int(os.environ.get("STATS_REPS", "2"))
    res = {"on": [], "off": []}
    for rep in range(reps):
        for mode in (["on", "off"] if rep % 2 == 0 else ["off", "on"]):
            srv = Servers([] if mode == "on" else ["--no-stats"])
            try:
                log(f"stats {mode}: {n} bots at {rate}/s, then back to back")
                fixed = measure_fwd(srv, n, rate)
                maxed = measure_fwd(srv, n, 0)
            finally:
                srv.stop()
            res[mode].append((fixed, maxed))
    print("| stats | gate CPU us/req at %d req/s (each rep) | max req/s back to back (each rep) |" % rate)
    print("|---|---|---|")
    med = {}
    for mode in ("on", "off"):
        us = sorted(f["gate_us_per_req"] for f, _ in res[mode])
        mx = sorted(m["rps"] for _, m in res[mode])
        med[mode] = (us[len(us) // 2], mx[len(mx) // 2])
        each_us = " ".join("%.2f" % f["gate_us_per_req"] for f, _ in res[mode])
        each_max = " ".join("%.0f" % m["rps"] for _, m in res[mode])
        print(f"| {mode} | {med[mode][0]:.2f} ({each_us}) | {med[mode][1]:.0f} ({each_max}) |")
    cpu_cost = 100 * (med["on"][0] / med["off"][0] - 1)
    thr_cost = 100 * (1 - med["on"][1] / med["off"][1])
    print(f"\nStats cost: gate CPU per request +{cpu_cost:.1f} %, back-to-back throughput "
          f"{thr_cost:+.1f} % (target <= 5 %: {'met' if max(cpu_cost, thr_cost) <= 5 else 'missed'})")


def storm():
    n = int(os.environ.get("STORM_BOTS", "10000"))
    ramp = int(os.environ.get("STORM_RAMP_S", str(max(2, n // 1000))))
    every = int(os.environ.get("STORM_EVERY_S", "0")) or ramp + 5
    if every <= ramp + 2:
        sys.exit(f"bench-game: STORM_EVERY_S ({every}) must leave the {ramp}-s login ramp "
                 "and 2 s more before the first storm")
    duration = every * 2 + 4 - ramp  # storms at every and 2 * every after the start
    srv = Servers(["--grace-ms", "60000"])
    try:
        log(f"storm: {n} bots log in over {ramp} s, then all REBIND at once {every} s and "
            f"{2 * every} s after the start; 100 others call echo")
        # The storm bots log in over a ramp (a login storm is another benchmark) and rebind
        # at shared moments (--rebind-aligned): every bot drops its socket at the same time.
        stormers = bots(srv, n, 1, ["--calls", "echo", "--rebind-every-s", str(every),
                                    "--rebind-aligned", "--uid-base", "1"],
                        duration=duration, ramp=ramp, background=True)
        time.sleep(1)
        others = bots(srv, 100, 20, ["--calls", "echo", "--uid-base", str(n + 1000)],
                      duration=ramp + duration - 2, ramp=0, background=True)
        s_others = summary_of(others)
        s_storm = summary_of(stormers)
        m = srv.metrics()
    finally:
        srv.stop()
    e = s_others["routes"]["echo"]
    rb = s_storm["routes"]["rebind"]
    print("| storm bots | rebinds ok / wanted | rebind p50 / p99 ms | re-logins | storm bots' errors "
          "(lost / dup pushes) | other bots' echo p50 / p99 / max ms | other bots' errors | target |")
    print("|---|---|---|---|---|---|---|---|")
    wanted = n * 2  # two storms, both before the bots stop
    lost = s_storm["error_kinds"]["push_lost"]
    dup = s_storm["error_kinds"]["push_dup"]
    ok = (s_storm["rebinds"] >= wanted and s_storm["relogins"] == 0 and s_storm["errors"] == 0
          and e["p99_us"] <= 10000)
    print(f"| {n} | {s_storm['rebinds']} / {wanted} | {rb['p50_us'] / 1e3:.1f} / {rb['p99_us'] / 1e3:.1f} "
          f"| {s_storm['relogins']} | {s_storm['errors']} ({lost} / {dup}) "
          f"| {e['p50_us'] / 1e3:.2f} / {e['p99_us'] / 1e3:.2f} / {e['max_us'] / 1e3:.2f} "
          f"| {s_others['errors']} | {'met' if ok else 'missed'} |")
    print(f"\nGate counters after: rebinds {m.get('coho_gate_rebinds_total', 0):.0f}, rebind "
          f"failures {m.get('coho_gate_rebind_failures_total', 0):.0f}.")
    if s_storm["errors"]:
        print("First storm errors: " + "; ".join(s_storm["first_errors"][:3]))


def soak():
    total = int(os.environ.get("SOAK_S", "600"))
    cycles = int(os.environ.get("SOAK_CYCLES", "5"))
    n = int(os.environ.get("SOAK_BOTS", "1000"))
    rate = int(os.environ.get("SOAK_RATE", "0"))
    calls = os.environ.get("SOAK_CALLS", "echo")
    if calls not in ("echo", "all"):
        sys.exit(f"bench-game: SOAK_CALLS must be 'echo' or 'all', got '{calls}'")
    srv = Servers()
    rows = []
    try:
        if rate == 0:
            log("soak: measuring the forward maximum first")
            rate = int(measure_fwd(srv, n, 0)["rps"] / 2)
        per = max(1, total // cycles)
        time.sleep(2)

        def sample(label):
            m = srv.metrics()
            co = sum(v for k, v in m.items() if k.startswith("coho_gate_shard_user_coroutines"))
            rows.append((label, rss_kib(srv.gate_pid), fds(srv.gate_pid), co,
                         m.get("coho_gate_connections_open", -1)))

        time.sleep(1.5)  # the per-shard gauges are sampled each second
        sample("before")
        errors, kinds, first = 0, {}, []
        for c in range(cycles):
            log(f"soak: cycle {c + 1}/{cycles}, {n} bots at {rate}/s for {per} s")
            s = bots(srv, n, max(1, round(rate / n)), ["--calls", calls], duration=per)
            errors += s["errors"]
            for k, v in s.get("error_kinds", {}).items():
                kinds[k] = kinds.get(k, 0) + v
            first += s.get("first_errors", [])[:3]
            time.sleep(1.5)
            sample(f"after cycle {c + 1}")
    finally:
        srv.stop()
    print(f"Soak: {total} s in {cycles} cycles of {n} bots at {rate} req/s (--calls {calls}), "
          f"errors {errors}.\n")
    print("| when | gate RSS KiB | gate fds | gate user coroutines | connections open |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0f} |")
    # Drift is growth: from the lowest RSS at the end of a cycle to the last (a first cycle that
    # ends higher than the rest, allocator caches warmed by the maximum's run, is not drift).
    low = min(rows[1:], key=lambda r: r[1])
    last = rows[-1]
    drift = 100 * (last[1] / low[1] - 1)
    print(f"\nRSS drift from the lowest end-of-cycle value ({low[0]}) to the end of cycle "
          f"{cycles}: {drift:+.1f} % (target <= 2 %: {'met' if drift <= 2 else 'missed'}); fds "
          f"not above the baseline: {'yes' if last[2] <= rows[0][2] else 'no'}; coroutines back: "
          f"{'yes' if last[3] == rows[0][3] else 'no'}; errors: {errors}.")
    if errors:
        print("Errors by kind: " + ", ".join(f"{k} {v}" for k, v in kinds.items() if v) +
              ". First ones: " + "; ".join(first[:6]) + ".")


def main():
    global BUILD
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) >= 2 else 1)
    BUILD = os.path.abspath(sys.argv[1])
    for p in ("game/gate/coho-gate", "game/logic/coho-logic", "game/bots/coho-bots"):
        if not os.access(os.path.join(BUILD, p), os.X_OK):
            sys.exit(f"bench-game: {BUILD}/{p} is missing (build the game programs first)")
    scenarios = sys.argv[2:] or ["fwd", "stats", "storm"]
    known = {"fwd": fwd, "floor": floor, "stats": stats_ab, "storm": storm, "soak": soak}
    for s in scenarios:
        if s not in known:
            sys.exit(f"bench-game: unknown scenario '{s}' (fwd floor stats storm soak)")
    head = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    print(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. CPU: {cpu}, "
          f"{os.cpu_count()} vCPU. Commit {head}. Load average at the start: "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}.")
    print(f"- Command: `tools/bench-game.py BUILD_DIR {' '.join(scenarios)}` (DURATION_S={DURATION_S}).")
    for s in scenarios:
        print(f"\n#### {s}\n")
        known[s]()
        sys.stdout.flush()
    print(f"\n- Load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}.")


if __name__ == "__main__":
    main()
