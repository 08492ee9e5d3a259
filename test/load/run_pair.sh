#!/usr/bin/env bash
# Runs the socket_ext load test: starts sock_svr on a free loopback port in WORKDIR, runs
# sock_client against it (which sends a quit request at the end), stops the server, prints both
# summaries and where the logs are (WORKDIR/log/; the previous run's are kept as *.log.prev), and
# checks the exit codes.
#
# Usage: run_pair.sh --svr PATH --client PATH --workdir DIR [--expect pass|fail] [FLAGS...]
#
#   --expect pass   (default) exit 0 when both programs succeed, 1 otherwise
#   --expect fail   exit 0 when the client reports lost or wrong responses (its exit code 2) and
#                   the server itself succeeds: the check for a server run with --faulty
#
# FLAGS go to the program they belong to (later ones win):
#   server:  --delay-ms D  --faulty MODE  --faulty-every N
#   client:  --conns M  --coroutines N  --duration-s S  --timeout-ms T  --seed X  --max-req-body B
#   both:    --max-body B  --log-level L  --log-sample N  --quiet
#   raw:     --svr-arg ARG  --client-arg ARG   (one argument, passed through unchanged)
set -uo pipefail

die() {
    echo "run_pair: $*" >&2
    exit 1
}

svr="" client="" workdir="" expect=pass
svr_args=() client_args=()
while [ $# -gt 0 ]; do
    flag=$1
    case "$flag" in
    --svr | --client | --workdir | --expect | --svr-arg | --client-arg | \
        --delay-ms | --faulty | --faulty-every | \
        --conns | --coroutines | --duration-s | --timeout-ms | --seed | --max-req-body | \
        --max-body | --log-level | --log-sample)
        [ $# -ge 2 ] || die "$flag needs a value"
        val=$2
        shift 2
        ;;
    --quiet)
        val=""
        shift
        ;;
    --*=*)
        set -- "${flag%%=*}" "${flag#*=}" "${@:2}"
        continue
        ;;
    *) die "unknown flag $flag (see the header of $0)" ;;
    esac
    case "$flag" in
    --svr) svr=$val ;;
    --client) client=$val ;;
    --workdir) workdir=$val ;;
    --expect) expect=$val ;;
    --svr-arg) svr_args+=("$val") ;;
    --client-arg) client_args+=("$val") ;;
    --delay-ms | --faulty | --faulty-every) svr_args+=("$flag" "$val") ;;
    --conns | --coroutines | --duration-s | --timeout-ms | --seed | --max-req-body)
        client_args+=("$flag" "$val")
        ;;
    --quiet)
        svr_args+=("$flag")
        client_args+=("$flag")
        ;;
    *)
        svr_args+=("$flag" "$val")
        client_args+=("$flag" "$val")
        ;;
    esac
done
[ -x "$svr" ] || die "sock_svr not found: '$svr' (build first)"
[ -x "$client" ] || die "sock_client not found: '$client' (build first)"
[ -n "$workdir" ] || die "--workdir is required"
case "$expect" in pass | fail) ;; *) die "--expect pass or fail" ;; esac

svr=$(cd "$(dirname "$svr")" && pwd)/$(basename "$svr")
client=$(cd "$(dirname "$client")" && pwd)/$(basename "$client")
mkdir -p "$workdir" || die "cannot create $workdir"
cd "$workdir" || die "cannot enter $workdir"
workdir=$(pwd)
rm -f sock_svr.port sock_svr.out
# Each run starts fresh logs (the programs append); the previous run's are kept as *.prev.
for f in log/sock_svr.log log/sock_client.log; do
    if [ -f "$f" ]; then mv -f "$f" "$f.prev"; fi
done

svr_pid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$svr_pid" ] && kill -0 "$svr_pid" 2>/dev/null; then
        kill -KILL "$svr_pid" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$svr" --port 0 --port-file sock_svr.port "${svr_args[@]}" >sock_svr.out 2>&1 &
svr_pid=$!

# The server writes its port once it listens.
for _ in $(seq 100); do
    [ -s sock_svr.port ] && break
    kill -0 "$svr_pid" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s sock_svr.port ]; then
    cat sock_svr.out >&2
    die "sock_svr did not start"
fi
port=$(cat sock_svr.port)
echo "run_pair: sock_svr (pid $svr_pid) listens on 127.0.0.1:$port; output in $workdir/sock_svr.out"

"$client" --port "$port" --quit "${client_args[@]}"
client_rc=$?

# The quit request stops the server; SIGTERM if it did not arrive, SIGKILL as a last resort.
svr_rc=""
for signal in NONE TERM KILL; do
    [ "$signal" = NONE ] || kill -"$signal" "$svr_pid" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "$svr_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$svr_pid" 2>/dev/null; then
        wait "$svr_pid"
        svr_rc=$?
        [ "$signal" = NONE ] || echo "run_pair: sock_svr needed SIG$signal to stop" >&2
        break
    fi
done
svr_pid=""
echo
sed -n '/^sock_svr summary/,$p' sock_svr.out
grep -v '^sock_svr[ :]' sock_svr.out | grep -v '^  ' >&2 # anything unexpected the server printed
echo
echo "run_pair: logs in $workdir/log/ (sock_svr.log, sock_client.log); grep 'seq=N' in both"
echo "run_pair: sock_client exit $client_rc, sock_svr exit ${svr_rc:-killed}"

if [ "$expect" = pass ]; then
    [ "$client_rc" = 0 ] && [ "$svr_rc" = 0 ] && exit 0
    echo "run_pair: FAILED" >&2
    exit 1
fi
if [ "$client_rc" = 2 ] && [ "$svr_rc" = 0 ]; then
    echo "run_pair: the client caught the faulty server, as it must"
    exit 0
fi
echo "run_pair: FAILED: expected sock_client exit 2 (faults noticed) and sock_svr exit 0" >&2
exit 1
