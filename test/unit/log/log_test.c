/* SPDX-License-Identifier: MIT */
/* The trace log: line format, levels, bad input, the stderr fallback, per-thread buffers under
 * two busy threads, thread exit, rotation, and the full-buffer drop accounting. */
/* ctest: TIMEOUT=120 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "log/log.h"
#include "test/support/cmocka_main.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static char tmpdir[512];

static const char *make_tmpdir(void)
{
    const char *base = getenv("COHO_TEST_TMPDIR");

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(tmpdir, sizeof(tmpdir), "%s/log_XXXXXX", base);
    assert_non_null(mkdtemp(tmpdir));
    return tmpdir;
}

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Reads a whole file (NUL-terminated); *len gets its size. NULL if it does not exist. */
static char *slurp(const char *path, size_t *len)
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
    if (len != NULL)
        *len = (size_t)n;
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

static void open_log(const char *path, int level)
{
    coho_log_opts_t o;

    coho_log_opts_init(&o);
    o.path = path;
    o.level = level;
    assert_int_equal(coho_log_open(&o), 0);
}

static double mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Runs fn with fd 2 redirected to `path`. */
static void with_stderr_to(const char *path, void (*fn)(void))
{
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    fn();
    dup2(saved, 2);
    close(saved);
}

#define LINE_RE                                                                                 \
    "^[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{3} "                          \
    "\\[([^]:]+):([0-9]+)\\]-\\[(trace|debug|info|warn|error|fatal)\\]-\\[([0-9]+)-([0-9]+)\\]" \
    "(.*)$"

/* ---- format ------------------------------------------------------------------------------- */

static void line_matches_documented_format_with_file_line_and_tid(void **state)
{
    char path[600], *text, field[256];
    regex_t re;
    regmatch_t m[7];
    int call_line;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "fmt.log");
    open_log(path, COHO_LOG_TRACE);
    call_line = __LINE__ + 1;
    coho_log_warn("hello %s %d", "world", 42);
    assert_int_equal(coho_log_close(), 0);

    text = slurp(path, NULL);
    assert_non_null(text);
    assert_int_equal(regcomp(&re, LINE_RE, REG_EXTENDED | REG_NEWLINE), 0);
    assert_int_equal(regexec(&re, text, 7, m, 0), 0);
    assert_int_equal(m[0].rm_so, 0);
    assert_int_equal(text[m[0].rm_eo], '\n');
    assert_int_equal(text[m[0].rm_eo + 1], '\0'); /* exactly one line */
#define FIELD(i)                                                                                \
    (snprintf(field, sizeof(field), "%.*s", (int)(m[i].rm_eo - m[i].rm_so), text + m[i].rm_so), \
     field)
    assert_string_equal(FIELD(1), "test/unit/log/log_test.c"); /* relative: -fmacro-prefix-map */
    assert_int_equal(atoi(FIELD(2)), call_line);
    assert_string_equal(FIELD(3), "warn");
    assert_int_equal(atoi(FIELD(4)), gettid());
    assert_string_equal(FIELD(5), "0"); /* no id provider registered */
    assert_string_equal(FIELD(6), "hello world 42");
#undef FIELD
    regfree(&re);
    free(text);
}

static uint64_t fake_coid(void)
{
    return 18446744073709551615ull;
}

static void line_carries_coroutine_id_from_registered_provider(void **state)
{
    char path[600], *text;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "coid.log");
    open_log(path, COHO_LOG_INFO);
    coho__log_set_id_provider(fake_coid);
    coho_log_info("inside");
    coho__log_set_id_provider(NULL);
    coho_log_info("outside");
    assert_int_equal(coho_log_close(), 0);
    text = slurp(path, NULL);
    assert_non_null(text);
    assert_int_equal(count_substr(text, "-18446744073709551615]inside\n"), 1);
    assert_int_equal(count_substr(text, "-0]outside\n"), 1);
    free(text);
}

static void log_call_keeps_errno_and_percent_m_shows_the_callers_errno(void **state)
{
    char path[600], *text;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "errno.log");
    coho_log_set_level(COHO_LOG_INFO);
    errno = ECONNRESET;
    coho_log_info("before open: %m"); /* the stderr path */
    assert_int_equal(errno, ECONNRESET);
    open_log(path, COHO_LOG_INFO);
    errno = ETIMEDOUT;
    coho_log_warn("recv failed: %m");
    assert_int_equal(errno, ETIMEDOUT);
    coho_log_debug("filtered"); /* below the level */
    assert_int_equal(errno, ETIMEDOUT);
    assert_int_equal(coho_log_close(), 0);
    text = slurp(path, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "]recv failed: Connection timed out\n"));
    free(text);
}

static void trailing_newline_is_not_doubled_and_long_message_is_cut_with_ellipsis(void **state)
{
    char path[600], *text, *big;
    size_t len;
    const char *nl;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "long.log");
    open_log(path, COHO_LOG_INFO);
    coho_log_info("ends with newline\n");
    big = malloc(3 * COHO_LOG_LINE_MAX);
    assert_non_null(big);
    memset(big, 'x', 3 * COHO_LOG_LINE_MAX - 1);
    big[3 * COHO_LOG_LINE_MAX - 1] = '\0';
    coho_log_info("%s", big);
    coho_log_info("after");
    assert_int_equal(coho_log_close(), 0);
    text = slurp(path, &len);
    assert_non_null(text);
    assert_int_equal(count_substr(text, "]ends with newline\n"), 1);
    assert_int_equal(count_substr(text, "\n\n"), 0);
    nl = strchr(text, '\n') + 1; /* the long line */
    assert_int_equal(strchr(nl, '\n') - nl + 1, COHO_LOG_LINE_MAX);
    assert_memory_equal(strchr(nl, '\n') - 3, "...", 3);
    assert_int_equal(count_substr(text, "]after\n"), 1);
    free(text);
    free(big);
}

/* ---- levels ------------------------------------------------------------------------------- */

static void level_below_current_is_not_written_and_can_change_at_run_time(void **state)
{
    char path[600], *text;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "level.log");
    open_log(path, COHO_LOG_WARN);
    assert_int_equal(coho_log_get_level(), COHO_LOG_WARN);
    coho_log_trace("t1");
    coho_log_debug("d1");
    coho_log_info("i1");
    coho_log_warn("w1");
    coho_log_error("e1");
    coho_log_fatal("f1");
    assert_int_equal(coho_log_set_level(COHO_LOG_TRACE), 0);
    coho_log_trace("t2");
    coho_log_debug("d2");
    assert_int_equal(coho_log_close(), 0);
    text = slurp(path, NULL);
    assert_non_null(text);
    assert_null(strstr(text, "]t1"));
    assert_null(strstr(text, "]d1"));
    assert_null(strstr(text, "]i1"));
    assert_non_null(strstr(text, "-[warn]-["));
    assert_non_null(strstr(text, "-[error]-["));
    assert_non_null(strstr(text, "-[fatal]-["));
    assert_non_null(strstr(text, "-[trace]-["));
    assert_non_null(strstr(text, "-[debug]-["));
    assert_non_null(strstr(text, "]t2\n"));
    free(text);
    coho_log_set_level(COHO_LOG_INFO);
}

static void set_level_out_of_range_is_einval_and_keeps_the_level(void **state)
{
    (void)state;
    assert_int_equal(coho_log_set_level(COHO_LOG_ERROR), 0);
    errno = 0;
    assert_int_equal(coho_log_set_level(COHO_LOG_FATAL + 1), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(coho_log_set_level(-1), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(coho_log_get_level(), COHO_LOG_ERROR);
    coho_log_set_level(COHO_LOG_INFO);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void open_bad_options(void)
{
    coho_log_opts_t o;

    errno = 0;
    assert_int_equal(coho_log_open(NULL), -1);
    assert_int_equal(errno, EINVAL);

    coho_log_opts_init(&o);
    errno = 0;
    assert_int_equal(coho_log_open(&o), -1); /* path NULL */
    assert_int_equal(errno, EINVAL);
    o.path = "";
    errno = 0;
    assert_int_equal(coho_log_open(&o), -1);
    assert_int_equal(errno, EINVAL);

    o.path = "/tmp/never-created-by-coho.log";
    o.level = COHO_LOG_FATAL + 1;
    errno = 0;
    assert_int_equal(coho_log_open(&o), -1);
    assert_int_equal(errno, EINVAL);
    o.level = COHO_LOG_INFO;
    o.files_kept = 1001;
    errno = 0;
    assert_int_equal(coho_log_open(&o), -1);
    assert_int_equal(errno, EINVAL);
    o.files_kept = 5;
    o.thread_buffer_size = 1024;
    errno = 0;
    assert_int_equal(coho_log_open(&o), -1);
    assert_int_equal(errno, EINVAL);
    assert_false(coho_log_is_open());
}

static void open_with_null_empty_path_or_bad_options_is_einval_with_message(void **state)
{
    char errpath[600], *err;

    (void)state;
    make_tmpdir();
    tmp_path(errpath, sizeof(errpath), "stderr.txt");
    with_stderr_to(errpath, open_bad_options);
    err = slurp(errpath, NULL);
    assert_non_null(err);
    assert_non_null(strstr(err, "coho_log_open: options are NULL\n"));
    assert_int_equal(count_substr(err, "coho_log_open: path is NULL or empty\n"), 2);
    assert_non_null(strstr(err, "coho_log_open: level is not"));
    assert_non_null(strstr(err, "coho_log_open: files_kept"));
    assert_non_null(strstr(err, "coho_log_open: thread_buffer_size"));
    free(err);
}

static void open_in_missing_directory_fails_with_enoent_and_names_the_path(void **state)
{
    char path[600], errpath[600], *err;
    static char missing[700];

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "no/such/dir/x.log");
    tmp_path(errpath, sizeof(errpath), "stderr.txt");
    snprintf(missing, sizeof(missing), "%s", path);
    {
        int saved = dup(2), fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        coho_log_opts_t o;
        int rc, e;

        dup2(fd, 2);
        close(fd);
        coho_log_opts_init(&o);
        o.path = missing;
        errno = 0;
        rc = coho_log_open(&o);
        e = errno;
        dup2(saved, 2);
        close(saved);
        assert_int_equal(rc, -1);
        assert_int_equal(e, ENOENT);
    }
    err = slurp(errpath, NULL);
    assert_non_null(err);
    assert_non_null(strstr(err, "coho_log_open: cannot open '"));
    assert_non_null(strstr(err, "no/such/dir/x.log': No such file or directory\n"));
    free(err);
}

/* Root may write anywhere, so the child drops to an unprivileged uid first. */
static void open_in_unwritable_directory_fails_with_eacces(void **state)
{
    char dir[600], path[700];
    pid_t pid;
    int status;

    (void)state;
    make_tmpdir();
    chmod(tmpdir, 0755);
    tmp_path(dir, sizeof(dir), "ro");
    assert_int_equal(mkdir(dir, 0555), 0);
    snprintf(path, sizeof(path), "%s/x.log", dir);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        coho_log_opts_t o;
        int rc;

        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        coho_log_opts_init(&o);
        o.path = path;
        errno = 0;
        rc = coho_log_open(&o);
        if (rc == -1 && errno == ENOENT)
            _exit(12); /* an ancestor of the temp dir is not searchable for uid 65534 */
        _exit(rc == -1 && errno == EACCES ? 0 : 11);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(path, F_OK), -1);
}

static void open_twice_is_ebusy_and_close_or_flush_when_closed_is_ebadf(void **state)
{
    char path[600];
    coho_log_opts_t o;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "twice.log");
    errno = 0;
    assert_int_equal(coho_log_close(), -1);
    assert_int_equal(errno, EBADF);
    errno = 0;
    assert_int_equal(coho_log_flush(), -1);
    assert_int_equal(errno, EBADF);
    open_log(path, COHO_LOG_INFO);
    assert_true(coho_log_is_open());
    coho_log_opts_init(&o);
    o.path = path;
    errno = 0;
    assert_int_equal(coho_log_open(&o), -1);
    assert_int_equal(errno, EBUSY);
    assert_int_equal(coho_log_close(), 0);
    assert_false(coho_log_is_open());
}

/* ---- stderr fallback ---------------------------------------------------------------------- */

static void log_before_open_and_after_close(void)
{
    char path[600];

    coho_log_info("before open %d", 1);
    tmp_path(path, sizeof(path), "between.log");
    open_log(path, COHO_LOG_INFO);
    coho_log_info("while open");
    assert_int_equal(coho_log_close(), 0);
    coho_log_error("after close %d", 2);
}

static void lines_before_open_and_after_close_go_to_stderr(void **state)
{
    char errpath[600], path[600], *err, *text;

    (void)state;
    make_tmpdir();
    tmp_path(errpath, sizeof(errpath), "stderr.txt");
    with_stderr_to(errpath, log_before_open_and_after_close);
    err = slurp(errpath, NULL);
    tmp_path(path, sizeof(path), "between.log");
    text = slurp(path, NULL);
    assert_non_null(err);
    assert_non_null(text);
    assert_int_equal(count_substr(err, "-[info]-["), 1);
    assert_int_equal(count_substr(err, "]before open 1\n"), 1);
    assert_int_equal(count_substr(err, "-[error]-["), 1);
    assert_int_equal(count_substr(err, "]after close 2\n"), 1);
    assert_null(strstr(err, "while open"));
    assert_int_equal(count_substr(text, "]while open\n"), 1);
    assert_null(strstr(text, "before open"));
    assert_null(strstr(text, "after close"));
    free(err);
    free(text);
}

/* ---- threads ------------------------------------------------------------------------------ */

#define LINES_PER_THREAD 100000

static void *log_many(void *arg)
{
    int t = (int)(intptr_t)arg;
    int i;

    for (i = 0; i < LINES_PER_THREAD; i++)
        coho_log_info("thread %d line %d payload-%08x-end", t, i, (unsigned)(i * 2654435761u));
    return NULL;
}

static void two_threads_100k_lines_each_arrive_intact_and_exactly_once(void **state)
{
    char path[600], *text, *p;
    pthread_t th[2];
    size_t len;
    unsigned char *seen;
    regex_t re;
    size_t lines = 0;
    int t;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "threads.log");
    {
        coho_log_opts_t o;

        coho_log_opts_init(&o);
        o.path = path;
        o.rotate_size = 0;
        o.full_wait_ms = 10000; /* this test wants every line: wait rather than drop */
        assert_int_equal(coho_log_open(&o), 0);
    }
    for (t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t), 0);
    for (t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(coho_log_close(), 0);
    assert_int_equal(coho_log_dropped_count(), 0);

    text = slurp(path, &len);
    assert_non_null(text);
    seen = calloc(2 * LINES_PER_THREAD, 1);
    assert_non_null(seen);
    assert_int_equal(regcomp(&re, LINE_RE, REG_EXTENDED), 0);
    for (p = text; *p != '\0';) {
        char *nl = strchr(p, '\n');
        regmatch_t m[7];
        int tt, i, n = 0;
        unsigned h;

        assert_non_null(nl);
        *nl = '\0';
        assert_int_equal(regexec(&re, p, 7, m, 0), 0);
        assert_int_equal(
            sscanf(p + m[6].rm_so, "thread %d line %d payload-%08x-end%n", &tt, &i, &h, &n), 3);
        assert_int_equal(p + m[6].rm_so + n, nl); /* nothing after "-end" */
        assert_in_range(tt, 0, 1);
        assert_in_range(i, 0, LINES_PER_THREAD - 1);
        assert_int_equal(h, (unsigned)(i * 2654435761u));
        assert_int_equal(seen[tt * LINES_PER_THREAD + i], 0);
        seen[tt * LINES_PER_THREAD + i] = 1;
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, 2 * LINES_PER_THREAD);
    regfree(&re);
    free(seen);
    free(text);
}

static void *log_few_and_exit(void *arg)
{
    int i;

    for (i = 0; i < 10; i++)
        coho_log_info("exiting thread %d line %d", (int)(intptr_t)arg, i);
    return NULL;
}

static void exited_threads_hand_their_lines_over_and_their_buffers_are_reused(void **state)
{
    char path[600], *text = NULL;
    pthread_t th;
    size_t before;
    double t0;
    int t;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "exit.log");
    open_log(path, COHO_LOG_INFO);
    coho_log_info("main first"); /* main's own buffer */
    before = coho__log_buffer_count();
    for (t = 0; t < 50; t++) {
        assert_int_equal(pthread_create(&th, NULL, log_few_and_exit, (void *)(intptr_t)t), 0);
        pthread_join(th, NULL);
        assert_int_equal(coho_log_flush(), 0); /* empties the orphan, so it can be reused */
    }
    /* one thread at a time: each exited thread's buffer serves the next one */
    assert_true(coho__log_buffer_count() <= before + 1);
    /* no flush now: the writer alone must write the last exited thread's lines */
    assert_int_equal(pthread_create(&th, NULL, log_few_and_exit, (void *)(intptr_t)50), 0);
    pthread_join(th, NULL);
    t0 = mono_ms();
    for (;;) {
        free(text);
        text = slurp(path, NULL);
        if (text != NULL && count_substr(text, "]exiting thread ") == 510)
            break;
        assert_true(mono_ms() - t0 < 5000);
        usleep(10000);
    }
    assert_int_equal(count_substr(text, "]exiting thread 50 line 9\n"), 1);
    assert_int_equal(count_substr(text, "]exiting thread 0 line 0\n"), 1);
    free(text);
    assert_int_equal(coho_log_close(), 0);
}

/* ---- rotation ----------------------------------------------------------------------------- */

static void file_rotates_by_size_and_keeps_the_newest_n_files(void **state)
{
    char path[600], name[700], *text;
    coho_log_opts_t o;
    const uint64_t rotate = 16 * 1024;
    int i, last = -1, files = 0;
    size_t len, total_lines = 0;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "rot.log");
    coho_log_opts_init(&o);
    o.path = path;
    o.rotate_size = rotate;
    o.files_kept = 3;
    o.full_wait_ms = 10000;
    assert_int_equal(coho_log_open(&o), 0);
    for (i = 0; i < 5000; i++) /* ~400 KiB: far more than 4 files hold */
        coho_log_info("rotation line %06d", i);
    assert_int_equal(coho_log_close(), 0);

    snprintf(name, sizeof(name), "%s.4", path);
    assert_int_equal(access(name, F_OK), -1); /* only 3 rotated files kept */
    /* oldest to newest: rot.log.3, .2, .1, rot.log; line numbers keep increasing */
    for (i = 3; i >= 0; i--) {
        char *p;

        if (i > 0)
            snprintf(name, sizeof(name), "%s.%d", path, i);
        else
            snprintf(name, sizeof(name), "%s", path);
        text = slurp(name, &len);
        assert_non_null(text);
        files++;
        assert_true(len <= rotate); /* cut at a newline, never past the limit */
        if (i > 0)
            assert_true(len > rotate - 200); /* full up to the last line that fit */
        for (p = text; (p = strstr(p, "]rotation line ")) != NULL; p++) {
            int n = atoi(p + strlen("]rotation line "));

            assert_true(n == last + 1 || last == -1);
            last = n;
            total_lines++;
        }
        assert_int_equal(text[len - 1], '\n');
        free(text);
    }
    assert_int_equal(files, 4);
    assert_int_equal(last, 4999);   /* the newest line is in the live file */
    assert_true(total_lines > 450); /* three full rotated files of ~80-byte lines */
}

/* /dev/null with a tiny rotate_size: were it rotated, /dev/null itself would be renamed. */
static void only_regular_files_rotate(void **state)
{
    coho_log_opts_t o;
    struct stat st;
    int i;

    (void)state;
    coho_log_opts_init(&o);
    o.path = "/dev/null";
    o.rotate_size = 4096;
    o.files_kept = 2;
    assert_int_equal(coho_log_open(&o), 0);
    for (i = 0; i < 1000; i++)
        coho_log_info("to the null device %d", i);
    assert_int_equal(coho_log_flush(), 0);
    assert_int_equal(coho_log_close(), 0);
    assert_int_equal(stat("/dev/null.1", &st), -1);
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
}

static void log_to_full_device(void)
{
    coho_log_opts_t o;
    uint64_t before = coho_log_dropped_count();
    int i;

    coho_log_opts_init(&o);
    o.path = "/dev/full";         /* every write fails with ENOSPC */
    o.flush_interval_ms = 600000; /* only the flushes below drain */
    assert_int_equal(coho_log_open(&o), 0);
    for (i = 0; i < 10; i++)
        coho_log_info("lost line %d", i);
    errno = 0;
    assert_int_equal(coho_log_flush(), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(coho_log_dropped_count() - before, 10);
    for (i = 0; i < 5; i++)
        coho_log_info("lost line %d", i);
    assert_int_equal(coho_log_flush(), -1);
    assert_int_equal(coho_log_close(), 0);
    /* 15 lines, plus the "N lines dropped" reports that could not be written either are not
     * counted twice */
    assert_int_equal(coho_log_dropped_count() - before, 15);
}

static void failed_writes_are_counted_as_dropped_and_reported_once_on_stderr(void **state)
{
    char errpath[600], *err;

    (void)state;
    make_tmpdir();
    tmp_path(errpath, sizeof(errpath), "stderr.txt");
    with_stderr_to(errpath, log_to_full_device);
    err = slurp(errpath, NULL);
    assert_non_null(err);
    assert_int_equal(count_substr(err, "coho log: write to the log file failed"), 1);
    free(err);

    /* the count that could not be reported goes into the next file that works */
    {
        char path[600], *text;

        tmp_path(path, sizeof(path), "after_full.log");
        open_log(path, COHO_LOG_INFO);
        assert_int_equal(coho_log_close(), 0);
        text = slurp(path, NULL);
        assert_non_null(text);
        assert_int_equal(count_substr(text, "-[warn]-["), 1);
        assert_non_null(strstr(text, "]coho log: 15 lines dropped (thread buffer full or write "
                                     "failed)\n"));
        free(text);
    }
}

/* ---- full buffer -------------------------------------------------------------------------- */

/* Stores coho_log_close()'s result in *arg; the case checks it after the join (a CMocka
 * assertion on this thread would longjmp to a frame on another thread's stack). */
static void *close_log_thread(void *arg)
{
    *(int *)arg = coho_log_close();
    return NULL;
}

/* The file is a FIFO nobody reads for a while, so the writer blocks in write(2), the thread
 * buffer fills, and with full_wait_ms 0 lines are dropped. Every line must then be either in
 * the file or counted, and the count must be reported in the file. */
static void full_buffer_drops_are_counted_and_reported_in_the_file(void **state)
{
    char path[600];
    coho_log_opts_t o;
    int rd, i, total = 20000;
    char *got = NULL;
    size_t got_len = 0, cap = 0, lines = 0, reported = 0;
    const char *p;
    uint64_t dropped;

    (void)state;
    make_tmpdir();
    tmp_path(path, sizeof(path), "fifo.log");
    assert_int_equal(mkfifo(path, 0644), 0);
    rd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rd >= 0);
    coho_log_opts_init(&o);
    o.path = path;
    o.rotate_size = 0;
    o.thread_buffer_size = 16 * 1024;
    o.full_wait_ms = 0;
    assert_int_equal(coho_log_open(&o), 0);
    dropped = coho_log_dropped_count();
    for (i = 0; i < total; i++)
        coho_log_info("fifo line %d", i);
    assert_true(coho_log_dropped_count() - dropped > 0); /* 20k lines cannot fit 16 KiB + pipe */
    /* now read, so the writer gets through, and close (which writes the drop report) */
    {
        pthread_t closer;
        int fl = fcntl(rd, F_GETFL), close_rc = 1;

        assert_int_equal(pthread_create(&closer, NULL, close_log_thread, &close_rc), 0);
        fcntl(rd, F_SETFL, fl & ~O_NONBLOCK);
        for (;;) {
            ssize_t n;

            if (cap - got_len < 65536) {
                cap = cap * 2 + 65536;
                got = realloc(got, cap);
                assert_non_null(got);
            }
            n = read(rd, got + got_len, cap - got_len - 1);
            if (n <= 0)
                break; /* EOF: the logger closed its end */
            got_len += (size_t)n;
        }
        assert_int_equal(pthread_join(closer, NULL), 0);
        assert_int_equal(close_rc, 0);
    }
    close(rd);
    got[got_len] = '\0';
    lines = count_substr(got, "]fifo line ");
    for (p = got; (p = strstr(p, "]coho log: ")) != NULL; p++)
        reported += strtoull(p + strlen("]coho log: "), NULL, 10);
    assert_int_equal(reported, coho_log_dropped_count() - dropped);
    assert_int_equal(lines + reported, (size_t)total);
    assert_non_null(strstr(got, "-[warn]-["));
    assert_non_null(strstr(got, " lines dropped (thread buffer full or write failed)\n"));
    free(got);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(line_matches_documented_format_with_file_line_and_tid),
        cmocka_unit_test(line_carries_coroutine_id_from_registered_provider),
        cmocka_unit_test(log_call_keeps_errno_and_percent_m_shows_the_callers_errno),
        cmocka_unit_test(trailing_newline_is_not_doubled_and_long_message_is_cut_with_ellipsis),
        cmocka_unit_test(level_below_current_is_not_written_and_can_change_at_run_time),
        cmocka_unit_test(set_level_out_of_range_is_einval_and_keeps_the_level),
        cmocka_unit_test(open_with_null_empty_path_or_bad_options_is_einval_with_message),
        cmocka_unit_test(open_in_missing_directory_fails_with_enoent_and_names_the_path),
        cmocka_unit_test(open_in_unwritable_directory_fails_with_eacces),
        cmocka_unit_test(open_twice_is_ebusy_and_close_or_flush_when_closed_is_ebadf),
        cmocka_unit_test(lines_before_open_and_after_close_go_to_stderr),
        cmocka_unit_test(two_threads_100k_lines_each_arrive_intact_and_exactly_once),
        cmocka_unit_test(exited_threads_hand_their_lines_over_and_their_buffers_are_reused),
        cmocka_unit_test(file_rotates_by_size_and_keeps_the_newest_n_files),
        cmocka_unit_test(only_regular_files_rotate),
        cmocka_unit_test(failed_writes_are_counted_as_dropped_and_reported_once_on_stderr),
        cmocka_unit_test(full_buffer_drops_are_counted_and_reported_in_the_file),
    };

    return coho_test_main("log", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
