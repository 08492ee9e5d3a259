// SPDX-License-Identifier: MIT
// The shared frame of the game/cluster tests against a real etcd (test/support/servers/etcd.sh):
// the fixture's endpoint, a client of it, and coroutines run on one scheduler of the test's
// thread. Header-only; GoogleTest programs.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <string>
#include <vector>

#include <coho.hpp>

#include "game/cluster/etcd.hpp"
#include "test/support/client_harness.hpp"

namespace coho_test {

// "127.0.0.1:PORT" of the etcd fixture, or "" (with a test failure saying why).
inline std::string etcd_endpoint()
{
    int port = server_port("etcd");
    return port > 0 ? "127.0.0.1:" + std::to_string(port) : std::string();
}

inline coho::game::etcd::Client etcd_client()
{
    coho::game::etcd::Options o;
    o.endpoints = {etcd_endpoint()};
    return coho::game::etcd::Client(o);
}

// Runs each of `fns` in a coroutine of one scheduler on this thread; an exception fails the test.
// A fatal failure (an ASSERT) in one of them stops the scheduler: the others are cancelled, so a
// member or a watch left running ends the test at once instead of at the ctest timeout.
inline void run_co(const std::vector<std::function<void()>> &fns)
{
    coho_sched_opts_t so;
    coho_sched_opts_init(&so);
    so.stack_size = 512u << 10;
    coho::Scheduler s(so);
    for (const auto &fn : fns)
        s.spawn([&fn, &s] {
            try {
                fn();
            } catch (const std::exception &e) {
                ADD_FAILURE() << "exception: " << e.what();
            }
            if (::testing::Test::HasFatalFailure())
                s.stop();
        });
    s.run();
}

} // namespace coho_test
