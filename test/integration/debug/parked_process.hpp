/* SPDX-License-Identifier: MIT */
/* Runs test/integration/debug/parked_target.c for the debugging tools' tests (coho_gdb_test,
 * coho_top_test) and runs commands against it: start() waits for its "parked PID" line, the
 * destructor kills it. Header-only; each test program includes it once. */
#ifndef COHO_TEST_PARKED_PROCESS_HPP
#define COHO_TEST_PARKED_PROCESS_HPP

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char **environ;

/* The output (stdout and stderr) of `sh -c cmd`, and its exit status in *status. */
static inline std::string run_capture(const std::string &cmd, int *status = nullptr)
{
    std::string out;
    std::string full = cmd + " 2>&1";
    FILE *f = popen(full.c_str(), "r");
    char buf[4096];
    size_t n;

    if (f == nullptr)
        return "popen failed";
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        out.append(buf, n);
    int st = pclose(f);
    if (status != nullptr)
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* Whether `prog` runs (`prog --version` exits 0). */
static inline bool have_program(const char *prog)
{
    int st = -1;

    run_capture(std::string(prog) + " --version >/dev/null", &st);
    return st == 0;
}

class ParkedProcess {
public:
    ParkedProcess() = default;
    ParkedProcess(const ParkedProcess &) = delete;
    ParkedProcess &operator=(const ParkedProcess &) = delete;
    ~ParkedProcess() { stop(); }

    /* Starts `path` with `args` and waits (up to 120 s) for its "parked PID" line. Returns an
     * empty string, or what went wrong. */
    std::string start(const std::string &path, const std::vector<std::string> &args = {})
    {
        int fds[2];
        posix_spawn_file_actions_t fa;
        std::vector<char *> argv;

        if (pipe(fds) != 0)
            return "pipe failed";
        argv.push_back(const_cast<char *>(path.c_str()));
        for (const std::string &a : args)
            argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        int rc = posix_spawn(&pid_, path.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        if (rc != 0) {
            close(fds[0]);
            pid_ = -1;
            return "posix_spawn " + path + ": " + strerror(rc);
        }
        out_ = fds[0];
        std::string line;
        while (line.find('\n') == std::string::npos) {
            struct pollfd p = {out_, POLLIN, 0};
            char c[256];

            if (poll(&p, 1, 120000) <= 0)
                return "no \"parked\" line from " + path + " within 120 s";
            ssize_t n = read(out_, c, sizeof(c));
            if (n <= 0)
                return path + " exited before it parked";
            line.append(c, (size_t)n);
        }
        if (line.compare(0, 7, "parked ") != 0)
            return "unexpected first line: " + line;
        line_ = line.substr(0, line.find('\n'));
        return "";
    }

    pid_t pid() const { return pid_; }

    /* The "parked PID ..." line. */
    const std::string &line() const { return line_; }

    /* Kills the process (SIGKILL) and reaps it. */
    void stop()
    {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
        if (out_ >= 0) {
            close(out_);
            out_ = -1;
        }
    }

    /* Whether it still runs (neither exited nor killed by a signal). */
    bool alive() const
    {
        int st;

        return pid_ > 0 && waitpid(pid_, &st, WNOHANG) == 0;
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    std::string line_;
};

#endif /* COHO_TEST_PARKED_PROCESS_HPP */
