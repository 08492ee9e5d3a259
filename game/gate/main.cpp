// SPDX-License-Identifier: MIT
// coho-gate: the command line, the shards, and the shutdown (SIGINT/SIGTERM: every client gets
// KICK 5, then exit 0). Before serving it prints one line per listener:
//     listening tcp HOST:PORT / listening ws HOST:PORT / listening admin HOST:PORT
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <exception>
#include <memory>

#include "bytes.hpp"
#include "flags.hpp"
#include "game/cluster/flags.hpp"
#include "links.hpp"
#include "shard.hpp"

namespace coho::game::gate {

namespace {

std::vector<std::string> split(const std::string &s, char sep)
{
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        size_t end = s.find(sep, start);
        if (end == std::string::npos)
            end = s.size();
        if (end > start)
            out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

// "HOST:PORT" -> HOST ("" for ":PORT"); false when there is no port.
bool host_of(const std::string &hp, std::string *host)
{
    size_t colon = hp.rfind(':');
    if (colon == std::string::npos || colon + 1 == hp.size())
        return false;
    *host = hp.substr(0, colon);
    return true;
}

std::string with_port(const std::string &hp, int port)
{
    std::string host;
    host_of(hp, &host);
    return host + ":" + std::to_string(port);
}

Config parse(int argc, char **argv)
{
    Flags f("coho-gate", "the game gateway: clients over TCP and WebSocket, calls routed to "
                         "logic nodes by rendezvous hashing on uid (game/README.md)");
    auto &listen = f.str("listen", "HOST:PORT", "client TCP listener (port 0: any)", "", true);
    auto &ws_listen = f.str("ws-listen", "HOST:PORT", "client WebSocket listener");
    auto &ws_path = f.str("ws-path", "PATH", "WebSocket upgrade path", "/");
    auto &logic = f.str("logic", "HOST:PORT[,...]", "the logic nodes (or --etcd)");
    coho::game::cluster::Flags cluster_flags;
    cluster_flags.add(f);
    auto &secret = f.str("secret", "S", "login token secret (HMAC-SHA256 key)", "", true);
    auto &admin =
        f.str("admin", "HOST:PORT", "admin HTTP listener (/metrics, /stats, /coroutines)");
    auto &threads = f.u64("threads", "N", "threads (one scheduler and listener each)", 1);
    auto &heartbeat = f.u64("heartbeat-ms", "MS", "heartbeat interval told to clients", 10000);
    auto &idle = f.u64("idle-ms", "MS",
                       "KICK 1 after this long without a frame "
                       "(default 2 x heartbeat-ms)",
                       0);
    auto &max_conns = f.u64("max-conns", "N", "connections at most (KICK 7 past it)", 100000);
    auto &per_ip = f.u64("per-ip-max", "N", "connections per address at most, 0 = off", 0);
    auto &max_frame = f.u64("max-frame", "BYTES", "largest len a client may send",
                            coho::game::wire::kDefaultMaxFrame);
    auto &sq = f.u64("send-queue-bytes", "BYTES", "send queue bound per connection", 1 << 20);
    auto &rate = f.u64("rate-limit", "N", "frames per second per connection, 0 = off", 0);
    auto &replay_pushes = f.u64("replay-pushes", "N", "pushes kept per session for REBIND", 256);
    auto &replay_bytes =
        f.u64("replay-bytes", "BYTES", "push bytes kept per session for REBIND", 256 << 10);
    auto &grace = f.u64("grace-ms", "MS", "how long a dropped session waits for REBIND", 30000);
    auto &call_timeout =
        f.u64("call-timeout-ms", "MS", "a node request fails with status 4 after this", 3000);
    auto &node_conns = f.u64("node-conns", "N", "connections per logic node per thread", 2);
    auto &sndbuf = f.u64("sndbuf", "BYTES",
                         "SO_SNDBUF of client sockets, bounding the kernel's share of a slow "
                         "reader's backlog (0: the kernel's, autotuned)",
                         0);
    auto &tls_cert = f.str("tls-cert", "FILE", "TLS certificate chain (PEM), with --tls-key");
    auto &tls_key = f.str("tls-key", "FILE", "TLS private key (PEM), with --tls-cert");
    auto &allow = f.str("allow", "FILE",
                        "only these addresses/CIDR blocks may connect "
                        "(one a line; SIGHUP reloads)");
    auto &deny = f.str("deny", "FILE", "these addresses/CIDR blocks get KICK 7 (SIGHUP reloads)");
    auto &no_stats = f.flag("no-stats", "skip the per-route and per-connection accounting (to "
                                        "measure its cost; the gateway-wide counters stay)");
    auto &log = f.str("log", "FILE", "trace log file (default: none)");
    f.parse(argc, argv);

    Config c;
    std::string host;
    if (!host_of(listen, &host))
        f.fail("--listen '" + listen + "' is not HOST:PORT");
    if (!ws_listen.empty() && !host_of(ws_listen, &host))
        f.fail("--ws-listen '" + ws_listen + "' is not HOST:PORT");
    if (!admin.empty() && !host_of(admin, &host))
        f.fail("--admin '" + admin + "' is not HOST:PORT");
    c.etcd = cluster_flags.endpoints(f);
    c.cluster = *cluster_flags.cluster;
    c.lease_ttl_s = *cluster_flags.ttl_s;
    c.logic = split(logic, ',');
    if (c.logic.empty() && c.etcd.empty())
        f.fail(c.etcd.empty() && logic.empty()
                   ? "missing required flag '--logic' (or --etcd, to find the nodes there)"
                   : "--logic names no node");
    for (const auto &n : c.logic)
        if (!host_of(n, &host))
            f.fail("--logic node '" + n + "' is not HOST:PORT");
    if (threads < 1 || threads > 64)
        f.fail("--threads must be 1..64");
    if (heartbeat < 1 || heartbeat > 0xffffffffu)
        f.fail("--heartbeat-ms must be 1..4294967295");
    if (max_frame < coho::game::wire::kMinLen || max_frame > (64u << 20))
        f.fail("--max-frame must be 8..67108864");
    if (sq < 1024)
        f.fail("--send-queue-bytes must be at least 1024");
    if (rate > 0xffffffffu)
        f.fail("--rate-limit is too large");
    if (replay_pushes < 1)
        f.fail("--replay-pushes must be at least 1");
    if (call_timeout < 1)
        f.fail("--call-timeout-ms must be at least 1");
    if (node_conns < 1 || node_conns > 64)
        f.fail("--node-conns must be 1..64");
    if (sndbuf > (64u << 20))
        f.fail("--sndbuf must be at most 67108864");
    if (tls_cert.empty() != tls_key.empty())
        f.fail("--tls-cert and --tls-key go together");
    if (ws_path.empty() || ws_path[0] != '/')
        f.fail("--ws-path must start with '/'");

    c.listen = listen;
    c.ws_listen = ws_listen;
    c.ws_path = ws_path;
    c.admin = admin;
    c.secret = secret;
    c.tls_cert = tls_cert;
    c.tls_key = tls_key;
    c.threads = unsigned(threads);
    c.heartbeat_ms = heartbeat;
    c.idle_ms = f.given("idle-ms") ? idle : 2 * heartbeat;
    c.max_conns = max_conns;
    // Capped by the fd limit, less what the listeners, node links and logs need.
    rlimit nofile{};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
        uint64_t reserve = 64 + c.threads * (4 + c.logic.size() * node_conns);
        uint64_t cap = nofile.rlim_cur > reserve ? nofile.rlim_cur - reserve : 1;
        if (c.max_conns == 0 || c.max_conns > cap)
            c.max_conns = cap;
    }
    c.per_ip_max = per_ip;
    c.max_frame = max_frame;
    c.send_queue_bytes = sq;
    c.rate_limit = rate;
    c.replay_pushes = replay_pushes;
    c.replay_bytes = replay_bytes;
    c.grace_ms = grace;
    c.call_timeout_ms = call_timeout;
    c.node_conns = node_conns;
    c.stats = !no_stats;
    c.sndbuf = sndbuf;
    c.allow_file = allow;
    c.deny_file = deny;
    if (!log.empty()) {
        coho_log_opts_t lo;
        coho_log_opts_init(&lo);
        lo.path = log.c_str();
        if (coho_log_open(&lo) != 0)
            f.fail("--log '" + log + "': " + strerror(errno));
    }
    return c;
}

} // namespace

int run(int argc, char **argv)
{
    Gate &g = gate();
    g.cfg = parse(argc, argv);
    const Config &cfg = g.cfg;
    if (std::string err; !load_acl(&err)) {
        std::fprintf(stderr, "coho-gate: %s\n", err.c_str());
        return 1;
    }
    try {
        g.cfg.gate_id = get_u64(reinterpret_cast<const unsigned char *>(random_bytes(8).data()));
    } catch (const std::exception &e) {
        std::fprintf(stderr, "coho-gate: %s\n", e.what());
        return 1;
    }

    // The signals are waited for by this thread alone; every thread started below inherits
    // the mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    signal(SIGPIPE, SIG_IGN);

    for (unsigned i = 0; i < cfg.threads; i++) {
        g.shards.push_back(std::make_unique<Shard>());
        g.shards.back()->index = i;
    }
    g.metrics = std::make_unique<coho::net::Metrics>();
    register_metrics(*g.metrics);
    // Shard 0 binds the addresses as given; the others, started together, bind its ports.
    std::vector<std::unique_ptr<ShardCtl>> ctls;
    std::vector<std::future<std::array<int, 2>>> started;
    std::array<int, 2> ports{0, 0};
    auto start = [&](unsigned i) {
        auto ctl = std::make_unique<ShardCtl>();
        ctl->shard = g.shards[i].get();
        ctl->tcp_addr = i == 0 ? cfg.listen : with_port(cfg.listen, ports[0]);
        if (!cfg.ws_listen.empty())
            ctl->ws_addr = i == 0 ? cfg.ws_listen : with_port(cfg.ws_listen, ports[1]);
        started.push_back(ctl->started.get_future());
        ShardCtl *raw = ctl.get();
        ctl->thread = std::thread([raw] { shard_thread(*raw); });
        ctls.push_back(std::move(ctl));
    };
    std::string start_error;
    for (unsigned i = 0; i < cfg.threads && start_error.empty(); i++) {
        if (i <= 1)
            start(i); // 0 alone (its ports are needed), then 1 ..
        if (i == 1)
            for (unsigned k = 2; k < cfg.threads; k++)
                start(k); // .. with the rest at once
        try {
            auto p = started[i].get();
            if (i == 0)
                ports = p;
        } catch (const std::exception &e) {
            start_error = e.what();
        }
    }
    // The admin server has a thread of its own; /coroutines dumps every shard's scheduler.
    std::unique_ptr<coho::net::Admin> admin;
    if (start_error.empty() && !cfg.admin.empty()) {
        try {
            admin = std::make_unique<coho::net::Admin>(cfg.admin, g.metrics.get());
            for (auto &sh : g.shards)
                admin->add_sched(sh->sched, "shard " + std::to_string(sh->index));
            add_stats_sections(*admin);
        } catch (const std::exception &e) {
            start_error = e.what();
            admin.reset();
        }
    }
    auto stop_shards = [&] {
        admin.reset(); // before the schedulers it dumps go
        for (auto &c : ctls)
            c->stop.try_send(1);
        for (auto &c : ctls)
            c->thread.join();
        g.routes.clear(); // handles into the registry
        g.metrics.reset();
    };
    if (!start_error.empty()) {
        std::fprintf(stderr, "coho-gate: cannot start: %s\n", start_error.c_str());
        stop_shards();
        return 1;
    }
    std::string host;
    host_of(cfg.listen, &host);
    std::printf("listening tcp %s:%d\n", host.c_str(), ports[0]);
    if (!cfg.ws_listen.empty()) {
        host_of(cfg.ws_listen, &host);
        std::printf("listening ws %s:%d\n", host.c_str(), ports[1]);
    }
    if (!cfg.admin.empty()) {
        host_of(cfg.admin, &host);
        std::printf("listening admin %s:%d\n", host.c_str(), admin->port());
    }
    std::fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
        std::string err;
        if (load_acl(&err))
            std::fprintf(stderr, "coho-gate: SIGHUP: allow and deny lists reloaded\n");
        else
            std::fprintf(stderr, "coho-gate: SIGHUP: %s (the lists in force stay)\n", err.c_str());
    }
    std::fprintf(stderr, "coho-gate: %s: shutting down\n", strsignal(sig));
    stop_shards();
    Counters &s = g.stats;
    std::fprintf(stderr,
                 "coho-gate: done: %llu connections, %llu logins, %llu calls, %llu pushes, "
                 "%llu rebinds, %llu protocol errors\n",
                 (unsigned long long)s.accepted.load(), (unsigned long long)s.logins.load(),
                 (unsigned long long)s.calls.load(), (unsigned long long)s.pushes.load(),
                 (unsigned long long)s.rebinds.load(),
                 (unsigned long long)s.protocol_errors.load());
    if (coho_log_is_open())
        coho_log_close();
    return 0;
}

} // namespace coho::game::gate

int main(int argc, char **argv)
{
    return coho::game::gate::run(argc, argv);
}
