// SPDX-License-Identifier: MIT
// coho-logic: a logic node of the game server (game/README.md). Gateways connect to it; every
// request runs in its own coroutine on one scheduler thread; players live in MariaDB.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>

#include <coho.h>
#include <coho.hpp>
#include <coho/net.hpp>

#include "game/cluster/flags.hpp"
#include "game/common/flags.hpp"
#include "game/logic/cluster.hpp"
#include "game/logic/node.hpp"
#include "game/logic/timers.hpp"

namespace {

std::atomic<bool> g_stop{false};

// SIGTERM and SIGINT are blocked in every thread and taken by one waiting thread with sigwait:
// no handler runs inside the scheduler, and the node loop sees g_stop within 50 ms.
sigset_t stop_signals()
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    return sigs;
}

// "HOST:PORT" into its parts; false when it does not parse.
bool split_host_port(const std::string &s, std::string *host, uint16_t *port)
{
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
        return false;
    std::string h = s.substr(0, colon);
    if (h.size() > 2 && h.front() == '[' && h.back() == ']')
        h = h.substr(1, h.size() - 2);
    char *end = nullptr;
    errno = 0;
    unsigned long p = std::strtoul(s.c_str() + colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || p > 65535)
        return false;
    *host = h;
    *port = uint16_t(p);
    return true;
}

int log_level_of(const std::string &s)
{
    const char *names[] = {"trace", "debug", "info", "warn", "error", "fatal"};
    for (int i = 0; i < 6; i++)
        if (s == names[i])
            return i;
    return -1;
}

} // namespace

int main(int argc, char **argv)
{
    using namespace coho::game;
    // Before any thread exists (the log's, libmariadb's), so that every thread inherits it.
    const sigset_t stop_sigs = stop_signals();
    pthread_sigmask(SIG_BLOCK, &stop_sigs, nullptr);
    Flags f("coho-logic", "A logic node of the coho game server: gateways connect to it "
                          "(socket_ext, game/common/node.hpp) and it keeps players in MariaDB.");
    auto &listen =
        f.str("listen", "HOST:PORT", "where gateways connect (port 0: any free port)", "", true);
    auto &secret = f.str("secret", "S",
                         "the login secret (accepted for a uniform command line; "
                         "tokens are checked by the gateway)");
    auto &db = f.str("db", "HOST:PORT", "the MariaDB server", "", true);
    auto &db_user = f.str("db-user", "U", "MariaDB user", "root");
    auto &db_password = f.str("db-password", "P", "MariaDB password");
    auto &db_name =
        f.str("db-name", "D", "database (created if missing; [A-Za-z0-9_])", "coho_game");
    auto &db_conns = f.u64("db-conns", "N", "MariaDB connections kept at most", 8);
    auto &db_timeout = f.u64("db-timeout-s", "S", "MariaDB connect/read/write timeout", 5);
    auto &journal = f.str("journal", "FILE",
                          "the save journal (while the database is away), locked by one node; "
                          "default coho-logic-NODE_ID.journal");
    auto &error_file = f.str("db-error-file", "FILE",
                             "saves the database refused (default: the journal's path + .errors)");
    auto &save_interval =
        f.u64("save-interval-ms", "MS", "how long a change waits for the saver at most", 5);
    auto &dirty_max = f.u64("dirty-max", "N",
                            "players changed and not yet saved at most (then changes wait)", 10000);
    auto &db_retries =
        f.u64("db-retries", "N", "a save failing for a network reason is tried again N times", 4);
    auto &db_backoff =
        f.u64("db-backoff-ms", "MS", "before the first retry (doubling each time, up to 1000)", 50);
    auto &db_ping = f.u64("db-ping-ms", "MS",
                          "ping database connections idle this long (dead: replaced)", 30000);
    auto &admin =
        f.str("admin", "HOST:PORT", "admin HTTP: GET /metrics, /stats, /coroutines (default: off)");
    auto &gate_grace =
        f.u64("gate-grace-ms", "MS", "end the sessions of a gateway gone this long", 30000);
    auto &node_id =
        f.u64("node-id", "N", "this node's id (in logs; with --etcd its key /CLUSTER/logic/N)", 1);
    auto &aoi_cell =
        f.u64("aoi-cell", "UNITS", "AOI grid cell side (absent: $COHO_LOGIC_AOI_CELL if set)", 100);
    auto &daily_reset =
        f.str("daily-reset", "HH:MM[:SS]", "local time of the daily reset (calendar)", "05:00:00");
    auto &weekly_day = f.u64("weekly-reset-day", "D",
                             "weekday of the weekly reset (0 Sunday..6), at --daily-reset", 1);
    auto &clock_offset =
        f.str("clock-offset-s", "S",
              "shift the calendar's wall clock by S seconds (may be negative)", "0");
    auto &state_dir = f.str("state-dir", "DIR",
                            "keeps the last daily reset and the id reservation across restarts "
                            "(default: in memory only)");
    auto &machine_id =
        f.u64("machine-id", "N",
              "unique-id machine id, 0..1023 (default: --node-id; with --etcd: the lowest free "
              "one, held under the node's lease; given with --etcd, held the same way, and an "
              "error if another node holds it)",
              0);
    auto &scene_size = f.u64("scene-size", "UNITS", "scenes span 0..UNITS-1 on both axes", 10000);
    auto &aoi_tick = f.u64("aoi-tick-ms", "MS",
                           "AOI pushes: one per observer per tick (0: before each reply)", 50);
    cluster::Flags cluster_flags;
    cluster_flags.add(f);
    auto &advertise = f.str("advertise", "HOST:PORT",
                            "with --etcd: where gateways reach this node (default: --listen "
                            "with the port it got)");
    auto &capacity = f.u64("capacity", "N",
                           "with --etcd: the players this node takes, registered with it", 10000);
    auto &log_path = f.str("log", "FILE", "log file (default: stderr)");
    auto &log_level = f.str("log-level", "LEVEL", "trace, debug, info, warn or error", "info");
    f.parse(argc, argv);
    (void)secret;
    const std::vector<std::string> etcd_eps = cluster_flags.endpoints(f);
    if (!advertise.empty()) {
        std::string h;
        uint16_t p = 0;
        if (!split_host_port(advertise, &h, &p) || p == 0)
            f.fail("--advertise: '" + advertise + "' is not HOST:PORT");
    }

    logic::Config cfg;
    cfg.node_id = node_id;
    if (gate_grace > 86400000)
        f.fail("--gate-grace-ms: at most 86400000 (a day)");
    cfg.gate_grace = std::chrono::milliseconds(gate_grace);
    if (!split_host_port(listen, &cfg.listen_ip, &cfg.listen_port))
        f.fail("--listen: '" + listen + "' is not HOST:PORT");
    if (!etcd_eps.empty() && advertise.empty() &&
        (cfg.listen_ip == "0.0.0.0" || cfg.listen_ip == "::" || cfg.listen_ip.empty()))
        f.fail("--listen " + listen + " with --etcd: say where gateways reach it (--advertise)");
    std::string admin_ip;
    uint16_t admin_port = 0;
    if (!admin.empty() && !split_host_port(admin, &admin_ip, &admin_port))
        f.fail("--admin: '" + admin + "' is not HOST:PORT");
    std::string db_host;
    uint16_t db_port = 0;
    if (!split_host_port(db, &db_host, &db_port) || db_port == 0)
        f.fail("--db: '" + db + "' is not HOST:PORT");
    cfg.db.host = db_host;
    cfg.db.port = db_port;
    cfg.db.user = db_user;
    cfg.db.password = db_password;
    cfg.db.name = db_name;
    if (!logic::Db::valid_name(db_name))
        f.fail("--db-name: '" + db_name + "' is not 1..64 of [A-Za-z0-9_]");
    if (db_conns == 0 || db_conns > 1000)
        f.fail("--db-conns: must be 1..1000");
    if (db_timeout == 0 || db_timeout > 3600)
        f.fail("--db-timeout-s: must be 1..3600");
    cfg.persist.journal =
        journal.empty() ? "coho-logic-" + std::to_string(node_id) + ".journal" : journal;
    cfg.persist.errors = error_file;
    if (save_interval > 60000)
        f.fail("--save-interval-ms: at most 60000");
    if (dirty_max == 0 || dirty_max > 100000000)
        f.fail("--dirty-max: must be 1..100000000");
    if (db_retries > 100)
        f.fail("--db-retries: at most 100");
    if (db_backoff == 0 || db_backoff > 60000)
        f.fail("--db-backoff-ms: must be 1..60000");
    if (db_ping < 100 || db_ping > 86400000)
        f.fail("--db-ping-ms: must be 100..86400000");
    cfg.persist.save_interval = std::chrono::milliseconds(save_interval);
    cfg.persist.dirty_max = size_t(dirty_max);
    cfg.persist.retries = unsigned(db_retries);
    cfg.persist.backoff = std::chrono::milliseconds(db_backoff);
    cfg.persist.backoff_max = std::max(cfg.persist.backoff, std::chrono::milliseconds(1000));
    cfg.persist.ping_every = std::chrono::milliseconds(db_ping);
    cfg.db.conns = unsigned(db_conns);
    cfg.db.timeout_s = unsigned(db_timeout);
    uint64_t cell = aoi_cell;
    if (!f.given("aoi-cell")) {
        if (const char *env = std::getenv("COHO_LOGIC_AOI_CELL")) {
            char *end = nullptr;
            errno = 0;
            cell = std::strtoull(env, &end, 10);
            if (errno != 0 || *end != '\0' || env[0] == '\0' || env[0] == '-')
                f.fail(std::string("COHO_LOGIC_AOI_CELL: '") + env + "' is not a number");
        }
    }
    if (cell == 0 || cell > INT32_MAX)
        f.fail("--aoi-cell: must be 1.." + std::to_string(INT32_MAX));
    cfg.aoi_cell = int32_t(cell);
    logic::TimersConfig tcfg;
    try {
        tcfg.daily_reset = cal::parse_time_of_day(daily_reset);
    } catch (const std::invalid_argument &e) {
        f.fail(std::string("--daily-reset: ") + e.what());
    }
    {
        char *end = nullptr;
        errno = 0;
        const long long off = std::strtoll(clock_offset.c_str(), &end, 10);
        if (errno != 0 || *end != '\0' || clock_offset.empty() || off < -(100LL << 25) ||
            off > (100LL << 25))
            f.fail("--clock-offset-s: '" + clock_offset +
                   "' is not a number of seconds "
                   "within about a century");
        tcfg.clock_offset_s = off;
    }
    if (weekly_day > 6)
        f.fail("--weekly-reset-day: must be 0 (Sunday)..6 (Saturday)");
    tcfg.weekly_reset_day = int(weekly_day);
    tcfg.state_dir = state_dir;
    tcfg.machine_id = uint32_t(f.given("machine-id") ? machine_id : node_id);
    if ((f.given("machine-id") ? machine_id : node_id) > IdGen::kMaxMachine)
        f.fail("--machine-id (default: --node-id): must be 0.." +
               std::to_string(IdGen::kMaxMachine));
    if (scene_size == 0 || scene_size > INT32_MAX)
        f.fail("--scene-size: must be 1.." + std::to_string(INT32_MAX));
    cfg.scene_size = int32_t(scene_size);
    if (aoi_tick > 10000)
        f.fail("--aoi-tick-ms: at most 10000");
    cfg.aoi_tick = std::chrono::milliseconds(aoi_tick);
    const int level = log_level_of(log_level);
    if (level < 0)
        f.fail("--log-level: '" + log_level + "' is not trace, debug, info, warn or error");

    if (!log_path.empty()) {
        coho_log_opts_t lo;
        coho_log_opts_init(&lo);
        lo.path = log_path.c_str();
        lo.level = level;
        if (coho_log_open(&lo) != 0)
            return 1; // coho_log_open said why on stderr
    } else {
        coho_log_set_level(level);
    }

    std::thread([stop_sigs] {
        int sig = 0;
        if (sigwait(&stop_sigs, &sig) == 0)
            g_stop.store(true);
    }).detach();
    signal(SIGPIPE, SIG_IGN);

    if (mysql_library_init(0, nullptr, nullptr) != 0) {
        std::fprintf(stderr, "coho-logic: mysql_library_init failed\n");
        return 1;
    }

    int rc = 0;
    {
        coho_sched_opts_t so;
        coho_sched_opts_init(&so);
        so.stack_size = std::max<size_t>(so.stack_size, 256u << 10); // libmariadb, protobuf
        coho::Scheduler sched(so);
        // With --etcd: the node's registration, made once it listens; until then, and
        // whenever its lease is not valid, the node owns no uid and no scene (fencing).
        std::unique_ptr<logic::ClusterMember> member;
        if (!etcd_eps.empty()) {
            cfg.owns = [&member](const char *kind, uint64_t id) {
                return member && member->owns(kind, id);
            };
            cfg.lease = [&member] { return member ? member->member().lease() : int64_t(0); };
        }
        logic::Node node(cfg, sched);
        // With --etcd the snowflake ids wait for the machine id the node holds under its lease.
        std::unique_ptr<logic::Timers> timers;
        auto make_timers = [&]() {
            try {
                timers = std::make_unique<logic::Timers>(sched, node.metrics(), tcfg);
                return true;
            } catch (const std::exception &e) {
                std::fprintf(stderr, "coho-logic: calendar: %s\n", e.what());
                return false;
            }
        };
        if (etcd_eps.empty() && !make_timers()) {
            mysql_library_end();
            return 1;
        }
        // Declared after the node: it serves the node's registry and sections.
        std::unique_ptr<coho::net::Admin> adm;
        sched.spawn([&] {
            try {
                node.start();
            } catch (const std::system_error &e) {
                std::fprintf(stderr, "coho-logic: cannot listen on %s: %s\n", listen.c_str(),
                             e.what());
                rc = 1;
                return;
            } catch (const std::exception &e) {
                std::fprintf(stderr, "coho-logic: %s\n", e.what()); // the journal
                rc = 1;
                return;
            }
            if (!etcd_eps.empty()) {
                cluster::MemberConfig mc;
                mc.etcd = etcd_eps;
                mc.cluster = *cluster_flags.cluster;
                mc.id = std::to_string(cfg.node_id);
                mc.ttl_s = int64_t(*cluster_flags.ttl_s);
                const std::string addr = advertise.empty()
                                             ? cfg.listen_ip + ":" + std::to_string(node.port())
                                             : advertise;
                member = std::make_unique<logic::ClusterMember>(
                    mc, addr, capacity, f.given("machine-id") ? int64_t(machine_id) : -1);
                member->start();
                // The first registration brings the machine id.
                while (!g_stop.load() && !member->machine_id_lost() &&
                       !member->member().wait_valid(std::chrono::milliseconds(100))) {
                }
                if (!member->member().valid()) {
                    if (member->machine_id_lost()) {
                        std::fprintf(stderr,
                                     "coho-logic: machine id %llu is held by another node\n",
                                     static_cast<unsigned long long>(machine_id));
                        rc = 1;
                    }
                    member->stop();
                    node.stop();
                    return;
                }
                tcfg.machine_id = uint32_t(member->machine_id());
                if (!make_timers()) {
                    member->stop();
                    node.stop();
                    rc = 1;
                    return;
                }
                std::printf("machine id %u\n", tcfg.machine_id);
            }
            if (!admin.empty()) {
                // On the node's scheduler: /metrics and /stats read the node's state, which
                // only this thread touches.
                coho::net::Admin::Options ao;
                ao.sched = sched.native_handle();
                try {
                    adm = std::make_unique<coho::net::Admin>(admin, &node.metrics(), ao);
                    adm->add_sched(sched, "logic");
                    adm->add_section("logic", [&node](coho::net::Json &j) { node.stats_json(j); });
                    adm->add_section("calendar",
                                     [&timers](coho::net::Json &j) { timers->stats_json(j); });
                } catch (const std::exception &e) {
                    std::fprintf(stderr, "coho-logic: cannot listen on %s (--admin): %s\n",
                                 admin.c_str(), e.what());
                    adm.reset();
                    if (member)
                        member->stop();
                    node.stop();
                    rc = 1;
                    return;
                }
                std::printf("listening admin %s:%d\n", admin_ip.c_str(), adm->port());
            }
            timers->start();
            std::printf("listening tcp %s:%u\n", cfg.listen_ip.c_str(), unsigned(node.port()));
            std::fflush(stdout);
            while (!g_stop.load() && !(member && member->machine_id_lost()))
                coho::this_co::sleep_for(std::chrono::milliseconds(50));
            if (member && member->machine_id_lost()) {
                // Taken by another node while this one had lost its lease: no id may be made
                // with it here any more. A restart takes a free one.
                std::fprintf(stderr, "coho-logic: machine id %u is held by another node now\n",
                             tcfg.machine_id);
                rc = 1;
            }
            coho_log_info("logic node %" PRIu64 " stopping", cfg.node_id);
            if (adm) {
                adm->remove_sched(sched);
                adm->stop();
            }
            if (member)
                member->stop(); // deregistered first: gateways stop sending here
            timers->stop();
            node.stop();
            node.log_stats();
        });
        sched.run();
    }
    mysql_library_end();
    if (coho_log_is_open())
        coho_log_close();
    return rc;
}
