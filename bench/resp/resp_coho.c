/* SPDX-License-Identifier: MIT */
/* A Redis-protocol (RESP2) server on coho in plain blocking style: an accept loop, and one
 * coroutine per connection that recv()s, parses every complete command in its buffer, runs
 * them and send()s all their replies at once. The libc calls are coho's hooks, so a call that
 * would block parks only its coroutine. Compared with redis-server by tools/bench-resp.sh.
 *
 * Usage: resp_coho [--listen HOST:PORT] [--threads N]
 *   --listen   address to listen on, default 127.0.0.1:6379; port 0 picks a free port. Once
 *              listening, prints "listening tcp HOST:PORT" on stdout.
 *   --threads  schedulers (threads), default 1; each accepts on its own SO_REUSEPORT socket and
 *              all share one keyspace under a mutex (never held across a blocking call).
 *
 * Commands: PING ECHO SET GET DEL EXISTS INCR INCRBY DECR MGET MSET LPUSH RPUSH LPOP RPOP
 * LRANGE LLEN SADD SPOP HSET HGET ZADD ZPOPMIN CONFIG-GET COMMAND SELECT FLUSHALL DBSIZE
 * QUIT. Keys given a TTL (SET EX/PX) expire lazily, when next looked up.
 *
 * Limits (a client passing one gets an error reply naming it, then the connection closes):
 * RESP_MAX_ARGS arguments per command, RESP_MAX_BULK bytes per argument, RESP_MAX_INLINE bytes
 * per inline command line. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <coho.h>

#include "base_struct/hashmap.h"

#define RESP_MAX_ARGS   (1024 * 1024)      /* arguments of one command (Redis: 1 Mi) */
#define RESP_MAX_BULK   (64 * 1024 * 1024) /* bytes of one argument */
#define RESP_MAX_INLINE (64 * 1024)        /* bytes of one inline command line (Redis: 64 KiB) */
#define RESP_IN_INITIAL 4096               /* first input buffer of a connection */
#define RESP_OUT_FLUSH  (64 * 1024)        /* replies queued beyond this are sent mid-batch */

/* ---- values -----------------------------------------------------------------------------------
 */

/* An immutable byte string (key, string value, list item, field or member). */
typedef struct bulk {
    size_t len;
    char data[];
} bulk_t;

static bulk_t *bulk_make(const char *p, size_t len)
{
    bulk_t *b = malloc(sizeof(*b) + len + 1);

    if (b != NULL) {
        b->len = len;
        memcpy(b->data, p, len);
        b->data[len] = '\0';
    }
    return b;
}

/* A dictionary of byte-string keys: base_struct's hash map from a 64-bit hash of the key to the
 * first of the entries with that hash (a chain; hashes rarely collide, so chains are short). */
typedef struct dent {
    struct dent *next; /* same hash */
    uint64_t hash;
    bulk_t *key;
    union {
        struct obj *obj; /* the keyspace */
        bulk_t *val;     /* a hash's field value */
        double score;    /* a sorted set's member score */
    } u;
} dent_t;

typedef struct dict {
    coho__hashmap_t map;
    size_t count;
} dict_t;

/* FNV-1a, then a final mix so that the hash map's low bits depend on every byte. */
static uint64_t hash_bytes(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static dent_t *dict_find(const dict_t *d, const char *key, size_t len)
{
    uint64_t h = hash_bytes(key, len);

    for (dent_t *e = coho__hashmap_get(&d->map, h); e != NULL; e = e->next)
        if (e->hash == h && e->key->len == len && memcmp(e->key->data, key, len) == 0)
            return e;
    return NULL;
}

/* The entry of `key`, added (value zeroed) when absent; *added says which. NULL: no memory. */
static dent_t *dict_add(dict_t *d, const char *key, size_t len, bool *added)
{
    dent_t *e = dict_find(d, key, len), *head;
    uint64_t h;

    *added = false;
    if (e != NULL)
        return e;
    h = hash_bytes(key, len);
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->key = bulk_make(key, len);
    head = coho__hashmap_get(&d->map, h);
    if (e->key == NULL || coho__hashmap_put(&d->map, h, e, NULL) < 0) {
        free(e->key);
        free(e);
        return NULL;
    }
    e->hash = h;
    e->next = head;
    d->count++;
    *added = true;
    return e;
}

/* Unlinks `e` (an entry of `d`) and frees it and its key; its value is the caller's. */
static void dict_unlink(dict_t *d, dent_t *e)
{
    dent_t *head = coho__hashmap_get(&d->map, e->hash);

    if (head == e) {
        if (e->next != NULL)
            coho__hashmap_put(&d->map, e->hash, e->next, NULL); /* replaces: no allocation */
        else
            coho__hashmap_del(&d->map, e->hash);
    } else {
        while (head->next != e)
            head = head->next;
        head->next = e->next;
    }
    d->count--;
    free(e->key);
    free(e);
}

/* Some entry of `d` (starting the table walk at a random slot), or NULL when it is empty. */
static dent_t *dict_any(const dict_t *d)
{
    size_t pos = d->map.mask != 0 ? (size_t)random() & d->map.mask : 0;
    void *v;

    if (d->count == 0)
        return NULL;
    if (coho__hashmap_next(&d->map, &pos, NULL, &v))
        return v;
    pos = 0;
    return coho__hashmap_next(&d->map, &pos, NULL, &v) ? v : NULL;
}

/* Frees every entry, calling free_val on each first (when not NULL); the map stays usable. */
static void dict_clear(dict_t *d, void (*free_val)(dent_t *))
{
    size_t pos = 0;
    void *v;

    while (coho__hashmap_next(&d->map, &pos, NULL, &v)) {
        for (dent_t *e = v, *next; e != NULL; e = next) {
            next = e->next;
            if (free_val != NULL)
                free_val(e);
            free(e->key);
            free(e);
        }
    }
    coho__hashmap_clear(&d->map);
    d->count = 0;
}

/* A list: a ring of items. */
typedef struct list {
    bulk_t **items;
    size_t head, count, cap;
} list_t;

static bulk_t **list_at(list_t *l, size_t i)
{
    return &l->items[(l->head + i) & (l->cap - 1)];
}

static int list_push(list_t *l, bulk_t *b, bool left)
{
    if (l->count == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 8;
        bulk_t **items = malloc(cap * sizeof(*items));

        if (items == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < l->count; i++)
            items[i] = *list_at(l, i);
        free(l->items);
        l->items = items;
        l->head = 0;
        l->cap = cap;
    }
    if (left) {
        l->head = (l->head + l->cap - 1) & (l->cap - 1);
        l->items[l->head] = b;
    } else {
        *list_at(l, l->count) = b;
    }
    l->count++;
    return 0;
}

static bulk_t *list_pop(list_t *l, bool left)
{
    bulk_t *b;

    if (l->count == 0)
        return NULL;
    if (left) {
        b = l->items[l->head];
        l->head = (l->head + 1) & (l->cap - 1);
    } else {
        b = *list_at(l, l->count - 1);
    }
    l->count--;
    return b;
}

enum obj_type { OBJ_STRING, OBJ_LIST, OBJ_SET, OBJ_HASH, OBJ_ZSET };

/* A value of the keyspace. */
typedef struct obj {
    enum obj_type type;
    int64_t expire_ms; /* CLOCK_MONOTONIC deadline, 0 = none */
    union {
        bulk_t *str;
        list_t list;
        dict_t dict; /* set (no values), hash (u.val), sorted set (u.score) */
    } v;
} obj_t;

static void free_field(dent_t *e)
{
    free(e->u.val);
}

static void obj_free(obj_t *o)
{
    switch (o->type) {
    case OBJ_STRING:
        free(o->v.str);
        break;
    case OBJ_LIST:
        while (o->v.list.count > 0)
            free(list_pop(&o->v.list, true));
        free(o->v.list.items);
        break;
    case OBJ_SET:
    case OBJ_ZSET:
        dict_clear(&o->v.dict, NULL);
        coho__hashmap_destroy(&o->v.dict.map);
        break;
    case OBJ_HASH:
        dict_clear(&o->v.dict, free_field);
        coho__hashmap_destroy(&o->v.dict.map);
        break;
    }
    free(o);
}

static void free_obj_entry(dent_t *e)
{
    obj_free(e->u.obj);
}

/* ---- the keyspace ------------------------------------------------------------------------------
 */

static dict_t db;
static pthread_mutex_t db_lock = PTHREAD_MUTEX_INITIALIZER;
static int nthreads = 1;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void db_delete(dent_t *e)
{
    obj_free(e->u.obj);
    dict_unlink(&db, e);
}

/* The live entry of `key`, or NULL; an expired one is deleted on the way. */
static dent_t *db_find(const char *key, size_t len)
{
    dent_t *e = dict_find(&db, key, len);

    if (e != NULL && e->u.obj->expire_ms != 0 && e->u.obj->expire_ms <= now_ms()) {
        db_delete(e);
        return NULL;
    }
    return e;
}

/* ---- replies -----------------------------------------------------------------------------------
 */

/* The replies of one batch, sent with one send. `failed`: an allocation failed, the batch is
 * incomplete and the connection must close. */
typedef struct obuf {
    char *p;
    size_t len, cap;
    bool failed;
} obuf_t;

static char *out_room(obuf_t *o, size_t n)
{
    if (o->len + n > o->cap) {
        size_t cap = o->cap != 0 ? o->cap : 4096;
        char *p;

        while (cap < o->len + n)
            cap *= 2;
        p = o->failed ? NULL : realloc(o->p, cap);
        if (p == NULL) {
            o->failed = true;
            return NULL;
        }
        o->p = p;
        o->cap = cap;
    }
    return o->p + o->len;
}

static void out_add(obuf_t *o, const char *s, size_t n)
{
    char *p = out_room(o, n);

    if (p != NULL) {
        memcpy(p, s, n);
        o->len += n;
    }
}

#define OUT_LIT(o, s) out_add((o), (s), sizeof(s) - 1)

/* ":N\r\n", "*N\r\n", "$N\r\n": a prefix character and a decimal number. */
static void out_num(obuf_t *o, char prefix, long long v)
{
    char buf[32], *e = buf + sizeof(buf), *p = e;
    unsigned long long u = v < 0 ? -(unsigned long long)v : (unsigned long long)v;

    *--p = '\n';
    *--p = '\r';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    *--p = prefix;
    out_add(o, p, (size_t)(e - p));
}

static void out_bulk(obuf_t *o, const char *s, size_t n)
{
    out_num(o, '$', (long long)n);
    out_add(o, s, n);
    OUT_LIT(o, "\r\n");
}

static void out_str(obuf_t *o, const bulk_t *b)
{
    out_bulk(o, b->data, b->len);
}

/* "-<text>\r\n"; control characters become spaces, so the reply stays one line. */
static void out_err(obuf_t *o, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + 1, sizeof(buf) - 3, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(buf) - 4)
        n = (int)sizeof(buf) - 4;
    buf[0] = '-';
    for (int i = 1; i <= n; i++)
        if ((unsigned char)buf[i] < ' ')
            buf[i] = ' ';
    memcpy(buf + 1 + n, "\r\n", 2);
    out_add(o, buf, (size_t)n + 3);
}

#define NIL       "$-1\r\n"
#define WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define NOT_INT   "ERR value is not an integer or out of range"

/* ---- the protocol ------------------------------------------------------------------------------
 */

typedef struct arg {
    const char *p; /* into the connection's input buffer, valid until the batch ends */
    size_t len;
} arg_t;

/* One connection. */
typedef struct conn {
    int fd;
    char *in;
    size_t in_len, in_cap;
    arg_t *argv;
    size_t argc, argv_cap;
    obuf_t out;
    bool closing; /* QUIT, a protocol error or no memory: close once the replies went */
    char err[64]; /* a protocol error's text, when it quotes the input */
} conn_t;

enum parse { PARSE_DONE, PARSE_MORE, PARSE_ERROR };

/* A decimal integer that is the whole of [p, p + n): digits with an optional '-', no spaces,
 * no leading '+', within long long. */
static bool parse_ll(const char *p, size_t n, long long *out)
{
    unsigned long long v = 0, limit;
    bool neg = n > 0 && p[0] == '-';
    size_t i = neg;

    if (n == i || n - i > 20)
        return false;
    limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        if (v > (limit - (unsigned)(p[i] - '0')) / 10)
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    *out = neg ? (long long)(0 - v) : (long long)v;
    return true;
}

static bool arg_ll(const arg_t *a, long long *out)
{
    return parse_ll(a->p, a->len, out);
}

/* A number strtod reads from the whole argument (no spaces), not NaN. */
static bool arg_double(const arg_t *a, double *out)
{
    char buf[64], *end;

    if (a->len == 0 || a->len >= sizeof(buf) || isspace((unsigned char)a->p[0]))
        return false;
    memcpy(buf, a->p, a->len);
    buf[a->len] = '\0';
    *out = strtod(buf, &end);
    return *end == '\0' && !isnan(*out);
}

static int argv_push(conn_t *c, const char *p, size_t len)
{
    if (c->argc == c->argv_cap) {
        size_t cap = c->argv_cap != 0 ? c->argv_cap * 2 : 16;
        arg_t *a = realloc(c->argv, cap * sizeof(*a));

        if (a == NULL)
            return -ENOMEM;
        c->argv = a;
        c->argv_cap = cap;
    }
    c->argv[c->argc].p = p;
    c->argv[c->argc].len = len;
    c->argc++;
    return 0;
}

/* The header line at p ("*3", "$5"): the number after its first character, *used the line's
 * bytes with its CRLF. PARSE_MORE while its end has not arrived; PARSE_ERROR for a line that
 * is not a number, or longer than any number of long long. */
static enum parse parse_header(const char *p, size_t n, long long *v, size_t *used)
{
    const char *nl = memchr(p, '\r', n < 32 ? n : 32);

    if (nl == NULL)
        return n < 32 ? PARSE_MORE : PARSE_ERROR;
    if ((size_t)(nl - p) + 1 >= n)
        return PARSE_MORE;
    if (nl[1] != '\n' || !parse_ll(p + 1, (size_t)(nl - p) - 1, v))
        return PARSE_ERROR;
    *used = (size_t)(nl - p) + 2;
    return PARSE_DONE;
}

/* Parses the command at [p, p + n) into c->argv: PARSE_DONE with *used bytes consumed (argc 0
 * for an empty command, which is skipped), PARSE_MORE, or PARSE_ERROR with *err the reason. */
static enum parse parse_multibulk(conn_t *c, const char *p, size_t n, size_t *used,
                                  const char **err)
{
    size_t off, hl;
    long long count, len;
    enum parse r = parse_header(p, n, &count, &off);

    if (r != PARSE_DONE) {
        *err = "invalid multibulk length";
        return r;
    }
    if (count > RESP_MAX_ARGS) {
        *err = "too many arguments (limit 1048576)";
        return PARSE_ERROR;
    }
    for (long long i = 0; i < count; i++) {
        if (off >= n)
            return PARSE_MORE;
        if (p[off] != '$') {
            snprintf(c->err, sizeof(c->err), "expected '$', got '%c'", p[off]);
            *err = c->err;
            return PARSE_ERROR;
        }
        r = parse_header(p + off, n - off, &len, &hl);
        if (r != PARSE_DONE || len < 0) {
            *err = "invalid bulk length";
            return r == PARSE_MORE ? r : PARSE_ERROR;
        }
        if (len > RESP_MAX_BULK) {
            *err = "bulk length above the limit of 67108864 bytes";
            return PARSE_ERROR;
        }
        off += hl;
        if (n - off < (size_t)len + 2)
            return PARSE_MORE;
        if (p[off + (size_t)len] != '\r' || p[off + (size_t)len + 1] != '\n') {
            *err = "bulk string not followed by CRLF";
            return PARSE_ERROR;
        }
        if (argv_push(c, p + off, (size_t)len) != 0) {
            *err = "out of memory";
            return PARSE_ERROR;
        }
        off += (size_t)len + 2;
    }
    *used = off;
    return PARSE_DONE;
}

/* An inline command: one line of space-separated words, as telnet and PING_INLINE send. */
static enum parse parse_inline(conn_t *c, const char *p, size_t n, size_t *used, const char **err)
{
    const char *nl = memchr(p, '\n', n < RESP_MAX_INLINE ? n : RESP_MAX_INLINE);
    const char *end;

    if (nl == NULL) {
        *err = "too big inline request";
        return n < RESP_MAX_INLINE ? PARSE_MORE : PARSE_ERROR;
    }
    end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    for (const char *s = p; s < end;) {
        const char *w;

        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        for (w = s; s < end && *s != ' ' && *s != '\t'; s++)
            ;
        if (s > w && argv_push(c, w, (size_t)(s - w)) != 0) {
            *err = "out of memory";
            return PARSE_ERROR;
        }
    }
    *used = (size_t)(nl - p) + 1;
    return PARSE_DONE;
}

static enum parse parse_command(conn_t *c, const char *p, size_t n, size_t *used, const char **err)
{
    c->argc = 0;
    return p[0] == '*' ? parse_multibulk(c, p, n, used, err) : parse_inline(c, p, n, used, err);
}

/* ---- commands ----------------------------------------------------------------------------------
 */

/* The entry of argv[1] if it holds `type` (NULL when absent); on another type, replies
 * WRONGTYPE and sets *bad. */
static dent_t *lookup_typed(conn_t *c, enum obj_type type, bool *bad)
{
    dent_t *e = db_find(c->argv[1].p, c->argv[1].len);

    *bad = e != NULL && e->u.obj->type != type;
    if (*bad)
        OUT_LIT(&c->out, "-" WRONGTYPE "\r\n");
    return *bad ? NULL : e;
}

/* The object of argv[1] with `type`, created empty when absent; NULL after an error reply. */
static obj_t *lookup_or_create(conn_t *c, enum obj_type type)
{
    bool bad, added;
    dent_t *e = lookup_typed(c, type, &bad);
    obj_t *o;

    if (bad)
        return NULL;
    if (e != NULL)
        return e->u.obj;
    o = calloc(1, sizeof(*o));
    if (o != NULL) {
        o->type = type;
        e = dict_add(&db, c->argv[1].p, c->argv[1].len, &added);
        if (e != NULL) {
            e->u.obj = o;
            return o;
        }
        free(o);
    }
    OUT_LIT(&c->out, "-OOM out of memory\r\n");
    return NULL;
}

/* Sets argv[1] to the string `val` (ownership taken), keeping no old TTL unless keep_ttl. */
static void set_string(conn_t *c, const arg_t *key, bulk_t *val, int64_t expire_ms, bool keep_ttl)
{
    bool added;
    dent_t *e = dict_add(&db, key->p, key->len, &added);
    obj_t *o = e != NULL ? (added ? calloc(1, sizeof(*o)) : e->u.obj) : NULL;

    if (o == NULL) {
        if (e != NULL)
            dict_unlink(&db, e);
        free(val);
        OUT_LIT(&c->out, "-OOM out of memory\r\n");
        return;
    }
    if (added) {
        e->u.obj = o;
    } else if (o->type == OBJ_STRING) {
        free(o->v.str);
    } else {
        obj_free(o);
        e->u.obj = o = calloc(1, sizeof(*o));
        if (o == NULL) {
            dict_unlink(&db, e);
            free(val);
            OUT_LIT(&c->out, "-OOM out of memory\r\n");
            return;
        }
        keep_ttl = false;
    }
    o->type = OBJ_STRING;
    o->v.str = val;
    if (!keep_ttl)
        o->expire_ms = expire_ms;
}

static void cmd_ping(conn_t *c)
{
    if (c->argc == 1)
        OUT_LIT(&c->out, "+PONG\r\n");
    else if (c->argc == 2)
        out_bulk(&c->out, c->argv[1].p, c->argv[1].len);
    else
        out_err(&c->out, "ERR wrong number of arguments for 'ping' command");
}

static void cmd_echo(conn_t *c)
{
    out_bulk(&c->out, c->argv[1].p, c->argv[1].len);
}

static bool arg_is(const arg_t *a, const char *word)
{
    return a->len == strlen(word) && strncasecmp(a->p, word, a->len) == 0;
}

/* SET key value [NX|XX] [EX seconds|PX milliseconds|KEEPTTL] [GET] */
static void cmd_set(conn_t *c)
{
    bool nx = false, xx = false, get = false, keep_ttl = false, has_ttl = false;
    int64_t expire_ms = 0;
    dent_t *e;
    bulk_t *val;

    for (size_t i = 3; i < c->argc; i++) {
        const arg_t *a = &c->argv[i];
        bool ex = arg_is(a, "ex"), px = arg_is(a, "px");

        if (arg_is(a, "nx") && !xx) {
            nx = true;
        } else if (arg_is(a, "xx") && !nx) {
            xx = true;
        } else if (arg_is(a, "get")) {
            get = true;
        } else if (arg_is(a, "keepttl") && !has_ttl) {
            keep_ttl = true;
        } else if ((ex || px) && !keep_ttl && !has_ttl && i + 1 < c->argc) {
            long long t;

            if (!arg_ll(&c->argv[++i], &t)) {
                out_err(&c->out, NOT_INT);
                return;
            }
            if (t <= 0 || (ex && t > LLONG_MAX / 1000) || (t > LLONG_MAX / 2)) {
                out_err(&c->out, "ERR invalid expire time in 'set' command");
                return;
            }
            has_ttl = true;
            expire_ms = now_ms() + (ex ? t * 1000 : t);
        } else {
            out_err(&c->out, "ERR syntax error");
            return;
        }
    }
    e = db_find(c->argv[1].p, c->argv[1].len);
    if (get && e != NULL && e->u.obj->type != OBJ_STRING) {
        out_err(&c->out, WRONGTYPE);
        return;
    }
    if ((nx && e != NULL) || (xx && e == NULL)) {
        if (get && e != NULL)
            out_str(&c->out, e->u.obj->v.str);
        else
            OUT_LIT(&c->out, NIL);
        return;
    }
    if (get) {
        if (e != NULL)
            out_str(&c->out, e->u.obj->v.str);
        else
            OUT_LIT(&c->out, NIL);
    }
    val = bulk_make(c->argv[2].p, c->argv[2].len);
    if (val == NULL) {
        OUT_LIT(&c->out, "-OOM out of memory\r\n");
        return;
    }
    set_string(c, &c->argv[1], val, expire_ms, keep_ttl);
    if (!get && !c->out.failed)
        OUT_LIT(&c->out, "+OK\r\n");
}

static void cmd_get(conn_t *c)
{
    bool bad;
    dent_t *e = lookup_typed(c, OBJ_STRING, &bad);

    if (e != NULL)
        out_str(&c->out, e->u.obj->v.str);
    else if (!bad)
        OUT_LIT(&c->out, NIL);
}

static void cmd_del(conn_t *c)
{
    long long n = 0;

    for (size_t i = 1; i < c->argc; i++) {
        dent_t *e = db_find(c->argv[i].p, c->argv[i].len);

        if (e != NULL) {
            db_delete(e);
            n++;
        }
    }
    out_num(&c->out, ':', n);
}

static void cmd_exists(conn_t *c)
{
    long long n = 0;

    for (size_t i = 1; i < c->argc; i++)
        n += db_find(c->argv[i].p, c->argv[i].len) != NULL;
    out_num(&c->out, ':', n);
}

static void incr_by(conn_t *c, long long by)
{
    bool bad;
    dent_t *e = lookup_typed(c, OBJ_STRING, &bad);
    long long v = 0;
    char buf[32];
    bulk_t *val;

    if (bad)
        return;
    if (e != NULL && !parse_ll(e->u.obj->v.str->data, e->u.obj->v.str->len, &v)) {
        out_err(&c->out, NOT_INT);
        return;
    }
    if ((by > 0 && v > LLONG_MAX - by) || (by < 0 && v < LLONG_MIN - by)) {
        out_err(&c->out, "ERR increment or decrement would overflow");
        return;
    }
    v += by;
    val = bulk_make(buf, (size_t)snprintf(buf, sizeof(buf), "%lld", v));
    if (val == NULL) {
        OUT_LIT(&c->out, "-OOM out of memory\r\n");
        return;
    }
    set_string(c, &c->argv[1], val, 0, true);
    out_num(&c->out, ':', v);
}

static void cmd_incr(conn_t *c)
{
    incr_by(c, 1);
}

static void cmd_decr(conn_t *c)
{
    incr_by(c, -1);
}

static void cmd_incrby(conn_t *c)
{
    long long by;

    if (!arg_ll(&c->argv[2], &by))
        out_err(&c->out, NOT_INT);
    else
        incr_by(c, by);
}

static void cmd_mget(conn_t *c)
{
    out_num(&c->out, '*', (long long)c->argc - 1);
    for (size_t i = 1; i < c->argc; i++) {
        dent_t *e = db_find(c->argv[i].p, c->argv[i].len);

        if (e != NULL && e->u.obj->type == OBJ_STRING)
            out_str(&c->out, e->u.obj->v.str);
        else
            OUT_LIT(&c->out, NIL);
    }
}

static void cmd_mset(conn_t *c)
{
    if (c->argc % 2 == 0) {
        out_err(&c->out, "ERR wrong number of arguments for 'mset' command");
        return;
    }
    for (size_t i = 1; i < c->argc; i += 2) {
        bulk_t *val = bulk_make(c->argv[i + 1].p, c->argv[i + 1].len);

        if (val == NULL) {
            OUT_LIT(&c->out, "-OOM out of memory\r\n");
            return;
        }
        set_string(c, &c->argv[i], val, 0, false);
    }
    OUT_LIT(&c->out, "+OK\r\n");
}

static void push(conn_t *c, bool left)
{
    obj_t *o = lookup_or_create(c, OBJ_LIST);

    if (o == NULL)
        return;
    for (size_t i = 2; i < c->argc; i++) {
        bulk_t *b = bulk_make(c->argv[i].p, c->argv[i].len);

        if (b == NULL || list_push(&o->v.list, b, left) != 0) {
            free(b);
            OUT_LIT(&c->out, "-OOM out of memory\r\n");
            return;
        }
    }
    out_num(&c->out, ':', (long long)o->v.list.count);
}

static void cmd_lpush(conn_t *c)
{
    push(c, true);
}

static void cmd_rpush(conn_t *c)
{
    push(c, false);
}

/* LPOP/RPOP key [count]; a list left empty is deleted, as in Redis. */
static void pop(conn_t *c, bool left)
{
    bool bad;
    dent_t *e;
    long long count = 1;
    list_t *l;

    if (c->argc == 3 && (!arg_ll(&c->argv[2], &count) || count < 0)) {
        out_err(&c->out, "ERR value is out of range, must be positive");
        return;
    }
    if (c->argc > 3) {
        out_err(&c->out, "ERR wrong number of arguments for '%s' command", left ? "lpop" : "rpop");
        return;
    }
    e = lookup_typed(c, OBJ_LIST, &bad);
    if (bad)
        return;
    if (e == NULL) {
        if (c->argc == 3)
            OUT_LIT(&c->out, "*-1\r\n");
        else
            OUT_LIT(&c->out, NIL);
        return;
    }
    l = &e->u.obj->v.list;
    if (c->argc == 3)
        out_num(&c->out, '*', count < (long long)l->count ? count : (long long)l->count);
    else
        count = 1;
    for (long long i = 0; i < count && l->count > 0; i++) {
        bulk_t *b = list_pop(l, left);

        out_str(&c->out, b);
        free(b);
    }
    if (l->count == 0)
        db_delete(e);
}

static void cmd_lpop(conn_t *c)
{
    pop(c, true);
}

static void cmd_rpop(conn_t *c)
{
    pop(c, false);
}

static void cmd_lrange(conn_t *c)
{
    bool bad;
    dent_t *e;
    long long start, stop, n;

    if (!arg_ll(&c->argv[2], &start) || !arg_ll(&c->argv[3], &stop)) {
        out_err(&c->out, NOT_INT);
        return;
    }
    e = lookup_typed(c, OBJ_LIST, &bad);
    if (bad)
        return;
    n = e != NULL ? (long long)e->u.obj->v.list.count : 0;
    if (start < 0)
        start = start + n < 0 ? 0 : start + n;
    if (stop < 0)
        stop += n;
    if (stop >= n)
        stop = n - 1;
    if (e == NULL || start > stop) {
        OUT_LIT(&c->out, "*0\r\n");
        return;
    }
    out_num(&c->out, '*', stop - start + 1);
    for (long long i = start; i <= stop; i++)
        out_str(&c->out, *list_at(&e->u.obj->v.list, (size_t)i));
}

static void cmd_llen(conn_t *c)
{
    bool bad;
    dent_t *e = lookup_typed(c, OBJ_LIST, &bad);

    if (!bad)
        out_num(&c->out, ':', e != NULL ? (long long)e->u.obj->v.list.count : 0);
}

static void cmd_sadd(conn_t *c)
{
    obj_t *o = lookup_or_create(c, OBJ_SET);
    long long n = 0;

    if (o == NULL)
        return;
    for (size_t i = 2; i < c->argc; i++) {
        bool added;

        if (dict_add(&o->v.dict, c->argv[i].p, c->argv[i].len, &added) == NULL) {
            OUT_LIT(&c->out, "-OOM out of memory\r\n");
            return;
        }
        n += added;
    }
    out_num(&c->out, ':', n);
}

/* SPOP key (one member, chosen by where a random walk of the table first finds one). */
static void cmd_spop(conn_t *c)
{
    bool bad;
    dent_t *e = lookup_typed(c, OBJ_SET, &bad), *m;

    if (bad)
        return;
    m = e != NULL ? dict_any(&e->u.obj->v.dict) : NULL;
    if (m == NULL) {
        OUT_LIT(&c->out, NIL);
        return;
    }
    out_str(&c->out, m->key);
    dict_unlink(&e->u.obj->v.dict, m);
    if (e->u.obj->v.dict.count == 0)
        db_delete(e);
}

static void cmd_hset(conn_t *c)
{
    obj_t *o;
    long long n = 0;

    if (c->argc % 2 != 0) {
        out_err(&c->out, "ERR wrong number of arguments for 'hset' command");
        return;
    }
    o = lookup_or_create(c, OBJ_HASH);
    if (o == NULL)
        return;
    for (size_t i = 2; i < c->argc; i += 2) {
        bool added;
        dent_t *f = dict_add(&o->v.dict, c->argv[i].p, c->argv[i].len, &added);
        bulk_t *val = f != NULL ? bulk_make(c->argv[i + 1].p, c->argv[i + 1].len) : NULL;

        if (val == NULL) {
            if (f != NULL && added)
                dict_unlink(&o->v.dict, f);
            OUT_LIT(&c->out, "-OOM out of memory\r\n");
            return;
        }
        free(f->u.val);
        f->u.val = val;
        n += added;
    }
    out_num(&c->out, ':', n);
}

static void cmd_hget(conn_t *c)
{
    bool bad;
    dent_t *e = lookup_typed(c, OBJ_HASH, &bad), *f;

    if (bad)
        return;
    f = e != NULL ? dict_find(&e->u.obj->v.dict, c->argv[2].p, c->argv[2].len) : NULL;
    if (f != NULL)
        out_str(&c->out, f->u.val);
    else
        OUT_LIT(&c->out, NIL);
}

/* ZADD key score member [score member ...] (no flags). */
static void cmd_zadd(conn_t *c)
{
    obj_t *o;
    long long n = 0;

    if (c->argc % 2 != 0) {
        out_err(&c->out, "ERR syntax error");
        return;
    }
    /* Every score is checked before anything changes, as Redis does. */
    for (size_t i = 2; i < c->argc; i += 2) {
        double d;

        if (!arg_double(&c->argv[i], &d)) {
            out_err(&c->out, "ERR value is not a valid float");
            return;
        }
    }
    o = lookup_or_create(c, OBJ_ZSET);
    if (o == NULL)
        return;
    for (size_t i = 2; i < c->argc; i += 2) {
        bool added;
        dent_t *m = dict_add(&o->v.dict, c->argv[i + 1].p, c->argv[i + 1].len, &added);

        if (m == NULL) {
            OUT_LIT(&c->out, "-OOM out of memory\r\n");
            return;
        }
        arg_double(&c->argv[i], &m->u.score); /* checked above */
        n += added;
    }
    out_num(&c->out, ':', n);
}

/* Sorted-set order: by score, then by member bytes. */
static bool zset_before(const dent_t *a, const dent_t *b)
{
    size_t n = a->key->len < b->key->len ? a->key->len : b->key->len;
    int cmp = memcmp(a->key->data, b->key->data, n);

    if (a->u.score != b->u.score)
        return a->u.score < b->u.score;
    return cmp < 0 || (cmp == 0 && a->key->len < b->key->len);
}

/* ZPOPMIN key [count]: the members of lowest score (then lowest member), with their scores.
 * O(N) per member popped: the set is a dictionary, not a skip list; fine for a showcase. */
static void cmd_zpopmin(conn_t *c)
{
    bool bad;
    dent_t *e;
    long long count = 1, n;

    if (c->argc > 3) {
        out_err(&c->out, "ERR syntax error");
        return;
    }
    if (c->argc == 3 && (!arg_ll(&c->argv[2], &count) || count < 0)) {
        out_err(&c->out, "ERR value is out of range, must be positive");
        return;
    }
    e = lookup_typed(c, OBJ_ZSET, &bad);
    if (bad)
        return;
    n = e != NULL ? (long long)e->u.obj->v.dict.count : 0;
    if (count > n)
        count = n;
    out_num(&c->out, '*', count * 2);
    for (long long i = 0; i < count; i++) {
        dict_t *d = &e->u.obj->v.dict;
        dent_t *min = NULL;
        size_t pos = 0;
        void *v;
        char buf[32];

        while (coho__hashmap_next(&d->map, &pos, NULL, &v)) {
            for (dent_t *m = v; m != NULL; m = m->next)
                if (min == NULL || zset_before(m, min))
                    min = m;
        }
        /* The shortest of %.15g and %.17g that reads back as the same double. */
        snprintf(buf, sizeof(buf), "%.15g", min->u.score);
        if (strtod(buf, NULL) != min->u.score)
            snprintf(buf, sizeof(buf), "%.17g", min->u.score);
        out_str(&c->out, min->key);
        out_bulk(&c->out, buf, strlen(buf));
        dict_unlink(d, min);
    }
    if (e != NULL && e->u.obj->v.dict.count == 0)
        db_delete(e);
}

/* CONFIG GET pattern...: the parameters redis-benchmark and redis-cli ask about. */
static void cmd_config(conn_t *c)
{
    static const char *const params[][2] = {{"save", ""}, {"appendonly", "no"}, {"databases", "1"}};
    size_t nmatch = 0;
    char pat[128];

    if (!arg_is(&c->argv[1], "get")) {
        out_err(&c->out, "ERR unknown subcommand '%.*s'. Try CONFIG HELP.",
                (int)(c->argv[1].len < 128 ? c->argv[1].len : 128), c->argv[1].p);
        return;
    }
    if (c->argc < 3) {
        out_err(&c->out, "ERR wrong number of arguments for 'config|get' command");
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            out_num(&c->out, '*', (long long)nmatch * 2);
        for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++) {
            for (size_t i = 2; i < c->argc; i++) {
                snprintf(pat, sizeof(pat), "%.*s", (int)c->argv[i].len, c->argv[i].p);
                if (fnmatch(pat, params[k][0], FNM_CASEFOLD) == 0) {
                    if (pass == 0) {
                        nmatch++;
                    } else {
                        out_bulk(&c->out, params[k][0], strlen(params[k][0]));
                        out_bulk(&c->out, params[k][1], strlen(params[k][1]));
                    }
                    break;
                }
            }
        }
    }
}

static void cmd_command(conn_t *c)
{
    OUT_LIT(&c->out, "*0\r\n");
}

static void cmd_select(conn_t *c)
{
    long long n;

    if (!arg_ll(&c->argv[1], &n))
        out_err(&c->out, NOT_INT);
    else if (n != 0)
        out_err(&c->out, "ERR DB index is out of range");
    else
        OUT_LIT(&c->out, "+OK\r\n");
}

static void cmd_flushall(conn_t *c)
{
    dict_clear(&db, free_obj_entry);
    OUT_LIT(&c->out, "+OK\r\n");
}

static void cmd_dbsize(conn_t *c)
{
    out_num(&c->out, ':', (long long)db.count);
}

static void cmd_quit(conn_t *c)
{
    OUT_LIT(&c->out, "+OK\r\n");
    c->closing = true;
}

/* name, arity as Redis counts it (the name included; negative: at least that many), handler */
static const struct command {
    const char *name;
    int arity;
    void (*run)(conn_t *c);
} commands[] = {
    {"ping", -1, cmd_ping},       {"echo", 2, cmd_echo},        {"set", -3, cmd_set},
    {"get", 2, cmd_get},          {"del", -2, cmd_del},         {"exists", -2, cmd_exists},
    {"incr", 2, cmd_incr},        {"incrby", 3, cmd_incrby},    {"decr", 2, cmd_decr},
    {"mget", -2, cmd_mget},       {"mset", -3, cmd_mset},       {"lpush", -3, cmd_lpush},
    {"rpush", -3, cmd_rpush},     {"lpop", -2, cmd_lpop},       {"rpop", -2, cmd_rpop},
    {"lrange", 4, cmd_lrange},    {"llen", 2, cmd_llen},        {"sadd", -3, cmd_sadd},
    {"spop", 2, cmd_spop},        {"hset", -4, cmd_hset},       {"hget", 3, cmd_hget},
    {"zadd", -4, cmd_zadd},       {"zpopmin", -2, cmd_zpopmin}, {"config", -2, cmd_config},
    {"command", -1, cmd_command}, {"select", 2, cmd_select},    {"flushall", -1, cmd_flushall},
    {"dbsize", 1, cmd_dbsize},    {"quit", -1, cmd_quit},
};

/* Lower-case command name -> command, filled before any connection. */
static coho__hashmap_t command_map;

static void command_map_init(void)
{
    if (coho__hashmap_init(&command_map, sizeof(commands) / sizeof(commands[0])) != 0) {
        fprintf(stderr, "resp_coho: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const char *n = commands[i].name;

        /* Two names with one hash would shadow each other: a bug to catch at start. */
        if (coho__hashmap_put(&command_map, hash_bytes(n, strlen(n)), (void *)&commands[i], NULL) !=
            0) {
            fprintf(stderr, "resp_coho: command table: '%s' collides or no memory\n", n);
            exit(1);
        }
    }
}

static const struct command *command_find(const arg_t *name)
{
    char low[16];
    const struct command *cmd;

    if (name->len >= sizeof(low))
        return NULL;
    for (size_t i = 0; i < name->len; i++)
        low[i] = (char)tolower((unsigned char)name->p[i]);
    cmd = coho__hashmap_get(&command_map, hash_bytes(low, name->len));
    return cmd != NULL && strlen(cmd->name) == name->len && memcmp(cmd->name, low, name->len) == 0
               ? cmd
               : NULL;
}

/* Runs the command in c->argv, appending its reply to c->out. */
static void execute(conn_t *c)
{
    const struct command *cmd = command_find(&c->argv[0]);

    if (cmd == NULL) {
        /* Redis's wording: the name and the start of the arguments, 128 bytes of each. */
        char args[160];
        size_t n = 0;

        args[0] = '\0';
        for (size_t i = 1; i < c->argc && n < 128; i++) {
            int w =
                snprintf(args + n, sizeof(args) - n, "'%.*s' ",
                         (int)(c->argv[i].len < 128 - n ? c->argv[i].len : 128 - n), c->argv[i].p);
            if (w < 0 || (size_t)w >= sizeof(args) - n)
                break;
            n += (size_t)w;
        }
        out_err(&c->out, "ERR unknown command '%.*s', with args beginning with: %s",
                (int)(c->argv[0].len < 128 ? c->argv[0].len : 128), c->argv[0].p, args);
        return;
    }
    if ((cmd->arity > 0 && c->argc != (size_t)cmd->arity) ||
        (cmd->arity < 0 && c->argc < (size_t)-cmd->arity)) {
        out_err(&c->out, "ERR wrong number of arguments for '%s' command", cmd->name);
        return;
    }
    cmd->run(c);
}

/* ---- connections -------------------------------------------------------------------------------
 */

static void db_enter(void)
{
    if (nthreads > 1)
        pthread_mutex_lock(&db_lock);
}

static void db_leave(void)
{
    if (nthreads > 1)
        pthread_mutex_unlock(&db_lock);
}

/* Sends the queued replies; a blocking send returns only once every byte went. */
static bool flush(conn_t *c)
{
    bool ok =
        c->out.len == 0 || send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL) == (ssize_t)c->out.len;

    c->out.len = 0;
    return ok;
}

/* Runs every complete command in the input buffer; returns the bytes consumed. */
static size_t run_batch(conn_t *c)
{
    size_t pos = 0;

    db_enter();
    while (pos < c->in_len && !c->closing) {
        const char *err = NULL;
        size_t used = 0;
        enum parse r = parse_command(c, c->in + pos, c->in_len - pos, &used, &err);

        if (r == PARSE_MORE)
            break;
        if (r == PARSE_ERROR) {
            out_err(&c->out, "ERR Protocol error: %s", err);
            c->closing = true;
            break;
        }
        pos += used;
        if (c->argc > 0)
            execute(c);
        if (c->out.failed) {
            c->closing = true;
        } else if (c->out.len >= RESP_OUT_FLUSH) {
            /* A send may park this coroutine: never while holding the keyspace. */
            db_leave();
            if (!flush(c))
                c->closing = true;
            db_enter();
        }
    }
    db_leave();
    return pos;
}

static void conn_main(void *arg)
{
    conn_t c = {.fd = (int)(intptr_t)arg};

    for (;;) {
        ssize_t r;
        size_t used;

        if (c.in_len == c.in_cap) {
            /* A command longer than the buffer: grow it (the parser bounds every part). */
            size_t cap = c.in_cap != 0 ? c.in_cap * 2 : RESP_IN_INITIAL;
            char *in = realloc(c.in, cap);

            if (in == NULL)
                break;
            c.in = in;
            c.in_cap = cap;
        }
        r = recv(c.fd, c.in + c.in_len, c.in_cap - c.in_len, 0);
        if (r <= 0)
            break;
        c.in_len += (size_t)r;
        used = run_batch(&c);
        if (!flush(&c) || c.closing)
            break;
        memmove(c.in, c.in + used, c.in_len - used);
        c.in_len -= used;
    }
    close(c.fd);
    free(c.in);
    free(c.argv);
    free(c.out.p);
}

/* ---- listening and threads ---------------------------------------------------------------------
 */

static char listen_host[256] = "127.0.0.1";
static char listen_port[16] = "6379";

/* A listening socket on listen_host:port; with reuse_port, others may bind the same port. */
static int listen_on(const char *port, bool reuse_port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int one = 1, fd, rc = getaddrinfo(listen_host, port, &hints, &ai);

    if (rc != 0) {
        fprintf(stderr, "resp_coho: %s:%s: %s\n", listen_host, port, gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        fprintf(stderr, "resp_coho: listen on %s:%s: %s\n", listen_host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void acceptor_main(void *arg)
{
    int lfd = (int)(intptr_t)arg, one = 1;
    coho_spawn_opts_t o;

    coho_spawn_opts_init(&o);
    o.detached = true;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* Out of descriptors or memory: wait for connections to close, then retry. */
            fprintf(stderr, "resp_coho: accept: %s\n", strerror(errno));
            coho_sleep_ms(100);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (coho_spawn_ex(coho_sched_current(), conn_main, (void *)(intptr_t)fd, &o) == 0) {
            fprintf(stderr, "resp_coho: spawn: %s\n", strerror(errno));
            close(fd);
        }
    }
}

/* One scheduler thread: runs the accept loop on `lfd` and the connections it spawns. */
static void *sched_thread(void *arg)
{
    coho_sched_opts_t opts;
    coho_sched_t *s;

    coho_sched_opts_init(&opts);
    /* Up to 1000 connections arrive at once: keep their stacks resident between runs. */
    opts.idle_stacks_max = 2048;
    s = coho_sched_create(&opts);
    if (s == NULL || coho_spawn(s, acceptor_main, arg) == 0 || coho_sched_run(s) != 0) {
        fprintf(stderr, "resp_coho: scheduler: %s\n", strerror(errno));
        exit(1);
    }
    coho_sched_destroy(s);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: resp_coho [--listen HOST:PORT] [--threads N]\n");
    exit(2);
}

static void parse_listen(const char *v)
{
    const char *colon = strrchr(v, ':');
    size_t hl;

    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= sizeof(listen_port))
        usage();
    hl = (size_t)(colon - v);
    if (hl >= 2 && v[0] == '[' && v[hl - 1] == ']') { /* [::1]:6379 */
        v++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(listen_host))
        usage();
    memcpy(listen_host, v, hl);
    listen_host[hl] = '\0';
    strcpy(listen_port, colon + 1);
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char port[16];
    int *lfds;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            parse_listen(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);

            if (*end != '\0' || n < 1 || n > 256)
                usage();
            nthreads = (int)n;
        } else {
            usage();
        }
    }
    if (coho__hashmap_init(&db.map, 0) != 0)
        return 1;
    command_map_init();
    lfds = calloc((size_t)nthreads, sizeof(*lfds));
    if (lfds == NULL)
        return 1;
    /* The first socket picks the port (when 0 is asked for); the others bind the same one. */
    lfds[0] = listen_on(listen_port, nthreads > 1);
    if (lfds[0] < 0 || getsockname(lfds[0], (struct sockaddr *)&ss, &sl) != 0)
        return 1;
    snprintf(port, sizeof(port), "%u",
             ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                            : ((struct sockaddr_in *)&ss)->sin_port));
    for (int t = 1; t < nthreads; t++) {
        lfds[t] = listen_on(port, true);
        if (lfds[t] < 0)
            return 1;
    }
    printf("listening tcp %s:%s\n", listen_host, port);
    fflush(stdout);
    for (int t = 1; t < nthreads; t++) {
        pthread_t th;

        if (pthread_create(&th, NULL, sched_thread, (void *)(intptr_t)lfds[t]) != 0) {
            fprintf(stderr, "resp_coho: pthread_create failed\n");
            return 1;
        }
        pthread_detach(th);
    }
    sched_thread((void *)(intptr_t)lfds[0]);
    return 0;
}
