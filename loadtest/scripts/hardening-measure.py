#!/usr/bin/env python3
"""Measure switchyard's hardening against hostile clients and providers (issue 11).

Starts the gateway binary once per scenario and driver with a generated config,
drives it with raw sockets on 127.0.0.1 (Python 3 stdlib only), samples the
gateway's RSS (VmRSS from /proc/PID/status) every 0.5 s and prints a table.

Scenarios (each on io_uring and legacy, `shards: 1`):
  1 hostile-stream   upstream streams ~10 MB/s of content events for 20 s, then cuts
                     the stream; one client reads everything; continue_after_commit on
  2 anon-uploads     40 clients send a 10 MiB POST head without a key, then the body
                     slowly; expect 401 on the head, body never read
  3 non-readers      10 clients ask for an endless stream of large events and never
                     read; client_write_timeout 2s must release the upstreams
  4 upload-sink      first target never reads an 8 MiB body, second is healthy;
                     total 5s; `first_byte` left at its default is a config error
                     (checked and reported), so 4 runs first_byte 5s, 4b first_byte 1s

Every loop is bounded in time; the gateway is killed when a scenario ends.

    python3 loadtest/scripts/hardening-measure.py --binary target/release/switchyard
"""

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MIB = 1024 * 1024


def now():
    return time.monotonic()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mib(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"


# --------------------------------------------------------------------------- RSS


class RssSampler(threading.Thread):
    """VmRSS of one pid every `period` seconds until stopped (or the pid is gone)."""

    def __init__(self, pid, period=0.5):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples = []  # (t, kB)
        self.stop_flag = threading.Event()

    def read(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def run(self):
        while not self.stop_flag.is_set():
            kb = self.read()
            if kb is None:
                return
            self.samples.append((now(), kb))
            self.stop_flag.wait(self.period)

    def stop(self):
        self.stop_flag.set()
        self.join(2)

    def summary(self, since=None):
        pts = [kb for t, kb in self.samples if since is None or t >= since]
        if not pts:
            return {"start_kb": None, "max_kb": None, "end_kb": None, "samples": 0}
        t0 = self.samples[0][0]
        return {"start_kb": pts[0], "max_kb": max(pts), "end_kb": pts[-1], "samples": len(pts),
                "series": [(round(t - t0, 1), kb) for t, kb in self.samples]}


# ----------------------------------------------------------------------- gateway


class Gateway:
    def __init__(self, binary, driver, body, workdir, name):
        self.port = free_port()
        self.admin_port = free_port()
        self.config = os.path.join(workdir, f"{name}.{driver}.yaml")
        self.log_path = os.path.join(workdir, f"{name}.{driver}.log")
        with open(self.config, "w") as f:
            f.write(
                f"listen: 127.0.0.1:{self.port}\n"
                f"shards: 1\n"
                f"driver: {driver}\n"
                f"shutdown_grace: 1s\n"
                f"admin: {{ listen: 127.0.0.1:{self.admin_port} }}\n"
                f"log: {{ format: logfmt, request_sample: 0.0 }}\n" + body
            )
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "run", "--config", self.config],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = now() + 15
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.admin_port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.close()
            raise RuntimeError(f"gateway not listening after 15 s: {self.log_tail()}")
        self.rss = RssSampler(self.proc.pid)
        self.rss.start()
        time.sleep(0.6)  # a first sample or two at idle

    def log_tail(self, n=1500):
        try:
            self.log.flush()
            with open(self.log_path) as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def driver_logged(self):
        text = self.log_tail(20000)
        for tok in text.split():
            if tok.startswith("driver="):
                return tok.split("=", 1)[1].strip('"')
        return "?"

    def metrics(self):
        try:
            url = f"http://127.0.0.1:{self.admin_port}/metrics"
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()
        except OSError as e:
            return f"# metrics unavailable: {e}"

    def metric_sum(self, name, text=None):
        text = self.metrics() if text is None else text
        total, seen = 0.0, False
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                    seen = True
                except ValueError:
                    pass
        return total if seen else None

    def close(self):
        if hasattr(self, "rss"):
            self.rss.stop()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


# ---------------------------------------------------------------------- upstream


def read_request(sock, deadline, read_body=True):
    """Reads one HTTP/1.1 request; returns (head_text, body_bytes) or None on EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if now() > deadline:
            return None
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    head = head.decode("latin-1")
    if not read_body:
        return head, rest
    lower = head.lower()
    length = 0
    for line in lower.split("\r\n")[1:]:
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    chunked = "transfer-encoding: chunked" in lower
    body = rest
    while (len(body) < length) if not chunked else (not body.endswith(b"0\r\n\r\n")):
        if now() > deadline:
            return None
        try:
            chunk = sock.recv(262144)
        except socket.timeout:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        body += chunk
    if chunked:
        out, i = b"", 0
        while True:
            j = body.index(b"\r\n", i)
            size = int(body[i:j].split(b";")[0], 16)
            if size == 0:
                break
            out += body[j + 2 : j + 2 + size]
            i = j + 2 + size + 2
        body = out
    return head, body


def is_stream_request(body):
    try:
        return bool(json.loads(body).get("stream"))
    except (ValueError, AttributeError):
        return False


COMPLETION = json.dumps({
    "id": "chatcmpl-measure", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


def send_completion(sock):
    sock.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION
    )


def content_event(n):
    data = json.dumps({"id": "chatcmpl-h", "object": "chat.completion.chunk", "model": "m",
                       "choices": [{"index": 0, "delta": {"content": "x" * n}}]})
    return f"data: {data}\n\n".encode()


SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")


def chunk(payload):
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


class Upstream:
    """A threaded raw-socket provider. `handler(conn_record, sock)` serves one
    connection; every connection is recorded with its open/close times."""

    def __init__(self, handler, rcvbuf=None, life=120):
        self.handler = handler
        self.stop = threading.Event()
        self.deadline = now() + life
        self.lock = threading.Lock()
        self.conns = []
        self.requests = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stop.is_set() and now() < self.deadline:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = {"opened": now(), "closed": None, "sent": 0, "request_at": None, "why": None}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.serve, args=(rec, sock), daemon=True).start()
        self.listener.close()

    def serve(self, rec, sock):
        sock.settimeout(0.25)
        try:
            self.handler(self, rec, sock)
        except OSError as e:
            rec["why"] = type(e).__name__
        finally:
            rec["closed"] = now()
            try:
                sock.close()
            except OSError:
                pass

    def alive(self):
        return not self.stop.is_set() and now() < self.deadline

    def shutdown(self):
        self.stop.set()


def send_for(up, rec, sock, data, until):
    """sendall with a bounded wait; False when `until` passes or the upstream stops."""
    view = memoryview(data)
    while view:
        if not up.alive() or now() > until:
            return False
        try:
            n = sock.send(view)
        except socket.timeout:
            continue
        view = view[n:]
        rec["sent"] += n
    return True


def healthy_handler(up, rec, sock):
    while up.alive():
        req = read_request(sock, up.deadline)
        if req is None:
            rec["why"] = "eof"
            return
        with up.lock:
            up.requests += 1
        send_completion(sock)


# ----------------------------------------------------------------------- clients


def chat_body(stream, content="hi", model="chat"):
    return json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": content}]}).encode()


def post_head(port, length, key=None, extra=""):
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\n{auth}{extra}"
            f"content-length: {length}\r\n\r\n").encode()


def read_head_from(sock, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf and now() < deadline:
        try:
            chunk_ = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk_:
            break
        buf += chunk_
    if b"\r\n\r\n" not in buf:
        return None, {}, buf
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def simple_request(port, body, key=None, timeout=10):
    """One request on a fresh connection; returns (status, headers, body, seconds)."""
    t0 = now()
    deadline = t0 + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.settimeout(timeout)  # Python bounds the whole sendall by this
        s.sendall(post_head(port, len(body), key, "connection: close\r\n") + body)
        s.settimeout(0.5)
        status, headers, rest = read_head_from(s, deadline)
        if status is None:
            return None, {}, rest, now() - t0
        length = int(headers.get("content-length", "-1"))
        while (length < 0 or len(rest) < length) and now() < deadline:
            try:
                c = s.recv(65536)
            except socket.timeout:
                continue
            if not c:
                break
            rest += c
        return status, headers, rest, now() - t0


# --------------------------------------------------------------------- scenarios


def provider(name, url, extra=""):
    return f"  {name}: {{ kind: openai-compatible, base_url: {url}{extra} }}\n"


def scenario_hostile_stream(args, driver, workdir):
    """1: ~10 MB/s of content events for 20 s into one reading client."""
    rate = 10_000_000  # content bytes per second, roughly
    duration = args.stream_seconds
    event = content_event(8192)
    per_tick = 10  # events per chunk; one chunk every len(chunk)/rate seconds

    def hostile(up, rec, sock):
        while up.alive():
            req = read_request(sock, up.deadline)
            if req is None:
                return
            with up.lock:
                up.requests += 1
            if not is_stream_request(req[1]):
                send_completion(sock)
                continue
            rec["request_at"] = now()
            sock.sendall(SSE_HEAD)
            payload = chunk(event * per_tick)
            start = now()
            end = start + duration
            sent = 0
            while now() < end and up.alive():
                if not send_for(up, rec, sock, payload, end):
                    break
                sent += len(payload)
                ahead = start + sent / rate - now()
                if ahead > 0:
                    time.sleep(min(ahead, 0.05))
            rec["why"] = "cut after %.0f s" % (now() - start)
            return  # close mid-stream: the hostile provider never finishes

    hostile_up = Upstream(hostile)
    spare = Upstream(healthy_handler)
    cap = (f"limits: {{ max_stream_buffer_bytes: {args.stream_buffer_cap} }}\n"
           if args.stream_buffer_cap else "")
    gw = Gateway(args.binary, driver, cap + (
        "providers:\n" + provider("hostile", hostile_up.base_url) + provider("spare", spare.base_url) +
        "routes:\n"
        "  - name: chat\n"
        "    match: { model: \"*\" }\n"
        "    targets:\n"
        "      - { provider: hostile, model: m, priority: 0 }\n"
        "      - { provider: spare, model: m, priority: 1 }\n"
        "    timeouts: { total: 60s }\n"
        "    stream: { continue_after_commit: true }\n"
    ), workdir, "hostile-stream")
    try:
        t_start = now()
        body = chat_body(True)
        received, tail, status = 0, b"", None
        first_at = None
        with socket.create_connection(("127.0.0.1", gw.port), timeout=1) as s:
            s.settimeout(0.5)
            s.sendall(post_head(gw.port, len(body)) + body)
            deadline = t_start + duration + 30
            buf = b""
            while now() < deadline:
                try:
                    c = s.recv(262144)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not c:
                    break
                if first_at is None:
                    first_at = now()
                received += len(c)
                tail = (tail + c)[-8192:]
                if status is None:
                    buf += c
                    if b"\r\n\r\n" in buf:
                        status = int(buf.split(b" ", 2)[1])
                if tail.endswith(b"\r\n0\r\n\r\n"):
                    break  # chunked end of the response
        elapsed = now() - (first_at or t_start)
        rss = gw.rss.summary()
        m = gw.metrics()
        tail_text = tail.decode("latin-1", "replace")
        events = [e for e in tail_text.split("\n\n") if "data:" in e]
        last = []
        for e in events[-2:]:
            data = e.split("data:", 1)[1].strip()
            try:
                err = json.loads(data).get("error")
                last.append(f"error {err.get('code')}" if err else "content")
            except (ValueError, AttributeError):
                last.append(data[:40])
        return {
            "status": status,
            "client_bytes": received,
            "client_mb_per_s": received / elapsed / 1e6 if elapsed > 0 else 0,
            "upstream_bytes": sum(c["sent"] for c in hostile_up.conns),
            "stream_end": last,
            "spare_requests": spare.requests,
            "overflows": gw.metric_sum("switchyard_stream_buffer_overflows_total", m),
            "rss": rss,
            "driver_logged": gw.driver_logged(),
        }
    finally:
        gw.close()
        hostile_up.shutdown()
        spare.shutdown()


def scenario_anon_uploads(args, driver, workdir):
    """2: 40 keyless 10 MiB upload heads; the body is trickled afterwards."""
    n_clients = 40
    length = 10 * MIB
    spare = Upstream(healthy_handler)
    gw = Gateway(args.binary, driver, (
        "keys: [{ name: a, key: sk-a }]\n"
        "limits: { max_body_bytes: 16777216 }\n"
        "providers:\n" + provider("up", spare.base_url) +
        "routes:\n"
        "  - name: chat\n"
        "    match: { model: \"*\" }\n"
        "    targets: [{ provider: up, model: m }]\n"
    ), workdir, "anon-uploads")
    results = [None] * n_clients
    go = threading.Event()

    def client(i):
        res = {"status": None, "latency": None, "body_sent": 0, "closed_after": None}
        results[i] = res
        try:
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=2)
        except OSError as e:
            res["error"] = str(e)
            return
        with s:
            go.wait(5)
            t0 = now()
            deadline = t0 + 10
            s.sendall(post_head(gw.port, length))
            s.setblocking(False)
            buf = b""
            piece = b"x" * 1024
            next_send = t0
            while now() < deadline:
                r, _, _ = select.select([s], [], [], 0.02)
                if r:
                    try:
                        c = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        c = None
                    except OSError:
                        res["closed_after"] = now() - t0
                        break
                    if c == b"":
                        res["closed_after"] = now() - t0
                        break
                    if c:
                        buf += c
                        if res["status"] is None and b"\r\n" in buf:
                            res["status"] = int(buf.split(b" ", 2)[1])
                            res["latency"] = now() - t0
                if now() >= next_send and res["body_sent"] < length:
                    try:  # the slow body: 1 KiB every 50 ms
                        res["body_sent"] += s.send(piece)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        res["closed_after"] = res["closed_after"] or now() - t0
                        break
                    next_send += 0.05

    try:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n_clients)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        t_go = now()
        go.set()
        for t in threads:
            t.join(max(0.1, t_go + 15 - now()))
        time.sleep(0.6)
        rss = gw.rss.summary()
        ok401 = [r for r in results if r and r["status"] == 401]
        lat = sorted(r["latency"] for r in ok401)
        closed = [r["closed_after"] for r in results if r and r["closed_after"] is not None]
        return {
            "clients": n_clients,
            "got_401": len(ok401),
            "statuses": sorted({str(r["status"]) for r in results if r}),
            "latency_p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
            "latency_max_ms": lat[-1] * 1000 if lat else None,
            "closed_by_gateway": len(closed),
            "closed_max_s": max(closed) if closed else None,
            "body_sent_max_kib": max((r["body_sent"] for r in results if r), default=0) / 1024,
            "upstream_requests": spare.requests,
            "rss": rss,
            "driver_logged": gw.driver_logged(),
        }
    finally:
        gw.close()
        spare.shutdown()


def scenario_non_readers(args, driver, workdir):
    """3: 10 streaming clients that never read; write deadline 2 s."""
    n_clients = 10
    event = content_event(65536)

    def endless(up, rec, sock):
        while up.alive():
            req = read_request(sock, up.deadline)
            if req is None:
                rec["why"] = "eof"
                return
            with up.lock:
                up.requests += 1
            if not is_stream_request(req[1]):
                send_completion(sock)
                continue
            rec["request_at"] = now()
            rec["stream"] = True
            sock.sendall(SSE_HEAD)
            payload = chunk(event * 4)
            while up.alive():  # as fast as the gateway takes it, forever
                send_for(up, rec, sock, payload, up.deadline)
            rec["why"] = "stopped"
            return

    up = Upstream(endless)
    gw = Gateway(args.binary, driver, (
        "limits: { client_write_timeout: 2s }\n"
        "providers:\n" + provider("up", up.base_url) +
        "routes:\n"
        "  - name: chat\n"
        "    match: { model: \"*\" }\n"
        "    targets: [{ provider: up, model: m }]\n"
    ), workdir, "non-readers")
    clients = []
    try:
        body = chat_body(True)
        t0 = now()
        for _ in range(n_clients):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(2)
            s.connect(("127.0.0.1", gw.port))
            s.sendall(post_head(gw.port, len(body)) + body)
            clients.append(s)
        # Wait (bounded) until every upstream stream connection has closed.
        deadline = t0 + args.release_wait
        peak_upstream_open = 0
        while now() < deadline:
            with up.lock:
                streams = [c for c in up.conns if c.get("stream")]
            peak_upstream_open = max(peak_upstream_open, sum(1 for c in streams if c["closed"] is None))
            if len(streams) >= n_clients and all(c["closed"] for c in streams):
                break
            time.sleep(0.1)
        with up.lock:
            streams = [c for c in up.conns if c.get("stream")]
        released = [c["closed"] - c["request_at"] for c in streams if c["closed"]]
        metrics_after = gw.metrics()
        upstream_open_metric = gw.metric_sum("switchyard_upstream_connections_open", metrics_after)
        client_conns_metric = gw.metric_sum("switchyard_client_connections", metrics_after)
        # Did the gateway close the client connections? Drain each (bounded) for EOF.
        client_eof = 0
        drain_deadline = now() + 5
        for s in clients:
            s.settimeout(0.2)
            while now() < drain_deadline:
                try:
                    c = s.recv(1 << 20)
                except socket.timeout:
                    break
                except OSError:
                    client_eof += 1
                    break
                if not c:
                    client_eof += 1
                    break
        status, headers, resp, secs = simple_request(gw.port, chat_body(False), timeout=10)
        rss = gw.rss.summary()
        return {
            "clients": n_clients,
            "upstream_streams": len(streams),
            "upstream_peak_open": peak_upstream_open,
            "upstream_closed": len(released),
            "release_min_s": min(released) if released else None,
            "release_max_s": max(released) if released else None,
            "upstream_mib_sent": sum(c["sent"] for c in streams) / MIB,
            "gw_upstream_open_after": upstream_open_metric,
            "gw_client_conns_after": client_conns_metric,
            "client_conns_closed_by_gateway": client_eof,
            "normal_status": status,
            "normal_ms": secs * 1000,
            "rss": rss,
            "driver_logged": gw.driver_logged(),
        }
    finally:
        for s in clients:
            s.close()
        gw.close()
        up.shutdown()


def scenario_upload_sink(args, driver, workdir, first_byte=None):
    """4: first target never reads an 8 MiB body; second target is healthy."""

    def sink(up, rec, sock):
        rec["request_at"] = now()
        while up.alive():  # never reads a byte
            time.sleep(0.1)
        rec["why"] = "stopped"

    sink_up = Upstream(sink, rcvbuf=65536)
    good = Upstream(healthy_handler)

    def routes(timeouts):
        return (
            "providers:\n" + provider("sink", sink_up.base_url) + provider("good", good.base_url) +
            "routes:\n"
            "  - name: chat\n"
            "    match: { model: \"*\" }\n"
            "    targets:\n"
            "      - { provider: sink, model: m, priority: 0 }\n"
            "      - { provider: good, model: m, priority: 1 }\n"
            f"    timeouts: {{ {timeouts} }}\n"
        )

    # `timeouts: { total: 5s }` alone leaves first_byte at its 15s default, which the
    # config check rejects (first_byte must not exceed total); say so, then run with
    # first_byte = total, the value min(total, first_byte) would give anyway.
    default_check = "-"
    if first_byte is None:
        path = os.path.join(workdir, f"upload-sink-default.{driver}.yaml")
        with open(path, "w") as f:
            f.write("listen: 127.0.0.1:1\nshards: 1\n" + routes("total: 5s"))
        chk = subprocess.run([args.binary, "check", "--config", path], capture_output=True,
                             text=True, timeout=10)
        out = (chk.stdout + chk.stderr).strip().splitlines()
        default_check = "accepted" if chk.returncode == 0 else "rejected: " + (
            out[0].split(": ", 1)[-1] if out else f"exit {chk.returncode}")
        first_byte = "5s"
    gw = Gateway(args.binary, driver, routes(f"total: 5s, first_byte: {first_byte}"),
                 workdir, f"upload-sink-fb{first_byte}")
    try:
        body = chat_body(False, content="x" * (8 * MIB))
        status, headers, resp, secs = simple_request(gw.port, body, timeout=20)
        detail = ""
        if status and status != 200:
            try:
                err = json.loads(resp)["error"]
                detail = "; ".join(f"{a.get('target')} {a.get('class')} after {a.get('elapsed_ms')} ms"
                                   f" ({a.get('detail') or ''})"
                                   for a in err.get("attempts", [])) or err["message"]
            except (ValueError, KeyError, TypeError):
                detail = resp[:200].decode("latin-1", "replace")
        return {
            "first_byte": first_byte,
            "default_first_byte_config": default_check,
            "status": status,
            "seconds": secs,
            "target": headers.get("x-switchyard-target", "-"),
            "attempts": headers.get("x-switchyard-attempts", "-"),
            "detail": detail,
            "sink_conns": len(sink_up.conns),
            "good_requests": good.requests,
            "rss": gw.rss.summary(),
            "driver_logged": gw.driver_logged(),
        }
    finally:
        gw.close()
        sink_up.shutdown()
        good.shutdown()


SCENARIOS = {
    "1": ("hostile stream", scenario_hostile_stream),
    "2": ("40 anonymous 10 MiB uploads", scenario_anon_uploads),
    "3": ("10 non-reading clients", scenario_non_readers),
    "4": ("upload sink, total 5s (first_byte 5s)", scenario_upload_sink),
    "4b": ("upload sink, total 5s, first_byte 1s",
           lambda a, d, w: scenario_upload_sink(a, d, w, first_byte="1s")),
}


# ------------------------------------------------------------------------ report


def fmt(v, spec="{:.2f}"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return spec.format(v)
    return str(v)


def rows_for(key, r):
    """(metric, value) rows for one scenario result."""
    if "error" in r:
        return [("ERROR", r["error"])]
    rss = r["rss"]
    rss_row = ("RSS start / max / end (MiB)",
               f"{mib(rss['start_kb'])} / {mib(rss['max_kb'])} / {mib(rss['end_kb'])}")
    if key == "1":
        late = [kb for t, kb in rss.get("series", []) if t >= 6.0]
        return [
            rss_row,
            ("RSS from 6 s to the end, min / max (MiB)",
             f"{mib(min(late)) if late else '-'} / {mib(max(late)) if late else '-'}"),
            ("client received", f"{r['client_bytes'] / 1e6:.1f} MB ({r['client_mb_per_s']:.1f} MB/s), status {r['status']}"),
            ("upstream sent", f"{r['upstream_bytes'] / 1e6:.1f} MB"),
            ("buffer overflows counted / spare target requests", f"{fmt(r['overflows'], '{:.0f}')} / {r['spare_requests']}"),
            ("stream end (last two events)", " + ".join(r["stream_end"]) or "-"),
        ]
    if key == "2":
        return [
            rss_row,
            ("401 on the head", f"{r['got_401']} of {r['clients']} (statuses {','.join(r['statuses'])})"),
            ("time to 401 p50 / max (ms)", f"{fmt(r['latency_p50_ms'], '{:.1f}')} / {fmt(r['latency_max_ms'], '{:.1f}')}"),
            ("connections closed by gateway (last at)", f"{r['closed_by_gateway']} ({fmt(r['closed_max_s'])} s)"),
            ("body sent before close, max", f"{r['body_sent_max_kib']:.0f} KiB"),
        ]
    if key == "3":
        return [
            rss_row,
            ("upstream streams closed", f"{r['upstream_closed']} of {r['upstream_streams']} (peak open {r['upstream_peak_open']})"),
            ("time to release min / max (s)", f"{fmt(r['release_min_s'])} / {fmt(r['release_max_s'])}"),
            ("upstream sent before release", f"{r['upstream_mib_sent']:.1f} MiB"),
            ("gauges after: upstream conns / client conns", f"{fmt(r['gw_upstream_open_after'], '{:.0f}')} / {fmt(r['gw_client_conns_after'], '{:.0f}')}"),
            ("client conns closed by gateway", f"{r['client_conns_closed_by_gateway']} of {r['clients']}"),
            ("then one normal request", f"{r['normal_status']} in {r['normal_ms']:.1f} ms"),
        ]
    rows = [] if r.get("default_first_byte_config", "-") == "-" else [
        ("config with total 5s, first_byte default", r["default_first_byte_config"][:110])]
    return rows + [
        rss_row,
        ("answer", f"{r['status']} in {r['seconds']:.2f} s"),
        ("x-switchyard-target / attempts", f"{r['target']} / {r['attempts']}"),
        ("healthy target requests", str(r["good_requests"])),
        ("error attempts", (r["detail"] or "-")[:110]),
    ]


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/release/switchyard")
    p.add_argument("--drivers", default="io_uring,legacy")
    p.add_argument("--only", default="1,2,3,4,4b", help="scenarios, comma separated (1,2,3,4,4b)")
    p.add_argument("--stream-seconds", type=float, default=20.0, help="scenario 1 stream length")
    p.add_argument("--stream-buffer-cap", type=int, default=0,
                   help="scenario 1: limits.max_stream_buffer_bytes (default: the gateway's, 4 MiB)")
    p.add_argument("--release-wait", type=float, default=20.0, help="scenario 3 wait bound (s)")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--keep", action="store_true", help="keep generated configs and gateway logs")
    args = p.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary}: not an executable; build with cargo build --release --bin switchyard")
    drivers = [d for d in args.drivers.split(",") if d]
    keys = [k for k in args.only.split(",") if k]
    for k in keys:
        if k not in SCENARIOS:
            sys.exit(f"unknown scenario {k}; expected one of {', '.join(SCENARIOS)}")
    workdir = tempfile.mkdtemp(prefix="switchyard-hardening-")
    cpus = os.cpu_count()
    load_before = loadavg()
    print(f"# switchyard hardening measurements: {args.binary}, shards 1, {cpus} CPUs, "
          f"load average {load_before} at start", flush=True)
    if cpus is not None and cpus <= 2:
        print("# note: a small shared machine; other work (e.g. compiles) may run beside this, "
              "so timings are upper bounds", flush=True)
    results = {}
    for k in keys:
        title, fn = SCENARIOS[k]
        for d in drivers:
            print(f"... scenario {k} ({title}) on {d}", flush=True)
            t0 = now()
            try:
                r = fn(args, d, workdir)
            except Exception as e:  # a scenario that cannot run is reported, not hidden
                r = {"error": f"{type(e).__name__}: {e}"}
            r["wall_s"] = now() - t0
            results[(k, d)] = r
            if "driver_logged" in r and r["driver_logged"] not in (d, "?"):
                print(f"    WARNING: asked for {d}, gateway logged driver={r['driver_logged']}")
            print(f"    done in {r['wall_s']:.1f} s", flush=True)
    print()
    print(f"| scenario | metric | {' | '.join(drivers)} |")
    print("|---|---|" + "---|" * len(drivers))
    for k in keys:
        per_driver = [rows_for(k, results[(k, d)]) for d in drivers]
        n = max(len(r) for r in per_driver)
        for i in range(n):
            label = None
            vals = []
            for rows in per_driver:
                if i < len(rows):
                    label = label or rows[i][0]
                    vals.append(str(rows[i][1]).replace("|", "\\|"))
                else:
                    vals.append("")
            name = f"{k} {SCENARIOS[k][0]}" if i == 0 else ""
            print(f"| {name} | {label} | {' | '.join(vals)} |")
    print()
    print(f"# load average {loadavg()} at end (was {load_before}); {cpus} CPUs")
    if args.keep:
        print(f"# configs and gateway logs kept in {workdir}")
    else:
        for f in os.listdir(workdir):
            os.unlink(os.path.join(workdir, f))
        os.rmdir(workdir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k}/{d}": v for (k, d), v in results.items()}, f, indent=2, default=str)
    failed = any("error" in r for r in results.values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
