// SPDX-License-Identifier: MIT
// A shard's life: connect to the logic nodes, open the listeners, expire sessions past their
// grace period, and on the stop let every client go with KICK 5.
#include "shard.hpp"

#include <memory>

#include "cluster.hpp"
#include "links.hpp"

namespace coho::game::gate {

namespace {

coho::net::Server::Options client_options(const Config &cfg, Shard &sh, bool ws)
{
    coho::net::Server::Options o;
    o.sched = sh.sched;
    o.threads = 1;
    o.reuseport = true;
    o.max_conns = 0; // admission (KICK 7) is the gateway's, over every shard
    o.idle_ms = cfg.idle_ms;
    o.max_frame = cfg.max_frame + 4; // the len field itself
    o.send_queue_bytes = cfg.send_queue_bytes;
    o.rate_limit = unsigned(cfg.rate_limit);
    o.sndbuf = int(cfg.sndbuf);
    o.linger_ms = 5000; // a kicked slow consumer gets this long to take what is queued and its KICK
    o.websocket = ws;
    o.ws_path = cfg.ws_path.c_str();
    if (!cfg.tls_cert.empty()) {
        o.tls_cert_file = cfg.tls_cert.c_str();
        o.tls_key_file = cfg.tls_key.c_str();
    }
    return o;
}

void shard_main(ShardCtl &ctl)
{
    Shard &sh = *ctl.shard;
    const Config &cfg = gate().cfg;
    std::unique_ptr<coho::net::Server> tcp, ws;
    std::unique_ptr<ShardCluster> cl;
    sh.links = std::make_unique<NodeLinks>();
    try {
        sh.links->start(cfg, 1000);
        if (!cfg.etcd.empty())
            cl = std::make_unique<ShardCluster>(sh, 1000);
        std::array<int, 2> ports{0, 0};
        std::string index = std::to_string(sh.index);
        tcp = std::make_unique<coho::net::Server>(
            ctl.tcp_addr, client_options(cfg, sh, false),
            [&sh](coho::net::Conn &c) { serve_client(c, sh, false); });
        ports[0] = tcp->port();
        gate().metrics->add_server(*tcp, "tcp" + index);
        if (!ctl.ws_addr.empty()) {
            ws = std::make_unique<coho::net::Server>(
                ctl.ws_addr, client_options(cfg, sh, true),
                [&sh](coho::net::Conn &c) { serve_client(c, sh, true); });
            ports[1] = ws->port();
            gate().metrics->add_server(*ws, "ws" + index);
        }
        if (cl && sh.index == 0)
            cl->register_gate(ctl.tcp_addr.substr(0, ctl.tcp_addr.rfind(':') + 1) +
                              std::to_string(ports[0]));
        ctl.started.set_value(ports);
    } catch (...) {
        tcp.reset();
        ws.reset();
        if (cl)
            cl->stop();
        sh.links->close();
        ctl.started.set_exception(std::current_exception());
        return;
    }

    uint64_t period = std::max<uint64_t>(10, std::min<uint64_t>(1000, cfg.grace_ms / 4));
    uint64_t janitor = coho::spawn([&sh, period] {
        while (coho_sleep_ms(period) == 0) {
            expire_sessions(sh);
            coho_sched_stats_t st;
            if (coho_sched_get_stats(sh.sched, &st) == 0) {
                sh.coroutines = st.unfinished;
                sh.user_coroutines = st.user;
            }
            sh.conns = sh.clients.size();
            coho_cbuf_pool_stats_t pool{};
            if (coho_cbuf_pool_get_stats(&pool) == 0)
                sh.cbuf_idle_bytes = pool.idle_bytes;
        }
    });

    ctl.stop.recv();
    // Every client's read fails with ESHUTDOWN: it gets KICK 5 and its connection closes.
    tcp->stop(std::chrono::milliseconds(2000));
    if (ws)
        ws->stop(std::chrono::milliseconds(2000));
    coho_cancel(janitor);
    coho::join(janitor);
    if (cl)
        cl->stop();
    sh.links->close();
}

} // namespace

void shard_thread(ShardCtl &ctl)
{
    coho::Scheduler s;
    ctl.shard->sched = s.native_handle();
    set_this_shard(ctl.shard);
    s.spawn([&ctl] { shard_main(ctl); });
    s.run();
    set_this_shard(nullptr);
    std::lock_guard<std::mutex> g(gate().mu); // no post reaches the scheduler from now on
    ctl.shard->sched = nullptr;
}

} // namespace coho::game::gate
