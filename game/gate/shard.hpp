// SPDX-License-Identifier: MIT
// Starting and stopping a shard (shard.cpp): one thread, one scheduler, its node links, its
// servers. Shard 0 binds the configured addresses; the others bind the ports shard 0 got.
#pragma once

#include <array>
#include <future>
#include <string>
#include <thread>

#include "gate.hpp"

namespace coho::game::gate {

struct ShardCtl {
    Shard *shard = nullptr;
    std::string tcp_addr, ws_addr;            // ws_addr empty: no WebSocket listener
    std::promise<std::array<int, 2>> started; // bound ports (tcp, ws), or the error
    coho::Channel<int> stop{1};
    std::thread thread;
};

// The shard's thread: runs until ctl.stop receives.
void shard_thread(ShardCtl &ctl);

} // namespace coho::game::gate
