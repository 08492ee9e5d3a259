// SPDX-License-Identifier: MIT
/* LD_PRELOAD=libcoho_preload.so changes nothing for a program that never calls coho: the probe
 * (test/support/preload_probe.c: loopback echo between threads, file and pipe I/O, poll, select,
 * sleeps, name lookups) prints the same standard output and exits the same way with and without
 * it. Its standard error tells whether coho was really loaded, so the comparison cannot pass
 * vacuously. */
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char **environ;

namespace {

struct Result {
    int status = -1;
    std::string out, err;
};

std::string slurp(int fd)
{
    std::string s;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        s.append(buf, static_cast<size_t>(n));
    return s;
}

// Runs the probe with the current environment, minus LD_PRELOAD, plus `preload` if not empty.
Result run_probe(const std::string &preload)
{
    std::vector<std::string> env;
    for (char **e = environ; *e != nullptr; e++)
        if (std::string(*e).rfind("LD_PRELOAD=", 0) != 0)
            env.emplace_back(*e);
    if (!preload.empty())
        env.push_back("LD_PRELOAD=" + preload);
    std::vector<char *> envp;
    for (auto &s : env)
        envp.push_back(&s[0]);
    envp.push_back(nullptr);

    Result r;
    char tmpl_out[] = "/tmp/coho-probe-out-XXXXXX", tmpl_err[] = "/tmp/coho-probe-err-XXXXXX";
    int out = mkstemp(tmpl_out), err = mkstemp(tmpl_err);
    EXPECT_GE(out, 0);
    EXPECT_GE(err, 0);
    unlink(tmpl_out);
    unlink(tmpl_err);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, err, 2);
    char *argv[] = {const_cast<char *>(COHO_PROBE_PATH), nullptr};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, COHO_PROBE_PATH, &fa, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&fa);
    EXPECT_EQ(rc, 0) << "posix_spawn " << COHO_PROBE_PATH;
    if (rc == 0) {
        EXPECT_EQ(waitpid(pid, &r.status, 0), pid);
    }
    lseek(out, 0, SEEK_SET);
    lseek(err, 0, SEEK_SET);
    r.out = slurp(out);
    r.err = slurp(err);
    close(out);
    close(err);
    return r;
}

TEST(HookPreload, a_program_that_never_calls_coho_behaves_the_same_under_ld_preload)
{
    Result plain = run_probe("");
    Result preloaded = run_probe(COHO_PRELOAD_LIST);
    EXPECT_NE(plain.out.find("\ndone\n"), std::string::npos) << plain.out << plain.err;
    EXPECT_NE(plain.err.find("coho loaded: no"), std::string::npos) << plain.err;
    EXPECT_NE(preloaded.err.find("coho loaded: yes"), std::string::npos)
        << "libcoho_preload.so was not loaded: " << preloaded.err;
    EXPECT_EQ(plain.status, preloaded.status);
    EXPECT_TRUE(WIFEXITED(preloaded.status) && WEXITSTATUS(preloaded.status) == 0)
        << "status " << preloaded.status << "\n"
        << preloaded.err;
    EXPECT_EQ(plain.out, preloaded.out);
}

} // namespace
