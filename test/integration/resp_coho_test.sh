#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# resp_coho (bench/resp/) driven by Debian's redis-cli and redis-benchmark on the backend
# $COHO_BACKEND names: every command's reply, a pipelined burst in one write, malformed frames
# (error reply, connection closed, the server still serving others), the limits, and a short
# redis-benchmark run without errors. Fails on the first wrong reply, printing it.
# Usage: resp_coho_test.sh PATH/TO/resp_coho
set -u

bin=${1:?usage: resp_coho_test.sh PATH/TO/resp_coho}
for t in redis-cli redis-benchmark; do
    command -v "$t" >/dev/null || { echo "SKIP: $t missing (tools/deps.sh test)"; exit 77; }
done

work=$(mktemp -d)
srv_pid=""
cleanup() {
    [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    echo "--- server output:" >&2
    cat "$work/srv.out" "$work/srv.err" >&2
    exit 1
}

"$bin" --listen 127.0.0.1:0 >"$work/srv.out" 2>"$work/srv.err" &
srv_pid=$!
for _ in $(seq 100); do
    grep -q '^listening tcp 127.0.0.1:[0-9]' "$work/srv.out" && break
    kill -0 "$srv_pid" 2>/dev/null || fail "resp_coho exited at start"
    sleep 0.05
done
port=$(awk -F: '/^listening tcp/ { print $NF }' "$work/srv.out")
[ -n "$port" ] || fail "no 'listening tcp HOST:PORT' line"
echo "resp_coho (COHO_BACKEND=${COHO_BACKEND:-default}) on port $port"

checks=0
# expect WANT ARGS...: redis-cli ARGS (typed replies, --no-raw) must print exactly WANT.
expect() {
    local want=$1 got
    shift
    got=$(redis-cli --no-raw -p "$port" "$@" 2>&1)
    [ "$got" = "$want" ] || fail "redis-cli $*: got [$got], want [$want]"
    checks=$((checks + 1))
}

# raw BYTES: writes BYTES (printf format) on a new connection in one write and prints what the
# server sends until it closes the connection (or 3 s pass: then "<open>" is appended).
raw() {
    python3 - "$port" "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
s.settimeout(3)
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except socket.timeout:
    out += b"<open>"
except ConnectionResetError:
    out += b"<reset>"
sys.stdout.write(repr(out)[2:-1])
PY
}

# expect_raw BYTES WANT: raw BYTES must print WANT (Python's escaping: \r\n).
expect_raw() {
    local got
    got=$(raw "$1")
    [ "$got" = "$2" ] || fail "raw [${1:0:200}]: got [$got], want [$2]"
    checks=$((checks + 1))
}

# ---- each command --------------------------------------------------------------------------
expect PONG ping
expect '"hi there"' ping "hi there"
expect '"hello"' echo hello
expect OK set k v
expect '"v"' get k
expect '(nil)' get missing
expect OK set n 10
expect '(integer) 11' incr n
expect '(integer) 16' incrby n 5
expect '(integer) 15' decr n
expect '(integer) -5' incrby n -20
expect '(error) ERR value is not an integer or out of range' incr k
expect '(error) ERR value is not an integer or out of range' incrby n x
expect OK set big 9223372036854775807
expect '(error) ERR increment or decrement would overflow' incr big
expect '(integer) 1' incr fresh
# SET options: NX, XX, EX, PX, GET, and their errors.
expect '(nil)' set k other NX
expect '"v"' get k
expect OK set k v2 XX
expect '(nil)' set nokey v XX
expect '(nil)' get nokey
expect OK set nx1 a NX
expect '"v2"' set k v3 GET
expect OK set ttl x EX 100
expect OK set short x PX 1000
expect '"x"' get short
sleep 1.2
expect '(nil)' get short
expect '"x"' get ttl
expect '(error) ERR syntax error' set k v NX XX
expect '(error) ERR syntax error' set k v EX 10 PX 10
expect '(error) ERR syntax error' set k v EX
expect '(error) ERR syntax error' set k v BOGUS
expect '(error) ERR invalid expire time in '"'"'set'"'"' command' set k v EX 0
expect '(error) ERR value is not an integer or out of range' set k v PX abc
expect '(integer) 2' exists k n missing
expect '(integer) 2' del k n missing
expect '(integer) 0' exists k n
expect OK mset m1 a m2 b m3 c
expect $'1) "a"\n2) "b"\n3) (nil)\n4) "c"' mget m1 m2 nope m3
expect "(error) ERR wrong number of arguments for 'mset' command" mset m1 a m2
# Lists.
expect '(integer) 3' rpush l b c d
expect '(integer) 5' lpush l a z
expect $'1) "z"\n2) "a"\n3) "b"\n4) "c"\n5) "d"' lrange l 0 -1
expect $'1) "b"\n2) "c"' lrange l 2 3
expect $'1) "c"\n2) "d"' lrange l -2 100
expect '(empty array)' lrange l 4 2
expect '(integer) 5' llen l
expect '"z"' lpop l
expect '"d"' rpop l
expect $'1) "a"\n2) "b"' lpop l 2
expect '"c"' rpop l
expect '(nil)' lpop l
expect '(integer) 0' llen l
expect '(integer) 0' exists l
expect '(error) WRONGTYPE Operation against a key holding the wrong kind of value' lpush m1 x
# Sets, hashes, sorted sets.
expect '(integer) 2' sadd s x y x
expect '(integer) 0' sadd s y
expect '(integer) 1' sadd one only
expect '"only"' spop one
expect '(nil)' spop one
expect '(integer) 0' exists one
expect '(integer) 2' hset h f1 v1 f2 v2
expect '(integer) 0' hset h f1 v1b
expect '"v1b"' hget h f1
expect '(nil)' hget h nope
expect "(error) ERR wrong number of arguments for 'hset' command" hset h f1
expect '(integer) 2' zadd z 1 a 2.5 b
expect '(integer) 0' zadd z 3 a
expect '(error) ERR value is not a valid float' zadd z x a
expect '(integer) 2' zadd z2 0.1 m 0.1 l
expect $'1) "l"\n2) "0.1"\n3) "m"\n4) "0.1"' zpopmin z2 5
expect '(empty array)' zpopmin z2
expect $'1) "b"\n2) "2.5"' zpopmin z
expect '(error) WRONGTYPE Operation against a key holding the wrong kind of value' get h
expect '(error) WRONGTYPE Operation against a key holding the wrong kind of value' hget s f
# Server commands.
expect $'1) "save"\n2) ""' config get save
expect $'1) "appendonly"\n2) "no"' config get appendonly
expect '(empty array)' command docs
expect '(empty array)' command
expect OK select 0
expect "(error) ERR unknown command 'nosuch', with args beginning with: 'a' 'b c' " nosuch a "b c"
expect "(error) ERR unknown command 'nosuch', with args beginning with: " nosuch
expect "(error) ERR wrong number of arguments for 'get' command" get
expect "(error) ERR wrong number of arguments for 'get' command" get a b
expect "(error) ERR wrong number of arguments for 'echo' command" echo
expect '(integer) 10' dbsize
expect OK flushall
expect '(integer) 0' dbsize

# ---- inline commands, pipelining, QUIT -------------------------------------------------------
expect_raw 'PING\r\n  echo  one \r\n\r\nECHO one\ttwo\nQUIT\r\nPING\r\n' \
    "+PONG\\r\\n\$3\\r\\none\\r\\n-ERR wrong number of arguments for 'echo' command\\r\\n+OK\\r\\n"
burst=""
want=""
for i in $(seq 200); do
    burst+="*3\\r\\n\$3\\r\\nSET\\r\\n\$3\\r\\nk$(printf %02d $((i % 100)))\\r\\n\$${#i}\\r\\n$i\\r\\n"
    burst+="*2\\r\\n\$4\\r\\nINCR\\r\\n\$3\\r\\nk$(printf %02d $((i % 100)))\\r\\n"
    want+="+OK\\r\\n:$((i + 1))\\r\\n"
done
expect_raw "${burst}QUIT\\r\\n" "${want}+OK\\r\\n"
expect '(integer) 100' dbsize
expect '"201"' get k00

# ---- malformed frames: an error reply, then the connection closes ----------------------------
exec 5<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
expect_raw '*2\r\n$x\r\n' '-ERR Protocol error: invalid bulk length\r\n'
expect_raw '*1\r\n+PING\r\n' "-ERR Protocol error: expected '\$', got '+'\\r\\n"
expect_raw '*abc\r\n' '-ERR Protocol error: invalid multibulk length\r\n'
expect_raw '*1\r\n$4\r\nPINGxx' '-ERR Protocol error: bulk string not followed by CRLF\r\n'
expect_raw '*1\r\n$-5\r\n' '-ERR Protocol error: invalid bulk length\r\n'
expect_raw '*1\r\n$999999999\r\n' \
    '-ERR Protocol error: bulk length above the limit of 67108864 bytes\r\n'
expect_raw '*99999999\r\n' '-ERR Protocol error: too many arguments (limit 1048576)\r\n'
expect_raw '*1\r\n$1234567890123456789012345678901234567890\r\n' \
    '-ERR Protocol error: invalid bulk length\r\n'
# (exactly the limit: the server reads all of it, so its close is a FIN, not a reset that could
# overtake the reply)
long=$(head -c 65536 /dev/zero | tr '\0' a)
expect_raw "$long" '-ERR Protocol error: too big inline request\r\n'
# Commands before the bad frame in the same write are answered first.
expect_raw 'PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n' \
    '+PONG\r\n+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n'
# An incomplete frame is not an error: the connection waits for the rest.
expect_raw '*1\r\n$4\r\nPI' '<open>'
# The connection opened before all that is still served, as are new ones.
printf '*1\r\n$4\r\nPING\r\n' >&5
read -r -t 3 line <&5 || fail "the older connection got no reply"
[ "$line" = $'+PONG\r' ] || fail "the older connection got [$line]"
exec 5<&-
expect PONG ping
kill -0 "$srv_pid" 2>/dev/null || fail "resp_coho died"

# ---- redis-benchmark: no errors, and the keys it wrote are there -----------------------------
# (-q still redraws a progress line with CRs: one line per redraw)
redis-benchmark -p "$port" -t set,get -n 2000 -c 20 -q 2>&1 | tr '\r' '\n' >"$work/bench.out" ||
    fail "redis-benchmark failed: $(cat "$work/bench.out")"
grep -E '^(SET|GET): [0-9.]+ requests per second' "$work/bench.out"
grep -qi 'error' "$work/bench.out" && fail "redis-benchmark saw errors"
grep -qE '^SET: [0-9.]+ requests per second' "$work/bench.out" &&
    grep -qE '^GET: [0-9.]+ requests per second' "$work/bench.out" ||
    fail "redis-benchmark did not finish both tests"
# (SET writes a 3-byte value, random letters, to the one key it uses without -r)
got=$(redis-cli --raw -p "$port" get key:__rand_int__)
[ "${#got}" = 3 ] || fail "get key:__rand_int__ after redis-benchmark: [$got]"
kill -0 "$srv_pid" 2>/dev/null || fail "resp_coho died"

# ---- --threads 2: two schedulers, one keyspace -----------------------------------------------
kill "$srv_pid"
wait "$srv_pid" 2>/dev/null
"$bin" --listen 127.0.0.1:0 --threads 2 >"$work/srv.out" 2>"$work/srv.err" &
srv_pid=$!
port=""
for _ in $(seq 100); do
    port=$(awk -F: '/^listening tcp/ { print $NF }' "$work/srv.out")
    [ -n "$port" ] && break
    kill -0 "$srv_pid" 2>/dev/null || fail "resp_coho --threads 2 exited at start"
    sleep 0.05
done
redis-benchmark -p "$port" -t incr,lpush,lpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset \
    -n 1000 -c 20 -q 2>&1 | tr '\r' '\n' >"$work/bench.out"
grep -qi 'error' "$work/bench.out" && fail "redis-benchmark (--threads 2) saw errors"
[ "$(grep -cE 'requests per second' "$work/bench.out")" -ge 10 ] ||
    fail "redis-benchmark (--threads 2) did not finish: $(cat "$work/bench.out")"
# 1000 INCRs of one key from 20 connections spread over both threads: none lost.
expect '"1000"' get counter:__rand_int__
kill -0 "$srv_pid" 2>/dev/null || fail "resp_coho --threads 2 died"
echo "PASS: $checks checks"
