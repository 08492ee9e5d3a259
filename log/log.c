/* SPDX-License-Identifier: MIT */
/* The process logger: line formatting, per-thread ring buffers, the background writer thread,
 * size-based rotation, the stderr fallback, fork() handling and the async-signal-safe flush the
 * fatal-signal handlers (log/crash.c) call. Design notes: log/README.md. */
#define _GNU_SOURCE /* gettid, memrchr, pthread_setname_np */
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base_struct/clock.h"
#include "base_struct/sys.h"

#define TBUF_MIN_SIZE  (16u * 1024u)
#define FILES_KEPT_MAX 1000u
#define STAMP_LEN      18 /* "YY/MM/DD HH:MM:SS " */

enum { TB_OWNED, TB_ORPHAN, TB_FREE };
enum { LOG_CLOSED, LOG_OPEN };

/* One thread's buffer: a single-producer ring (the owning thread appends) drained by whoever
 * holds `claim` (the writer thread, coho_log_flush, close, or the crash flush). `head` and
 * `tail` count bytes ever appended / drained, so head - tail is the fill and the ring index is
 * the count masked by cap - 1. Only whole lines are published (head moves once per line), so a
 * drainer always writes whole lines. Buffers are never freed: an exited thread's buffer is
 * drained, then reused by the next new thread, so the lock-free registry list that the crash
 * flush walks only ever grows. */
typedef struct tbuf {
    _Atomic(struct tbuf *) next; /* registry list, push-only */
    atomic_int state;            /* TB_OWNED, TB_ORPHAN (owner exited, data left), TB_FREE */
    atomic_bool busy;            /* the owner is between its state check and its append */
    atomic_bool claim;           /* held by the one drainer at a time */
    atomic_bool wake_sent;       /* the owner has woken the writer since the last drain */
    _Atomic uint64_t head;
    _Atomic uint64_t tail;
    _Atomic uint64_t dropped; /* lines dropped by the owner, not yet reported in the file */
    pid_t tid;                /* owner's kernel thread id */
    time_t stamp_sec;         /* second that `stamp` shows */
    char stamp[STAMP_LEN + 1];
    size_t cap; /* power of two */
    char *data;
    char line[COHO_LOG_LINE_MAX]; /* the owner's formatting scratch */
} tbuf_t;

static struct {
    pthread_mutex_t ctl_mu; /* open/close */
    pthread_mutex_t reg_mu; /* one drainer at a time (writer, flush, close), rotation, config */
    pthread_mutex_t wake_mu;
    pthread_cond_t wake_cond;  /* the writer waits here */
    pthread_cond_t space_cond; /* producers waiting for room wait here */
    bool wake_pending;
    bool writer_stop;
    int space_waiters;
    atomic_bool writer_started;
    atomic_bool writer_idle; /* the writer sleeps without a timeout: wake it for a new line */
    pthread_t writer;

    _Atomic(tbuf_t *) list;
    atomic_size_t tbuf_count;
    atomic_int state;
    atomic_int fd;
    atomic_size_t tbuf_size; /* for buffers created from now on */
    _Atomic(uint64_t (*)(void)) coid_fn;
    _Atomic uint64_t dropped_total;
    _Atomic uint64_t dropped_unowned; /* no buffer could be allocated */

    /* under reg_mu */
    char path[PATH_MAX];
    uint64_t rotate_size;
    unsigned files_kept;
    uint64_t file_size;
    unsigned flush_interval_ms;
    atomic_uint full_wait_ms;
    bool write_error_reported;

    atomic_bool crash_flushing;
    atomic_long utc_offset_s; /* local time minus UTC at the last localtime_r, for the crash path */
} lg = {
    .ctl_mu = PTHREAD_MUTEX_INITIALIZER,
    .reg_mu = PTHREAD_MUTEX_INITIALIZER,
    .wake_mu = PTHREAD_MUTEX_INITIALIZER,
    .fd = -1,
    .tbuf_size = 256u * 1024u,
};

/* The lowest level written (log/log.h): outside `lg` so that the layers above can test it
 * inline, without a call. */
atomic_int coho__log_level = COHO_LOG_INFO;

static __thread tbuf_t *my_tb;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t tb_key;

static const char *const level_words[] = {"trace", "debug", "info", "warn", "error", "fatal"};

/* ---- small helpers ------------------------------------------------------------------------ */

static pid_t thread_id(void)
{
    return gettid();
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s, size_t max)
{
    size_t n = strnlen(s, max);

    memcpy(p, s, n);
    return p + n;
}

static bool mono_passed(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* ---- formatting --------------------------------------------------------------------------- */

/* Local calendar fields {YY, MM, DD, hh, mm, ss} of `sec` without localtime_r, which takes a
 * lock and is not async-signal-safe: the UTC offset seen by the last localtime_r, then the
 * days-to-civil conversion of H. Hinnant's date algorithms. For the crash path only (a DST
 * change since the last line logged shows up as an hour off). */
static void civil_fields_signal_safe(time_t sec, int f[6])
{
    int64_t t = (int64_t)sec + atomic_load_explicit(&lg.utc_offset_s, memory_order_relaxed);
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t rem = t - days * 86400;
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t mon = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (mon <= 2);

    f[0] = (int)(((year % 100) + 100) % 100);
    f[1] = (int)mon;
    f[2] = (int)(doy - (153 * mp + 2) / 5 + 1);
    f[3] = (int)(rem / 3600);
    f[4] = (int)(rem / 60 % 60);
    f[5] = (int)(rem % 60);
}

/* Formats "YY/MM/DD HH:MM:SS mmm [file:line]-[level]-[tid-coid]" into out (room for
 * COHO_LOG_LINE_MAX). The calendar part is cached per second in *stamp_sec/stamp, because
 * localtime_r costs far more than the rest of the line. `in_signal`: a fatal-signal handler
 * calls, so the calendar part is computed without localtime_r. Returns the length. */
static size_t format_prefix(char *out, time_t *stamp_sec, char *stamp, int level, const char *file,
                            int line, pid_t tid, uint64_t coid, bool in_signal)
{
    struct timespec ts;
    char *p = out;
    unsigned ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != *stamp_sec) {
        int f[6];
        int i;

        if (in_signal) {
            civil_fields_signal_safe(ts.tv_sec, f);
        } else {
            struct tm tm;

            localtime_r(&ts.tv_sec, &tm);
            atomic_store_explicit(&lg.utc_offset_s, tm.tm_gmtoff, memory_order_relaxed);
            f[0] = tm.tm_year % 100;
            f[1] = tm.tm_mon + 1;
            f[2] = tm.tm_mday;
            f[3] = tm.tm_hour;
            f[4] = tm.tm_min;
            f[5] = tm.tm_sec;
        }

        for (i = 0; i < 6; i++) {
            stamp[3 * i] = (char)('0' + f[i] / 10 % 10);
            stamp[3 * i + 1] = (char)('0' + f[i] % 10);
            stamp[3 * i + 2] = i < 2 ? '/' : i == 2 ? ' ' : i < 5 ? ':' : ' ';
        }
        stamp[STAMP_LEN] = '\0';
        *stamp_sec = ts.tv_sec;
    }
    memcpy(p, stamp, STAMP_LEN);
    p += STAMP_LEN;
    ms = (unsigned)(ts.tv_nsec / 1000000);
    *p++ = (char)('0' + ms / 100);
    *p++ = (char)('0' + ms / 10 % 10);
    *p++ = (char)('0' + ms % 10);
    *p++ = ' ';
    *p++ = '[';
    /* the file name may take at most half the line, so the message always has room */
    p = put_str(p, file != NULL ? file : "?", COHO_LOG_LINE_MAX / 2);
    *p++ = ':';
    p = put_u64(p, line >= 0 ? (uint64_t)line : 0);
    memcpy(p, "]-[", 3);
    p += 3;
    p = put_str(p, level_words[level], 8);
    memcpy(p, "]-[", 3);
    p += 3;
    p = put_u64(p, (uint64_t)tid);
    *p++ = '-';
    p = put_u64(p, coid);
    *p++ = ']';
    return (size_t)(p - out);
}

/* Formats a whole line, newline included, into out. Returns its length (<= COHO_LOG_LINE_MAX).
 * errno is set to `caller_errno` right before the message is formatted, so "%m" shows the
 * caller's errno even if the prefix (localtime_r) touched it. */
static size_t format_line(char *out, time_t *stamp_sec, char *stamp, int level, const char *file,
                          int line, pid_t tid, int caller_errno, const char *fmt, va_list ap)
{
    uint64_t (*coid_fn)(void) = atomic_load_explicit(&lg.coid_fn, memory_order_acquire);
    size_t len = format_prefix(out, stamp_sec, stamp, level, file, line, tid,
                               coid_fn != NULL ? coid_fn() : 0, false);
    size_t room = COHO_LOG_LINE_MAX - len;
    int n;

    errno = caller_errno;
    n = vsnprintf(out + len, room, fmt, ap); /* room - 1 chars at most; the newline takes
                                                    the NUL's place */

    if (n < 0) {
        n = 0;
    } else if ((size_t)n >= room) {
        n = (int)room - 1;
        memcpy(out + len + n - 3, "...", 3);
    }
    len += (size_t)n;
    if (n > 0 && out[len - 1] == '\n')
        len--;
    out[len++] = '\n';
    return len;
}

/* ---- thread buffers ----------------------------------------------------------------------- */

static void writer_wake(void)
{
    pthread_mutex_lock(&lg.wake_mu);
    lg.wake_pending = true;
    pthread_cond_signal(&lg.wake_cond);
    pthread_mutex_unlock(&lg.wake_mu);
}

/* Thread exit (pthread key destructor): hand the buffer over. An empty buffer is free for the
 * next new thread at once; one with lines left is an orphan until a drainer empties it. */
static void tbuf_thread_exit(void *arg)
{
    tbuf_t *tb = arg;

    my_tb = NULL;
    if (atomic_load(&tb->head) == atomic_load(&tb->tail) && atomic_load(&tb->dropped) == 0) {
        atomic_store(&tb->state, TB_FREE);
        return;
    }
    atomic_store(&tb->state, TB_ORPHAN);
    if (atomic_load(&lg.writer_started))
        writer_wake();
}

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void log_once_init(void)
{
    pthread_condattr_t ca;

    pthread_key_create(&tb_key, tbuf_thread_exit);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lg.wake_cond, &ca);
    pthread_cond_init(&lg.space_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static size_t round_pow2(size_t n)
{
    size_t p = TBUF_MIN_SIZE;

    while (p < n)
        p <<= 1;
    return p;
}

/* The calling thread's buffer, created or reused on first use; NULL only without memory. */
static tbuf_t *tbuf_get(void)
{
    tbuf_t *tb = my_tb;

    if (tb != NULL)
        return tb;
    pthread_once(&once, log_once_init);
    for (tb = atomic_load(&lg.list); tb != NULL; tb = atomic_load(&tb->next)) {
        int expect = TB_FREE;

        if (atomic_compare_exchange_strong(&tb->state, &expect, TB_OWNED))
            break;
    }
    if (tb == NULL) {
        size_t cap = round_pow2(atomic_load(&lg.tbuf_size));
        tbuf_t *head;

        tb = calloc(1, sizeof(*tb));
        if (tb == NULL)
            return NULL;
        tb->data = malloc(cap);
        if (tb->data == NULL) {
            free(tb);
            return NULL;
        }
        tb->cap = cap;
        atomic_init(&tb->state, TB_OWNED);
        head = atomic_load(&lg.list);
        do {
            atomic_store(&tb->next, head);
        } while (!atomic_compare_exchange_weak(&lg.list, &head, tb));
        atomic_fetch_add(&lg.tbuf_count, 1);
    }
    tb->tid = thread_id();
    tb->stamp_sec = (time_t)-1;
    my_tb = tb;
    pthread_setspecific(tb_key, tb);
    return tb;
}

static size_t tbuf_room(tbuf_t *tb)
{
    uint64_t head = atomic_load_explicit(&tb->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&tb->tail, memory_order_acquire);

    return tb->cap - (size_t)(head - tail);
}

static void tbuf_copy_in(tbuf_t *tb, const char *src, size_t len)
{
    uint64_t head = atomic_load_explicit(&tb->head, memory_order_relaxed);
    size_t at = (size_t)head & (tb->cap - 1);
    size_t first = tb->cap - at < len ? tb->cap - at : len;

    memcpy(tb->data + at, src, first);
    memcpy(tb->data, src + first, len - first);
    atomic_store_explicit(&tb->head, head + len, memory_order_release);
}

static void writer_start(void);

/* The full-buffer policy: wake the writer and wait up to full_wait_ms for room (in short
 * slices, so a missed broadcast costs one slice). Returns true when the line fits, false to
 * drop it, or -1 when the logger was closed meanwhile (the caller writes to stderr). */
static int tbuf_wait_room(tbuf_t *tb, size_t len)
{
    struct timespec deadline, slice;
    unsigned wait_ms = atomic_load_explicit(&lg.full_wait_ms, memory_order_relaxed);

    coho__mono_deadline(&deadline, wait_ms);
    for (;;) {
        if (atomic_load(&lg.state) != LOG_OPEN)
            return -1;
        if (tbuf_room(tb) >= len)
            return 1;
        if (wait_ms == 0 || mono_passed(&deadline))
            return 0;
        coho__mono_deadline(&slice, 2);
        pthread_mutex_lock(&lg.wake_mu);
        lg.wake_pending = true;
        pthread_cond_signal(&lg.wake_cond);
        lg.space_waiters++;
        pthread_cond_timedwait(&lg.space_cond, &lg.wake_mu, &slice);
        lg.space_waiters--;
        pthread_mutex_unlock(&lg.wake_mu);
    }
}

static void stderr_line(const char *line, size_t len)
{
    coho__sys_init();
    (void)coho__sys_write_all(STDERR_FILENO, line, len);
}

static void log_line(int level, const char *file, int line, int caller_errno, const char *fmt,
                     va_list ap)
{
    tbuf_t *tb;
    size_t len;
    int fit;

    tb = tbuf_get();
    if (tb == NULL) {
        atomic_fetch_add(&lg.dropped_total, 1);
        atomic_fetch_add(&lg.dropped_unowned, 1);
        if (atomic_load(&lg.writer_started))
            writer_wake();
        return;
    }
    len = format_line(tb->line, &tb->stamp_sec, tb->stamp, level, file, line, tb->tid, caller_errno,
                      fmt, ap);

    /* busy is stored before state is loaded, and close stores state before it loads busy
     * (both sequentially consistent), so close either sees this append in flight and waits
     * for it, or this call sees the logger closed. */
    atomic_store(&tb->busy, true);
    if (atomic_load(&lg.state) != LOG_OPEN) {
        atomic_store_explicit(&tb->busy, false, memory_order_release);
        stderr_line(tb->line, len);
        return;
    }
    if (!atomic_load_explicit(&lg.writer_started, memory_order_acquire))
        writer_start();
    fit = tbuf_room(tb) >= len ? 1 : tbuf_wait_room(tb, len);
    if (fit > 0) {
        tbuf_copy_in(tb, tb->line, len);
        /* The head store above, this fence, and the load below pair with the writer's
         * "idle = true, then look at every head" (writer_main): either the writer sees this
         * line before it sleeps, or this call sees it idle and wakes it. */
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&lg.writer_idle, memory_order_relaxed) &&
            atomic_exchange(&lg.writer_idle, false))
            writer_wake();
        else if ((level >= COHO_LOG_ERROR || tb->cap - tbuf_room(tb) > tb->cap / 2) &&
                 !atomic_exchange_explicit(&tb->wake_sent, true, memory_order_relaxed))
            writer_wake();
    } else if (fit == 0) {
        /* release: the drainer that reports the count also reads tb->tid */
        atomic_fetch_add_explicit(&tb->dropped, 1, memory_order_release);
        atomic_fetch_add_explicit(&lg.dropped_total, 1, memory_order_relaxed);
        if (!atomic_exchange_explicit(&tb->wake_sent, true, memory_order_relaxed))
            writer_wake(); /* the report is due, and room is wanted */
    }
    atomic_store_explicit(&tb->busy, false, memory_order_release);
    if (fit < 0)
        stderr_line(tb->line, len);
}

/* Logging never changes errno: callers log an error and then act on errno. */
void coho_log_vwrite(int level, const char *file, int line, const char *fmt, va_list ap)
{
    int saved_errno;

    if (level < COHO_LOG_TRACE || level > COHO_LOG_FATAL ||
        level < atomic_load_explicit(&coho__log_level, memory_order_relaxed))
        return;
    saved_errno = errno;
    log_line(level, file, line, saved_errno, fmt, ap);
    errno = saved_errno;
}

void coho_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    coho_log_vwrite(level, file, line, fmt, ap);
    va_end(ap);
}

/* ---- the file: writing and rotation (under reg_mu) ---------------------------------------- */

static int open_file(const char *path, bool truncate)
{
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
    int fd = open(path, flags, 0644);

    return fd < 0 ? -errno : fd;
}

/* Renames path.(N-1) -> path.N ... path -> path.1 and opens a fresh path. With files_kept 0
 * the file is simply truncated. */
static void rotate(void)
{
    char from[PATH_MAX + 16], to[PATH_MAX + 16];
    int fd = atomic_exchange(&lg.fd, -1);
    unsigned i;

    if (fd >= 0)
        coho__sys_base.close(fd);
    if (lg.files_kept > 0) {
        for (i = lg.files_kept - 1; i >= 1; i--) {
            snprintf(from, sizeof(from), "%s.%u", lg.path, i);
            snprintf(to, sizeof(to), "%s.%u", lg.path, i + 1);
            (void)rename(from, to); /* ENOENT: fewer files so far */
        }
        snprintf(to, sizeof(to), "%s.1", lg.path);
        (void)rename(lg.path, to);
    }
    fd = open_file(lg.path, lg.files_kept == 0);
    lg.file_size = 0;
    atomic_store(&lg.fd, fd >= 0 ? fd : -1);
}

static uint64_t count_lines(const char *p, size_t len)
{
    uint64_t n = 0;

    while (len > 0) {
        const char *nl = memchr(p, '\n', len);

        if (nl == NULL)
            break;
        n++;
        len -= (size_t)(nl + 1 - p);
        p = nl + 1;
    }
    return n;
}

/* Writes a span of whole-or-partial lines to the file, rotating first when the file would
 * pass rotate_size; a rotation cuts only at a newline. A failed write drops the span's lines
 * and counts them in *lost. Returns 0 or the first -errno. */
static int out_write(const char *p, size_t len, uint64_t *lost)
{
    int rc = 0;

    while (len > 0) {
        size_t n = len;
        int fd;

        if (lg.rotate_size > 0 && lg.file_size + len > lg.rotate_size) {
            uint64_t fits = lg.file_size < lg.rotate_size ? lg.rotate_size - lg.file_size : 0;
            const char *cut = fits > 0 ? memrchr(p, '\n', fits < len ? (size_t)fits : len) : NULL;

            if (cut != NULL) {
                n = (size_t)(cut + 1 - p); /* write what fits; the rest goes round again */
            } else if (lg.file_size > 0) {
                rotate(); /* not even one more line fits: start a new file */
                continue;
            } else {
                /* a fresh file and a line longer than rotate_size: that line alone */
                const char *nl = memchr(p, '\n', len);

                n = nl != NULL ? (size_t)(nl + 1 - p) : len;
            }
        }
        fd = atomic_load(&lg.fd);
        if (fd < 0) {
            fd = open_file(lg.path, false); /* a rotation could not reopen: try again */
            if (fd >= 0)
                atomic_store(&lg.fd, fd);
        }
        if (fd < 0) {
            rc = rc != 0 ? rc : fd;
            *lost += count_lines(p, len);
            return rc;
        }
        {
            int w = coho__sys_write_all(fd, p, n);

            if (w < 0) {
                rc = rc != 0 ? rc : w;
                *lost += count_lines(p, n);
                if (!lg.write_error_reported) {
                    static const char msg[] = "coho log: write to the log file failed; lines "
                                              "are counted as dropped\n";
                    lg.write_error_reported = true;
                    (void)coho__sys_write_all(STDERR_FILENO, msg, sizeof(msg) - 1);
                }
            } else {
                lg.file_size += n;
            }
        }
        p += n;
        len -= n;
    }
    return rc;
}

/* Writes "N lines dropped" as a warn line of thread `tid`. Returns false if it could not be
 * written (the caller keeps the count for the next drain). */
static bool report_dropped(pid_t tid, uint64_t n)
{
    uint64_t lost = 0;
    char line[256];
    time_t sec = (time_t)-1;
    char stamp[STAMP_LEN + 1];
    size_t len = format_prefix(line, &sec, stamp, COHO_LOG_WARN, __FILE__, __LINE__, tid, 0, false);

    len += (size_t)snprintf(line + len, sizeof(line) - len,
                            "coho log: %llu lines dropped (thread buffer full or write failed)\n",
                            (unsigned long long)n);
    return out_write(line, len, &lost) == 0;
}

/* Drains one buffer under reg_mu. Returns 0 or -errno of a failed write. */
static int drain_one(tbuf_t *tb)
{
    uint64_t head, tail, lost = 0, dropped;
    size_t at, n, first;
    int rc = 0;
    bool expect = false;

    if (!atomic_compare_exchange_strong(&tb->claim, &expect, true))
        return 0; /* only the crash flush competes, and the process is going down */
    atomic_store_explicit(&tb->wake_sent, false, memory_order_relaxed);
    head = atomic_load_explicit(&tb->head, memory_order_acquire);
    tail = atomic_load_explicit(&tb->tail, memory_order_relaxed);
    if (head != tail) {
        n = (size_t)(head - tail);
        at = (size_t)tail & (tb->cap - 1);
        first = tb->cap - at < n ? tb->cap - at : n;
        rc = out_write(tb->data + at, first, &lost);
        if (first < n) {
            int rc2 = out_write(tb->data, n - first, &lost);

            rc = rc != 0 ? rc : rc2;
        }
        atomic_store_explicit(&tb->tail, head, memory_order_release);
    }
    dropped = atomic_exchange(&tb->dropped, 0);
    if (dropped > 0 && !report_dropped(tb->tid, dropped))
        atomic_fetch_add(&tb->dropped, dropped); /* report it with a later drain */
    if (lost > 0) {
        /* lines that could not be written: counted now, reported by a later drain */
        atomic_fetch_add(&tb->dropped, lost);
        atomic_fetch_add(&lg.dropped_total, lost);
    }
    if (atomic_load(&tb->state) == TB_ORPHAN && atomic_load(&tb->head) == head &&
        atomic_load(&tb->dropped) == 0) {
        int orphan = TB_ORPHAN;

        atomic_compare_exchange_strong(&tb->state, &orphan, TB_FREE);
    }
    atomic_store_explicit(&tb->claim, false, memory_order_release);
    return rc;
}

/* True if some buffer holds lines or an unreported drop count. */
static bool buffers_pending(void)
{
    tbuf_t *tb;

    if (atomic_load(&lg.dropped_unowned) > 0)
        return true;
    for (tb = atomic_load(&lg.list); tb != NULL; tb = atomic_load(&tb->next)) {
        if (atomic_load(&tb->head) != atomic_load(&tb->tail) || atomic_load(&tb->dropped) > 0)
            return true;
    }
    return false;
}

static int drain_all(void)
{
    int rc = 0;
    uint64_t unowned = atomic_exchange(&lg.dropped_unowned, 0);
    tbuf_t *tb;

    for (tb = atomic_load(&lg.list); tb != NULL; tb = atomic_load(&tb->next)) {
        int r = drain_one(tb);

        rc = rc != 0 ? rc : r;
    }
    if (unowned > 0 && !report_dropped(0, unowned))
        atomic_fetch_add(&lg.dropped_unowned, unowned);
    return rc;
}

static void wake_space_waiters(void)
{
    pthread_mutex_lock(&lg.wake_mu);
    if (lg.space_waiters > 0)
        pthread_cond_broadcast(&lg.space_cond);
    pthread_mutex_unlock(&lg.wake_mu);
}

/* ---- the writer thread -------------------------------------------------------------------- */

/* Drains every flush_interval_ms while there are lines; once a drain finds nothing, it
 * sleeps without a timeout (no idle wake-ups) until a producer wakes it. */
static void *writer_main(void *arg)
{
    bool idle = false;

    (void)arg;
    pthread_mutex_lock(&lg.wake_mu);
    while (!lg.writer_stop) {
        if (!lg.wake_pending && idle) {
            bool pending;

            /* idle first, then look: a producer that appends after the look sees idle and
             * wakes us (see coho_log_vwrite) */
            atomic_store(&lg.writer_idle, true);
            pthread_mutex_unlock(&lg.wake_mu);
            pending = buffers_pending();
            pthread_mutex_lock(&lg.wake_mu);
            if (!pending && !lg.wake_pending && !lg.writer_stop)
                pthread_cond_wait(&lg.wake_cond, &lg.wake_mu);
            atomic_store(&lg.writer_idle, false);
        } else if (!lg.wake_pending) {
            struct timespec deadline;

            coho__mono_deadline(&deadline, lg.flush_interval_ms);
            pthread_cond_timedwait(&lg.wake_cond, &lg.wake_mu, &deadline);
        }
        lg.wake_pending = false;
        pthread_mutex_unlock(&lg.wake_mu);

        pthread_mutex_lock(&lg.reg_mu);
        idle = !buffers_pending();
        (void)drain_all();
        pthread_mutex_unlock(&lg.reg_mu);

        pthread_mutex_lock(&lg.wake_mu);
        if (lg.space_waiters > 0)
            pthread_cond_broadcast(&lg.space_cond);
    }
    pthread_mutex_unlock(&lg.wake_mu);
    return NULL;
}

/* Starts the writer once per open. It is created with every signal blocked (the mask is set
 * in the creating thread around pthread_create, so there is no window in which the new thread
 * could take a signal meant for the application). */
static void writer_start(void)
{
    sigset_t all, old;

    pthread_mutex_lock(&lg.wake_mu);
    if (!atomic_load(&lg.writer_started) && !lg.writer_stop && atomic_load(&lg.state) == LOG_OPEN) {
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&lg.writer, NULL, writer_main, NULL) == 0) {
            pthread_setname_np(lg.writer, "coho-log");
            atomic_store_explicit(&lg.writer_started, true, memory_order_release);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_mutex_unlock(&lg.wake_mu);
}

static void writer_stop_and_join(void)
{
    bool started;

    pthread_mutex_lock(&lg.wake_mu);
    lg.writer_stop = true;
    pthread_cond_signal(&lg.wake_cond);
    started = atomic_load(&lg.writer_started);
    pthread_mutex_unlock(&lg.wake_mu);
    if (started)
        pthread_join(lg.writer, NULL);
    pthread_mutex_lock(&lg.wake_mu);
    atomic_store(&lg.writer_started, false);
    atomic_store(&lg.writer_idle, false);
    lg.writer_stop = false;
    lg.wake_pending = false;
    pthread_mutex_unlock(&lg.wake_mu);
}

/* ---- fork --------------------------------------------------------------------------------- */

/* The child must not find a lock held by a thread that does not exist in it, so fork waits
 * for open/close and for a drain in progress. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&lg.ctl_mu);
    pthread_mutex_lock(&lg.reg_mu);
    pthread_mutex_lock(&lg.wake_mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&lg.wake_mu);
    pthread_mutex_unlock(&lg.reg_mu);
    pthread_mutex_unlock(&lg.ctl_mu);
}

/* In the child only the forking thread exists, and the writer does not. Buffered lines belong
 * to the parent (its writer writes them), so every buffer is emptied, other threads' buffers
 * become free, and the writer starts again with the child's next line. The file descriptor is
 * shared with the parent (O_APPEND keeps each drain's write whole). */
static void fork_child(void)
{
    pthread_condattr_t ca;
    tbuf_t *tb;

    for (tb = atomic_load(&lg.list); tb != NULL; tb = atomic_load(&tb->next)) {
        atomic_store(&tb->tail, atomic_load(&tb->head));
        atomic_store(&tb->busy, false);
        atomic_store(&tb->claim, false);
        atomic_store(&tb->wake_sent, false);
        atomic_store(&tb->dropped, 0);
        if (tb != my_tb)
            atomic_store(&tb->state, TB_FREE);
    }
    if (my_tb != NULL)
        my_tb->tid = thread_id();
    atomic_store(&lg.writer_started, false);
    atomic_store(&lg.writer_idle, false);
    lg.writer_stop = false;
    lg.wake_pending = false;
    lg.space_waiters = 0;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lg.wake_cond, &ca);
    pthread_cond_init(&lg.space_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store(&lg.crash_flushing, false);
    pthread_mutex_unlock(&lg.wake_mu);
    pthread_mutex_unlock(&lg.reg_mu);
    pthread_mutex_unlock(&lg.ctl_mu);
}

/* ---- public control ----------------------------------------------------------------------- */

void coho_log_opts_init(coho_log_opts_t *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof(*o));
    o->rotate_size = 64ull * 1024 * 1024;
    o->files_kept = 5;
    o->level = COHO_LOG_INFO;
    o->thread_buffer_size = 256u * 1024u;
    o->flush_interval_ms = 50;
    o->full_wait_ms = 100;
}

/* Writes "coho_log_open: <what>[ '<path>'][: <strerror>]" to stderr, sets errno, returns -1. */
static int open_fail(int err, const char *what, const char *path)
{
    char msg[PATH_MAX + 160];
    int n = snprintf(msg, sizeof(msg), "coho_log_open: %s%s%s%s%s%s\n", what,
                     path != NULL ? " '" : "", path != NULL ? path : "", path != NULL ? "'" : "",
                     path != NULL ? ": " : "", path != NULL ? strerror(err) : "");

    if (n > 0)
        stderr_line(msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    errno = err;
    return -1;
}

/* exit() writes what is buffered: a program that returns from main without coho_log_close
 * loses nothing. It flushes but does not close, since other threads may still log while the
 * process exits. (_exit and a fatal signal skip this; the signal handlers flush instead.) */
static void log_atexit(void)
{
    if (atomic_load(&lg.state) != LOG_OPEN)
        return;
    pthread_mutex_lock(&lg.reg_mu);
    (void)drain_all();
    pthread_mutex_unlock(&lg.reg_mu);
}

static void log_atexit_install(void)
{
    atexit(log_atexit);
}

int coho_log_open(const coho_log_opts_t *o)
{
    static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;
    struct stat st;
    int fd;

    if (o == NULL)
        return open_fail(EINVAL, "options are NULL", NULL);
    if (o->path == NULL || o->path[0] == '\0')
        return open_fail(EINVAL, "path is NULL or empty", NULL);
    if (strlen(o->path) >= PATH_MAX - 16)
        return open_fail(ENAMETOOLONG, "path is too long:", o->path);
    if (o->level < COHO_LOG_TRACE || o->level > COHO_LOG_FATAL)
        return open_fail(EINVAL, "level is not COHO_LOG_TRACE..COHO_LOG_FATAL", NULL);
    if (o->files_kept > FILES_KEPT_MAX)
        return open_fail(EINVAL, "files_kept is above 1000", NULL);
    if (o->thread_buffer_size < TBUF_MIN_SIZE || o->thread_buffer_size > (size_t)1 << 30)
        return open_fail(EINVAL, "thread_buffer_size is not 16 KiB..1 GiB", NULL);

    coho__sys_init();
    pthread_once(&once, log_once_init);
    pthread_mutex_lock(&lg.ctl_mu);
    if (atomic_load(&lg.state) == LOG_OPEN) {
        pthread_mutex_unlock(&lg.ctl_mu);
        return open_fail(EBUSY, "a log file is already open", NULL);
    }
    fd = open_file(o->path, false);
    if (fd < 0) {
        pthread_mutex_unlock(&lg.ctl_mu);
        return open_fail(-fd, "cannot open", o->path);
    }
    pthread_mutex_lock(&lg.reg_mu);
    snprintf(lg.path, sizeof(lg.path), "%s", o->path);
    if (fstat(fd, &st) != 0)
        memset(&st, 0, sizeof(st));
    /* only a regular file rotates: renaming /dev/null or a FIFO would be a disaster */
    lg.rotate_size = S_ISREG(st.st_mode) ? o->rotate_size : 0;
    lg.files_kept = o->files_kept;
    lg.file_size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    lg.flush_interval_ms = o->flush_interval_ms > 0 ? o->flush_interval_ms : 1;
    atomic_store(&lg.full_wait_ms, o->full_wait_ms);
    lg.write_error_reported = false;
    atomic_store(&lg.tbuf_size, o->thread_buffer_size);
    atomic_store(&coho__log_level, o->level);
    atomic_store(&lg.fd, fd);
    pthread_mutex_unlock(&lg.reg_mu);
    {
        /* the crash path's clock: the UTC offset, before any line was formatted */
        time_t now = time(NULL);
        struct tm tm;

        if (localtime_r(&now, &tm) != NULL)
            atomic_store_explicit(&lg.utc_offset_s, tm.tm_gmtoff, memory_order_relaxed);
    }
    coho__log_crash_install();
    pthread_once(&atexit_once, log_atexit_install);
    atomic_store(&lg.state, LOG_OPEN);
    pthread_mutex_unlock(&lg.ctl_mu);
    return 0;
}

int coho_log_close(void)
{
    tbuf_t *tb;
    int fd;

    pthread_mutex_lock(&lg.ctl_mu);
    if (atomic_load(&lg.state) != LOG_OPEN) {
        pthread_mutex_unlock(&lg.ctl_mu);
        errno = EBADF;
        return -1;
    }
    atomic_store(&lg.state, LOG_CLOSED);
    /* appends that saw the logger open finish into their buffers (a wait for room ends as
     * soon as it sees the logger closed) */
    for (tb = atomic_load(&lg.list); tb != NULL; tb = atomic_load(&tb->next)) {
        while (atomic_load(&tb->busy))
            sched_yield();
    }
    writer_stop_and_join();
    pthread_mutex_lock(&lg.reg_mu);
    (void)drain_all();
    fd = atomic_exchange(&lg.fd, -1);
    if (fd >= 0)
        coho__sys_base.close(fd);
    pthread_mutex_unlock(&lg.reg_mu);
    wake_space_waiters();
    pthread_mutex_unlock(&lg.ctl_mu);
    return 0;
}

bool coho_log_is_open(void)
{
    return atomic_load(&lg.state) == LOG_OPEN;
}

int coho_log_set_level(int level)
{
    if (level < COHO_LOG_TRACE || level > COHO_LOG_FATAL) {
        errno = EINVAL;
        return -1;
    }
    atomic_store(&coho__log_level, level);
    return 0;
}

int coho_log_get_level(void)
{
    return atomic_load(&coho__log_level);
}

int coho_log_flush(void)
{
    int rc;

    if (atomic_load(&lg.state) != LOG_OPEN) {
        errno = EBADF;
        return -1;
    }
    pthread_mutex_lock(&lg.reg_mu);
    rc = drain_all();
    pthread_mutex_unlock(&lg.reg_mu);
    wake_space_waiters();
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return 0;
}

uint64_t coho_log_dropped_count(void)
{
    return atomic_load(&lg.dropped_total);
}

/* ---- internal ----------------------------------------------------------------------------- */

void coho__log_set_id_provider(uint64_t (*current_coid)(void))
{
    atomic_store_explicit(&lg.coid_fn, current_coid, memory_order_release);
}

size_t coho__log_buffer_count(void)
{
    return atomic_load(&lg.tbuf_count);
}

/* Async-signal-safe: atomics, nanosleep and the real write only. A buffer whose claim the
 * writer holds is waited for briefly (the writer is in write(2) and finishes); past the wait
 * it is written anyway, since a line written twice beats a line lost in a crash. */
void coho__log_crash_flush(void)
{
    int fd = atomic_load(&lg.fd);
    int spins = 100;
    tbuf_t *tb;

    if (atomic_exchange(&lg.crash_flushing, true))
        return;
    if (fd < 0)
        fd = STDERR_FILENO;
    for (tb = atomic_load(&lg.list); tb != NULL; tb = atomic_load(&tb->next)) {
        bool expect = false, claimed;
        uint64_t head, tail;
        size_t at, n, first;

        while (!(claimed = atomic_compare_exchange_strong(&tb->claim, &expect, true)) &&
               spins > 0) {
            struct timespec ms = {0, 1000000};

            expect = false;
            coho__sys_base.nanosleep(&ms, NULL);
            spins--;
        }
        head = atomic_load(&tb->head);
        tail = atomic_load(&tb->tail);
        if (head != tail) {
            n = (size_t)(head - tail);
            at = (size_t)tail & (tb->cap - 1);
            first = tb->cap - at < n ? tb->cap - at : n;
            (void)coho__sys_write_all(fd, tb->data + at, first);
            if (first < n)
                (void)coho__sys_write_all(fd, tb->data, n - first);
            atomic_store(&tb->tail, head);
        }
        if (claimed)
            atomic_store(&tb->claim, false);
    }
}

/* Async-signal-safe like the flush it starts with: the prefix is formatted by hand (no
 * localtime_r, no stdio) and the line goes to the file with the real write. O_APPEND keeps it
 * whole against a writer thread that is still draining. */
bool coho__log_crash_write(int level, const char *file, int line, const char *msg)
{
    uint64_t (*coid_fn)(void) = atomic_load_explicit(&lg.coid_fn, memory_order_acquire);
    char out[COHO_LOG_LINE_MAX];
    char stamp[STAMP_LEN + 1];
    time_t sec = (time_t)-1;
    size_t len, n;
    int fd;

    coho__log_crash_flush();
    fd = atomic_load(&lg.fd);
    if (fd < 0)
        return false;
    if (level < COHO_LOG_TRACE || level > COHO_LOG_FATAL)
        level = COHO_LOG_FATAL;
    len = format_prefix(out, &sec, stamp, level, file, line, thread_id(),
                        coid_fn != NULL ? coid_fn() : 0, true);
    n = strnlen(msg, COHO_LOG_LINE_MAX - len - 1);
    memcpy(out + len, msg, n);
    len += n;
    out[len++] = '\n';
    return coho__sys_write_all(fd, out, len) == 0;
}
