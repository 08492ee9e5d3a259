// SPDX-License-Identifier: MIT
// tools/run-game.sh (`make game`): it fails clearly when a program is missing; and, when the
// build has coho-gate and coho-logic (COHO_GAME_E2E), short runs of the whole game — MariaDB,
// two logic nodes, the gate, the bots — pass with bots that log in, chat and log out.
//
// What the end-to-end cases assume of coho-gate and coho-logic, beyond DESIGN.md's wire format:
// each prints "listening tcp HOST:PORT" (the gate also "listening ws HOST:PORT" with
// --ws-listen) on stdout, flushed, before serving; they take the command lines of the issue
// (gate: --listen --ws-listen --logic --secret; logic: --listen --secret --db --db-user
// --db-password --db-name --node-id); the logic node creates its own tables in an empty
// database; routes 1, 2, 10, 11, 20, 21, 22, 30, 31, 32 answer status 0 with the payloads of
// game.proto. Whether a sender gets its own chat push, and which KICK (if any) a bot sees at
// shutdown, are left open.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

namespace {

struct Result {
    int status = -1;
    std::string out;
    // A number from the bots' SUMMARY line, by a '/' path: "routes/chat.say/ok", "errors".
    uint64_t num(const std::string &path) const
    {
        size_t at = out.find("SUMMARY {");
        if (at == std::string::npos) {
            ADD_FAILURE() << "no SUMMARY line in:\n" << out;
            return 0;
        }
        size_t start = 0;
        for (;;) {
            size_t slash = path.find('/', start);
            std::string key =
                path.substr(start, slash == std::string::npos ? slash : slash - start);
            at = out.find("\"" + key + "\":", at);
            if (at == std::string::npos) {
                ADD_FAILURE() << "no '" << path << "' in the SUMMARY line";
                return 0;
            }
            at += key.size() + 3;
            if (slash == std::string::npos)
                break;
            start = slash + 1;
        }
        return std::strtoull(out.c_str() + at, nullptr, 10);
    }
};

// Runs tools/run-game.sh with `args` (or, raw, `args` as the whole command) under `env`.
Result run(const std::string &env, const std::string &args, bool raw = false)
{
    std::string cmd =
        raw ? args + " 2>&1" : env + " " COHO_RUN_GAME " " COHO_BUILD_DIR " " + args + " 2>&1";
    Result r;
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) {
        ADD_FAILURE() << "popen: " << std::strerror(errno);
        return r;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        r.out.append(buf, n);
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

} // namespace

TEST(RunGame, FailsClearlyWhenAProgramIsMissing)
{
    Result r = run("COHO_GATE=/nonexistent/coho-gate", "--bots 1 --duration-s 1");
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find("/nonexistent/coho-gate is missing"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("SUMMARY"), std::string::npos) << "the bots ran without a gate";
}

#if COHO_GAME_E2E

namespace {

const std::string kPrograms =
    "COHO_GATE=" COHO_GATE_PATH " COHO_LOGIC=" COHO_LOGIC_PATH " COHO_BOTS=" COHO_BOTS_PATH;

} // namespace

TEST(RunGame, AShortRunPasses)
{
    Result r = run(kPrograms, "--bots 20 --duration-s 5 --quiet");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logins"), 20u) << r.out;
    EXPECT_NE(r.out.find("run-game: PASS"), std::string::npos) << r.out;
}

TEST(RunGame, BotsLogInAndChatEndToEnd)
{
    // One channel: with two logic nodes, whatever the split, some bot shares a node (and the
    // channel) with another, so chat pushes must arrive whoever gets their own.
    Result r = run(kPrograms, "--bots 8 --duration-s 4 --channels 1 --rate 10 --quiet");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logins"), 8u) << r.out;
    EXPECT_EQ(r.num("logouts"), 8u) << r.out;
    EXPECT_EQ(r.num("routes/chat.join/ok"), 8u) << r.out;
    EXPECT_GT(r.num("routes/chat.say/ok"), 0u) << r.out;
    EXPECT_GT(r.num("chat_pushes"), 0u) << r.out;
    EXPECT_GT(r.num("routes/echo/ok"), 0u) << r.out;
    EXPECT_GT(r.num("routes/player.add/ok"), 0u) << r.out;
}

// One scene: the bots walk through each other's view; every AOI push each bot gets must agree
// with the grid rule for the positions it knows (a disagreement is an aoi_mismatch error).
TEST(RunGame, BotsSeeEachOtherMoveInAScene)
{
    Result r = run(kPrograms, "--bots 16 --duration-s 4 --scenes 1 --rate 10 --quiet");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("aoi_mismatches"), 0u) << r.out;
    EXPECT_EQ(r.num("routes/scene.enter/ok"), 16u) << r.out;
    EXPECT_GT(r.num("scene_moves"), 0u) << r.out;
    EXPECT_GT(r.num("aoi_pushes"), 0u) << r.out;
    EXPECT_GT(r.num("aoi_entered"), 0u) << r.out;
    EXPECT_GT(r.num("aoi_moved"), 0u) << r.out;
    EXPECT_GT(r.num("aoi_left"), 0u) << r.out;
    EXPECT_NE(r.out.find("scene moves "), std::string::npos) << r.out;
}

TEST(RunGame, BotsPlayOverWebSocketEndToEnd)
{
    Result r = run(kPrograms, "--ws --bots 4 --duration-s 3 --quiet");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logins"), 4u) << r.out;
    EXPECT_GT(r.num("routes/echo/ok"), 0u) << r.out;
}

TEST(RunGame, BotsRebindWithoutLosingAPushEndToEnd)
{
    Result r = run(kPrograms, "--bots 4 --duration-s 4 --rebind-every-s 1 --quiet");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.num("errors"), 0u) << r.out;
    EXPECT_EQ(r.num("logins"), 4u) << "a REBIND fell back to a new login:\n" << r.out;
    EXPECT_GE(r.num("rebinds"), 4u) << r.out;
}

// --serve-only (tools/bench-game.py's way in): the servers stay up for bots run from outside,
// their addresses are in the file, and SIGTERM stops every one of them.
TEST(RunGame, ServeOnlyServesOutsideBotsUntilSigterm)
{
    char dir[] = "/tmp/coho-serve-only.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string env_file = std::string(dir) + "/serve.env";
    const std::string cmd = "exec env " + kPrograms +
                            " " COHO_RUN_GAME " " COHO_BUILD_DIR " --serve-only " + env_file +
                            " --gate-arg --admin --gate-arg 127.0.0.1:0 > " + dir + "/out 2>&1";
    const char *argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    pid_t pid;
    ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char **>(argv), environ),
              0);
    std::map<std::string, std::string> info;
    for (int i = 0; i < 1200 && info.empty(); i++) {
        std::ifstream in(env_file);
        for (std::string line; std::getline(in, line);) {
            size_t eq = line.find('=');
            if (eq != std::string::npos)
                info[line.substr(0, eq)] = line.substr(eq + 1);
        }
        if (info.empty())
            usleep(100000);
    }
    ASSERT_FALSE(info.empty()) << "no " << env_file;
    EXPECT_NE(info["ADMIN"].find("127.0.0.1:"), std::string::npos);
    const pid_t gate_pid = pid_t(std::atoi(info["GATE_PID"].c_str()));
    ASSERT_GT(gate_pid, 0);
    Result b = run("",
                   std::string(COHO_BOTS_PATH) + " --gate " + info["GATE"] + " --secret " +
                       info["SECRET"] + " --bots 3 --duration-s 2 --ramp-s 0 --calls echo" +
                       " --quiet --log - --log-level 3",
                   /*raw=*/true);
    EXPECT_EQ(b.status, 0) << b.out;
    EXPECT_GT(b.num("routes/echo/ok"), 0u) << b.out;
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    // The gate went with it (it is not our child: gone means no /proc entry, or a zombie).
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        std::ifstream stat("/proc/" + std::to_string(gate_pid) + "/stat");
        std::string all;
        std::getline(stat, all);
        size_t rp = all.rfind(')');
        gone = !stat.good() || rp == std::string::npos || all.compare(rp + 2, 1, "Z") == 0;
        if (!gone)
            usleep(100000);
    }
    EXPECT_TRUE(gone) << "coho-gate " << gate_pid << " outlived run-game.sh";
    std::string rm = std::string("rm -rf ") + dir;
    EXPECT_EQ(std::system(rm.c_str()), 0);
}

#endif
