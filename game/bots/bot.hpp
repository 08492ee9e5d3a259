// SPDX-License-Identifier: MIT
// One bot: a coroutine that plays a player from login to logout as plain sequential code.
// Every reply is checked (status, payload) and every push too (sequence with no gap or
// duplicate across rebinds, route, payload); what goes wrong is counted in Stats and the bot
// carries on (with a fresh connection and login when the old one is no longer usable).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "game/logic/aoi.hpp"
#include "link.hpp"
#include "stats.hpp"

namespace coho::game::bots {

struct BotOptions {
    LinkOptions link; // link.host_port: the first gateway tried (gates[0] when gates is given)
    // Every gateway the bot may use, in order of preference. A connect that fails moves the bot
    // to the next one; a session lost with its gateway is tried with REBIND on the new one
    // (refused with status 2: sessions live in the gateway that made them), then a new LOGIN.
    std::vector<std::string> gates;
    std::string secret;
    uint64_t uid = 1;
    Clock::time_point start;                 // when this bot connects (the ramp-up spreads these)
    Clock::time_point end;                   // when it stops playing and logs out
    const std::atomic<bool> *stop = nullptr; // set: stop playing now (SIGINT, SIGTERM)
    double rate = 5;                         // actions per second (0: back to back)
    int64_t rebind_every_ms = 0;             // drop the socket and REBIND this often (0: never)
    // Set (not the epoch): the REBINDs fall at rebind_epoch + k * rebind_every_ms, the same
    // moments for every bot (a reconnect storm), not rebind_every_ms after each bot's login.
    Clock::time_point rebind_epoch{};
    int64_t timeout_ms = 5000; // a reply later than this is an error
    uint32_t scenes = 4;
    int32_t aoi_cell = 100;     // the logic nodes' --aoi-cell: the bot checks AOI pushes with it
    int32_t scene_size = 10000; // the logic nodes' --scene-size: the bot walks inside it
    uint32_t channels = 4;
    uint64_t seed = 1;
    bool echo_only = false; // every action is an echo call (a forwarding benchmark)
};

class Bot {
public:
    Bot(const BotOptions &o, Stats &stats);
    // The bot's whole life. Never throws: failures are counted in Stats.
    void run();

private:
    struct Reply {
        uint32_t status = 0;
        std::string payload; // after the status (LOGIN, REBIND, CALL) or the whole body
    };

    // ---- the story ----
    bool log_in();
    bool rebind();
    // The session was lost with its gateway and the bot is connected to another one: REBIND
    // there (which must answer status 2), then log in again.
    bool fail_over();
    bool enter_world();
    bool play_one();
    void leave_world();
    void log_out();

    // ---- actions: false when the connection is no longer usable ----
    bool echo();
    bool push_self();
    bool player_get();
    bool player_add();
    bool chat_join(const std::string &channel);
    bool chat_say();
    bool chat_leave(const std::string &channel);
    bool scene_enter();
    bool scene_move();
    bool scene_leave();
    bool ping();
    int32_t walk_side() const;
    void stood_at(int32_t x, int32_t y);

    // ---- plumbing ----
    bool playing() const;
    void wait_until(Clock::time_point t) const;
    bool connect();
    void drop();
    // Sends a request and waits for its reply, handling the pushes that come first.
    std::optional<Reply> request(int op, uint16_t type, std::string_view body);
    std::optional<Reply> call(int op, uint16_t route, std::string_view payload);
    // A call whose reply must be status 0 with a protobuf payload parsed into `out`.
    template <class Msg, class Req>
    std::optional<Msg> call_pb(int op, uint16_t route, const Req &req);
    // Reads frames until `deadline`, pinging on heartbeat; only pushes may arrive.
    bool idle_until(Clock::time_point deadline);
    // Reads one frame before `deadline`; pushes are checked here and KICKs end the link.
    // Returns FRAME for a response (left in `f`) or, with `return_pushes`, a push already
    // handled; TIMEOUT; or an error (counted, link dropped).
    ReadResult next(Frame &f, Clock::time_point deadline, const char *waiting_for,
                    bool return_pushes = false);
    bool on_push(const Frame &f);
    void check_aoi(std::string_view payload, const std::string &who);
    bool send(std::string_view frame);
    bool ack_if_due(bool force);
    bool connection_failed(int kind, const std::string &what);

    BotOptions o_;
    Stats &stats_;
    std::mt19937_64 rng_;
    std::unique_ptr<Link> link_;
    bool ending_ = false; // past o_.end: a KICK now is the gateway shutting down, not an error

    // The session.
    uint64_t session_ = 0;
    std::string resume_key_;
    uint32_t heartbeat_ms_ = 10000;
    uint32_t seq_ = 0;
    uint32_t last_push_ = 0; // the last push sequence number handled
    uint32_t acked_ = 0;     // the last one acknowledged
    bool closing_ = false;   // LOGOUT answered: the gateway's close is expected
    bool ever_logged_in_ = false;
    // Gateways: the one connected to (index into o_.gates), the one that made the session.
    size_t gate_ = 0;
    size_t session_gate_ = 0;
    bool failing_over_ = false;     // REBIND on another gateway: status 2 is the expected answer
    bool failover_pending_ = false; // logged in after a failover, no action completed yet
    Clock::time_point last_sent_;
    Clock::time_point next_at_; // when the next action is due
    Clock::time_point next_rebind_;
    Clock::time_point next_rebind_time() const;

    // What the bot knows of its own state, to check replies and pushes against.
    std::optional<int64_t> counter_;
    uint32_t self_expected_ = 0; // push.self pushes still to come
    uint32_t self_next_ = 0;     // the payload the next one carries
    std::set<std::string> channels_;
    std::string channel_;
    uint32_t scene_ = 0;
    // scene.enter answered OK. An enter that failed (say status 3 while the scene's owner is
    // down) is tried again in place of the next move, as a game client would: a move or a
    // leave of a scene the bot is not in would only be refused.
    bool in_scene_ = false;
    int32_t x_ = 0, y_ = 0;
    // Where the node may think the bot stands: its last few positions, newest last (a push
    // can be built before a move the bot already sent, and arrive after its reply).
    std::deque<aoi::Pos> mine_;
    uint64_t said_ = 0;
};

} // namespace coho::game::bots
