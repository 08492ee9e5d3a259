// SPDX-License-Identifier: MIT
// coho-bots: the load generator and checker of the game servers. N bots, each one coroutine
// written as plain sequential code (bot.cpp), spread over a few scheduler threads; a progress
// line per second; a report and one machine-readable SUMMARY line at the end.
//
// Exit status: 0 when the errors stay within --max-errors, 3 when they do not, 1 on a bad
// command line. SIGINT or SIGTERM ends the run early, with the logouts and the report.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include <coho.hpp>
#include <coho/log.h>

#include "admin.hpp"
#include "bot.hpp"
#include "flags.hpp"
#include "stats.hpp"

using namespace coho::game;
using namespace coho::game::bots;

namespace {

constexpr int kExitFailed = 3;

// SIGINT and SIGTERM end the run early: the bots log out and the report is printed as usual.
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int)
{
    g_stop.store(true, std::memory_order_relaxed);
}

std::string fmt_ms(uint64_t us)
{
    char b[32];
    std::snprintf(b, sizeof b, "%.2fms", double(us) / 1e3);
    return b;
}

// The log goes to ./log/ of the directory the bots run in (make game runs them in the build
// tree), never into the source tree, whose log/ holds coho's logger.
bool open_log(const std::string &path, int level)
{
    if (path == "-") {
        coho_log_set_level(level);
        return true;
    }
    if (path.rfind("log/", 0) == 0) {
        if (access("log/log.c", F_OK) == 0) {
            std::fprintf(stderr, "coho-bots: ./log/ is coho's source folder; run from a build "
                                 "directory or pass --log\n");
            return false;
        }
        mkdir("log", 0755);
    }
    coho_log_opts_t o;
    coho_log_opts_init(&o);
    o.path = path.c_str();
    o.level = level;
    o.files_kept = 2;
    if (coho_log_open(&o) != 0) {
        std::fprintf(stderr, "coho-bots: cannot open the log %s\n", path.c_str());
        return false;
    }
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    Flags f(
        "coho-bots",
        "Plays N bots against a coho-gate (TCP, or WebSocket with --ws): log in, heartbeat,\n"
        "chat, move in a scene, calls with their latency measured, optional REBIND; every reply\n"
        "and push is checked. Prints a progress line per second, a report and a line\n"
        "'SUMMARY {json}'. Exit status: 0 ok, 3 more errors than --max-errors, 1 bad flags.");
    auto &gate = f.list("gate", "HOST:PORT[,...]",
                        "the gateway's TCP (or, with --ws, WebSocket) listener; several (a list, "
                        "or the flag repeated): a bot whose gateway fails moves to the next",
                        true);
    auto &ws = f.flag("ws", "speak WebSocket (one binary message per frame) instead of TCP");
    auto &ws_path = f.str("ws-path", "PATH", "the WebSocket upgrade path", "/");
    auto &secret = f.str("secret", "S", "the login token secret shared with the gateway", "", true);
    auto &nbots = f.u64("bots", "N", "how many bots", 10);
    auto &duration_s = f.u64("duration-s", "S", "how long the bots play after starting", 10);
    auto &ramp_s = f.u64("ramp-s", "S", "spread the bots' starts over this long", 1);
    auto &warmup_s = f.u64("warmup-s", "S",
                           "leave the first S s after the ramp out of the report and SUMMARY "
                           "(0: measure everything, logins included)",
                           0);
    auto &rate = f.u64("rate", "R", "actions per second per bot (0: back to back)", 5);
    auto &rebind_s =
        f.u64("rebind-every-s", "S", "drop the socket and REBIND this often (0: never)", 0);
    auto &rebind_aligned = f.flag(
        "rebind-aligned", "with --rebind-every-s S: every bot drops its socket and REBINDs at the "
                          "same moments, S, 2S, ... after the start (a reconnect storm), not S "
                          "after its own login");
    auto &seed = f.u64("seed", "X", "random seed (payloads, choices)", 1);
    auto &uid_base = f.u64("uid-base", "U", "bot i plays uid U+i", 1);
    auto &threads = f.u64("threads", "N", "scheduler threads the bots are spread over", 1);
    auto &timeout_ms = f.u64("timeout-ms", "MS", "a reply later than this is an error", 5000);
    auto &connect_ms = f.u64("connect-timeout-ms", "MS", "connect (and upgrade) timeout", 5000);
    auto &max_errors = f.u64("max-errors", "N", "errors tolerated before the exit status is 3", 0);
    auto &scenes = f.u64("scenes", "N", "bots are spread over scenes 1..N", 4);
    auto &aoi_cell = f.u64("aoi-cell", "UNITS",
                           "the logic nodes' AOI cell side (AOI pushes are checked with it)", 100);
    auto &scene_size =
        f.u64("scene-size", "UNITS", "the logic nodes' --scene-size (bots stay inside)", 10000);
    auto &channels = f.u64("channels", "N", "bots are spread over chat channels ch-0..ch-(N-1)", 4);
    auto &max_frame =
        f.u64("max-frame", "BYTES", "largest frame accepted from the gateway", 1u << 20);
    auto &admin_at =
        f.str("admin", "HOST:PORT",
              "admin HTTP listener while the bots run (/metrics, /stats, /coroutines); "
              "prints 'listening admin HOST:PORT'");
    auto &calls = f.str("calls", "MIX",
                        "'all': echo, push.self, player, chat and scene calls; 'echo': only echo "
                        "calls (measures the gateway's forwarding)",
                        "all");
    auto &quiet = f.flag("quiet", "no progress lines");
    auto &log_path = f.str("log", "PATH", "the log file ('-': stderr)", "log/coho-bots.log");
    auto &log_level = f.u64("log-level", "L", "0 trace, 1 debug, 2 info, 3 warn, 4 error", 2);
    f.parse(argc, argv);

    if (nbots == 0 || nbots > 1000000)
        f.fail("--bots must be 1..1000000");
    if (threads == 0 || threads > 256)
        f.fail("--threads must be 1..256");
    if (duration_s == 0 || duration_s > 86400 * 7)
        f.fail("--duration-s must be 1..604800");
    if (warmup_s >= duration_s)
        f.fail("--warmup-s must be below --duration-s");
    if (ramp_s > 3600 || rate > 100000 || rebind_s > 86400 || timeout_ms == 0 ||
        timeout_ms > 3600000 || connect_ms == 0 || connect_ms > 3600000)
        f.fail("a value out of range (--ramp-s <= 3600, --rate <= 100000, --rebind-every-s <= "
               "86400, --timeout-ms and --connect-timeout-ms 1..3600000)");
    if (rebind_aligned && rebind_s == 0)
        f.fail("--rebind-aligned needs --rebind-every-s");
    if (scenes == 0 || scenes > 1000000 || channels == 0 || channels > 1000000)
        f.fail("--scenes and --channels must be 1..1000000");
    if (aoi_cell == 0 || aoi_cell > INT32_MAX || scene_size == 0 || scene_size > INT32_MAX)
        f.fail("--aoi-cell and --scene-size must be 1.." + std::to_string(INT32_MAX));
    if (max_frame < wire::kMinLen || max_frame > (1u << 30))
        f.fail("--max-frame must be 8..1073741824");
    std::vector<std::string> gates;
    for (size_t at = 0; at <= gate.size();) {
        size_t comma = std::min(gate.find(',', at), gate.size());
        gates.push_back(gate.substr(at, comma - at));
        if (gates.back().find(':') == std::string::npos)
            f.fail("--gate wants HOST:PORT, got '" + gates.back() + "'");
        at = comma + 1;
    }
    if (!admin_at.empty() && admin_at.find(':') == std::string::npos)
        f.fail("--admin wants HOST:PORT, got '" + admin_at + "'");
    if (calls != "all" && calls != "echo")
        f.fail("--calls must be 'all' or 'echo', got '" + calls + "'");
    if (ws_path.empty() || ws_path[0] != '/')
        f.fail("--ws-path must start with '/'");
    if (log_level > COHO_LOG_FATAL)
        f.fail("--log-level must be 0..5");
    if (!open_log(log_path, int(log_level)))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    // One socket per bot: take every fd the hard limit allows.
    rlimit nofile{};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nbots + 64)
        std::fprintf(stderr, "coho-bots: warning: the fd limit %llu is below %llu bots + 64\n",
                     static_cast<unsigned long long>(nofile.rlim_cur),
                     static_cast<unsigned long long>(nbots));

    Stats stats;
    std::unique_ptr<AdminPort> admin;
    if (!admin_at.empty()) {
        // The first coho::Scheduler installs the C++ runtime's switch hook (coho_set_switch_hook);
        // make that happen before the admin server's thread starts switching coroutines.
        {
            coho::Scheduler first;
        }
        try {
            admin = std::make_unique<AdminPort>(admin_at, stats, nbots, max_errors);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "coho-bots: --admin %s: %s\n", admin_at.c_str(), e.what());
            return 1;
        }
        std::printf("listening admin %s:%d\n", admin_at.substr(0, admin_at.rfind(':')).c_str(),
                    admin->port());
        std::fflush(stdout);
    }
    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::seconds(ramp_s + duration_s);
    if (warmup_s > 0)
        stats.measure_from(t0 + std::chrono::seconds(ramp_s + warmup_s),
                           double(duration_s - warmup_s));

    BotOptions base;
    base.link.host_port = gates[0];
    base.gates = gates;
    base.link.ws = ws;
    base.link.ws_path = ws_path;
    base.link.max_frame = uint32_t(max_frame);
    base.link.connect_timeout_ms = int64_t(connect_ms);
    base.secret = secret;
    base.end = end;
    base.stop = &g_stop;
    base.rate = double(rate);
    base.rebind_every_ms = int64_t(rebind_s * 1000);
    if (rebind_aligned)
        base.rebind_epoch = t0;
    base.timeout_ms = int64_t(timeout_ms);
    base.scenes = uint32_t(scenes);
    base.channels = uint32_t(channels);
    base.echo_only = calls == "echo";
    base.aoi_cell = int32_t(aoi_cell);
    base.scene_size = int32_t(scene_size);

    // Bot i runs on thread i % threads and starts at t0 + ramp * i / N.
    std::vector<std::thread> workers;
    std::atomic<int> failed_threads{0};
    std::atomic<uint64_t> running_threads{threads};
    for (uint64_t t = 0; t < threads; t++) {
        workers.emplace_back([&, t] {
            try {
                coho::Scheduler s;
                std::vector<std::unique_ptr<Bot>> mine;
                for (uint64_t i = t; i < nbots; i += threads) {
                    BotOptions o = base;
                    o.uid = uid_base + i;
                    o.seed = seed * 1000003 + i;
                    o.start = t0 + std::chrono::milliseconds(ramp_s * 1000 * i / nbots);
                    mine.push_back(std::make_unique<Bot>(o, stats));
                    Bot *b = mine.back().get();
                    s.spawn([b] { b->run(); });
                }
                // /coroutines shows the thread's scheduler until it goes, however run ends.
                struct Shown {
                    AdminPort *admin;
                    coho::Scheduler &s;
                    ~Shown()
                    {
                        if (admin != nullptr)
                            admin->remove_sched(s);
                    }
                } shown{nullptr, s};
                if (admin) {
                    admin->add_sched(s, "bots " + std::to_string(t));
                    shown.admin = admin.get();
                }
                s.run();
            } catch (const std::exception &e) {
                std::fprintf(stderr, "coho-bots: thread %llu: %s\n",
                             static_cast<unsigned long long>(t), e.what());
                failed_threads.fetch_add(1);
            }
            running_threads.fetch_sub(1);
        });
    }

    // Progress, once a second, until every bot is done.
    auto prev = stats.all.snapshot();
    uint64_t prev_pushes = 0, prev_errors = 0;
    auto next = t0 + std::chrono::seconds(1);
    while (running_threads.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (Clock::now() < next)
            continue;
        next += std::chrono::seconds(1);
        if (quiet)
            continue;
        auto cur = stats.all.snapshot();
        auto d = cur.minus(prev);
        uint64_t pushes = stats.pushes.load(), errors = stats.total_errors();
        std::printf(
            "[%3llds] bots %llu req/s %llu p50 %s p99 %s pushes/s %llu errors %llu "
            "(+%llu) rebinds %llu moves %llu aoi %llu (mismatches %llu)\n",
            static_cast<long long>(
                std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - t0).count()),
            static_cast<unsigned long long>(stats.bots_running.load()),
            static_cast<unsigned long long>(d.count), fmt_ms(d.quantile(0.5)).c_str(),
            fmt_ms(d.quantile(0.99)).c_str(), static_cast<unsigned long long>(pushes - prev_pushes),
            static_cast<unsigned long long>(errors),
            static_cast<unsigned long long>(errors - prev_errors),
            static_cast<unsigned long long>(stats.rebinds.load()),
            static_cast<unsigned long long>(stats.ok_count[OP_SCENE_MOVE].load()),
            static_cast<unsigned long long>(stats.aoi_pushes.load()),
            static_cast<unsigned long long>(stats.errors[E_AOI].load()));
        std::fflush(stdout);
        prev = cur;
        prev_pushes = pushes;
        prev_errors = errors;
    }
    for (auto &w : workers)
        w.join();
    if (failed_threads.load())
        stats.error(E_INTERNAL, std::to_string(failed_threads.load()) + " bot thread(s) failed");

    double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (g_stop.load())
        std::printf("\ncoho-bots: stopped early by a signal\n");
    std::printf("\ncoho-bots: %llu bots, %.1f s, gate %s over %s\n",
                static_cast<unsigned long long>(nbots), elapsed, gate.c_str(), ws ? "ws" : "tcp");
    std::fputs(stats.report(elapsed).c_str(), stdout);
    std::printf("SUMMARY %s\n", stats.json(elapsed, nbots, max_errors).c_str());
    bool ok = stats.total_errors() <= max_errors;
    std::printf("coho-bots: %s\n", ok ? "PASS" : "FAIL (more errors than --max-errors)");
    std::fflush(stdout);
    coho_log_info("bots: done, %llu errors: %s",
                  static_cast<unsigned long long>(stats.total_errors()), ok ? "pass" : "fail");
    if (coho_log_is_open())
        coho_log_close();
    return ok ? 0 : kExitFailed;
}
