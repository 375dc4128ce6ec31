#!/usr/bin/env bash
# integration/backends.sh: install, start and stop the REAL discovery backends (etcd, ZooKeeper,
# a DNS server) on loopback for Switchboard's integration tests (DESIGN.md, test tier 3), and the
# Consul stand-in: Consul has no server package here, so `consul` is integration/consul_standin.py,
# a stdlib-only Python program serving Consul's documented HTTP API subset (see its --help).
#
# Usage:
#   integration/backends.sh install        apt-installs what is missing (etcd-server etcd-client
#                                          zookeeper dnsmasq-base bind9-dnsutils curl python3);
#                                          nothing here is needed to build Switchboard; quiet; a no-op when all is
#                                          there; uses sudo only when not root. apt output:
#                                          target/backends/logs/.
#   integration/backends.sh start [B...]   starts the backends B (etcd zk dns consul; default:
#                                          all) with a fresh temp data dir each, waits until each
#                                          one answers (bounded, $SWITCHBOARD_BACKENDS_TIMEOUT s,
#                                          default 30),
#                                          records PIDs in target/backends/. A backend that already
#                                          runs healthy is kept (its data too); a dead or unhealthy
#                                          one is cleaned up and started again.
#   integration/backends.sh restart [B...] stop, then start: fresh, empty servers.
#   integration/backends.sh stop [B...]    SIGTERM by recorded PID (SIGKILL after 15 s), removes
#                                          the temp data dirs. Logs stay in target/backends/logs/.
#   integration/backends.sh status         one line per backend; exit 1 unless all run healthy.
#   integration/backends.sh env            `export` lines for the running backends, for
#                                          eval "$(integration/backends.sh env)"
#   integration/backends.sh versions       versions of the installed servers and tools.
#   integration/backends.sh etcdctl ARGS   etcdctl (v3 API) against the test etcd.
#   integration/backends.sh zkcli [ARGS]   zkCli.sh against the test ZooKeeper (no ARGS: commands
#                                          are read from stdin; end them with `quit`).
#   integration/backends.sh dns-srv ...    change SRV records (see below).
#   integration/backends.sh dns-host ...   change A/AAAA records (see below).
#
# Ports (fixed, loopback only, override with the variable in brackets):
#   etcd       127.0.0.1:23790 client + metrics, 127.0.0.1:23800 peer  [SWITCHBOARD_ETCD_PORT,
#                                                                        SWITCHBOARD_ETCD_PEER_PORT]
#   ZooKeeper  127.0.0.1:21810 (admin server off, no JMX)             [SWITCHBOARD_ZK_PORT]
#   DNS        127.0.0.1:25353 UDP and TCP (dnsmasq)                  [SWITCHBOARD_DNS_PORT]
#   Consul     127.0.0.1:28500 HTTP (consul_standin.py)               [SWITCHBOARD_CONSUL_PORT]
#              agent datacenter dc1, also knows dc2                  [SWITCHBOARD_CONSUL_DC,
#                                                                     SWITCHBOARD_CONSUL_EXTRA_DCS]
#
# Environment printed by `env` (only for backends that are running):
#   SWITCHBOARD_ETCD=127.0.0.1:23790   SWITCHBOARD_ZK=127.0.0.1:21810   SWITCHBOARD_DNS=127.0.0.1:25353
#   SWITCHBOARD_CONSUL=127.0.0.1:28500
#   SWITCHBOARD_DNS_ZONE=test.switchboard (a name under it with no record answers NXDOMAIN; a
#   name outside it with no record answers REFUSED: nothing is forwarded off the machine)
#   SWITCHBOARD_BACKENDS=<absolute path of this script>, so a test can call the helpers below.
#
# Changing records from a test:
#   etcd: `backends.sh etcdctl put /svc/web/127.0.0.1:8080 '{...}'`, `... del KEY`, leases with
#         `etcdctl lease grant/revoke`; or the v3 JSON gateway http://$SWITCHBOARD_ETCD/v3/kv/put
#         (base64 keys); or the test's own etcd client.
#   ZooKeeper: `backends.sh zkcli create /path data`, `zkcli delete /path`, `zkcli deleteall /path`
#         (each call starts a JVM, ~0.5 s; "Created /path" is printed on stderr, `ls` output on stdout);
#         for ephemeral nodes that must go away at once, pipe `create -e ...\nquit\n` into
#         `backends.sh zkcli`; or the test's own ZooKeeper client.
#   DNS SRV (dnsmasq cannot reload SRV records, so each change restarts it on the same port; a
#         change takes about 0.1 s, during which queries may be refused or time out; the command
#         returns once the new server answers on UDP and TCP):
#     backends.sh dns-srv set NAME PRIO WEIGHT PORT TARGET [PRIO WEIGHT PORT TARGET]...
#                                 replace all SRV records of NAME (no records: same as clear NAME)
#     backends.sh dns-srv add NAME PRIO WEIGHT PORT TARGET   add one (replaces same NAME+PORT+TARGET)
#     backends.sh dns-srv del NAME PORT TARGET               remove one
#     backends.sh dns-srv clear [NAME]                       remove NAME's records, or all
#     backends.sh dns-srv list                               NAME PRIO WEIGHT PORT TARGET lines
#     TARGET is a host name, or an IPv4/IPv6 address: then the record points at the generated name
#     ip-127-0-0-1.<zone> (ip6-...-- for IPv6), which answers A/AAAA with that address.
#     Example: backends.sh dns-srv set _web._tcp.test.switchboard 10 5 8081 127.0.0.1
#   DNS A/AAAA (no restart: file re-read on SIGHUP; returns once the server answers the new set):
#     backends.sh dns-host set NAME IP [IP...] | dns-host clear [NAME] | dns-host list
#   Record TTL is 1 s. Changes persist until `stop`/`restart`; all changes are serialized by a lock.
#   The zone also holds TXT _switchboard-ready.<zone>, which the script uses as its readiness probe.
#   Consul: Consul's own HTTP API on $SWITCHBOARD_CONSUL, e.g.
#     curl -X PUT http://$SWITCHBOARD_CONSUL/v1/agent/service/register \
#          -d '{"Name":"web","ID":"web1","Port":8080,"Check":{"TTL":"10m","Status":"passing"}}'
#     curl -X PUT http://$SWITCHBOARD_CONSUL/v1/agent/check/fail/service:web1
#     curl -X PUT http://$SWITCHBOARD_CONSUL/v1/catalog/register -d '{"Datacenter":"dc2",
#          "Node":"n1","Address":"127.0.0.2","Service":{"Service":"web","Port":8080}}'
#     curl -X PUT http://$SWITCHBOARD_CONSUL/v1/agent/service/deregister/web1
#   plus its test-only control API (not Consul): PUT /_standin/fault, GET /_standin/stats,
#   GET /_standin/requests, PUT /_standin/reset (`python3 integration/consul_standin.py --help`).
#
# State: target/backends/ under the repository (or $SWITCHBOARD_BACKENDS_DIR): NAME.pid, NAME.dir
# (the temp data dir), NAME.addr, logs/NAME.log. Run `stop` before `cargo clean`.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
ROOT=$(dirname "$SCRIPT_DIR")
STATE_DIR="${SWITCHBOARD_BACKENDS_DIR:-$ROOT/target/backends}"
LOG_DIR="$STATE_DIR/logs"

HOST=127.0.0.1
ETCD_PORT="${SWITCHBOARD_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${SWITCHBOARD_ETCD_PEER_PORT:-23800}"
ZK_PORT="${SWITCHBOARD_ZK_PORT:-21810}"
DNS_PORT="${SWITCHBOARD_DNS_PORT:-25353}"
DNS_ZONE="${SWITCHBOARD_DNS_ZONE:-test.switchboard}"
CONSUL_PORT="${SWITCHBOARD_CONSUL_PORT:-28500}"
CONSUL_DC="${SWITCHBOARD_CONSUL_DC:-dc1}"
CONSUL_EXTRA_DCS="${SWITCHBOARD_CONSUL_EXTRA_DCS-dc2}"
TIMEOUT="${SWITCHBOARD_BACKENDS_TIMEOUT:-30}"
ALL_BACKENDS="etcd zk dns consul"

ZK_JAR=/usr/share/java/zookeeper.jar
ZK_SLF4J_JAR=/usr/share/java/slf4j-simple.jar
ZKCLI=/usr/share/zookeeper/bin/zkCli.sh
CONSUL_STANDIN="$SCRIPT_DIR/consul_standin.py"

log() { printf 'backends: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now_ms() { date +%s%3N; }

# A program from PATH or from the sbin directories (dnsmasq lives in /usr/sbin).
find_bin() {
  local p
  p=$(command -v "$1" 2>/dev/null) && { printf '%s\n' "$p"; return 0; }
  for p in /usr/sbin/"$1" /sbin/"$1"; do [ -x "$p" ] && { printf '%s\n' "$p"; return 0; }; done
  return 1
}
need_bin() { find_bin "$1" || die "$1 not found: run '$0 install' first"; }

# ---------------------------------------------------------------- install

cmd_install() {
  local pkgs=()
  find_bin etcd >/dev/null || pkgs+=(etcd-server)
  find_bin etcdctl >/dev/null || pkgs+=(etcd-client)
  { [ -f "$ZK_JAR" ] && [ -x "$ZKCLI" ]; } || pkgs+=(zookeeper)
  find_bin java >/dev/null || pkgs+=(default-jre-headless)
  find_bin dnsmasq >/dev/null || pkgs+=(dnsmasq-base)
  find_bin dig >/dev/null || pkgs+=(bind9-dnsutils)
  find_bin curl >/dev/null || pkgs+=(curl)
  # tests/per_host.rs makes hosts of network namespaces with `ip`.
  find_bin ip >/dev/null || pkgs+=(iproute2)
  find_bin ss >/dev/null || pkgs+=(iproute2)
  find_bin flock >/dev/null || pkgs+=(util-linux)
  # tests/differential.rs sends the same odd requests through nginx and Switchboard.
  find_bin nginx >/dev/null || pkgs+=(nginx-light)
  find_bin python3 >/dev/null || pkgs+=(python3)
  if [ ${#pkgs[@]} -eq 0 ]; then
    log "install: everything is already installed"
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
      sudo=(sudo)
    else
      die "install: need root or sudo to install: ${pkgs[*]}"
    fi
  fi
  mkdir -p "$LOG_DIR"
  local ilog="$LOG_DIR/install.log" t0 i
  t0=$(now_ms)
  log "install: ${pkgs[*]}"
  : >"$ilog"
  for i in 1 2 3; do
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$ilog" 2>&1 && break
    [ "$i" -eq 3 ] && { tail -n 20 "$ilog" >&2; die "install: apt-get update failed (log: $ilog)"; }
    sleep 5
  done
  # No package may start a service (nginx's would listen on every address, port 80): a
  # policy-rc.d that refuses, for the install only, unless the machine has its own.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
  fi
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      -o DPkg::Lock::Timeout=600 --no-install-recommends "${pkgs[@]}" >>"$ilog" 2>&1; then
    [ -n "$policy" ] && "${sudo[@]}" rm -f "$policy"
    tail -n 20 "$ilog" >&2
    die "install: apt-get install failed (log: $ilog)"
  fi
  [ -n "$policy" ] && "${sudo[@]}" rm -f "$policy"
  log "install: done in $(( $(now_ms) - t0 )) ms"
}

# ---------------------------------------------------------------- process bookkeeping

state_get() { cat "$STATE_DIR/$1.$2" 2>/dev/null || true; }

# True if PID exists and is not a zombie.
pid_running() {
  local st
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
  [ "$st" != Z ]
}

# True if the recorded PID of backend $1 runs and is the process we started (its command line
# names our temp dir), so a reused PID is never signalled.
is_ours() {
  local pid dir
  pid=$(state_get "$1" pid); dir=$(state_get "$1" dir)
  [ -n "$pid" ] && [ -n "$dir" ] && pid_running "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir"
}

# Start a detached server (own session, stdin closed, output to its log, lock fd not inherited).
spawn() {
  local name=$1 dir=$2; shift 2
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 9>&- &
  echo "$!" >"$STATE_DIR/$name.pid"
  echo "$dir" >"$STATE_DIR/$name.dir"
}

port_busy() { # tcp|udp PORT
  local flag=t; [ "$1" = udp ] && flag=u
  [ -n "$(ss -Hl$flag -n "sport = :$2" 2>/dev/null)" ]
}
check_port_free() {
  if port_busy "$1" "$2"; then
    ss -Hl"$( [ "$1" = udp ] && echo u || echo t )"np "sport = :$2" >&2 || true
    die "$3: $1 port $2 is already in use by a process this script did not start"
  fi
}

kill_pid() { # PID: SIGTERM, wait up to 15 s, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 750); do pid_running "$pid" || return 0; sleep 0.02; done
  log "pid $pid did not stop after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do pid_running "$pid" || return 0; sleep 0.1; done
}

stop_one() {
  local name=$1 pid dir
  pid=$(state_get "$name" pid); dir=$(state_get "$name" dir)
  if is_ours "$name"; then
    kill_pid "$pid"
    log "$name: stopped (pid $pid)"
  fi
  case "$dir" in
    */switchboard-"$name".*) [ -d "$dir" ] && rm -rf -- "$dir" ;;
  esac
  rm -f "$STATE_DIR/$name.pid" "$STATE_DIR/$name.dir" "$STATE_DIR/$name.addr"
}

# Waits until "$@" succeeds; fails early if the server process died, late after $TIMEOUT s.
wait_ready() {
  local name=$1; shift
  local pid deadline
  pid=$(state_get "$name" pid)
  deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
  until "$@"; do
    if ! pid_running "$pid"; then
      tail -n 30 "$LOG_DIR/$name.log" >&2 || true
      log "$name: the server exited during start (log: $LOG_DIR/$name.log)"
      return 1
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then
      tail -n 30 "$LOG_DIR/$name.log" >&2 || true
      log "$name: not ready after ${TIMEOUT}s (log: $LOG_DIR/$name.log)"
      return 1
    fi
    sleep 0.05
  done
}

listening() { # PID: its listening sockets, e.g. "tcp:127.0.0.1:23790"
  ss -Hltunp 2>/dev/null | awk -v p="pid=$1," 'index($0, p) { print $1 ":" $5 }' | sort -u | tr '\n' ' '
}

# ---------------------------------------------------------------- etcd

etcd_healthy() { curl -sf --max-time 1 "http://$1/health" 2>/dev/null | grep -q '"health":"true"'; }

start_etcd() {
  local bin d
  bin=$(need_bin etcd)
  check_port_free tcp "$ETCD_PORT" etcd
  check_port_free tcp "$ETCD_PEER_PORT" etcd
  d=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-etcd.XXXXXX")
  : >"$LOG_DIR/etcd.log"
  # Metrics are served on the client port (no --listen-metrics-urls): no third port.
  spawn etcd "$d" "$bin" --name switchboard --data-dir "$d/data" --logger=zap \
    --listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
    --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster "switchboard=http://$HOST:$ETCD_PEER_PORT" --initial-cluster-state new
  echo "$HOST:$ETCD_PORT" >"$STATE_DIR/etcd.addr"
}
ready_etcd() { etcd_healthy "$(state_get etcd addr)"; }

# ---------------------------------------------------------------- ZooKeeper

# Sends a four-letter word over bash's /dev/tcp (no nc here) and prints the answer.
zk4() { # HOST:PORT WORD
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/${0%:*}/${0##*:}" && printf %s "$1" >&3 && cat <&3' \
    "$1" "$2" 2>/dev/null || true
}
# `ruok` answers before the server serves requests; `srvr` says Mode: only once it does.
zk_healthy() { zk4 "$1" srvr | grep -q '^Mode: standalone'; }

start_zk() {
  local java d cp
  java=$(need_bin java)
  [ -f "$ZK_JAR" ] || die "$ZK_JAR not found: run '$0 install' first"
  check_port_free tcp "$ZK_PORT" zk
  d=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-zk.XXXXXX")
  mkdir -p "$d/data"
  cat >"$d/zoo.cfg" <<EOF
tickTime=500
dataDir=$d/data
clientPort=$ZK_PORT
clientPortAddress=$HOST
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,cons,dump,wchs,conf,envi
minSessionTimeout=1000
maxSessionTimeout=60000
EOF
  cp=$ZK_JAR
  [ -f "$ZK_SLF4J_JAR" ] && cp="$cp:$ZK_SLF4J_JAR"
  : >"$LOG_DIR/zk.log"
  spawn zk "$d" "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Djava.net.preferIPv4Stack=true -Dzookeeper.admin.enableServer=false -cp "$cp" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$d/zoo.cfg"
  echo "$HOST:$ZK_PORT" >"$STATE_DIR/zk.addr"
}
ready_zk() { zk_healthy "$(state_get zk addr)"; }

# ---------------------------------------------------------------- DNS (dnsmasq)
#
# The temp dir holds: srv.txt (the SRV records, "NAME PRIO WEIGHT PORT TARGET" lines, the source
# of truth), srv.conf (srv-host/host-record lines generated from it), hosts (addn-hosts file for
# dns-host, re-read on SIGHUP), nonce (value of the TXT record _switchboard-ready.<zone>, new at
# every (re)start, so readiness means "the new server answers").

dig_q() { # dig arguments...; short answers
  local addr
  addr=$(state_get dns addr)
  dig +short +time=1 +tries=1 -p "${addr##*:}" "@${addr%:*}" "$@" 2>/dev/null
}

ready_dns() {
  local dir nonce
  dir=$(state_get dns dir); nonce=$(cat "$dir/nonce" 2>/dev/null) || return 1
  dig_q TXT "_switchboard-ready.$DNS_ZONE" | grep -qF "\"$nonce\"" &&
    dig_q +tcp TXT "_switchboard-ready.$DNS_ZONE" | grep -qF "\"$nonce\""
}

ip_name() { # IP -> generated host name, or nothing if the argument is not an IP
  case "$1" in
    *:*) printf 'ip6-%s.%s\n' "$(printf %s "$1" | tr ':' '-')" "$DNS_ZONE" ;;
    *[!0-9.]*|'') ;;
    *.*.*.*) printf 'ip-%s.%s\n' "$(printf %s "$1" | tr '.' '-')" "$DNS_ZONE" ;;
  esac
}

gen_srv_conf() { # DIR
  local d=$1 name prio weight port target tname
  {
    echo "# generated from srv.txt by backends.sh; do not edit"
    while read -r name prio weight port target; do
      [ -n "$name" ] || continue
      tname=$(ip_name "$target")
      if [ -n "$tname" ]; then
        echo "host-record=$tname,$target"
      else
        tname=$target
      fi
      echo "srv-host=$name,$tname,$port,$prio,$weight"
    done <"$d/srv.txt"
  } | awk '!seen[$0]++' >"$d/srv.conf.tmp"
  mv -f "$d/srv.conf.tmp" "$d/srv.conf"
}

write_dns_conf() { # DIR
  local d=$1 user=""
  [ "$(id -u)" -eq 0 ] && user="user=root"
  echo "$$-$RANDOM$RANDOM" >"$d/nonce"
  cat >"$d/dnsmasq.conf" <<EOF
port=$DNS_PORT
listen-address=$HOST
bind-interfaces
no-resolv
no-hosts
no-poll
local=/$DNS_ZONE/
domain-needed
$user
pid-file=$d/dnsmasq.pid
log-facility=-
log-queries
local-ttl=1
txt-record=_switchboard-ready.$DNS_ZONE,$(cat "$d/nonce")
addn-hosts=$d/hosts
conf-file=$d/srv.conf
EOF
}

spawn_dns() { # DIR
  local bin d=$1
  bin=$(need_bin dnsmasq)
  gen_srv_conf "$d"
  write_dns_conf "$d"
  spawn dns "$d" "$bin" --keep-in-foreground --conf-file="$d/dnsmasq.conf"
}

start_dns() {
  local d
  need_bin dig >/dev/null
  check_port_free udp "$DNS_PORT" dns
  check_port_free tcp "$DNS_PORT" dns
  d=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-dns.XXXXXX")
  : >"$d/srv.txt"; : >"$d/hosts"
  : >"$LOG_DIR/dns.log"
  echo "$HOST:$DNS_PORT" >"$STATE_DIR/dns.addr"
  spawn_dns "$d"
}

# Restart dnsmasq on the same port with the current srv.txt (SRV records cannot be reloaded).
respawn_dns() {
  local pid dir
  pid=$(state_get dns pid); dir=$(state_get dns dir)
  kill_pid "$pid"
  local i
  for i in $(seq 1 100); do
    port_busy udp "$DNS_PORT" || port_busy tcp "$DNS_PORT" || break
    sleep 0.02
  done
  spawn_dns "$dir"
  wait_ready dns ready_dns || die "dns: restart after a record change failed"
}

dns_dir_or_die() {
  is_ours dns || die "dns is not running: run '$0 start' first"
  state_get dns dir
}

check_u16() { # VALUE WHAT
  case "$1" in ''|*[!0-9]*) die "$2 must be a number 0-65535, got '$1'" ;; esac
  [ "$1" -le 65535 ] || die "$2 must be a number 0-65535, got '$1'"
}
check_name() { # VALUE WHAT
  case "$1" in ''|*[[:space:],/]*) die "bad $2 '$1'" ;; esac
}

cmd_dns_srv() {
  local sub=${1:-}; shift || true
  local d new name
  if [ "$sub" = list ]; then
    d=$(dns_dir_or_die); cat "$d/srv.txt"; return 0
  fi
  lock
  d=$(dns_dir_or_die)
  new="$d/srv.txt.new"
  case "$sub" in
    set)
      { [ $# -ge 1 ] && [ $(( ($# - 1) % 4 )) -eq 0 ]; } ||
        die "usage: dns-srv set NAME [PRIO WEIGHT PORT TARGET]..."
      name=$1; shift; check_name "$name" NAME
      awk -v n="$name" '$1 != n' "$d/srv.txt" >"$new"
      while [ $# -gt 0 ]; do
        check_u16 "$1" PRIO; check_u16 "$2" WEIGHT; check_u16 "$3" PORT; check_name "$4" TARGET
        echo "$name $1 $2 $3 $4" >>"$new"; shift 4
      done ;;
    add)
      [ $# -eq 5 ] || die "usage: dns-srv add NAME PRIO WEIGHT PORT TARGET"
      check_name "$1" NAME; check_u16 "$2" PRIO; check_u16 "$3" WEIGHT; check_u16 "$4" PORT
      check_name "$5" TARGET
      awk -v n="$1" -v p="$4" -v t="$5" '!($1 == n && $4 == p && $5 == t)' "$d/srv.txt" >"$new"
      echo "$1 $2 $3 $4 $5" >>"$new" ;;
    del)
      [ $# -eq 3 ] || die "usage: dns-srv del NAME PORT TARGET"
      awk -v n="$1" -v p="$2" -v t="$3" '!($1 == n && $4 == p && $5 == t)' "$d/srv.txt" >"$new" ;;
    clear)
      [ $# -le 1 ] || die "usage: dns-srv clear [NAME]"
      if [ $# -eq 1 ]; then awk -v n="$1" '$1 != n' "$d/srv.txt" >"$new"; else : >"$new"; fi ;;
    *) die "usage: dns-srv set|add|del|clear|list ..." ;;
  esac
  if cmp -s "$new" "$d/srv.txt"; then
    rm -f "$new"
    return 0
  fi
  mv -f "$new" "$d/srv.txt"
  respawn_dns
}

cmd_dns_host() {
  local sub=${1:-}; shift || true
  local d new name ip want
  if [ "$sub" = list ]; then
    d=$(dns_dir_or_die); cat "$d/hosts"; return 0
  fi
  lock
  d=$(dns_dir_or_die)
  new="$d/hosts.new"
  case "$sub" in
    set)
      [ $# -ge 2 ] || die "usage: dns-host set NAME IP [IP...]"
      name=$1; shift; check_name "$name" NAME
      awk -v n="$name" '$2 != n' "$d/hosts" >"$new"
      for ip in "$@"; do check_name "$ip" IP; echo "$ip $name" >>"$new"; done ;;
    clear)
      [ $# -le 1 ] || die "usage: dns-host clear [NAME]"
      name=${1:-}
      if [ -n "$name" ]; then awk -v n="$name" '$2 != n' "$d/hosts" >"$new"; else : >"$new"; fi ;;
    *) die "usage: dns-host set|clear|list ..." ;;
  esac
  mv -f "$new" "$d/hosts"
  kill -HUP "$(state_get dns pid)"
  # Wait until the server answers the new set (for a cleared NAME: nothing).
  [ -n "$name" ] || return 0
  want=$(awk -v n="$name" '$2 == n { print $1 }' "$d/hosts" | sort | tr '\n' ' ')
  local deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
  until [ "$( { dig_q A "$name"; dig_q AAAA "$name"; } | sort | tr '\n' ' ')" = "$want" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || die "dns-host: the server did not pick up the change"
    sleep 0.02
  done
}

# ---------------------------------------------------------------- Consul (the stand-in)
#
# integration/consul_standin.py: one Python process, state in memory; the temp dir holds only
# its ready file (the bound port), which also puts the dir on its command line for is_ours.

# The real interpreter behind python3 (not a pyenv shim), so the recorded PID is the server's.
python_bin() {
  local py
  py=$(need_bin python3)
  "$py" -c 'import sys; assert sys.version_info >= (3, 9); print(sys.executable)' 2>/dev/null ||
    die "consul: $py is not Python 3.9 or newer"
}

consul_healthy() {
  curl -sf --max-time 1 "http://$1/v1/agent/self" 2>/dev/null | grep -q '"Datacenter"'
}

start_consul() {
  local py d dc args=()
  py=$(python_bin)
  [ -f "$CONSUL_STANDIN" ] || die "consul: $CONSUL_STANDIN not found"
  check_port_free tcp "$CONSUL_PORT" consul
  d=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-consul.XXXXXX")
  for dc in $CONSUL_EXTRA_DCS; do args+=(--extra-dc "$dc"); done
  : >"$LOG_DIR/consul.log"
  spawn consul "$d" "$py" "$CONSUL_STANDIN" --port "$CONSUL_PORT" --dc "$CONSUL_DC" "${args[@]}" \
    --ready-file "$d/ready"
  echo "$HOST:$CONSUL_PORT" >"$STATE_DIR/consul.addr"
}
ready_consul() {
  local dir
  dir=$(state_get consul dir)
  [ -s "$dir/ready" ] && consul_healthy "$(state_get consul addr)"
}

# ---------------------------------------------------------------- commands

lock() {
  mkdir -p "$STATE_DIR" "$LOG_DIR"
  exec 9>>"$STATE_DIR/lock"
  flock -w 120 9 || die "another backends.sh holds $STATE_DIR/lock"
}

backends_args() { # validates names; prints them (default: all)
  local b
  # shellcheck disable=SC2086 # a word list
  [ $# -gt 0 ] || set -- $ALL_BACKENDS
  for b in "$@"; do
    case " $ALL_BACKENDS " in
      *" $b "*) echo "$b" ;;
      *) die "unknown backend '$b' ($ALL_BACKENDS)" ;;
    esac
  done
}

cmd_start() {
  local list b started=() failed=0 t0
  list=$(backends_args "$@")
  lock
  t0=$(now_ms)
  for b in $list; do
    if is_ours "$b" && "ready_$b"; then
      log "$b: already running (pid $(state_get "$b" pid)) on $(state_get "$b" addr)"
      continue
    fi
    stop_one "$b"   # stale PID file, dead or unhealthy server: clean up first
    "start_$b"
    started+=("$b")
  done
  for b in "${started[@]}"; do
    if wait_ready "$b" "ready_$b"; then
      log "$b: ready on $(state_get "$b" addr) (pid $(state_get "$b" pid), $(( $(now_ms) - t0 )) ms)"
    else
      failed=1
    fi
  done
  [ "$failed" -eq 0 ] || die "start failed; '$0 stop' cleans up"
}

cmd_stop() {
  local list b
  list=$(backends_args "$@")
  lock
  for b in $list; do stop_one "$b"; done
}

cmd_status() {
  local b pid rc=0 health
  for b in $ALL_BACKENDS; do
    if is_ours "$b"; then
      pid=$(state_get "$b" pid)
      if "ready_$b"; then health=healthy; else health=UNHEALTHY; rc=1; fi
      printf '%-6s running %s  pid %s  addr %s  listening: %s data %s\n' "$b" "$health" "$pid" \
        "$(state_get "$b" addr)" "$(listening "$pid")" "$(state_get "$b" dir)"
    else
      printf '%-6s stopped\n' "$b"; rc=1
    fi
  done
  return $rc
}

cmd_env() {
  local b var
  for b in $ALL_BACKENDS; do
    case $b in
      etcd) var=SWITCHBOARD_ETCD ;; zk) var=SWITCHBOARD_ZK ;; dns) var=SWITCHBOARD_DNS ;;
      consul) var=SWITCHBOARD_CONSUL ;;
    esac
    if is_ours "$b"; then
      printf 'export %s=%q\n' "$var" "$(state_get "$b" addr)"
    else
      log "$b is not running; $var not set"
    fi
  done
  printf 'export SWITCHBOARD_DNS_ZONE=%q\n' "$DNS_ZONE"
  printf 'export SWITCHBOARD_BACKENDS=%q\n' "$SCRIPT_PATH"
}

cmd_versions() {
  local b
  b=$(find_bin etcd) && echo "etcd: $("$b" --version 2>&1 | head -n 1)"
  b=$(find_bin etcdctl) && echo "etcdctl: $(ETCDCTL_API=3 "$b" version 2>&1 | head -n 1)"
  [ -f "$ZK_JAR" ] && echo "zookeeper: $(dpkg-query -W -f '${Version}' zookeeper 2>/dev/null)"
  b=$(find_bin java) && echo "java: $("$b" -version 2>&1 | head -n 1)"
  b=$(find_bin dnsmasq) && echo "dnsmasq: $("$b" --version 2>&1 | head -n 1)"
  b=$(find_bin dig) && echo "dig: $("$b" -v 2>&1 | head -n 1)"
  b=$(find_bin python3) && [ -f "$CONSUL_STANDIN" ] &&
    echo "consul: $("$b" "$CONSUL_STANDIN" --version 2>&1 | head -n 1)"
  return 0
}

cmd_etcdctl() {
  local bin
  bin=$(need_bin etcdctl)
  ETCDCTL_API=3 exec "$bin" --endpoints="$(state_get etcd addr | grep . || echo "$HOST:$ETCD_PORT")" "$@"
}

cmd_zkcli() {
  [ -x "$ZKCLI" ] || die "$ZKCLI not found: run '$0 install' first"
  exec "$ZKCLI" -server "$(state_get zk addr | grep . || echo "$HOST:$ZK_PORT")" "$@"
}

usage() { sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    install) cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_stop "$@"; cmd_start "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    versions) cmd_versions ;;
    etcdctl) cmd_etcdctl "$@" ;;
    zkcli) cmd_zkcli "$@" ;;
    dns-srv) cmd_dns_srv "$@" ;;
    dns-host) cmd_dns_host "$@" ;;
    -h|--help|help|'') usage ;;
    *) log "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
