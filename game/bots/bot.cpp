// SPDX-License-Identifier: MIT
#include "bot.hpp"

#include <algorithm>
#include <exception>

#include <coho.hpp>
#include <coho/log.h>

#include "game.pb.h"
#include "token.hpp"

namespace coho::game::bots {

namespace pb = coho::game;
using std::chrono::milliseconds;

namespace {

constexpr uint32_t kAckEvery = 32;   // pushes handled before an ACK goes out unasked
constexpr size_t kPositionsKept = 4; // own positions an AOI push is checked against

uint64_t micros_since(Clock::time_point t0)
{
    return uint64_t(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
}

std::string type_name(uint16_t type)
{
    return std::to_string(type & ~wire::kResponse) + ((type & wire::kResponse) ? "|0x8000" : "");
}

} // namespace

Bot::Bot(const BotOptions &o, Stats &stats) : o_(o), stats_(stats), rng_(o.seed)
{
    channel_ = "ch-" + std::to_string(o_.uid % std::max<uint32_t>(o_.channels, 1));
    scene_ = 1 + uint32_t(o_.uid % std::max<uint32_t>(o_.scenes, 1));
    x_ = int32_t(rng_() % uint64_t(walk_side()));
    y_ = int32_t(rng_() % uint64_t(walk_side()));
}

// Bots walk in a square of 5x5 AOI cells at the scene's corner (or the whole scene when it is
// smaller), so that they keep coming into and going out of each other's view.
int32_t Bot::walk_side() const
{
    return int32_t(std::min<int64_t>(o_.scene_size, int64_t(o_.aoi_cell) * 5));
}

void Bot::stood_at(int32_t x, int32_t y)
{
    mine_.push_back({x, y});
    while (mine_.size() > kPositionsKept)
        mine_.pop_front();
}

// ---- the story: connect, log in, join the world, play until the end, leave, log out --------

void Bot::run()
{
    stats_.bots_running.fetch_add(1, std::memory_order_relaxed);
    try {
        wait_until(o_.start);
        int failures = 0;
        while (playing()) {
            if (!link_) {
                bool ok = connect();
                if (ok && session_ != 0 && gate_ != session_gate_)
                    ok = fail_over();
                if (ok && log_in() && enter_world()) {
                    failures = 0;
                    next_at_ = Clock::now();
                } else {
                    drop();
                    // Back off before the next try, longer after each failure in a row.
                    failures = std::min(failures + 1, 10);
                    wait_until(std::min(o_.end, Clock::now() + milliseconds(200 * failures)));
                    continue;
                }
            }
            if (!play_one())
                drop();
        }
        ending_ = true;
        leave_world();
        log_out();
    } catch (const std::exception &e) {
        stats_.error(E_INTERNAL, "uid " + std::to_string(o_.uid) + " stopped: " + e.what());
    }
    drop();
    stats_.bots_running.fetch_sub(1, std::memory_order_relaxed);
    stats_.bots_done.fetch_add(1, std::memory_order_relaxed);
}

bool Bot::log_in()
{
    auto r =
        request(OP_LOGIN, wire::LOGIN, wire::login_body(o_.uid, login_token(o_.secret, o_.uid)));
    if (!r || r->status != wire::OK)
        return false;
    Reader rd(r->payload);
    uint64_t session = rd.u64();
    std::string_view key = rd.bytes(wire::kResumeKeyLen);
    uint32_t heartbeat_ms = rd.u32();
    if (!rd.ok() || rd.left() != 0)
        return connection_failed(E_REPLY, "a LOGIN reply of " + std::to_string(r->payload.size()) +
                                              " bytes after the status (want 28)");
    session_ = session;
    resume_key_.assign(key);
    heartbeat_ms_ = heartbeat_ms ? heartbeat_ms : 10000;
    last_push_ = acked_ = 0; // a new session numbers its pushes from 1
    failover_pending_ = ever_logged_in_ && gate_ != session_gate_;
    session_gate_ = gate_;
    next_rebind_ = next_rebind_time();
    stats_.logins.fetch_add(1, std::memory_order_relaxed);
    coho_log_info("bots: uid %llu logged in, session %llu, heartbeat %u ms",
                  static_cast<unsigned long long>(o_.uid),
                  static_cast<unsigned long long>(session_), heartbeat_ms_);
    if (ever_logged_in_)
        stats_.relogins.fetch_add(1, std::memory_order_relaxed);
    ever_logged_in_ = true;
    return true;
}

// When the next REBIND is due: rebind_every_ms from now, or the next of the shared moments
// rebind_epoch + k * rebind_every_ms after now when the bots rebind together.
Clock::time_point Bot::next_rebind_time() const
{
    const auto now = Clock::now();
    if (o_.rebind_every_ms <= 0 || o_.rebind_epoch == Clock::time_point{})
        return now + milliseconds(o_.rebind_every_ms);
    const auto every = milliseconds(o_.rebind_every_ms);
    if (now < o_.rebind_epoch)
        return o_.rebind_epoch + every;
    return o_.rebind_epoch + every * ((now - o_.rebind_epoch) / every + 1);
}

// Drops the socket without a word and moves the session to a new one: the gateway answers
// with a new key and replays every push after last_push_, which on_push checks for gaps.
bool Bot::rebind()
{
    link_.reset();
    if (!connect())
        return false;
    auto r = request(OP_REBIND, wire::REBIND, wire::rebind_body(session_, resume_key_, last_push_));
    if (!r || r->status != wire::OK)
        return false;
    if (r->payload.size() != wire::kResumeKeyLen)
        return connection_failed(E_REPLY, "a REBIND reply of " + std::to_string(r->payload.size()) +
                                              " bytes after the status (want 16)");
    resume_key_ = r->payload;
    coho_log_debug("bots: uid %llu rebound session %llu after push %u",
                   static_cast<unsigned long long>(o_.uid),
                   static_cast<unsigned long long>(session_), last_push_);
    next_rebind_ = next_rebind_time();
    stats_.rebinds.fetch_add(1, std::memory_order_relaxed);
    return true;
}

// A session lives in the gateway that made it (its resume key, replay cache and groups are in
// that process's memory), so the gateway the bot moved to must refuse it with status 2: then
// the bot logs in there. A gateway that accepted it would be a protocol error.
bool Bot::fail_over()
{
    const std::string &from = o_.gates[session_gate_], &to = o_.gates[gate_];
    failing_over_ = true;
    auto r = request(OP_REBIND, wire::REBIND, wire::rebind_body(session_, resume_key_, last_push_));
    failing_over_ = false;
    if (!r)
        return false;
    if (r->status == wire::OK)
        return connection_failed(E_PROTOCOL, "uid " + std::to_string(o_.uid) + ": gateway " + to +
                                                 " took a REBIND of a session made by " + from);
    if (r->status != wire::UNKNOWN_SESSION)
        return false; // counted by request()
    stats_.rebinds_refused.fetch_add(1, std::memory_order_relaxed);
    coho_log_info("bots: uid %llu: session %llu of gateway %s refused by %s (status 2), logging in",
                  static_cast<unsigned long long>(o_.uid),
                  static_cast<unsigned long long>(session_), from.c_str(), to.c_str());
    session_ = 0; // gone for good
    return true;
}

bool Bot::enter_world()
{
    return chat_join(channel_) && scene_enter();
}

bool Bot::play_one()
{
    if (o_.rebind_every_ms > 0 && Clock::now() >= next_rebind_ && !rebind())
        return false;
    bool ok;
    unsigned pick = o_.echo_only ? 0 : unsigned(rng_() % 100);
    if (pick < 25)
        ok = echo();
    else if (pick < 35)
        ok = push_self();
    else if (pick < 45)
        ok = player_get();
    else if (pick < 60)
        ok = player_add();
    else if (pick < 80)
        ok = chat_say();
    else
        ok = scene_move();
    if (!ok || !ack_if_due(false))
        return false;
    if (o_.rate <= 0)
        return true;
    // Actions keep a fixed cadence; a bot that fell behind does not burst to catch up.
    next_at_ +=
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o_.rate));
    next_at_ = std::max(next_at_, Clock::now());
    return idle_until(std::min(next_at_, o_.end));
}

void Bot::leave_world()
{
    if (link_ && scene_leave() && link_)
        chat_leave(channel_);
}

void Bot::log_out()
{
    if (!link_)
        return;
    if (!request(OP_LOGOUT, wire::LOGOUT, {}))
        return;
    stats_.logouts.fetch_add(1, std::memory_order_relaxed);
    coho_log_info("bots: uid %llu logged out after %u pushes",
                  static_cast<unsigned long long>(o_.uid), last_push_);
    // The gateway closes after its reply (no KICK); pushes already on the way are still checked.
    closing_ = true;
    Frame f;
    switch (next(f, Clock::now() + milliseconds(o_.timeout_ms), "the close after LOGOUT")) {
    case ReadResult::TIMEOUT:
        connection_failed(E_PROTOCOL, "the gateway did not close within " +
                                          std::to_string(o_.timeout_ms) + " ms after LOGOUT");
        break;
    case ReadResult::FRAME:
        connection_failed(E_PROTOCOL, "a reply (type " + type_name(f.h.type) + ") after LOGOUT");
        break;
    default:
        break; // closed, as it should be (or an error next() counted)
    }
    drop();
}

// ---- actions ---------------------------------------------------------------------------------

bool Bot::echo()
{
    std::string payload(rng_() % 200, '\0');
    for (auto &c : payload)
        c = char(rng_());
    auto r = call(OP_ECHO, wire::R_ECHO, payload);
    if (!r)
        return false;
    if (r->status == wire::OK && r->payload != payload)
        stats_.error(E_REPLY, "uid " + std::to_string(o_.uid) + ": echo of " +
                                  std::to_string(payload.size()) + " bytes came back as " +
                                  std::to_string(r->payload.size()) + " different bytes");
    return true;
}

bool Bot::push_self()
{
    uint32_t k = 1 + uint32_t(rng_() % 4);
    std::string payload;
    put_u32(payload, k);
    // The pushes may overtake the reply: expect them before sending.
    self_expected_ = k;
    self_next_ = 1;
    auto r = call(OP_PUSH_SELF, wire::R_PUSH_SELF, payload);
    if (!r)
        return false;
    if (r->status != wire::OK) {
        self_expected_ = 0;
        return true;
    }
    if (!r->payload.empty())
        stats_.error(E_REPLY, "uid " + std::to_string(o_.uid) + ": push.self reply carries " +
                                  std::to_string(r->payload.size()) + " bytes (want none)");
    auto deadline = Clock::now() + milliseconds(o_.timeout_ms);
    while (self_expected_ > 0) {
        Frame f;
        switch (next(f, deadline, "push.self pushes", true)) {
        case ReadResult::TIMEOUT:
            stats_.error(E_PUSH_LOST, "uid " + std::to_string(o_.uid) + ": push.self " +
                                          std::to_string(k) + " brought " +
                                          std::to_string(k - self_expected_) + " pushes in " +
                                          std::to_string(o_.timeout_ms) + " ms");
            self_expected_ = 0;
            return true;
        case ReadResult::FRAME:
            if (f.h.type == wire::PUSH)
                continue; // handled by on_push
            return connection_failed(E_PROTOCOL,
                                     "a reply (type " + type_name(f.h.type) + ") to no request");
        default:
            return false;
        }
    }
    return true;
}

bool Bot::player_get()
{
    auto m = call_pb<pb::Player>(OP_PLAYER_GET, wire::R_PLAYER_GET, pb::PlayerGetReq());
    if (!m)
        return link_ != nullptr;
    if (m->uid() != o_.uid)
        stats_.error(E_REPLY, "uid " + std::to_string(o_.uid) + ": player.get answered uid " +
                                  std::to_string(m->uid()));
    else if (counter_ && m->counter() != *counter_)
        stats_.error(E_REPLY, "uid " + std::to_string(o_.uid) + ": player.get counter " +
                                  std::to_string(m->counter()) + ", the last add left " +
                                  std::to_string(*counter_));
    counter_ = m->counter();
    return true;
}

bool Bot::player_add()
{
    pb::PlayerAddReq req;
    int64_t delta = 1 + int64_t(rng_() % 10);
    req.set_delta(delta);
    auto m = call_pb<pb::PlayerAddResp>(OP_PLAYER_ADD, wire::R_PLAYER_ADD, req);
    if (!m) {
        counter_.reset(); // the add may or may not have happened
        return link_ != nullptr;
    }
    if (counter_ && m->counter() != *counter_ + delta)
        stats_.error(E_REPLY, "uid " + std::to_string(o_.uid) + ": player.add " +
                                  std::to_string(delta) + " to " + std::to_string(*counter_) +
                                  " answered " + std::to_string(m->counter()));
    counter_ = m->counter();
    return true;
}

bool Bot::chat_join(const std::string &channel)
{
    channels_.insert(channel); // pushes of this channel are expected from now on
    pb::ChatJoinReq req;
    req.set_channel(channel);
    auto m = call_pb<pb::ChatJoinResp>(OP_CHAT_JOIN, wire::R_CHAT_JOIN, req);
    if (m && m->channel() != channel)
        stats_.error(E_REPLY, "uid " + std::to_string(o_.uid) + ": chat.join '" + channel +
                                  "' answered channel '" + m->channel() + "'");
    return link_ != nullptr;
}

bool Bot::chat_say()
{
    pb::ChatSayReq req;
    req.set_channel(channel_);
    req.set_text("u=" + std::to_string(o_.uid) + " n=" + std::to_string(++said_));
    call_pb<pb::ChatSayResp>(OP_CHAT_SAY, wire::R_CHAT_SAY, req);
    return link_ != nullptr;
}

bool Bot::chat_leave(const std::string &channel)
{
    pb::ChatLeaveReq req;
    req.set_channel(channel);
    call_pb<pb::ChatLeaveResp>(OP_CHAT_LEAVE, wire::R_CHAT_LEAVE, req);
    return link_ != nullptr;
}

bool Bot::scene_enter()
{
    pb::SceneEnterReq req;
    req.set_scene(scene_);
    req.mutable_pos()->set_x(x_);
    req.mutable_pos()->set_y(y_);
    stood_at(x_, y_);
    auto resp = call_pb<pb::SceneEnterResp>(OP_SCENE_ENTER, wire::R_SCENE_ENTER, req);
    in_scene_ = resp.has_value();
    if (resp)
        for (auto &e : resp->others())
            if (!aoi::Grid::sees({x_, y_}, {e.pos().x(), e.pos().y()}, o_.aoi_cell))
                stats_.error(E_AOI, "uid " + std::to_string(o_.uid) + " at (" + std::to_string(x_) +
                                        "," + std::to_string(y_) + "): scene.enter lists uid " +
                                        std::to_string(e.uid()) + " at (" +
                                        std::to_string(e.pos().x()) + "," +
                                        std::to_string(e.pos().y()) + "), out of view");
    return link_ != nullptr;
}

bool Bot::scene_move()
{
    if (!in_scene_)
        return scene_enter();
    // A step of up to half a cell on each axis, inside the walking square.
    const int32_t reach = std::max(o_.aoi_cell / 2, 1);
    auto step = [&](int32_t v) {
        int64_t n = int64_t(v) + int64_t(rng_() % uint64_t(2 * reach + 1)) - reach;
        return int32_t(std::clamp<int64_t>(n, 0, walk_side() - 1));
    };
    x_ = step(x_);
    y_ = step(y_);
    pb::SceneMoveReq req;
    req.set_scene(scene_);
    req.mutable_pos()->set_x(x_);
    req.mutable_pos()->set_y(y_);
    stood_at(x_, y_);
    call_pb<pb::SceneMoveResp>(OP_SCENE_MOVE, wire::R_SCENE_MOVE, req);
    return link_ != nullptr;
}

bool Bot::scene_leave()
{
    if (!in_scene_)
        return link_ != nullptr;
    in_scene_ = false;
    pb::SceneLeaveReq req;
    req.set_scene(scene_);
    call_pb<pb::SceneLeaveResp>(OP_SCENE_LEAVE, wire::R_SCENE_LEAVE, req);
    return link_ != nullptr;
}

bool Bot::ping()
{
    return request(OP_PING, wire::PING, {}).has_value();
}

// ---- plumbing --------------------------------------------------------------------------------

void Bot::wait_until(Clock::time_point t) const
{
    // In slices, so that a stop request is noticed within 100 ms.
    while (Clock::now() < t && !(o_.stop && o_.stop->load(std::memory_order_relaxed)))
        this_co::sleep_until(std::min(t, Clock::now() + milliseconds(100)));
}

bool Bot::playing() const
{
    return Clock::now() < o_.end && !(o_.stop && o_.stop->load(std::memory_order_relaxed));
}

// Connects to the current gateway; when that fails and there are others, to the next ones in
// turn (a failover, not an error). E_CONNECT only when none answers.
bool Bot::connect()
{
    const size_t n = std::max<size_t>(o_.gates.size(), 1);
    for (size_t tried = 1;; tried++) {
        LinkOptions lo = o_.link;
        if (!o_.gates.empty())
            lo.host_port = o_.gates[gate_];
        std::string err;
        link_ = Link::open(lo, rng_(), err);
        if (link_)
            break;
        if (tried >= n) {
            stats_.error(E_CONNECT, "uid " + std::to_string(o_.uid) + ": " + err);
            return false;
        }
        gate_ = (gate_ + 1) % n;
        stats_.gate_failovers.fetch_add(1, std::memory_order_relaxed);
        coho_log_info("bots: uid %llu: gateway %s: %s; trying %s",
                      static_cast<unsigned long long>(o_.uid), lo.host_port.c_str(), err.c_str(),
                      o_.gates[gate_].c_str());
    }
    last_sent_ = Clock::now();
    return true;
}

void Bot::drop()
{
    link_.reset();
    closing_ = false;
    self_expected_ = 0;
}

bool Bot::connection_failed(int kind, const std::string &what)
{
    stats_.error(kind, "uid " + std::to_string(o_.uid) + ": " + what);
    drop();
    return false;
}

bool Bot::send(std::string_view frame)
{
    std::string err;
    if (!link_->send(frame, err))
        return connection_failed(E_CLOSED, err);
    last_sent_ = Clock::now();
    return true;
}

std::optional<Bot::Reply> Bot::request(int op, uint16_t type, std::string_view body)
{
    if (!link_)
        return std::nullopt;
    const uint32_t seq = ++seq_;
    const auto t0 = Clock::now();
    if (!send(wire::frame(type, seq, body)))
        return std::nullopt;
    Frame f;
    switch (next(f, t0 + milliseconds(o_.timeout_ms), op_name(op))) {
    case ReadResult::FRAME:
        break;
    case ReadResult::TIMEOUT:
        connection_failed(E_TIMEOUT, std::string("no reply to ") + op_name(op) + " within " +
                                         std::to_string(o_.timeout_ms) + " ms");
        return std::nullopt;
    default:
        return std::nullopt;
    }
    const uint64_t us = micros_since(t0);
    if (f.h.type != (type | wire::kResponse) || f.h.seq != seq) {
        connection_failed(E_PROTOCOL, "a reply of type " + type_name(f.h.type) + " seq " +
                                          std::to_string(f.h.seq) + " to " + op_name(op) +
                                          " (type " + std::to_string(type) + " seq " +
                                          std::to_string(seq) + ")");
        return std::nullopt;
    }
    Reply rep;
    if (type == wire::PING || type == wire::LOGOUT) {
        if (!f.body.empty()) {
            connection_failed(E_PROTOCOL, std::string("a ") + op_name(op) +
                                              " reply with a body of " +
                                              std::to_string(f.body.size()) + " bytes");
            return std::nullopt;
        }
        stats_.ok(op, us);
        return rep;
    }
    Reader rd(f.body);
    rep.status = rd.u32();
    if (!rd.ok()) {
        connection_failed(E_PROTOCOL, std::string("a ") + op_name(op) + " reply of " +
                                          std::to_string(f.body.size()) +
                                          " bytes, without a status");
        return std::nullopt;
    }
    rep.payload.assign(rd.rest());
    if (rep.status == wire::OK) {
        stats_.ok(op, us);
        if (failover_pending_ && type == wire::CALL) {
            failover_pending_ = false; // playing again on the gateway it moved to
            stats_.failovers_playing.fetch_add(1, std::memory_order_relaxed);
        }
    } else if (failing_over_ && rep.status == wire::UNKNOWN_SESSION) {
        // The answer fail_over() wants; not an error.
    } else {
        stats_.status_error(op, rep.status, "(uid " + std::to_string(o_.uid) + ")");
        if (!rep.payload.empty()) {
            connection_failed(E_PROTOCOL, std::string("a ") + op_name(op) + " reply with status " +
                                              std::to_string(rep.status) + " and a payload");
            return std::nullopt;
        }
    }
    return rep;
}

std::optional<Bot::Reply> Bot::call(int op, uint16_t route, std::string_view payload)
{
    return request(op, wire::CALL, wire::call_body(route, payload));
}

template <class Msg, class Req>
std::optional<Msg> Bot::call_pb(int op, uint16_t route, const Req &req)
{
    std::string payload;
    if (!req.SerializeToString(&payload)) {
        stats_.error(E_INTERNAL, std::string("cannot encode the ") + op_name(op) + " request");
        return std::nullopt;
    }
    auto r = call(op, route, payload);
    if (!r || r->status != wire::OK)
        return std::nullopt;
    Msg m;
    if (!m.ParseFromString(r->payload)) {
        stats_.error(E_REPLY, "uid " + std::to_string(o_.uid) + ": the " + op_name(op) +
                                  " reply does not parse as " + Msg::descriptor()->name());
        return std::nullopt;
    }
    return m;
}

bool Bot::idle_until(Clock::time_point deadline)
{
    for (;;) {
        auto now = Clock::now();
        if (now >= deadline || !link_)
            return link_ != nullptr;
        // Any frame is activity for the gateway; ping when nothing went out for half the beat.
        auto ping_at = last_sent_ + milliseconds(heartbeat_ms_ / 2);
        if (now >= ping_at) {
            if (!ping())
                return false;
            continue;
        }
        if (!ack_if_due(true))
            return false;
        Frame f;
        switch (next(f, std::min(deadline, ping_at), "pushes")) {
        case ReadResult::TIMEOUT:
            continue;
        case ReadResult::FRAME:
            return connection_failed(E_PROTOCOL, "a reply (type " + type_name(f.h.type) + " seq " +
                                                     std::to_string(f.h.seq) + ") to no request");
        default:
            return false;
        }
    }
}

ReadResult Bot::next(Frame &f, Clock::time_point deadline, const char *waiting_for,
                     bool return_pushes)
{
    for (;;) {
        if (!link_)
            return ReadResult::CLOSED;
        std::string err;
        ReadResult r = link_->read(f, deadline, err);
        if (r == ReadResult::TIMEOUT)
            return r;
        if (r == ReadResult::CLOSED) {
            if (closing_ || ending_) {
                if (!closing_)
                    stats_.ended_by_gate.fetch_add(1, std::memory_order_relaxed);
                drop();
            } else {
                connection_failed(E_CLOSED, std::string("waiting for ") + waiting_for + ": " + err);
            }
            return r;
        }
        if (r == ReadResult::BAD) {
            connection_failed(E_PROTOCOL, std::string("waiting for ") + waiting_for + ": " + err);
            return r;
        }
        if (f.h.type == wire::PUSH) {
            if (!on_push(f))
                return ReadResult::CLOSED;
            if (return_pushes)
                return ReadResult::FRAME;
            continue;
        }
        if (f.h.type == wire::KICK) {
            Reader rd(f.body);
            uint32_t reason = rd.u32();
            if (!rd.ok() || rd.left() != 0) {
                connection_failed(E_PROTOCOL,
                                  "a KICK of " + std::to_string(f.body.size()) + " bytes (want 4)");
            } else if (ending_) {
                // The run is over: whatever the reason, the gateway ending it now is expected.
                stats_.ended_by_gate.fetch_add(1, std::memory_order_relaxed);
                drop();
            } else {
                connection_failed(E_KICKED, "KICK " + std::to_string(reason) +
                                                " while waiting for " + waiting_for);
            }
            return ReadResult::CLOSED;
        }
        if (f.h.type & wire::kResponse)
            return ReadResult::FRAME;
        connection_failed(E_PROTOCOL, "a frame of type " + type_name(f.h.type) +
                                          " from the gateway while waiting for " + waiting_for);
        return ReadResult::BAD;
    }
}

bool Bot::on_push(const Frame &f)
{
    const std::string who = "uid " + std::to_string(o_.uid) + ": ";
    if (f.h.seq <= last_push_) {
        stats_.error(E_PUSH_DUP, who + "push seq " + std::to_string(f.h.seq) + " after " +
                                     std::to_string(last_push_));
        return true;
    }
    if (f.h.seq != last_push_ + 1)
        stats_.error(E_PUSH_LOST, who + "pushes " + std::to_string(last_push_ + 1) + ".." +
                                      std::to_string(f.h.seq - 1) + " never came");
    last_push_ = f.h.seq;
    Reader rd(f.body);
    uint16_t route = rd.u16();
    std::string_view payload = rd.rest();
    if (!rd.ok()) {
        stats_.error(E_PUSH_BAD, who + "a push of " + std::to_string(f.body.size()) + " bytes");
        return ack_if_due(false);
    }
    stats_.push(route);
    switch (route) {
    case wire::R_PUSH_SELF: {
        Reader p(payload);
        uint32_t i = p.u32();
        if (!p.ok() || p.left() != 0 || self_expected_ == 0 || i != self_next_)
            stats_.error(E_PUSH_BAD,
                         who + "push.self push carrying " + std::to_string(i) +
                             (self_expected_ ? " (want " + std::to_string(self_next_) + ")"
                                             : " when none was asked for"));
        if (self_expected_ > 0) {
            self_expected_--;
            self_next_++;
        }
        break;
    }
    case wire::R_CHAT_SAY: {
        pb::ChatMsg m;
        if (!m.ParseFromArray(payload.data(), int(payload.size())))
            stats_.error(E_PUSH_BAD, who + "a chat push that does not parse as ChatMsg");
        else if (!channels_.count(m.channel()))
            stats_.error(E_PUSH_BAD,
                         who + "a chat push for channel '" + m.channel() + "', never joined");
        else if (m.text().rfind("u=", 0) == 0 &&
                 m.text().rfind("u=" + std::to_string(m.from_uid()) + " ", 0) != 0)
            stats_.error(E_PUSH_BAD, who + "a chat push from uid " + std::to_string(m.from_uid()) +
                                         " with another bot's text '" + m.text() + "'");
        break;
    }
    case wire::R_SCENE_AOI:
        check_aoi(payload, who);
        break;
    default:
        stats_.error(E_PUSH_BAD, who + "a push on route " + std::to_string(route));
        break;
    }
    return ack_if_due(false);
}

// An AOI batch against the grid rule: whoever entered or moved stands in view of a position
// the bot recently held, whoever left with a position stands out of view of one of them.
void Bot::check_aoi(std::string_view payload, const std::string &who)
{
    pb::AoiBatch b;
    if (!b.ParseFromArray(payload.data(), int(payload.size()))) {
        stats_.error(E_PUSH_BAD, who + "an AOI push that does not parse as AoiBatch");
        return;
    }
    if (b.scene() != scene_) {
        stats_.error(E_PUSH_BAD, who + "an AOI push for scene " + std::to_string(b.scene()) +
                                     " (in scene " + std::to_string(scene_) + ")");
        return;
    }
    if (b.entered_size() + b.moved_size() + b.left_size() == 0)
        stats_.error(E_PUSH_BAD, who + "an empty AOI push");
    auto in_view = [&](const pb::Pos &p, bool want) {
        for (const aoi::Pos &m : mine_)
            if (aoi::Grid::sees(m, {p.x(), p.y()}, o_.aoi_cell) == want)
                return true;
        return false;
    };
    auto mine = [&] {
        std::string s;
        for (const aoi::Pos &m : mine_)
            s += " (" + std::to_string(m.x) + "," + std::to_string(m.y) + ")";
        return s;
    };
    std::set<uint64_t> named;
    auto check = [&](const pb::Entity &e, const char *what, bool want_in_view) {
        if (!named.insert(e.uid()).second || e.uid() == o_.uid) {
            stats_.error(E_AOI, who + "an AOI push names uid " + std::to_string(e.uid()) +
                                    (e.uid() == o_.uid ? " (itself)" : " twice"));
            return;
        }
        if (!e.has_pos()) {
            if (want_in_view)
                stats_.error(E_AOI, who + "uid " + std::to_string(e.uid()) + " " + what +
                                        " without a position");
            return;
        }
        if (!in_view(e.pos(), want_in_view))
            stats_.error(E_AOI,
                         who + "uid " + std::to_string(e.uid()) + " " + what + " at (" +
                             std::to_string(e.pos().x()) + "," + std::to_string(e.pos().y()) +
                             "), " + (want_in_view ? "out of view" : "still in view") +
                             " of cell size " + std::to_string(o_.aoi_cell) + " from" + mine());
    };
    for (auto &e : b.entered())
        check(e, "entered", true);
    for (auto &e : b.moved())
        check(e, "moved", true);
    for (auto &e : b.left())
        check(e, "left", false);
    stats_.aoi_entered.fetch_add(uint64_t(b.entered_size()), std::memory_order_relaxed);
    stats_.aoi_moved.fetch_add(uint64_t(b.moved_size()), std::memory_order_relaxed);
    stats_.aoi_left.fetch_add(uint64_t(b.left_size()), std::memory_order_relaxed);
}

bool Bot::ack_if_due(bool force)
{
    if (!link_ || last_push_ == acked_ || (!force && last_push_ - acked_ < kAckEvery))
        return link_ != nullptr;
    std::string body;
    put_u32(body, last_push_);
    if (!send(wire::frame(wire::ACK, ++seq_, body)))
        return false;
    acked_ = last_push_;
    return true;
}

} // namespace coho::game::bots
