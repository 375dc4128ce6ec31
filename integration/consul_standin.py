#!/usr/bin/env python3
"""consul_standin.py: an in-memory stand-in for a Consul agent/server's HTTP API, for Switchboard's
io.l5d.consul namer tests. No real Consul server can be installed on the development machine
(see ../shared/reference/backends.md section 4); this program serves the documented API subset a
namer uses, with Consul's shapes, status codes, error texts and blocking-query semantics.

Standard library only (Python 3.9+, written for 3.11). Listens on 127.0.0.1 only.

    python3 integration/consul_standin.py [--port 28500] [--dc dc1] [--extra-dc dc2]...
        [--acl-token T] [--ready-file PATH] [--start-index 10] [--node-name standin-node]
        [--default-query-time 5m] [--max-query-time 10m] [--quiet]

--port 0 picks a free port; --ready-file PATH gets the bound port ("28500\\n", written atomically)
once the server accepts connections. SIGTERM/SIGINT stop it.

Consul API served (all under /v1, JSON minified unless ?pretty):
  GET  /v1/agent/self                     Config.Datacenter, Config.NodeName, Member, Coord, Meta...
  GET  /v1/agent/services | /v1/agent/checks   services/checks registered through this agent
  PUT  /v1/agent/service/register         agent service definition (Name, ID, Tags, Address, Port,
                                          Meta, Weights, TaggedAddresses, EnableTagOverride, Check,
                                          Checks; ?replace-existing-checks); node = the agent node
  PUT  /v1/agent/service/deregister/<id>
  PUT  /v1/agent/service/maintenance/<id>?enable=true|false&reason=...
  PUT  /v1/agent/maintenance?enable=true|false&reason=...     (node maintenance)
  PUT  /v1/agent/check/register | /v1/agent/check/deregister/<id>
  PUT  /v1/agent/check/pass|warn|fail/<id>?note=...   (TTL checks only, as in Consul)
  PUT  /v1/agent/check/update/<id>        {"Status": "...", "Output": "..."}
  PUT  /v1/catalog/register               {Datacenter, ID, Node, Address, TaggedAddresses, NodeMeta,
                                          Service{ID,Service,Tags,Address,Port,Meta,Weights,...},
                                          Check|Checks [{CheckID,Name,Status,ServiceID,...}],
                                          SkipNodeUpdate}  -> true
  PUT  /v1/catalog/deregister             {Datacenter, Node[, ServiceID | CheckID]}  -> true
  GET  /v1/catalog/datacenters, /v1/status/leader, /v1/status/peers
  GET  /v1/catalog/nodes                  blocking
  GET  /v1/catalog/services               blocking; {"consul":[],"web":["prod"]}
  GET  /v1/catalog/service/<name>         blocking; flat entries (ServiceAddress "" = use Address)
  GET  /v1/health/service/<name>          blocking; [{Node,Service,Checks}], ?passing
  GET  /v1/health/checks/<name>           blocking
Read parameters: dc, tag (repeatable, AND, case-insensitive), node-meta (k:v, repeatable), passing,
filter (a subset of Consul's filter language: == != in/not in contains matches is [not] empty,
and/or/not, parentheses), index, wait (Go duration; default --default-query-time, capped at
--max-query-time, plus up to wait/16 jitter), stale, consistent, leader, cached, max_stale, near
(ignored), pretty, token. Response headers: X-Consul-Index, X-Consul-KnownLeader,
X-Consul-LastContact, X-Consul-Effective-Consistency, X-Consul-Default-ACL-Policy.
Errors (text/plain, Consul's texts): 400 "Invalid wait time", "Invalid index", "Cannot specify
?stale with ?consistent, conflicting semantics.", "Invalid max_stale value"; 500 "No path to
datacenter" (unknown dc); 403 "Permission denied" (no token) / "ACL not found" (wrong token), only
with --acl-token; 404 "404 page not found" (unknown path); 405 for a wrong method.

State: datacenters --dc plus every --extra-dc, each with its own catalog and a server node
(<node-name> in --dc, <node-name>-<dc> in the others; address 127.0.0.1, a passing serfHealth
check, the "consul" service on port 8300). One global raft-like index starts at --start-index and
is bumped by every change; each read returns the index of its own resource (the service's index,
the services table's, ...), exactly as Consul does, so a blocking query on web does not wake for
changes to api. Idempotent writes change nothing. Agent TTL checks turn critical ("TTL expired")
when their TTL passes without an update, as in Consul.

------------------------------------------------------------------------------------------------
Control API, NOT part of Consul, under /_standin/ (no ACL token needed):
  PUT /_standin/fault   {"mode": M, "count": N, "path": P, "blocking_only": B, "index": I}
        M = "index_backwards"  answer with a lower X-Consul-Index (I if given, else max(1, R-1),
                               R = the request's ?index, or the resource's index if none)
            "index_zero"       answer with X-Consul-Index: 0
            "early_return"     a blocking query returns at once with the unchanged body and index
                               (only counts for a request that would have waited)
            "error500"         500 text/plain "No cluster leader", no X-Consul-Index
            "no_leader"        like error500, but ?stale reads still succeed, with
                               X-Consul-KnownLeader: false (what Consul does without a leader)
            "none"             clear the fault
        N = how many responses to affect (default 1; 0 or negative = every one until "none").
        P = only requests whose path starts with P (default: every blocking-capable read:
            catalog/services, catalog/nodes, catalog/service/*, health/service/*, health/checks/*).
        B = true (default): only blocking requests (?index > 0); false: index-less reads too.
        A fault also fires on queries that are already hanging: they return at once.
        Answer: the fault now armed. GET /_standin/fault shows it (with "remaining" and "fired").
  GET /_standin/stats        {"total", "max_per_second" (most /v1 requests in any sliding 1 s
                             window), "blocking_in_flight", "in_flight", "by_endpoint": {"GET
                             /v1/health/service/:name": {"count", "blocking", "max_per_second"}},
                             "by_path": {...same per exact path...}, "index", "since_reset_s"...}
  PUT /_standin/stats/reset  zero the counters and the request log
  GET /_standin/requests?limit=N   the last N (default 100, max 2000) /v1 requests: method, path,
                             query, status, x_consul_index, start (epoch s), ms, blocking
  PUT /_standin/reset        forget every registration, fault and counter; the datacenters come
                             back with only their server node. The index keeps rising unless the
                             body is {"index": N} (then it restarts at N, like a snapshot
                             restore). Hanging blocking queries return at once (as on Consul's
                             state-store abandon).
  GET /_standin/state        the whole catalog, for debugging

------------------------------------------------------------------------------------------------
Where it differs from a real Consul (deliberately kept small):
  * One process plays the agent and the servers of every datacenter: no gossip, raft or
    anti-entropy. Agent registrations go straight into the catalog (visible at once); catalog
    entries put on the agent's own node are kept (Consul's anti-entropy would remove them). One
    index counter is shared by all datacenters (Consul has one raft index per datacenter).
  * Health checks are never executed. HTTP/TCP/script/gRPC/... checks are validated like Consul
    does, then keep their Status (default critical). Only TTL checks change: pass/warn/fail/update
    and TTL expiry. As in Consul, re-registering a service keeps its existing checks' status;
    an output-only TTL update is not published (Consul defers it by check_update_interval, 5 min).
  * Catalog-registered nodes get no serfHealth check (as external nodes in Consul); register a
    node-level check (no ServiceID), e.g. CheckID "serfHealth" Status "critical", to fail a node.
  * ACLs: one all-powerful token. Without a token every /v1 call is 403 "Permission denied"
    (Consul's anonymous token under default-deny would instead get filtered, empty reads).
  * filter: a subset of go-bexpr; unknown selectors match nothing instead of giving a 400;
    a selector through a list (Checks.Status) matches if any element does.
  * near is ignored; ?cached is accepted but never served from a cache (X-Cache: MISS); no
    namespaces or partitions (400 as in Consul CE); no sessions, prepared queries, Connect,
    DNS. KV: GET (?recurse, ?keys, ?raw, blocking on the prefix's index as Consul does, with
    tombstones), PUT (?cas, ?flags; no ?acquire/?release), DELETE (?cas, ?recurse). X-Consul-LastContact is always 0. Missing Meta is rendered {} (Consul may send null).
  * The index of a service that does not exist is the "last extinction" index, set at start,
    so a blocking query waits for that service; on a brand-new real cluster that never saw a
    deregistration, Consul falls back to the max table index and may return on unrelated writes.
  * Agent deregister of an unknown ID is a 200 no-op, as the docs say (recent Consul: 404).
"""

import argparse
import base64
import json
import os
import random
import re
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

STANDIN_VERSION = "1.0"
CONSUL_VERSION = "1.17.0"
HEALTH_STATUSES = ("passing", "warning", "critical")
SERVER_PORT = 8300


# ------------------------------------------------------------------------------------ helpers

class HTTPError(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status
        self.msg = msg


def bad(msg):
    return HTTPError(400, msg)


_DUR_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
              "m": 60.0, "h": 3600.0}


def parse_go_duration(s):
    """Go's time.ParseDuration, in seconds. Raises ValueError."""
    orig = s
    if not s:
        raise ValueError(orig)
    neg = False
    if s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(orig)
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DUR_RE.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError(orig)
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    return -total if neg else total


def go_duration_str(sec):
    """A Go-ish rendering (5m0s, 10s, 1.5s, 100ms) for display."""
    if sec == 0:
        return "0s"
    if sec < 1:
        return "%gms" % (sec * 1000)
    m, s = divmod(sec, 60)
    h, m = divmod(int(m), 60)
    out = ""
    if h:
        out += "%dh" % h
    if h or m:
        out += "%dm" % m
    return out + ("%gs" % s)


def parse_go_bool(v):
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(v)


def _nk(k):
    return k.lower().replace("_", "")


def field(d, name, default=None):
    """Key lookup as Consul decodes bodies: case-insensitive (Go's encoding/json), and the agent
    endpoints also take snake_case (so underscores are ignored)."""
    if not isinstance(d, dict):
        return default
    if name in d:
        return d[name]
    t = _nk(name)
    for k, v in d.items():
        if isinstance(k, str) and _nk(k) == t:
            return v
    return default


def decode_err(what):
    return bad("Request decode failed: " + what)


def f_str(d, name, default=""):
    v = field(d, name)
    if v is None:
        return default
    if not isinstance(v, str):
        raise decode_err("json: cannot unmarshal %s into field %s of type string"
                         % (type(v).__name__, name))
    return v


def f_int(d, name, default=0):
    v = field(d, name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise decode_err("json: cannot unmarshal %s into field %s of type int"
                         % (type(v).__name__, name))
    return v


def f_bool(d, name, default=False):
    v = field(d, name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise decode_err("json: cannot unmarshal %s into field %s of type bool"
                         % (type(v).__name__, name))
    return v


def f_strlist(d, name):
    v = field(d, name)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise decode_err("json: cannot unmarshal into field %s of type []string" % name)
    return list(v)


def f_strmap(d, name):
    v = field(d, name)
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise decode_err("json: cannot unmarshal into field %s of type map[string]string" % name)
    return dict(v)


def f_obj(d, name):
    v = field(d, name)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise decode_err("json: cannot unmarshal %s into field %s of type object"
                         % (type(v).__name__, name))
    return v


def f_svc_tagged(d, name):
    v = field(d, name)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise decode_err("json: cannot unmarshal into field %s" % name)
    out = {}
    for k, a in v.items():
        if not isinstance(a, dict):
            raise decode_err("json: cannot unmarshal into field %s.%s" % (name, k))
        out[k] = {"Address": f_str(a, "Address"), "Port": f_int(a, "Port")}
    return out


def is_ipv4(s):
    try:
        socket.inet_pton(socket.AF_INET, s)
        return True
    except (OSError, ValueError):
        return False


def is_ipv6(s):
    try:
        socket.inet_pton(socket.AF_INET6, s)
        return True
    except (OSError, ValueError):
        return False


def node_uuid(name):
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, "standin-node." + name))


def dumps(obj, pretty=False):
    if pretty:
        return (json.dumps(obj, indent=4, ensure_ascii=False) + "\n").encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# ------------------------------------------------------------ filter (bexpr subset)

_TOK_RE = re.compile(r'\s*(?:(==|!=)|(\(|\))|"((?:[^"\\]|\\.)*)"|`([^`]*)`|([^\s()"`=!]+))')


class _FilterParser:
    def __init__(self, text):
        self.toks = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOK_RE.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError("unexpected character at %d" % pos)
            pos = m.end()
            if m.group(1):
                self.toks.append(("op", m.group(1)))
            elif m.group(2):
                self.toks.append(("paren", m.group(2)))
            elif m.group(3) is not None:
                self.toks.append(("str", json.loads('"%s"' % m.group(3))))
            elif m.group(4) is not None:
                self.toks.append(("str", m.group(4)))
            elif m.group(5):
                self.toks.append(("word", m.group(5)))
            if text[pos:].strip() == "":
                break
        self.i = 0

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def kw(self, word, k=0):
        t = self.peek(k)
        return t[0] == "word" and t[1] == word

    def next(self):
        t = self.peek()
        if t[0] is None:
            raise ValueError("unexpected end of expression")
        self.i += 1
        return t

    def parse(self):
        e = self.p_or()
        if self.peek()[0] is not None:
            raise ValueError("unexpected token %r" % (self.peek()[1],))
        return e

    def p_or(self):
        e = self.p_and()
        while self.kw("or"):
            self.i += 1
            e = ("or", e, self.p_and())
        return e

    def p_and(self):
        e = self.p_not()
        while self.kw("and"):
            self.i += 1
            e = ("and", e, self.p_not())
        return e

    def p_not(self):
        if self.kw("not"):
            self.i += 1
            return ("not", self.p_not())
        return self.p_primary()

    def p_primary(self):
        t = self.peek()
        if t == ("paren", "("):
            self.i += 1
            e = self.p_or()
            if self.next() != ("paren", ")"):
                raise ValueError("expected )")
            return e
        # value [not] in selector
        if t[0] == "str" or self.kw("in", 1) or (self.kw("not", 1) and self.kw("in", 2)):
            val = self.next()[1]
            neg = False
            if self.kw("not"):
                self.i += 1
                neg = True
            if not self.kw("in"):
                raise ValueError("expected 'in' after value %r" % val)
            self.i += 1
            sel = self.selector()
            e = ("in", val, sel)
            return ("not", e) if neg else e
        sel = self.selector()
        t = self.peek()
        if t[0] == "op":
            self.i += 1
            val = self.value()
            return ("eq", sel, val) if t[1] == "==" else ("not", ("eq", sel, val))
        if self.kw("is"):
            self.i += 1
            neg = False
            if self.kw("not"):
                self.i += 1
                neg = True
            if not self.kw("empty"):
                raise ValueError("expected 'empty'")
            self.i += 1
            e = ("empty", sel)
            return ("not", e) if neg else e
        neg = False
        if self.kw("not"):
            self.i += 1
            neg = True
        if self.kw("contains"):
            self.i += 1
            e = ("in", self.value(), sel)
        elif self.kw("matches"):
            self.i += 1
            pat = self.value()
            try:
                e = ("matches", sel, re.compile(pat))
            except re.error as err:
                raise ValueError("bad regular expression %r: %s" % (pat, err))
        else:
            raise ValueError("expected an operator after selector %s" % ".".join(sel))
        return ("not", e) if neg else e

    def selector(self):
        t = self.next()
        if t[0] != "word" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*",
                                             t[1]):
            raise ValueError("invalid selector %r" % (t[1],))
        return t[1].split(".")

    def value(self):
        t = self.next()
        if t[0] not in ("str", "word"):
            raise ValueError("expected a value")
        return t[1]


def _resolve(obj, path):
    cur = [obj]
    for part in path:
        nxt = []
        for c in cur:
            items = c if isinstance(c, list) else [c]
            for it in items:
                if isinstance(it, dict) and part in it:
                    nxt.append(it[part])
        cur = nxt
    return cur


def _scalar_str(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def _eval(e, obj):
    op = e[0]
    if op == "or":
        return _eval(e[1], obj) or _eval(e[2], obj)
    if op == "and":
        return _eval(e[1], obj) and _eval(e[2], obj)
    if op == "not":
        return not _eval(e[1], obj)
    if op == "eq":
        return any(not isinstance(v, (list, dict)) and _scalar_str(v) == e[2]
                   for v in _resolve(obj, e[1]))
    if op == "in":
        for v in _resolve(obj, e[2]):
            if isinstance(v, list) and e[1] in [_scalar_str(x) for x in v]:
                return True
            if isinstance(v, dict) and e[1] in v:
                return True
            if isinstance(v, str) and e[1] in v:
                return True
        return False
    if op == "empty":
        return all(v in (None, "", [], {}) for v in _resolve(obj, e[1]))
    if op == "matches":
        return any(isinstance(v, str) and e[2].search(v) for v in _resolve(obj, e[1]))
    raise ValueError(op)


def compile_filter(text):
    try:
        expr = _FilterParser(text).parse()
    except ValueError as err:
        raise bad("Failed to create boolean expression evaluator: %s" % err)
    return lambda obj: _eval(expr, obj)


# ------------------------------------------------------------------------------- the state

class DC:
    def __init__(self, name):
        self.name = name
        self.nodes = {}      # node name -> node record
        self.services = {}   # (node, service id) -> service record
        self.checks = {}     # (node, check id) -> check record
        self.t_nodes = self.t_services = self.t_checks = self.t_kvs = 0
        self.kv = {}          # key -> {"Key", "Value" (bytes), "Flags", "CreateIndex", ...}
        self.kv_tombstones = {}  # deleted key -> index of its deletion
        self.svc_idx = {}    # lower-cased service name -> index of its last change
        self.extinction = 0  # index at which the last instance of some service went away

    def instances(self, lname):
        return [s for s in self.services.values() if s["Service"].lower() == lname]


class Txn:
    """One raft-like write: everything it changes gets index store.index + 1."""

    def __init__(self, store, dc):
        self.st = store
        self.dc = dc
        self.idx = store.index + 1
        self.changed = False
        self.tables = set()
        self.touched = set()  # lower-cased service names whose index must move

    def mark(self, table, svc_names=()):
        self.changed = True
        self.tables.add(table)
        for n in svc_names:
            self.touched.add(n.lower())

    def touch_node_services(self, node):
        for (n, _), s in self.dc.services.items():
            if n == node:
                self.touched.add(s["Service"].lower())

    def commit(self):
        if not self.changed:
            return self.st.index
        dc, idx = self.dc, self.idx
        self.st.index = idx
        for t in self.tables:
            setattr(dc, "t_" + t, idx)
        for name in self.touched:
            if dc.instances(name):
                dc.svc_idx[name] = idx
            elif name in dc.svc_idx:
                del dc.svc_idx[name]
                dc.extinction = idx
        self.st.cond.notify_all()
        return idx


def _same(a, b):
    strip = ("CreateIndex", "ModifyIndex")
    return {k: v for k, v in a.items() if k not in strip} == \
        {k: v for k, v in b.items() if k not in strip}


class Store:
    def __init__(self, cfg):
        self.cfg = cfg
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.index = cfg.start_index - 1
        self.generation = 0
        self.dcs = {}
        self.agent_services = set()   # service ids registered through the agent
        self.agent_checks = {}        # check id -> {"ttl", "deadline", "last_output", "def"}
        self.fault = None
        self.last_fault = None      # the last fault armed (still counting "fired" when done)
        self.dc_names = [cfg.dc] + [d for d in cfg.extra_dc if d != cfg.dc]
        with self.lock:
            self._populate()

    # -- setup / reset
    def server_node_name(self, dc):
        return self.cfg.node_name if dc == self.cfg.dc else "%s-%s" % (self.cfg.node_name, dc)

    def _populate(self):
        self.dcs = {}
        self.agent_services = set()
        self.agent_checks = {}
        for name in self.dc_names:
            dc = DC(name)
            self.dcs[name] = dc
            node = self.server_node_name(name)
            tx = Txn(self, dc)
            self.ensure_node(tx, {
                "ID": node_uuid(node), "Node": node, "Address": "127.0.0.1",
                "TaggedAddresses": {"lan": "127.0.0.1", "lan_ipv4": "127.0.0.1",
                                    "wan": "127.0.0.1", "wan_ipv4": "127.0.0.1"},
                "Meta": {"consul-network-segment": ""}})
            self.ensure_service(tx, node, {
                "ID": "consul", "Service": "consul", "Tags": [], "Address": "",
                "TaggedAddresses": {}, "Meta": {"raft_version": "3", "serf_protocol_current": "2",
                                                "serf_protocol_max": "5",
                                                "serf_protocol_min": "1", "version":
                                                CONSUL_VERSION},
                "Port": SERVER_PORT, "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": False, "Kind": ""})
            self.ensure_check(tx, node, {
                "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "",
                "Type": "", "Interval": "", "Timeout": ""})
            tx.commit()
            # As on a server that has seen a service deregistered once: the index of a service
            # that does not exist is this "last extinction" index, which unrelated writes do
            # not move (Consul's service_last_extinction), so a blocking query on a service
            # that is not there yet waits for that service.
            dc.extinction = tx.idx

    def reset(self, index=None):
        if index is not None:
            self.index = index - 1
        self.fault = None
        self.last_fault = None
        self.generation += 1
        old = self.dcs
        self._populate()
        # Services that existed before and are gone now went extinct at the current index, so
        # a blocking query on them sees an index move.
        for name, dc in self.dcs.items():
            gone = set(old[name].svc_idx) - set(dc.svc_idx)
            if gone:
                dc.extinction = self.index
        self.cond.notify_all()

    def get_dc(self, name):
        dc = self.dcs.get(name or self.cfg.dc)
        if dc is None:
            raise HTTPError(500, "No path to datacenter")
        return dc

    # -- primitive writes (caller holds the lock)
    def ensure_node(self, tx, node):
        dc = tx.dc
        old = dc.nodes.get(node["Node"])
        rec = dict(node)
        if old is not None:
            if _same(old, rec):
                return
            rec["CreateIndex"] = old["CreateIndex"]
        else:
            rec["CreateIndex"] = tx.idx
        rec["ModifyIndex"] = tx.idx
        dc.nodes[node["Node"]] = rec
        tx.mark("nodes")
        tx.touch_node_services(node["Node"])

    def ensure_service(self, tx, node, svc):
        dc = tx.dc
        key = (node, svc["ID"])
        old = dc.services.get(key)
        rec = dict(svc)
        rec["Node"] = node
        if old is not None:
            if _same(old, rec):
                return
            rec["CreateIndex"] = old["CreateIndex"]
            tx.mark("services", [old["Service"]])
        else:
            rec["CreateIndex"] = tx.idx
        rec["ModifyIndex"] = tx.idx
        dc.services[key] = rec
        tx.mark("services", [rec["Service"]])

    def ensure_check(self, tx, node, chk):
        dc = tx.dc
        key = (node, chk["CheckID"])
        old = dc.checks.get(key)
        rec = dict(chk)
        rec["Node"] = node
        if rec.get("ServiceID"):
            svc = dc.services.get((node, rec["ServiceID"]))
            if svc is None:
                raise HTTPError(500, "Missing service registration")
            rec["ServiceName"] = svc["Service"]
        else:
            rec["ServiceID"] = ""
            rec["ServiceName"] = ""
        if old is not None:
            if _same(old, rec):
                return
            rec["CreateIndex"] = old["CreateIndex"]
        else:
            rec["CreateIndex"] = tx.idx
        rec["ModifyIndex"] = tx.idx
        dc.checks[key] = rec
        names = [rec["ServiceName"]] if rec["ServiceName"] else []
        if old is not None and old.get("ServiceName"):
            names.append(old["ServiceName"])
        tx.mark("checks", names)
        if not rec["ServiceID"]:
            tx.touch_node_services(node)

    def delete_check(self, tx, node, cid):
        dc = tx.dc
        old = dc.checks.pop((node, cid), None)
        if old is None:
            return
        if old["ServiceName"]:
            tx.mark("checks", [old["ServiceName"]])
        else:
            tx.mark("checks")
            tx.touch_node_services(node)

    def delete_service(self, tx, node, sid):
        dc = tx.dc
        old = dc.services.get((node, sid))
        if old is None:
            return
        for (n, cid), c in list(dc.checks.items()):
            if n == node and c["ServiceID"] == sid:
                self.delete_check(tx, node, cid)
        del dc.services[(node, sid)]
        tx.mark("services", [old["Service"]])

    def delete_node(self, tx, node):
        dc = tx.dc
        if node not in dc.nodes:
            return
        for (n, sid) in list(dc.services):
            if n == node:
                self.delete_service(tx, node, sid)
        for (n, cid) in list(dc.checks):
            if n == node:
                self.delete_check(tx, node, cid)
        del dc.nodes[node]
        tx.mark("nodes")

    # -- resource indexes (what X-Consul-Index says for each read)
    def svc_index(self, dc, name, with_checks):
        lname = name.lower()
        if lname in dc.svc_idx:
            return dc.svc_idx[lname]
        if dc.extinction:
            return dc.extinction
        m = max(dc.t_nodes, dc.t_services)
        return max(m, dc.t_checks) if with_checks else m

    # -- TTL checks
    def expire_ttls(self):
        now = time.monotonic()
        dc = self.dcs[self.cfg.dc]
        node = self.cfg.node_name
        for cid, a in self.agent_checks.items():
            if a["ttl"] and a["deadline"] is not None and now >= a["deadline"]:
                a["deadline"] = None
                chk = dc.checks.get((node, cid))
                if chk is None:
                    continue
                out = "TTL expired"
                if a["last_output"]:
                    out += " (last output before timeout follows): " + a["last_output"]
                new = dict(chk)
                new["Status"] = "critical"
                new["Output"] = out
                tx = Txn(self, dc)
                self.ensure_check(tx, node, new)
                tx.commit()

    # -- faults
    def fault_for(self, path, blocking, stale):
        f = self.fault
        if f is None:
            return None
        if f["path"]:
            if not path.startswith(f["path"]):
                return None
        elif not is_blocking_endpoint(path):
            return None
        if f["blocking_only"] and not blocking:
            return None
        if f["mode"] == "no_leader" and stale:
            return None
        return f

    def consume(self, f):
        f["fired"] += 1
        if f["remaining"] is not None:
            f["remaining"] -= 1
            if f["remaining"] <= 0:
                self.fault = None


BLOCKING_PREFIXES = ("/v1/catalog/service/", "/v1/health/service/", "/v1/health/checks/",
                     "/v1/kv/")
BLOCKING_PATHS = ("/v1/catalog/services", "/v1/catalog/nodes")


def is_blocking_endpoint(path):
    return path in BLOCKING_PATHS or path.startswith(BLOCKING_PREFIXES)


# ---------------------------------------------------------------------------------- stats

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()
        self.in_flight = 0
        self.blocking_in_flight = 0

    def reset(self):
        self.t0 = time.time()
        self.mono0 = time.monotonic()
        self.total = 0
        self.blocking_total = 0
        self.window = deque()
        self.max_per_second = 0
        self.by_endpoint = {}
        self.by_path = {}
        self.control = 0
        self.log = deque(maxlen=2000)

    @staticmethod
    def _bump(table, key, now, blocking):
        e = table.get(key)
        if e is None:
            e = table[key] = {"count": 0, "blocking": 0, "max_per_second": 0, "_w": deque()}
        e["count"] += 1
        if blocking:
            e["blocking"] += 1
        w = e["_w"]
        w.append(now)
        while w and w[0] <= now - 1.0:
            w.popleft()
        e["max_per_second"] = max(e["max_per_second"], len(w))

    def record(self, method, path, endpoint, blocking):
        now = time.monotonic()
        with self.lock:
            self.total += 1
            if blocking:
                self.blocking_total += 1
            self.window.append(now)
            while self.window and self.window[0] <= now - 1.0:
                self.window.popleft()
            self.max_per_second = max(self.max_per_second, len(self.window))
            self._bump(self.by_endpoint, "%s %s" % (method, endpoint), now, blocking)
            self._bump(self.by_path, "%s %s" % (method, path), now, blocking)

    def snapshot(self, index):
        now = time.monotonic()
        with self.lock:
            def strip(t):
                return {k: {kk: vv for kk, vv in v.items() if kk != "_w"} for k, v in
                        sorted(t.items())}
            elapsed = now - self.mono0
            return {
                "total": self.total,
                "blocking": self.blocking_total,
                "max_per_second": self.max_per_second,
                "last_second": sum(1 for t in self.window if t > now - 1.0),
                "mean_per_second": round(self.total / elapsed, 3) if elapsed > 0 else 0,
                "in_flight": self.in_flight,
                "blocking_in_flight": self.blocking_in_flight,
                "control_requests": self.control,
                "by_endpoint": strip(self.by_endpoint),
                "by_path": strip(self.by_path),
                "index": index,
                "since_reset_s": round(elapsed, 3),
                "reset_at": self.t0,
            }


# -------------------------------------------------------------------------------- routing

ROUTES = []


def route(pattern, methods, endpoint=None):
    rx = re.compile(pattern + r"\Z")

    def deco(fn):
        ROUTES.append((rx, set(methods), fn, endpoint or pattern))
        return fn
    return deco


class QueryOpts:
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Header and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every answer (Consul's Go server sets it).
        import socket as _socket
        self.request.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    server_version = "Consul-standin"

    # -- plumbing
    @property
    def st(self):
        return self.server.store

    @property
    def cfg(self):
        return self.server.cfg

    def log_message(self, fmt, *args):  # silence the default per-request line
        pass

    def send_response(self, code, message=None):
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def do_GET(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def dispatch(self):
        t0 = time.monotonic()
        start = time.time()
        parts = urlsplit(self.path)
        self.raw_path = parts.path
        self.query_string = parts.query
        self.params = parse_qs(parts.query, keep_blank_values=True)
        self.resp_status = None
        self.resp_index = None
        self.is_blocking = False
        self.pretty = "pretty" in self.params
        self.body_cache = None
        self.raw_body = None
        control = self.raw_path.startswith("/_standin/")
        found = None
        allowed = None
        for rx, methods, fn, endpoint in ROUTES:
            m = rx.match(self.raw_path)
            if m:
                if self.command in methods:
                    found = (fn, m, endpoint)
                    break
                allowed = (allowed or set()) | methods
        stats = self.server.stats
        if not control:
            try:
                idx = self.params.get("index", [""])[0]
                self.is_blocking = bool(re.fullmatch(r"[0-9]+", idx)) and int(idx) > 0 and \
                    is_blocking_endpoint(self.raw_path)
            except ValueError:
                pass
            stats.record(self.command, self.raw_path,
                         found[2] if found else ("(unknown)" if allowed is None else
                                                 "(bad method)"), self.is_blocking)
        else:
            with stats.lock:
                stats.control += 1
        if not control:
            with stats.lock:
                stats.in_flight += 1
                if self.is_blocking:
                    stats.blocking_in_flight += 1
        try:
            try:
                if found is None:
                    if allowed is not None:
                        self.send_text(405, "method %s not allowed" % self.command,
                                       {"Allow": ", ".join(sorted(allowed))})
                    else:
                        self.send_text(404, "404 page not found\n",
                                       {"X-Content-Type-Options": "nosniff"})
                else:
                    fn, m, _ = found
                    groups = {k: unquote(v) for k, v in m.groupdict().items()}
                    if not control:
                        self.check_enterprise_params()
                    fn(self, **groups)
            except HTTPError as e:
                self.send_text(e.status, e.msg)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            ms = (time.monotonic() - t0) * 1000
            if not control:
                with stats.lock:
                    stats.in_flight -= 1
                    if self.is_blocking:
                        stats.blocking_in_flight -= 1
                    stats.log.append({
                        "method": self.command, "path": self.raw_path,
                        "query": self.query_string, "status": self.resp_status,
                        "x_consul_index": self.resp_index, "start": round(start, 6),
                        "ms": round(ms, 3), "blocking": self.is_blocking})
            if not self.cfg.quiet:
                sys.stderr.write("%s %s %s%s -> %s idx=%s %.1fms\n" % (
                    time.strftime("%H:%M:%S"), self.command, self.raw_path,
                    ("?" + self.query_string) if self.query_string else "",
                    self.resp_status if self.resp_status is not None else "-",
                    self.resp_index if self.resp_index is not None else "-", ms))

    def send_bytes(self, status, body, ctype, headers=None):
        try:
            self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
        self.resp_status = status
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
            if k == "X-Consul-Index":
                self.resp_index = int(v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_text(self, status, msg, headers=None):
        self.send_bytes(status, msg.encode(), "text/plain; charset=utf-8", headers)

    def send_json(self, obj, headers=None, status=200):
        self.send_bytes(status, dumps(obj, self.pretty), "application/json", headers)

    def send_empty(self):
        self.send_bytes(200, b"", None)

    def read_body(self):
        """The raw request body, read once (so an error answered before a handler reads the body
        still consumes it and the keep-alive connection stays in sync)."""
        if self.raw_body is not None:
            return self.raw_body
        self.raw_body = b""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.raw_body = b"".join(chunks)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            self.raw_body = self.rfile.read(n) if n > 0 else b""
        return self.raw_body

    def body_json(self, required=True):
        if self.body_cache is not None:
            return self.body_cache
        raw = self.read_body()
        if not raw.strip():
            if required:
                raise decode_err("EOF")
            self.body_cache = {}
            return self.body_cache
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise decode_err(str(e))
        if not isinstance(obj, dict):
            raise decode_err("json: cannot unmarshal %s into Go value of type object"
                             % type(obj).__name__)
        self.body_cache = obj
        return obj

    def param(self, name, default=None):
        v = self.params.get(name)
        return v[0] if v else default

    def check_enterprise_params(self):
        ns = self.param("ns", "")
        if ns not in ("", "default"):
            raise bad('Invalid query parameter: "ns" - Namespaces are a Consul Enterprise '
                      'feature')
        hns = self.headers.get("X-Consul-Namespace", "")
        if hns not in ("", "default"):
            raise bad('Invalid header: "X-Consul-Namespace" - Namespaces are a Consul '
                      'Enterprise feature')
        part = self.param("partition", "")
        if part not in ("", "default"):
            raise bad('Invalid query parameter: "partition" - Partitions are a Consul '
                      'Enterprise feature')

    def token(self):
        t = self.param("token", "")
        if t:
            return t
        t = self.headers.get("X-Consul-Token", "")
        if t:
            return t
        auth = self.headers.get("Authorization", "")
        parts = auth.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "bearer":
            return parts[1].strip()
        return ""

    def acl(self):
        want = self.cfg.acl_token
        if not want:
            return
        got = self.token()
        if not got:
            raise HTTPError(403, "Permission denied")
        if got != want:
            raise HTTPError(403, "ACL not found")

    def client_gone(self):
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- read-side parameter parsing, in Consul's order: consistency, wait, index
    def query_opts(self):
        q = QueryOpts()
        p = self.params
        q.stale = "stale" in p
        q.consistent = "consistent" in p
        if "max_stale" in p and p["max_stale"][0] != "":
            try:
                ms = parse_go_duration(p["max_stale"][0])
            except ValueError:
                raise bad("Invalid max_stale value")
            if ms > 0:
                q.stale = True
        # ?leader only turns off discovery_max_stale defaults (none here); it does not undo
        # ?stale, exactly as in Consul's parseConsistency.
        q.cached = "cached" in p
        if q.stale and q.consistent:
            raise bad("Cannot specify ?stale with ?consistent, conflicting semantics.")
        if q.cached and q.consistent:
            raise bad("Cannot specify ?cached with ?consistent, conflicting semantics.")
        q.wait = None
        w = self.param("wait", "")
        if w != "":
            try:
                q.wait = parse_go_duration(w)
            except ValueError:
                raise bad("Invalid wait time")
        q.min_index = 0
        i = self.param("index", "")
        if i != "":
            if not re.fullmatch(r"[0-9]+", i) or int(i) >= 2 ** 64:
                raise bad("Invalid index")
            q.min_index = int(i)
        q.consistency = "stale" if q.stale else ("consistent" if q.consistent else "leader")
        q.filter = None
        f = self.param("filter", "")
        if f:
            q.filter = compile_filter(f)
        return q

    def meta_headers(self, q, index, known_leader=True):
        h = {
            "X-Consul-Default-Acl-Policy": "deny" if self.cfg.acl_token else "allow",
            "X-Consul-Effective-Consistency": q.consistency,
            "X-Consul-Index": index,
            "X-Consul-Knownleader": "true" if known_leader else "false",
            "X-Consul-Lastcontact": "0",
            "Vary": "Accept-Encoding",
        }
        if q.cached and self.raw_path.startswith(("/v1/catalog/service/",
                                                  "/v1/health/service/",
                                                  "/v1/catalog/services")):
            h["X-Cache"] = "MISS"   # there is no agent cache here: every read is fresh
            h["Age"] = "0"
        return h

    def blocking_read(self, index_fn, body_fn, not_found=False):
        """Consul's blockingQuery: with ?index=N > 0, wait until the resource's index is > N or
        the wait (plus jitter) elapses; return the current body and index either way."""
        q = self.query_opts()
        dc_name = self.param("dc", "") or self.cfg.dc
        st = self.st
        with st.lock:
            st.get_dc(dc_name)          # 500 "No path to datacenter" before any ACL check
        self.acl()
        blocking = q.min_index > 0
        timeout = 0.0
        if blocking:
            timeout = q.wait if q.wait is not None else self.cfg.default_query_time
            if timeout > self.cfg.max_query_time:
                timeout = self.cfg.max_query_time
            elif timeout <= 0:
                timeout = self.cfg.default_query_time
            timeout += random.uniform(0, timeout / 16.0)
        deadline = time.monotonic() + timeout
        error = None
        out_index = None
        known_leader = True
        with st.cond:
            gen = st.generation
            while True:
                dc = st.get_dc(dc_name)
                idx = index_fn(dc)
                now = time.monotonic()
                would_wait = (blocking and idx <= q.min_index and now < deadline
                              and st.generation == gen)
                f = st.fault_for(self.raw_path, blocking, q.stale)
                if f is not None:
                    mode = f["mode"]
                    if mode == "early_return":
                        if would_wait:
                            st.consume(f)
                            break
                    elif mode in ("error500", "no_leader"):
                        st.consume(f)
                        error = "No cluster leader"
                        break
                    elif mode == "index_backwards":
                        st.consume(f)
                        ref = q.min_index if blocking else idx
                        out_index = f["index"] if f["index"] is not None else max(1, ref - 1)
                        break
                    elif mode == "index_zero":
                        st.consume(f)
                        out_index = 0
                        break
                if not would_wait:
                    break
                st.cond.wait(min(deadline - now, 0.5))
                if self.client_gone():
                    self.close_connection = True
                    self.resp_status = 499   # nginx's "client closed request", for the log
                    return
            if error is None:
                body = body_fn(dc, q)
                if q.filter is not None and isinstance(body, list):
                    body = [e for e in body if q.filter(e)]
                # A stale read without a leader succeeds, but says so.
                nl = st.fault
                if nl is not None and nl["mode"] == "no_leader" and q.stale and \
                        (self.raw_path.startswith(nl["path"]) if nl["path"] else True):
                    known_leader = False
        if error is not None:
            raise HTTPError(500, error)
        if out_index is None:
            out_index = idx
        if not_found and body is None:
            self.send_bytes(404, b"", None, self.meta_headers(q, out_index, known_leader))
            return
        if isinstance(body, bytes):
            self.send_bytes(200, body, "application/octet-stream",
                            self.meta_headers(q, out_index, known_leader))
            return
        self.send_json(body, self.meta_headers(q, out_index, known_leader))

    # -------------------------------------------------------------------- agent endpoints
    @route(r"/v1/agent/self", ["GET"])
    def agent_self(self):
        self.acl()
        cfg = self.cfg
        node = cfg.node_name
        nid = node_uuid(node)
        self.send_json({
            "Config": {
                "Datacenter": cfg.dc, "PrimaryDatacenter": cfg.dc, "NodeName": node,
                "NodeID": nid, "Revision": "standin", "Server": True,
                "Version": CONSUL_VERSION, "BuildDate": "2023-01-01T00:00:00Z",
            },
            "DebugConfig": {
                "Datacenter": cfg.dc, "PrimaryDatacenter": cfg.dc, "NodeName": node,
                "NodeID": nid, "ServerMode": True, "ACLsEnabled": bool(cfg.acl_token),
                "ClientAddrs": ["127.0.0.1"], "HTTPPort": self.server.server_address[1],
                "DefaultQueryTime": go_duration_str(cfg.default_query_time),
                "MaxQueryTime": go_duration_str(cfg.max_query_time),
                "StandIn": "consul_standin.py %s (not a real Consul)" % STANDIN_VERSION,
            },
            "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
            "Member": {
                "Name": node, "Addr": "127.0.0.1", "Port": 8301,
                "Tags": {"acls": "1" if cfg.acl_token else "0", "build": CONSUL_VERSION +
                         ":standin", "dc": cfg.dc, "id": nid, "port": str(SERVER_PORT),
                         "raft_vsn": "3", "role": "consul", "segment": "", "vsn": "2",
                         "vsn_max": "3", "vsn_min": "2"},
                "Status": 1, "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
            },
            "Meta": {"consul-network-segment": ""},
        })

    def _agent_service_view(self, s):
        out = {"ID": s["ID"], "Service": s["Service"], "Tags": s["Tags"], "Meta": s["Meta"],
               "Port": s["Port"], "Address": s["Address"]}
        if s["TaggedAddresses"]:
            out["TaggedAddresses"] = s["TaggedAddresses"]
        out.update({"Weights": s["Weights"], "EnableTagOverride": s["EnableTagOverride"],
                    "Datacenter": self.cfg.dc})
        return out

    @route(r"/v1/agent/services", ["GET"])
    def agent_services(self):
        self.acl()
        st = self.st
        with st.lock:
            dc = st.dcs[self.cfg.dc]
            out = {}
            for sid in sorted(st.agent_services):
                s = dc.services.get((self.cfg.node_name, sid))
                if s is not None:
                    out[sid] = self._agent_service_view(s)
        self.send_json(out)

    @route(r"/v1/agent/checks", ["GET"])
    def agent_checks_ep(self):
        self.acl()
        st = self.st
        with st.lock:
            dc = st.dcs[self.cfg.dc]
            out = {}
            for cid in sorted(st.agent_checks):
                c = dc.checks.get((self.cfg.node_name, cid))
                if c is not None:
                    out[cid] = check_view(dc, c)
        self.send_json(out)

    def _parse_check_def(self, c, where):
        """An agent check definition -> (type, ttl seconds or None, interval str, timeout str).
        Validation as Consul's CheckType.Validate."""
        if not isinstance(c, dict):
            raise decode_err("json: cannot unmarshal into field %s of type CheckType" % where)
        status = f_str(c, "Status")
        if status and status not in HEALTH_STATUSES:
            raise bad("Status for checks must 'passing', 'warning', 'critical'")
        ttl_s = f_str(c, "TTL")
        interval_s = f_str(c, "Interval")
        timeout_s = f_str(c, "Timeout")
        try:
            ttl = parse_go_duration(ttl_s) if ttl_s else 0.0
            interval = parse_go_duration(interval_s) if interval_s else 0.0
            if timeout_s:
                parse_go_duration(timeout_s)
            dcsa = f_str(c, "DeregisterCriticalServiceAfter")
            if dcsa:
                parse_go_duration(dcsa)
        except ValueError as e:
            raise decode_err("time: invalid duration %s" % e)
        kinds = []
        for key, kind in (("HTTP", "http"), ("TCP", "tcp"), ("UDP", "udp"), ("GRPC", "grpc"),
                          ("H2PING", "h2ping"), ("OSService", "os_service"),
                          ("DockerContainerID", "docker")):
            if field(c, key):
                kinds.append(kind)
        if field(c, "Args") or field(c, "ScriptArgs"):
            kinds.append("script")
        alias = bool(field(c, "AliasService") or field(c, "AliasNode"))
        interval_check = bool(kinds)
        if interval and ttl:
            raise bad("Invalid check: Interval and TTL cannot both be specified")
        if interval_check and interval <= 0:
            raise bad("Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP "
                      "or OSService checks")
        if alias and ttl:
            raise bad("Invalid check: TTL must be not be set for Alias checks")
        if not kinds and not alias and ttl <= 0:
            raise bad("Invalid check: TTL must be > 0 for TTL checks")
        if alias:
            typ = "alias"
        elif kinds:
            typ = kinds[0]
        else:
            typ = "ttl"
        return typ, (ttl if typ == "ttl" else None), interval_s, timeout_s, status

    @route(r"/v1/agent/service/register", ["PUT"])
    def agent_service_register(self):
        body = self.body_json()
        self.acl()
        name = f_str(body, "Name")
        if not name:
            raise bad("Missing service name")
        sid = f_str(body, "ID") or name
        tags = f_strlist(body, "Tags")
        address = f_str(body, "Address")
        port = f_int(body, "Port")
        meta = f_strmap(body, "Meta")
        kind = f_str(body, "Kind")
        eto = f_bool(body, "EnableTagOverride")
        w = f_obj(body, "Weights")
        if w is None:
            weights = {"Passing": 1, "Warning": 1}
        else:
            weights = {"Passing": f_int(w, "Passing"), "Warning": f_int(w, "Warning")}
            if weights["Passing"] < 1:
                raise bad("Invalid Weights: Passing must be greater than 0")
            if weights["Warning"] < 0:
                raise bad("Invalid Weights: Warning must be greater or equal than 0")
        tagged = f_svc_tagged(body, "TaggedAddresses")
        if is_ipv4(address):
            tagged.setdefault("lan_ipv4", {"Address": address, "Port": port})
            tagged.setdefault("wan_ipv4", {"Address": address, "Port": port})
        elif is_ipv6(address):
            tagged.setdefault("lan_ipv6", {"Address": address, "Port": port})
            tagged.setdefault("wan_ipv6", {"Address": address, "Port": port})
        chk_defs = []
        c1 = field(body, "Check")
        if c1 is not None:
            chk_defs.append(c1)
        cs = field(body, "Checks")
        if cs is not None:
            if not isinstance(cs, list):
                raise decode_err("json: cannot unmarshal into field Checks of type []CheckType")
            chk_defs.extend(cs)
        # A check definition with no fields at all is ignored, as Consul's CheckTypes() does.
        chk_defs = [c for c in chk_defs if not (isinstance(c, dict) and not c)]
        parsed = []
        for i, c in enumerate(chk_defs):
            typ, ttl, interval_s, timeout_s, status = self._parse_check_def(c, "Checks")
            cid = f_str(c, "CheckID") or f_str(c, "ID")
            if not cid:
                cid = "service:%s" % sid
                if len(chk_defs) > 1:
                    cid += ":%d" % (i + 1)
            cname = f_str(c, "Name") or "Service '%s' check" % name
            parsed.append((cid, cname, typ, ttl, interval_s, timeout_s, status,
                           f_str(c, "Notes")))
        replace = "replace-existing-checks" in self.params
        st = self.st
        node = self.cfg.node_name
        with st.lock:
            dc = st.dcs[self.cfg.dc]
            tx = Txn(st, dc)
            st.ensure_service(tx, node, {
                "ID": sid, "Service": name, "Tags": tags, "Address": address,
                "TaggedAddresses": tagged, "Meta": meta, "Port": port, "Weights": weights,
                "EnableTagOverride": eto, "Kind": kind})
            st.agent_services.add(sid)
            new_ids = set()
            now = time.monotonic()
            for cid, cname, typ, ttl, interval_s, timeout_s, status, notes in parsed:
                new_ids.add(cid)
                prev = dc.checks.get((node, cid))
                rec = {"CheckID": cid, "Name": cname, "Status": status or "critical",
                       "Notes": notes, "Output": "", "ServiceID": sid, "Type": typ,
                       "Interval": interval_s, "Timeout": timeout_s}
                if prev is not None:
                    # Consul keeps a re-registered check's status and output.
                    rec["Status"] = prev["Status"]
                    rec["Output"] = prev["Output"]
                st.ensure_check(tx, node, rec)
                old_agent = st.agent_checks.get(cid)
                st.agent_checks[cid] = {
                    "ttl": ttl,
                    "deadline": (now + ttl) if ttl else None,
                    "last_output": old_agent["last_output"] if old_agent else "",
                }
            if replace:
                for (n, cid), c in list(dc.checks.items()):
                    if n == node and c["ServiceID"] == sid and cid not in new_ids:
                        st.delete_check(tx, node, cid)
                        st.agent_checks.pop(cid, None)
            tx.commit()
        self.send_empty()

    @route(r"/v1/agent/service/deregister/(?P<sid>.*)", ["PUT"])
    def agent_service_deregister(self, sid):
        self.acl()
        st = self.st
        node = self.cfg.node_name
        with st.lock:
            dc = st.dcs[self.cfg.dc]
            tx = Txn(st, dc)
            if (node, sid) in dc.services and sid != "consul":
                for (n, cid), c in list(dc.checks.items()):
                    if n == node and c["ServiceID"] == sid:
                        st.agent_checks.pop(cid, None)
                st.delete_service(tx, node, sid)
            st.agent_services.discard(sid)
            tx.commit()
        self.send_empty()

    def _maintenance(self, cid, sid, what):
        enable = self.param("enable")
        if enable is None:
            raise bad("Missing value for enable")
        try:
            on = parse_go_bool(enable)
        except ValueError:
            raise bad("Invalid value for enable: %q" % enable)
        self.acl()
        reason = self.param("reason", "")
        st = self.st
        node = self.cfg.node_name
        with st.lock:
            dc = st.dcs[self.cfg.dc]
            if sid and (node, sid) not in dc.services:
                raise HTTPError(404, 'Unknown service ID "%s"' % sid)
            tx = Txn(st, dc)
            if on:
                st.ensure_check(tx, node, {
                    "CheckID": cid, "Name": "%s Maintenance Mode" % what.capitalize(),
                    "Status": "critical", "Output": "", "ServiceID": sid, "Type": "",
                    "Interval": "", "Timeout": "",
                    "Notes": reason or ("Maintenance mode is enabled for this %s, but no "
                                        "reason was provided. This is a default message."
                                        % what)})
            else:
                st.delete_check(tx, node, cid)
            tx.commit()
        self.send_empty()

    @route(r"/v1/agent/service/maintenance/(?P<sid>.*)", ["PUT"])
    def agent_service_maintenance(self, sid):
        self._maintenance("_service_maintenance:" + sid, sid, "service")

    @route(r"/v1/agent/maintenance", ["PUT"])
    def agent_node_maintenance(self):
        self._maintenance("_node_maintenance", "", "node")

    @route(r"/v1/agent/check/register", ["PUT"])
    def agent_check_register(self):
        body = self.body_json()
        self.acl()
        name = f_str(body, "Name")
        if not name:
            raise bad("Missing check name")
        typ, ttl, interval_s, timeout_s, status = self._parse_check_def(body, "Check")
        cid = f_str(body, "CheckID") or f_str(body, "ID") or name
        sid = f_str(body, "ServiceID")
        st = self.st
        node = self.cfg.node_name
        with st.lock:
            dc = st.dcs[self.cfg.dc]
            if sid and (node, sid) not in dc.services:
                raise bad('ServiceID "%s" does not exist' % sid)
            prev = dc.checks.get((node, cid))
            tx = Txn(st, dc)
            st.ensure_check(tx, node, {
                "CheckID": cid, "Name": name,
                "Status": prev["Status"] if prev else (status or "critical"),
                "Output": prev["Output"] if prev else "",
                "Notes": f_str(body, "Notes"), "ServiceID": sid, "Type": typ,
                "Interval": interval_s, "Timeout": timeout_s})
            st.agent_checks[cid] = {"ttl": ttl,
                                    "deadline": (time.monotonic() + ttl) if ttl else None,
                                    "last_output": ""}
            tx.commit()
        self.send_empty()

    @route(r"/v1/agent/check/deregister/(?P<cid>.*)", ["PUT"])
    def agent_check_deregister(self, cid):
        self.acl()
        st = self.st
        with st.lock:
            dc = st.dcs[self.cfg.dc]
            if cid not in st.agent_checks:
                raise HTTPError(404, 'Unknown check ID "%s". Ensure that the check ID is passed, '
                                     'not the check name.' % cid)
            tx = Txn(st, dc)
            st.delete_check(tx, self.cfg.node_name, cid)
            st.agent_checks.pop(cid, None)
            tx.commit()
        self.send_empty()

    def _update_ttl(self, cid, status, output):
        st = self.st
        node = self.cfg.node_name
        with st.lock:
            a = st.agent_checks.get(cid)
            dc = st.dcs[self.cfg.dc]
            chk = dc.checks.get((node, cid))
            if a is None or not a["ttl"] or chk is None:
                raise HTTPError(500, 'CheckID "%s" does not have associated TTL' % cid)
            a["deadline"] = time.monotonic() + a["ttl"]
            a["last_output"] = output
            # The agent syncs a status change at once; an output-only change is deferred by
            # Consul (check_update_interval, 5 min) and is not published here at all.
            if chk["Status"] != status:
                new = dict(chk)
                new["Status"] = status
                new["Output"] = output
                tx = Txn(st, dc)
                st.ensure_check(tx, node, new)
                tx.commit()
        self.send_empty()

    @route(r"/v1/agent/check/(?P<op>pass|warn|fail)/(?P<cid>.*)", ["PUT"],
           "/v1/agent/check/:op/:id")
    def agent_check_ttl(self, op, cid):
        self.acl()
        status = {"pass": "passing", "warn": "warning", "fail": "critical"}[op]
        self._update_ttl(cid, status, self.param("note", ""))

    @route(r"/v1/agent/check/update/(?P<cid>.*)", ["PUT"])
    def agent_check_update(self, cid):
        body = self.body_json()
        self.acl()
        status = f_str(body, "Status")
        if status not in HEALTH_STATUSES:
            raise bad("Invalid check status: '%s'" % status)
        self._update_ttl(cid, status, f_str(body, "Output"))

    # ------------------------------------------------------------------ catalog writes
    @route(r"/v1/catalog/register", ["PUT"])
    def catalog_register(self):
        body = self.body_json()
        st = self.st
        dcname = f_str(body, "Datacenter") or self.param("dc", "") or self.cfg.dc
        node = f_str(body, "Node")
        address = f_str(body, "Address")
        skip = f_bool(body, "SkipNodeUpdate")
        svc = f_obj(body, "Service")
        svc_rec = None
        if svc is not None:
            sname = f_str(svc, "Service")
            if not sname:
                raise HTTPError(500, "Must provide service name")
            sid = f_str(svc, "ID") or sname
            w = f_obj(svc, "Weights")
            weights = {"Passing": 1, "Warning": 1}
            if w is not None:
                cand = {"Passing": f_int(w, "Passing"), "Warning": f_int(w, "Warning")}
                if cand["Passing"] >= 1 and cand["Warning"] >= 0:
                    weights = cand
            svc_rec = {"ID": sid, "Service": sname, "Tags": f_strlist(svc, "Tags"),
                       "Address": f_str(svc, "Address"),
                       "TaggedAddresses": f_svc_tagged(svc, "TaggedAddresses"),
                       "Meta": f_strmap(svc, "Meta"), "Port": f_int(svc, "Port"),
                       "Weights": weights, "EnableTagOverride": f_bool(svc, "EnableTagOverride"),
                       "Kind": f_str(svc, "Kind")}
        chks = []
        c1 = f_obj(body, "Check")
        if c1 is not None:
            chks.append(c1)
        cs = field(body, "Checks")
        if cs is not None:
            if not isinstance(cs, list) or not all(isinstance(c, dict) for c in cs):
                raise decode_err("json: cannot unmarshal into field Checks of type "
                                 "HealthChecks")
            chks.extend(cs)
        chk_recs = []
        for c in chks:
            status = f_str(c, "Status") or "critical"
            if status not in HEALTH_STATUSES:
                raise HTTPError(500, "Invalid check status: '%s'" % status)
            cid = f_str(c, "CheckID") or f_str(c, "Name")
            if not cid:
                raise HTTPError(500, "Missing check ID")
            d = field(c, "Definition") if isinstance(field(c, "Definition"), dict) else {}
            chk_recs.append({"CheckID": cid, "Name": f_str(c, "Name") or cid, "Status": status,
                             "Notes": f_str(c, "Notes"), "Output": f_str(c, "Output"),
                             "ServiceID": f_str(c, "ServiceID"), "Type": f_str(c, "Type"),
                             "Interval": f_str(d, "Interval"), "Timeout": f_str(d, "Timeout")})
        with st.lock:
            dc = st.get_dc(dcname)
        self.acl()
        if not node:
            raise HTTPError(500, "Must provide node")
        with st.lock:
            dc = st.get_dc(dcname)
            existing = dc.nodes.get(node)
            if not (skip and existing is not None):
                if not address:
                    raise HTTPError(500, "Must provide address")
            for c in chk_recs:     # validate first: a failed write changes nothing
                csid = c["ServiceID"]
                if csid and (node, csid) not in dc.services and \
                        not (svc_rec is not None and svc_rec["ID"] == csid):
                    raise HTTPError(500, "Missing service registration")
            tx = Txn(st, dc)
            if existing is None or not skip:
                nid = f_str(body, "ID")
                tagged = field(body, "TaggedAddresses")
                if tagged is None:
                    tagged = {}
                if not isinstance(tagged, dict):
                    raise decode_err("json: cannot unmarshal into field TaggedAddresses")
                st.ensure_node(tx, {"ID": nid, "Node": node, "Address": address,
                                    "TaggedAddresses": dict(tagged),
                                    "Meta": f_strmap(body, "NodeMeta")})
            if svc_rec is not None:
                st.ensure_service(tx, node, svc_rec)
            for c in chk_recs:
                st.ensure_check(tx, node, c)
            tx.commit()
        self.send_json(True)

    @route(r"/v1/catalog/deregister", ["PUT"])
    def catalog_deregister(self):
        body = self.body_json()
        st = self.st
        dcname = f_str(body, "Datacenter") or self.param("dc", "") or self.cfg.dc
        with st.lock:
            st.get_dc(dcname)
        self.acl()
        node = f_str(body, "Node")
        if not node:
            raise HTTPError(500, "Must provide node")
        sid = f_str(body, "ServiceID")
        cid = f_str(body, "CheckID")
        with st.lock:
            dc = st.get_dc(dcname)
            tx = Txn(st, dc)
            if sid:
                st.delete_service(tx, node, sid)
                if node == self.cfg.node_name and dcname == self.cfg.dc:
                    st.agent_services.discard(sid)
            elif cid:
                st.delete_check(tx, node, cid)
            else:
                st.delete_node(tx, node)
            tx.commit()
        self.send_json(True)

    # ------------------------------------------------------------------- catalog reads
    @route(r"/v1/catalog/datacenters", ["GET"])
    def catalog_datacenters(self):
        self.send_json(list(self.st.dc_names))

    @route(r"/v1/status/leader", ["GET"])
    def status_leader(self):
        self.send_json("127.0.0.1:%d" % SERVER_PORT)

    @route(r"/v1/status/peers", ["GET"])
    def status_peers(self):
        self.send_json(["127.0.0.1:%d" % SERVER_PORT])

    def node_meta_filters(self):
        out = []
        for v in self.params.get("node-meta", []):
            k, _, val = v.partition(":")
            out.append((k, val))
        return out

    @route(r"/v1/catalog/nodes", ["GET"])
    def catalog_nodes(self):
        nm = self.node_meta_filters()

        def body(dc, q):
            return [node_view(dc, n) for _, n in sorted(dc.nodes.items())
                    if all(n["Meta"].get(k) == v for k, v in nm)]
        self.blocking_read(lambda dc: dc.t_nodes, body)

    # -- KV store
    @staticmethod
    def _kv_index(dc, key, recurse):
        """Consul's KV read index: the highest index under the prefix (live keys and
        tombstones), else the KV table's."""
        def under(k):
            return k.startswith(key) if recurse else k == key
        idx = max([e["ModifyIndex"] for k, e in dc.kv.items() if under(k)] +
                  [i for k, i in dc.kv_tombstones.items() if under(k)] + [0])
        return idx or dc.t_kvs or 1

    @staticmethod
    def _kv_json(e):
        return {"LockIndex": 0, "Key": e["Key"], "Flags": e["Flags"],
                "Value": base64.b64encode(e["Value"]).decode() if e["Value"] else None,
                "CreateIndex": e["CreateIndex"], "ModifyIndex": e["ModifyIndex"]}

    @route(r"/v1/kv/(?P<key>.*)", ["GET"])
    def kv_get(self, key):
        recurse = "recurse" in self.params
        keys = "keys" in self.params
        raw = "raw" in self.params

        def body(dc, q):
            if recurse or keys:
                found = [e for k, e in sorted(dc.kv.items()) if k.startswith(key)]
            else:
                found = [e for k, e in dc.kv.items() if k == key]
            if not found:
                return None
            if keys:
                return [e["Key"] for e in found]
            if raw:
                return found[0]["Value"]
            return [self._kv_json(e) for e in found]
        self.blocking_read(lambda dc: self._kv_index(dc, key, recurse or keys), body,
                           not_found=True)

    @route(r"/v1/kv/(?P<key>.*)", ["PUT"])
    def kv_put(self, key):
        self.acl()
        if not key:
            raise bad("Missing key name")
        value = self.read_body()
        if len(value) > 512 * 1024:
            raise HTTPError(413, "Value exceeds 524288 byte limit")
        cas = self.param("cas")
        flags = int(self.param("flags", "0") or 0)
        st = self.st
        with st.lock:
            dc = st.get_dc(self.param("dc", ""))
            cur = dc.kv.get(key)
            if cas is not None:
                if not re.fullmatch(r"[0-9]+", cas):
                    raise bad("Invalid cas index")
                cas = int(cas)
                if (cas == 0 and cur is not None) or \
                        (cas != 0 and (cur is None or cur["ModifyIndex"] != cas)):
                    self.send_json(False)
                    return
            tx = Txn(st, dc)
            tx.mark("kvs")
            dc.kv[key] = {"Key": key, "Value": value, "Flags": flags,
                          "CreateIndex": cur["CreateIndex"] if cur else tx.idx,
                          "ModifyIndex": tx.idx}
            dc.kv_tombstones.pop(key, None)
            tx.commit()
        self.send_json(True)

    @route(r"/v1/kv/(?P<key>.*)", ["DELETE"])
    def kv_delete(self, key):
        self.acl()
        recurse = "recurse" in self.params
        cas = self.param("cas")
        st = self.st
        with st.lock:
            dc = st.get_dc(self.param("dc", ""))
            if cas is not None:
                if recurse:
                    raise bad("Conflicting flags: cas=" + cas + "&recurse")
                if not re.fullmatch(r"[0-9]+", cas):
                    raise bad("Invalid cas index")
                cur = dc.kv.get(key)
                # As Consul's kvsDeleteCASTxn: a missing key is `true` (nothing to delete);
                # an index that is not the key's (0 never is) is `false`.
                if cur is None:
                    self.send_json(True)
                    return
                if cur["ModifyIndex"] != int(cas):
                    self.send_json(False)
                    return
            gone = [k for k in dc.kv if (k.startswith(key) if recurse else k == key)]
            if gone:
                tx = Txn(st, dc)
                tx.mark("kvs")
                for k in gone:
                    del dc.kv[k]
                    dc.kv_tombstones[k] = tx.idx
                tx.commit()
        self.send_json(True)

    @route(r"/v1/catalog/services", ["GET"])
    def catalog_services(self):
        nm = self.node_meta_filters()

        def body(dc, q):
            out = {}
            for (node, _), s in sorted(dc.services.items()):
                if not all(dc.nodes[node]["Meta"].get(k) == v for k, v in nm):
                    continue
                if q.filter is not None and not q.filter(catalog_entry(dc, s)):
                    continue
                tags = out.setdefault(s["Service"], [])
                for t in s["Tags"]:
                    if t not in tags:
                        tags.append(t)
            return out
        self.blocking_read(lambda dc: dc.t_services, body)

    def _select(self, dc, name):
        lname = name.lower()
        tags = [t.lower() for t in self.params.get("tag", [])]
        nm = self.node_meta_filters()
        out = []
        for (node, _), s in sorted(dc.services.items()):
            if s["Service"].lower() != lname:
                continue
            stags = [t.lower() for t in s["Tags"]]
            if not all(t in stags for t in tags):
                continue
            if not all(dc.nodes[node]["Meta"].get(k) == v for k, v in nm):
                continue
            out.append(s)
        return out

    @route(r"/v1/catalog/service/(?P<name>.*)", ["GET"], "/v1/catalog/service/:name")
    def catalog_service(self, name):
        self.query_opts()     # Consul parses (and rejects) the query options first
        if not name:
            raise bad("Missing service name")

        def body(dc, q):
            return [catalog_entry(dc, s) for s in self._select(dc, name)]
        self.blocking_read(lambda dc: self.st.svc_index(dc, name, False), body)

    @route(r"/v1/health/service/(?P<name>.*)", ["GET"], "/v1/health/service/:name")
    def health_service(self, name):
        self.query_opts()     # Consul parses (and rejects) the query options first
        if not name:
            raise bad("Missing service name")
        passing = False
        if "passing" in self.params:
            v = self.params["passing"][0]
            if v == "":
                passing = True
            else:
                try:
                    passing = parse_go_bool(v)
                except ValueError:
                    raise bad("Invalid value for ?passing")

        def body(dc, q):
            out = []
            for s in self._select(dc, name):
                e = health_entry(dc, s)
                if passing and any(c["Status"] != "passing" for c in e["Checks"]):
                    continue
                out.append(e)
            return out
        self.blocking_read(lambda dc: self.st.svc_index(dc, name, True), body)

    @route(r"/v1/health/checks/(?P<name>.*)", ["GET"], "/v1/health/checks/:name")
    def health_checks(self, name):
        self.query_opts()     # Consul parses (and rejects) the query options first
        if not name:
            raise bad("Missing service name")
        lname = name.lower()

        def body(dc, q):
            return [check_view(dc, c) for _, c in sorted(dc.checks.items())
                    if c["ServiceName"].lower() == lname]
        self.blocking_read(lambda dc: self.st.svc_index(dc, name, True), body)

    # ------------------------------------------------------------ control (not Consul)
    @route(r"/_standin/fault", ["GET", "PUT", "POST"])
    def control_fault(self):
        st = self.st
        if self.command == "GET":
            with st.lock:
                out = public_fault(st.fault)
                if st.last_fault is not None:
                    out["last"] = public_fault(st.last_fault)
                self.send_json(out)
            return
        body = self.body_json(required=False)
        mode = body.get("mode", "none")
        modes = ("index_backwards", "index_zero", "early_return", "error500", "no_leader", "none")
        if mode not in modes:
            raise bad("mode must be one of %s" % ", ".join(modes))
        count = body.get("count", 1)
        index = body.get("index")
        path = body.get("path") or ""
        blocking_only = body.get("blocking_only", True)
        if not isinstance(count, int) or isinstance(count, bool):
            raise bad("count must be an integer")
        if index is not None and (not isinstance(index, int) or index < 0):
            raise bad("index must be a non-negative integer")
        if not isinstance(path, str) or not isinstance(blocking_only, bool):
            raise bad("path must be a string, blocking_only a boolean")
        with st.cond:
            if mode == "none":
                st.fault = None
            else:
                st.fault = {"mode": mode, "remaining": count if count > 0 else None,
                            "path": path, "blocking_only": blocking_only, "index": index,
                            "fired": 0}
                st.last_fault = st.fault
            st.cond.notify_all()     # hanging queries take the fault at once
            self.send_json(public_fault(st.fault))

    @route(r"/_standin/stats", ["GET"])
    def control_stats(self):
        with self.st.lock:
            index = self.st.index
        self.send_json(self.server.stats.snapshot(index))

    @route(r"/_standin/stats/reset", ["PUT", "POST"])
    def control_stats_reset(self):
        stats = self.server.stats
        with stats.lock:
            stats.reset()
        self.send_json(True)

    @route(r"/_standin/requests", ["GET"])
    def control_requests(self):
        try:
            limit = max(0, min(2000, int(self.param("limit", "100"))))
        except ValueError:
            raise bad("limit must be an integer")
        stats = self.server.stats
        with stats.lock:
            log = list(stats.log)
        self.send_json(log[-limit:] if limit else [])

    @route(r"/_standin/reset", ["PUT", "POST"])
    def control_reset(self):
        body = self.body_json(required=False)
        index = body.get("index")
        if index is not None and (not isinstance(index, int) or index < 1):
            raise bad("index must be a positive integer")
        st = self.st
        with st.cond:
            st.reset(index)
            idx = st.index
        stats = self.server.stats
        with stats.lock:
            stats.reset()
        self.send_json({"index": idx})

    @route(r"/_standin/state", ["GET"])
    def control_state(self):
        st = self.st
        with st.lock:
            out = {"index": st.index, "generation": st.generation, "fault": public_fault(st.fault),
                   "agent_services": sorted(st.agent_services),
                   "agent_checks": {k: {"ttl": v["ttl"]} for k, v in st.agent_checks.items()},
                   "datacenters": {}}
            for name, dc in st.dcs.items():
                out["datacenters"][name] = {
                    "nodes": [node_view(dc, n) for _, n in sorted(dc.nodes.items())],
                    "services": [catalog_entry(dc, s) for _, s in sorted(dc.services.items())],
                    "checks": [check_view(dc, c) for _, c in sorted(dc.checks.items())],
                    "table_index": {"nodes": dc.t_nodes, "services": dc.t_services,
                                    "checks": dc.t_checks},
                    "service_index": dict(sorted(dc.svc_idx.items())),
                    "extinction_index": dc.extinction,
                }
        self.send_json(out)


def public_fault(f):
    if f is None:
        return {"mode": "none"}
    return {"mode": f["mode"], "remaining": f["remaining"], "path": f["path"],
            "blocking_only": f["blocking_only"], "index": f["index"], "fired": f["fired"]}


# ------------------------------------------------------------------------- JSON renderings

def node_view(dc, n):
    return {"ID": n["ID"], "Node": n["Node"], "Address": n["Address"], "Datacenter": dc.name,
            "TaggedAddresses": n["TaggedAddresses"], "Meta": n["Meta"],
            "CreateIndex": n["CreateIndex"], "ModifyIndex": n["ModifyIndex"]}


def catalog_entry(dc, s):
    n = dc.nodes[s["Node"]]
    e = {"ID": n["ID"], "Node": n["Node"], "Address": n["Address"], "Datacenter": dc.name,
         "TaggedAddresses": n["TaggedAddresses"], "NodeMeta": n["Meta"],
         "ServiceKind": s["Kind"], "ServiceID": s["ID"], "ServiceName": s["Service"],
         "ServiceTags": list(s["Tags"]), "ServiceAddress": s["Address"]}
    if s["TaggedAddresses"]:
        e["ServiceTaggedAddresses"] = s["TaggedAddresses"]
    e.update({"ServiceWeights": s["Weights"], "ServiceMeta": s["Meta"],
              "ServicePort": s["Port"], "ServiceSocketPath": "",
              "ServiceEnableTagOverride": s["EnableTagOverride"],
              "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
              "ServiceConnect": {}, "PeerName": "",
              "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]})
    return e


def service_view(s):
    out = {"ID": s["ID"], "Service": s["Service"], "Tags": list(s["Tags"]),
           "Address": s["Address"]}
    if s["TaggedAddresses"]:
        out["TaggedAddresses"] = s["TaggedAddresses"]
    out.update({"Meta": s["Meta"], "Port": s["Port"], "Weights": s["Weights"],
                "EnableTagOverride": s["EnableTagOverride"], "Kind": s["Kind"],
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {},
                "PeerName": "", "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]})
    return out


def check_view(dc, c):
    tags = []
    if c["ServiceID"]:
        s = dc.services.get((c["Node"], c["ServiceID"]))
        if s is not None:
            tags = list(s["Tags"])
    return {"Node": c["Node"], "CheckID": c["CheckID"], "Name": c["Name"],
            "Status": c["Status"], "Notes": c["Notes"], "Output": c["Output"],
            "ServiceID": c["ServiceID"], "ServiceName": c["ServiceName"], "ServiceTags": tags,
            "Type": c["Type"], "Interval": c["Interval"], "Timeout": c["Timeout"],
            "ExposedPort": 0, "Definition": {}, "CreateIndex": c["CreateIndex"],
            "ModifyIndex": c["ModifyIndex"]}


def health_entry(dc, s):
    n = dc.nodes[s["Node"]]
    checks = [check_view(dc, c) for (node, _), c in sorted(dc.checks.items())
              if node == s["Node"] and (c["ServiceID"] == "" or c["ServiceID"] == s["ID"])]
    return {"Node": node_view(dc, n), "Service": service_view(s), "Checks": checks}


# ---------------------------------------------------------------------------------- main

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="consul_standin.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=28500, help="TCP port on 127.0.0.1 (0: any)")
    ap.add_argument("--dc", default="dc1", help="the agent's datacenter (default dc1)")
    ap.add_argument("--extra-dc", action="append", default=[], metavar="NAME",
                    help="another known datacenter (repeatable)")
    ap.add_argument("--acl-token", default="", metavar="T",
                    help="require this token on /v1 (X-Consul-Token, Bearer or ?token=)")
    ap.add_argument("--ready-file", metavar="PATH", help="write the bound port here when ready")
    ap.add_argument("--start-index", type=int, default=10, help="first raft index (> 0)")
    ap.add_argument("--node-name", default="standin-node", help="the agent's node name")
    ap.add_argument("--default-query-time", default="5m", help="default blocking wait")
    ap.add_argument("--max-query-time", default="10m", help="cap on blocking wait")
    ap.add_argument("--quiet", action="store_true", help="no per-request log on stderr")
    ap.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    ap.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    ap.add_argument("--tls-client-ca", metavar="PEM",
                    help="require client certificates signed by this CA (Consul's verify_incoming)")
    ap.add_argument("--version", action="version",
                    version="consul_standin.py %s (a Consul HTTP API stand-in; reports Consul %s)"
                    % (STANDIN_VERSION, CONSUL_VERSION))
    cfg = ap.parse_args(argv)
    if cfg.start_index < 1:
        ap.error("--start-index must be > 0")
    try:
        cfg.default_query_time = parse_go_duration(cfg.default_query_time)
        cfg.max_query_time = parse_go_duration(cfg.max_query_time)
    except ValueError as e:
        ap.error("bad duration %s" % e)
    if cfg.default_query_time <= 0 or cfg.max_query_time <= 0:
        ap.error("query times must be > 0")

    store = Store(cfg)
    server = Server(("127.0.0.1", cfg.port), Handler)
    if cfg.tls_cert:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        if cfg.tls_client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cfg.tls_client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.store = store
    server.cfg = cfg
    server.stats = Stats()
    port = server.server_address[1]

    def ttl_loop():
        while True:
            time.sleep(0.05)
            with store.cond:
                store.expire_ttls()
    threading.Thread(target=ttl_loop, name="ttl", daemon=True).start()

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if cfg.ready_file:
        tmp = cfg.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, cfg.ready_file)
    sys.stderr.write("consul_standin: listening on 127.0.0.1:%d dc=%s extra=%s acl=%s "
                     "index=%d (pid %d)\n" % (port, cfg.dc, ",".join(store.dc_names[1:]) or "-",
                                              "on" if cfg.acl_token else "off", store.index,
                                              os.getpid()))
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        sys.stderr.write("consul_standin: stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
