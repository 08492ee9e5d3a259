/* SPDX-License-Identifier: MIT */
/* The trace log across process events: fatal signals flush every thread's buffered lines and
 * still kill the process with the same signal, handlers chain, COHO_CHECK logs and aborts,
 * fork() gives the child a working logger, and the writer thread blocks every signal. */
/* ctest: TIMEOUT=120 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "log/check.h"
#include "log/log.h"
#include "test/support/cmocka_main.h"

static char tmpdir[512];
static char logpath[700];
static char errpath[700];

static void make_tmpdir(void)
{
    const char *base = getenv("COHO_TEST_TMPDIR");

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(tmpdir, sizeof(tmpdir), "%s/logcrash_XXXXXX", base);
    assert_non_null(mkdtemp(tmpdir));
    snprintf(logpath, sizeof(logpath), "%s/crash.log", tmpdir);
    snprintf(errpath, sizeof(errpath), "%s/stderr.txt", tmpdir);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    const char *p = hay;

    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

/* Every line "<tag> <i>" for i < n appears exactly once. */
static void expect_numbered_lines(const char *text, const char *tag, int n)
{
    char needle[128];
    int i;

    for (i = 0; i < n; i++) {
        snprintf(needle, sizeof(needle), "]%s %d\n", tag, i);
        if (count_substr(text, needle) != 1)
            fail_msg("line '%s %d' appears %zu times", tag, i, count_substr(text, needle));
    }
}

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};

/* In a forked child: undo CMocka's own handlers for fatal signals (the child would inherit
 * them and the log would chain to them), send stderr to errpath, no core files, and open the
 * log with a long flush interval, so the lines stay in the buffers until the crash. */
static void child_setup(void)
{
    struct rlimit no_core = {0, 0};
    coho_log_opts_t o;
    size_t i;
    int fd;

    for (i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
        signal(fatal_signals[i], SIG_DFL);
    setrlimit(RLIMIT_CORE, &no_core);
    fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 2) < 0)
        _exit(90);
    close(fd);
    coho_log_opts_init(&o);
    o.path = logpath;
    o.flush_interval_ms = 600000;
    if (coho_log_open(&o) != 0)
        _exit(91);
}

static pthread_mutex_t helper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_cv = PTHREAD_COND_INITIALIZER;
static int helper_done;

/* A second thread that logs and then stays alive, so its buffer is another thread's. */
static void *helper_logs_then_waits(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 300; i++)
        coho_log_info("helper %d", i);
    pthread_mutex_lock(&helper_mu);
    helper_done = 1;
    pthread_cond_signal(&helper_cv);
    pthread_mutex_unlock(&helper_mu);
    pause();
    return NULL;
}

/* Child body: lines from two threads, then `sig`. */
static void child_logs_then_dies(int sig)
{
    pthread_t th;
    int i;

    child_setup();
    pthread_create(&th, NULL, helper_logs_then_waits, NULL);
    pthread_mutex_lock(&helper_mu);
    while (!helper_done)
        pthread_cond_wait(&helper_cv, &helper_mu);
    pthread_mutex_unlock(&helper_mu);
    for (i = 0; i < 1000; i++)
        coho_log_info("main %d", i);
    raise(sig);
    _exit(92); /* the signal must not return here */
}

static void crash_with_signal_writes_every_line(int sig)
{
    pid_t pid;
    int status;
    char *text;

    make_tmpdir();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_logs_then_dies(sig);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status))
        fail_msg("signal %d: child exited with %d instead of dying by the signal", sig,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    assert_int_equal(WTERMSIG(status), sig);
    text = slurp(logpath);
    assert_non_null(text);
    expect_numbered_lines(text, "main", 1000);
    expect_numbered_lines(text, "helper", 300);
    free(text);
}

static void crash_by_sigsegv_writes_every_buffered_line_and_dies_by_sigsegv(void **state)
{
    (void)state;
#ifdef COHO_SANITIZE_BUILD
    skip(); /* DESIGN.md "Signals": sanitizer builds leave SIGSEGV to the sanitizer */
#else
    crash_with_signal_writes_every_line(SIGSEGV);
#endif
}

static void crash_by_bus_abrt_fpe_or_ill_writes_every_buffered_line_and_reraises(void **state)
{
    (void)state;
    crash_with_signal_writes_every_line(SIGBUS);
    crash_with_signal_writes_every_line(SIGABRT);
    crash_with_signal_writes_every_line(SIGFPE);
    crash_with_signal_writes_every_line(SIGILL);
}

static void sigsegv_handler_is_installed_except_in_sanitizer_builds(void **state)
{
    pid_t pid;
    int status;

    (void)state;
    make_tmpdir();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction sa;

        child_setup();
        sigaction(SIGSEGV, NULL, &sa);
#ifdef COHO_SANITIZE_BUILD
        _exit(sa.sa_handler == SIG_DFL ? 0 : 1);
#else
        _exit(sa.sa_handler != SIG_DFL && (sa.sa_flags & SA_SIGINFO) ? 0 : 1);
#endif
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void prev_abrt_handler(int sig, siginfo_t *info, void *uctx)
{
    static const char msg[] = "previous handler ran\n";

    (void)uctx;
    if (sig == SIGABRT && info != NULL && info->si_signo == SIGABRT)
        (void)!write(2, msg, sizeof(msg) - 1);
    _exit(42);
}

static void crash_handler_flushes_then_calls_the_previously_installed_handler(void **state)
{
    pid_t pid;
    int status, i;
    char *text, *err;

    (void)state;
    make_tmpdir();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction sa = {0};

        /* installed before the log's: the log must chain to it with the same siginfo */
        sa.sa_sigaction = prev_abrt_handler;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGABRT, &sa, NULL);
        {
            struct rlimit no_core = {0, 0};
            coho_log_opts_t o;
            int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);

            setrlimit(RLIMIT_CORE, &no_core);
            dup2(fd, 2);
            close(fd);
            coho_log_opts_init(&o);
            o.path = logpath;
            o.flush_interval_ms = 600000;
            if (coho_log_open(&o) != 0)
                _exit(91);
        }
        for (i = 0; i < 100; i++)
            coho_log_info("chained %d", i);
        abort();
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
    text = slurp(logpath);
    err = slurp(errpath);
    assert_non_null(text);
    assert_non_null(err);
    expect_numbered_lines(text, "chained", 100);
    assert_non_null(strstr(err, "previous handler ran\n"));
    free(text);
    free(err);
}

/* ---- COHO_CHECK --------------------------------------------------------------------------- */

static void check_value(int value)
{
    COHO_CHECK(value == 8, "value is %d, wanted %d", value, 8);
}
static const int check_line = __LINE__ - 2; /* the COHO_CHECK line above */

static void check_failure_logs_fatal_line_flushes_writes_stderr_and_aborts(void **state)
{
    pid_t pid;
    int status, i;
    char *text, *err, needle[128];

    (void)state;
    make_tmpdir();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child_setup();
        for (i = 0; i < 50; i++)
            coho_log_info("before check %d", i);
        check_value(7);
        _exit(93);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    text = slurp(logpath);
    err = slurp(errpath);
    assert_non_null(text);
    assert_non_null(err);
    expect_numbered_lines(text, "before check", 50);
    snprintf(needle, sizeof(needle),
             "[test/unit/log/log_crash_test.c:%d]-[fatal]-[%d-0]CHECK failed: value is 7, "
             "wanted 8\n",
             check_line, (int)pid);
    assert_int_equal(count_substr(text, needle), 1);
    snprintf(needle, sizeof(needle),
             "coho: CHECK failed at test/unit/log/log_crash_test.c:%d: value is 7, wanted 8\n",
             check_line);
    assert_non_null(strstr(err, needle));
    free(text);
    free(err);
}

static void check_failure_without_a_log_file_writes_the_fatal_line_to_stderr(void **state)
{
    pid_t pid;
    int status;
    char *err;

    (void)state;
    make_tmpdir();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        struct rlimit no_core = {0, 0};

        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fd, 2);
        close(fd);
        COHO_CHECK(fd < 0, "fd %d", 5);
        _exit(93);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    err = slurp(errpath);
    assert_non_null(err);
    assert_non_null(strstr(err, "]-[fatal]-["));
    assert_non_null(strstr(err, "-0]CHECK failed: fd 5\n"));
    free(err);
}

static void lines_still_buffered_at_exit_are_written(void **state)
{
    pid_t pid;
    int status, i;
    char *text;

    (void)state;
    make_tmpdir();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t th;

        child_setup(); /* 10 min flush interval: only exit() can write these in time */
        pthread_create(&th, NULL, helper_logs_then_waits, NULL);
        pthread_mutex_lock(&helper_mu);
        while (!helper_done)
            pthread_cond_wait(&helper_cv, &helper_mu);
        pthread_mutex_unlock(&helper_mu);
        for (i = 0; i < 500; i++)
            coho_log_info("at exit %d", i);
        exit(0); /* no coho_log_close, no flush */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    text = slurp(logpath);
    assert_non_null(text);
    expect_numbered_lines(text, "at exit", 500);
    expect_numbered_lines(text, "helper", 300);
    free(text);
}

/* ---- fork --------------------------------------------------------------------------------- */

static double mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void wait_for_line(const char *needle);

static void forked_child_gets_a_working_logger_and_no_line_is_duplicated(void **state)
{
    coho_log_opts_t o;
    pid_t pid;
    int status, i;
    char *text, needle[64];

    (void)state;
    make_tmpdir();
    coho_log_opts_init(&o);
    o.path = logpath;
    o.flush_interval_ms = 20;
    assert_int_equal(coho_log_open(&o), 0);
    /* Let the writer thread get past its start-up first: under ASan a thread that is still
     * starting holds the sanitizer's allocator lock, and a child forked then deadlocks inside
     * the sanitizer (glibc's own malloc locks its arenas around fork; ASan in gcc 12 does not). */
    coho_log_info("warm-up");
    wait_for_line("]warm-up\n");
    for (i = 0; i < 200; i++)
        coho_log_info("parent before %d", i); /* still buffered when fork() runs */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        double t0 = mono_ms();
        char *t = NULL;

        for (i = 0; i < 20; i++)
            coho_log_info("child %d", i);
        /* no flush: a re-created writer thread must write them */
        for (;;) {
            free(t);
            t = slurp(logpath);
            if (t != NULL && count_substr(t, "]child ") == 20)
                break;
            if (mono_ms() - t0 > 5000)
                _exit(20);
            usleep(5000);
        }
        free(t);
        coho_log_info("child closing");
        _exit(coho_log_close() == 0 ? 0 : 21);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    coho_log_info("parent after");
    assert_int_equal(coho_log_close(), 0);
    text = slurp(logpath);
    assert_non_null(text);
    expect_numbered_lines(text, "parent before", 200);
    expect_numbered_lines(text, "child", 20);
    assert_int_equal(count_substr(text, "]child closing\n"), 1);
    assert_int_equal(count_substr(text, "]parent after\n"), 1);
    snprintf(needle, sizeof(needle), "-[info]-[%d-0]child 0\n", (int)pid); /* the child's tid */
    assert_int_equal(count_substr(text, needle), 1);
    free(text);
}

/* ---- the writer thread -------------------------------------------------------------------- */

static void writer_thread_blocks_every_signal(void **state)
{
    coho_log_opts_t o;
    DIR *d;
    struct dirent *e;
    int found = 0;

    (void)state;
    make_tmpdir();
    coho_log_opts_init(&o);
    o.path = logpath;
    assert_int_equal(coho_log_open(&o), 0);
    coho_log_info("start the writer");
    d = opendir("/proc/self/task");
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[300], buf[4096], *p;
        FILE *f;
        size_t n;
        unsigned long long blk;
        int sig;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        if (strcmp(buf, "coho-log\n") != 0)
            continue;
        found++;
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strstr(buf, "SigBlk:");
        assert_non_null(p);
        blk = strtoull(p + 7, NULL, 16);
        for (sig = 1; sig < 32; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP)
                continue;
            if (!(blk & (1ull << (sig - 1))))
                fail_msg("writer thread does not block signal %d (SigBlk %llx)", sig, blk);
        }
    }
    closedir(d);
    assert_int_equal(found, 1);
    assert_int_equal(coho_log_close(), 0);
}

/* The writer's voluntary context switches, from /proc; -1 if there is no writer thread. */
static long writer_switches(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    long n = -1;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[300], buf[4096], *p;
        FILE *f;
        size_t len;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        if (strcmp(buf, "coho-log\n") != 0)
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        assert_non_null(f);
        len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        p = strstr(buf, "voluntary_ctxt_switches:");
        assert_non_null(p);
        n = strtol(p + strlen("voluntary_ctxt_switches:"), NULL, 10);
    }
    closedir(d);
    return n;
}

/* Waits up to 2 s for `needle` to be in the log file, without flushing. */
static void wait_for_line(const char *needle)
{
    double t0 = mono_ms();
    char *t = NULL;

    for (;;) {
        free(t);
        t = slurp(logpath);
        if (t != NULL && strstr(t, needle) != NULL)
            break;
        assert_true(mono_ms() - t0 < 2000);
        usleep(5000);
    }
    free(t);
}

static void idle_writer_sleeps_without_wakeups_and_wakes_for_a_new_line(void **state)
{
    coho_log_opts_t o;
    long before, after;

    (void)state;
    make_tmpdir();
    coho_log_opts_init(&o);
    o.path = logpath;
    o.flush_interval_ms = 10; /* a periodic writer would wake ~50 times below */
    assert_int_equal(coho_log_open(&o), 0);
    coho_log_info("first line");
    wait_for_line("]first line\n");
    usleep(100000); /* the writer finds nothing and goes idle */
    before = writer_switches();
    assert_true(before >= 0);
    usleep(500000);
    after = writer_switches();
    assert_true(after - before <= 2);
    coho_log_info("line after idle");    /* not an error line, buffer nearly empty: */
    wait_for_line("]line after idle\n"); /* only the idle hand-shake can wake the writer */
    assert_int_equal(coho_log_close(), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crash_by_sigsegv_writes_every_buffered_line_and_dies_by_sigsegv),
        cmocka_unit_test(crash_by_bus_abrt_fpe_or_ill_writes_every_buffered_line_and_reraises),
        cmocka_unit_test(sigsegv_handler_is_installed_except_in_sanitizer_builds),
        cmocka_unit_test(crash_handler_flushes_then_calls_the_previously_installed_handler),
        cmocka_unit_test(check_failure_logs_fatal_line_flushes_writes_stderr_and_aborts),
        cmocka_unit_test(check_failure_without_a_log_file_writes_the_fatal_line_to_stderr),
        cmocka_unit_test(lines_still_buffered_at_exit_are_written),
        cmocka_unit_test(forked_child_gets_a_working_logger_and_no_line_is_duplicated),
        cmocka_unit_test(writer_thread_blocks_every_signal),
        cmocka_unit_test(idle_writer_sleeps_without_wakeups_and_wakes_for_a_new_line),
    };

    return coho_test_main("log_crash", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
