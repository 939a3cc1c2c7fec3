#!/usr/bin/python3
"""Hostile clients against `talkrender serve` (docs/serve.md): a benchmark and a CI test.

Starts its own server, opens ONE healthy fMP4 session that streams speech in real time for
the whole run, and meanwhile runs hostile cases one after another (garbage bytes, bad
tokens, bad JSON, oversized bodies and WebSocket messages, odd PCM, bad control messages,
throttling, second clients, connection floods, the session cap, a client that never reads,
SIGTERM with a live session). Each case checks its exact outcome (HTTP status + JSON
"error", WebSocket close code, or a text {"type":"error"} reply) and that /health still
answers. Prints a table, then the healthy session's frames, client-side late frames
(arrival_i > arrival_0 + (i+1)/fps) and the server's talkrender_frames_late_total delta;
late frames are reported, never asserted.

    tools/serve_hostile.py [--talkrender build/talkrender] [--avatars DIR] [--audio talk.wav]
                           [--port P] [--json out.json] [--skip-slow]

Without --avatars it writes a synthetic avatar (`talkrender demo --avatar-only`) plus the
models/demo models into a temporary folder. Exit 0: every case as expected and the healthy
session kept receiving frames (>= 0.8 x elapsed x fps); 1: otherwise; 77: skipped (no speech
file, ffmpeg or aiohttp). Runs in ~20 s (~11 s with --skip-slow). Needs aiohttp and ffmpeg.
"""
import argparse
import asyncio
import base64
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

RATE = 16000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
ARGS = PROC = AVATAR = HEALTHY_WS = None


def skip(msg):
    print(f"serve_hostile: skipped: {msg}")
    sys.exit(77)


# ---------------------------------------------------------------- blocking HTTP helpers
def auth(token=True):
    token = ARGS.token if token is True else token
    return {"Authorization": f"Bearer {token}"} if token else {}


def req(method, path, body=None, token=True, headers=None, timeout=15):
    """-> (status, parsed JSON or None, response headers)."""
    c = http.client.HTTPConnection(HOST, ARGS.port, timeout=timeout)
    try:
        h = dict(auth(token), **(headers or {}))
        if isinstance(body, dict):
            body, h["Content-Type"] = json.dumps(body).encode(), "application/json"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, parse_json(r.read()), dict(r.getheaders())
    finally:
        c.close()


def parse_json(b):
    try:
        return json.loads(b)
    except ValueError:
        return None


def read_to_eof(s, buf=b""):
    """-> (bytes, how it ended)."""
    while True:
        try:
            b = s.recv(65536)
        except (socket.timeout, TimeoutError):
            return buf, "timeout"
        except OSError as e:
            return buf, e.__class__.__name__
        if not b:
            return buf, "eof"
        buf += b


def split_response(out):
    """Raw HTTP reply -> (status or None, JSON body or None)."""
    if not out.startswith(b"HTTP/1."):
        return None, None
    return int(out.split(b" ", 2)[1]), parse_json(out.partition(b"\r\n\r\n")[2])


def raw(data, timeout=10):
    """Sends raw bytes on a fresh connection, reads to EOF -> (status, JSON, how it ended)."""
    with socket.create_connection((HOST, ARGS.port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        out, how = read_to_eof(s)
    return (*split_response(out), how)


def head(method, path, length):
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ARGS.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def health():
    try:
        st, j, _ = req("GET", "/health", timeout=10)
        return j if st == 200 and j else None
    except OSError:
        return None


def metric(name):
    c = http.client.HTTPConnection(HOST, ARGS.port, timeout=10)
    try:
        c.request("GET", "/metrics", headers=auth())
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    finally:
        c.close()
    return None


def rss_mib():
    with open(f"/proc/{PROC.pid}/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))


def settled():
    """/health once the cases' sessions are released (closing one is asynchronous)."""
    h, end = health(), time.monotonic() + 5
    while h and h["sessions"] > 1 and time.monotonic() < end:
        time.sleep(0.05)
        h = health()
    return h


def new_session(fmt="fmp4"):
    st, j, _ = req("POST", "/v1/sessions", {"avatar": AVATAR, "format": fmt})
    if st != 201:
        raise RuntimeError(f"POST /v1/sessions -> {st} {j}")
    return j


# ------------------------------------------------------------- a raw WebSocket client
class RawWS:
    """A minimal blocking WebSocket client on a raw socket (frames built by hand)."""

    def __init__(self, path, rcvbuf=None, timeout=10):
        self.s = socket.socket()
        if rcvbuf:  # set before connect: a small window, so little is buffered in the kernel
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(timeout)
        self.s.connect((HOST, ARGS.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {ARGS.token}\r\n\r\n"
                        ).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            b = self.s.recv(4096)
            if not b:
                break
            self.buf += b
        self.status, self.error = split_response(self.buf)[0], None
        if self.status == 101:
            self.buf = self.buf.partition(b"\r\n\r\n")[2]
        else:  # a refusal: JSON {"error"}, then the server closes
            self.status, j = split_response(read_to_eof(self.s, self.buf)[0])
            self.error = (j or {}).get("error")

    @staticmethod
    def frame_header(opcode, n, mask=b"\0\0\0\0"):
        if n < 126:
            return struct.pack("!BB", 0x80 | opcode, 0x80 | n) + mask
        if n < 65536:
            return struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n) + mask
        return struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n) + mask

    def send(self, opcode, payload):
        n, mask = len(payload), os.urandom(4)
        m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        body = (int.from_bytes(payload, "big") ^ m).to_bytes(n, "big") if n else b""
        self.s.sendall(self.frame_header(opcode, n, mask) + body)

    def text(self, t):
        self.send(0x1, t.encode())

    def _read(self, n):
        while len(self.buf) < n:
            b = self.s.recv(1 << 16)
            if not b:
                raise EOFError
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n >= 126:
            n = struct.unpack("!H" if n == 126 else "!Q", self._read(2 if n == 126 else 8))[0]
        return b0 & 0x0F, self._read(n)

    def event(self, timeout=5.0):
        """The next error text, pong or close (or eof / timeout), skipping frames and the
        session's notices; answers pings."""
        end = time.monotonic() + timeout
        while True:
            self.s.settimeout(max(0.05, end - time.monotonic()))
            try:
                op, p = self.recv()
            except (socket.timeout, TimeoutError):
                return ("timeout",)
            except (EOFError, OSError):
                return ("eof",)
            if op == 0x1:
                t = p.decode(errors="replace")
                j = parse_json(t)
                if not (isinstance(j, dict) and j.get("type") != "error"):
                    return ("text", t)
            elif op == 0x8:
                code = struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None
                return ("close", code, p[2:].decode(errors="replace"))
            elif op == 0x9:
                self.send(0xA, p)
            elif op == 0xA:
                return ("pong",)

    def close(self):
        self.s.close()


def ws_for_new_session(fmt="fmp4", **kw):
    info = new_session(fmt)
    ws = RawWS(info["ws"], **kw)
    if ws.status != 101:
        raise RuntimeError(f"upgrade -> {ws.status}")
    return ws, info


def ws_one(payload, opcode=0x2):
    """A fresh session's WebSocket: sends one message -> the next event."""
    ws, _ = ws_for_new_session()
    try:
        ws.send(opcode, payload)
        return ws.event(10)
    finally:
        ws.close()


def ws_refused(path):
    """An upgrade that is refused -> (status, JSON body)."""
    w = RawWS(path)
    w.close()
    return w.status, {"error": w.error} if w.error else None


def desc(ev):
    if ev[0] == "close":
        return f"close {ev[1]} {ev[2]!r}"
    return f"text {ev[1][:80]}" if ev[0] == "text" else ev[0]


def is_close(ev, code):
    return ev[0] == "close" and ev[1] == code


# ------------------------------------------------------------------------ the cases
def http_case(st, j, want):
    """(got, ok) for an HTTP refusal: the status in want and a JSON "error"."""
    ok = st in want and isinstance(j, dict) and bool(j.get("error"))
    return f"{st} {(j or {}).get('error', '(no JSON error)')!s:.70}", ok


def post_session(body, want, token=True):
    st, j, _ = req("POST", "/v1/sessions", body, token=token,
                   headers={"Content-Type": "application/json"})
    return http_case(st, j, want)


def c_garbage():
    st, _, how = raw(random.Random(1).randbytes(64 << 10))
    return (f"{st} ({how})" if st else f"closed ({how})"), st in (400, None)


def c_dotdot():
    st, j, _ = req("POST", "/v1/sessions", {"avatar": "../x"})
    got, ok = http_case(st, j, {400, 404})
    return got, ok and ("../x" in j["error"] or "avatar" in j["error"])


def c_render_garbage():
    st, j, _ = req("POST", f"/v1/render?avatar={AVATAR}", random.Random(2).randbytes(64 << 10),
                   headers={"Content-Type": "application/octet-stream"}, timeout=60)
    got, ok = http_case(st, j, {400})
    # The error names the request, not the server's temporary file.
    return got, ok and "talkrender-upload" not in j["error"] and "/tmp" not in j["error"]


def c_ws_huge():
    """100 MB announced in one frame header, 4 MiB of it sent: the verdict must not wait
    for the rest (the server must not buffer it)."""
    ws, _ = ws_for_new_session()
    rss0, sent = rss_mib(), 0
    try:
        ws.s.settimeout(2)
        try:
            ws.s.sendall(RawWS.frame_header(0x2, 100 << 20))
            while sent < (4 << 20):
                ws.s.sendall(bytes(1 << 16))
                sent += 1 << 16
        except OSError:
            pass
        ev = ws.event(10)
        while ev[0] in ("text", "pong"):
            ev = ws.event(10)
    finally:
        ws.close()
    return (f"{desc(ev)} (sent {sent / (1 << 20):.1f} MiB, rss {rss_mib() - rss0:+.0f} MiB)",
            is_close(ev, 1009))


def c_ws_bad_json():
    ws, _ = ws_for_new_session()
    try:
        ws.text('{"kind": "speak-end"}')  # no "type"
        e1 = ws.event(5)
        ws.text('{"type": ')  # malformed
        e2 = ws.event(5)
        ws.send(0x9, b"alive")  # still open?
        e3 = ws.event(5)
        ok = all(e[0] == "text" and parse_json(e[1]).get("type") == "error" for e in (e1, e2))
        ok = ok and e3[0] == "pong"
        note = f"2 error replies, then {e3[0]}" if ok else f"{desc(e1)} / {desc(e2)} / {e3[0]}"
        replies, ev = 2, None
        for _ in range(15):  # bad messages 3..17, each awaited: 16 replies, then 1008
            ws.text("not json")
            ev = ws.event(5)
            if ev[0] != "text":
                break
            replies += 1
        if ev[0] == "text":
            ev = ws.event(5)
    finally:
        ws.close()
    return f"{note}; {replies} replies, {desc(ev)}", ok and replies == 16 and is_close(ev, 1008)


def c_ws_throttle():
    ev = ws_one(bytes(10 * RATE * 2))  # 10 s at once: beyond the 3 s look-ahead bound
    return desc(ev), ev[0] == "text" and "throttled" in ev[1]


def c_ws_second_client():
    a, info = ws_for_new_session()
    try:
        st, j = ws_refused(info["ws"])
        a.send(0x9, b"still")  # the first client is undisturbed
        ev = a.event(5)
    finally:
        a.close()
    got, ok = http_case(st, j, {409})
    return f"{got}; first client: {ev[0]}", ok and ev[0] == "pong"


def c_flood():
    t0 = time.monotonic()
    for _ in range(1000):
        socket.create_connection((HOST, ARGS.port), timeout=5).close()
    bad = sum(req("GET", "/health")[0] != 200 for _ in range(200))
    return f"1000 connects + 200 GET /health in {time.monotonic() - t0:.1f} s, {bad} failed", \
        bad == 0


def c_max_sessions():
    h = health()
    limit, ids, st, j = h["admission_limit"], [], None, None
    try:
        for _ in range(limit - h["sessions"]):
            ids.append(new_session()["id"])
        st, j, _ = req("POST", "/v1/sessions", {"avatar": AVATAR})
        if st == 201:
            ids.append(j["id"])
    finally:
        deleted = sum(req("DELETE", f"/v1/sessions/{i}")[0] == 200 for i in ids)
    got, ok = http_case(st, j, {503})
    return f"limit {limit}: {got}; deleted {deleted}", ok and deleted == len(ids)


def c_wrong_method():
    st, j, h = req("DELETE", "/health")
    got, ok = http_case(st, j, {405})
    return f"{got}; Allow: {h.get('Allow')}", ok and h.get("Allow") == "GET"


def c_never_reads():
    """jpeg (2 messages a frame) and a 4 KiB receive window: the 500-message queue fills
    in ~10 s; then 1008 "client too slow" (or the 30 s ping timeout)."""
    slow0 = metric("talkrender_ws_slow_closes_total") or 0
    n0 = health()["sessions"]
    ws, _ = ws_for_new_session("jpeg", rcvbuf=4096)
    t0, how, ev = time.monotonic(), None, ("timeout",)
    try:
        while how is None and time.monotonic() - t0 < ARGS.slow_timeout:
            time.sleep(0.5)
            if (metric("talkrender_ws_slow_closes_total") or 0) > slow0:
                how = "1008 client too slow (metrics)"
            elif health()["sessions"] <= n0:
                how = "closed (session gone; ping timeout?)"
        dt = time.monotonic() - t0
        end = time.monotonic() + 10
        while how and time.monotonic() < end:  # on the wire: frames, then a close or EOF
            ev = ws.event(max(0.1, end - time.monotonic()))
            if ev[0] in ("close", "eof", "timeout"):
                break
    finally:
        ws.close()
    return f"{how or 'still open'} after {dt:.1f} s; wire: {desc(ev)}", how is not None


CASES = [  # (name, expected, function -> (got, ok))
    ("garbage 64 KiB on raw TCP", "400 or closed", c_garbage),
    ("no token", "401", lambda: post_session({"avatar": AVATAR}, {401}, token=None)),
    ("wrong token", "401", lambda: post_session({"avatar": AVATAR}, {401}, token="nope")),
    ("session body not JSON", "400", lambda: post_session(b"{avatar: demo", {400})),
    ("session JSON without avatar", "400", lambda: post_session({"format": "fmp4"}, {400})),
    ('avatar "../x"', "400/404 naming it", c_dotdot),
    ("unknown avatar", "404", lambda: post_session({"avatar": "no-such-avatar"}, {404})),
    ("session Content-Length 2 MiB", "413",
     lambda: http_case(*raw(head("POST", "/v1/sessions", 2 << 20))[:2], {413})),
    ("render Content-Length 100 MB", "413",
     lambda: http_case(*raw(head("POST", f"/v1/render?avatar={AVATAR}", 100 << 20))[:2], {413})),
    ("render garbage body", "400", c_render_garbage),
    ("ws 100 MB binary message", "close 1009", c_ws_huge),
    ("ws PCM odd byte count", "close 1003",
     lambda: (lambda ev: (desc(ev), is_close(ev, 1003)))(ws_one(b"\0\0\0"))),
    ("ws bad control messages x17", "error replies, 1008", c_ws_bad_json),
    ("ws 10 s audio at once", "text error throttled", c_ws_throttle),
    ("ws second client", "409", c_ws_second_client),
    ("ws unknown session id", "404",
     lambda: http_case(*ws_refused("/v1/sessions/NoSuchSession0123456789/ws"), {404})),
    ("plain GET on ws path", "426", lambda: http_case(*req("GET", HEALTHY_WS)[:2], {426})),
    ("1000 rapid connects", "stays up", c_flood),
    ("session beyond the cap", "503", c_max_sessions),
    ("unknown path", "404", lambda: http_case(*req("GET", "/v1/nope")[:2], {404})),
    ("wrong method", "405 + Allow", c_wrong_method),
    ("client that never reads", "closed by server", c_never_reads),
]


# ------------------------------------------------------------------- healthy session
async def healthy(pcm, stop, st):
    """Streams pcm (looped) in 100 ms chunks on absolute time; counts frames until stop."""
    import aiohttp
    global HEALTHY_WS
    info = await asyncio.to_thread(new_session)
    HEALTHY_WS, fps, chunk = info["ws"], info["fps"], RATE // 10 * 2
    st.update(fps=fps, frames=0, late=0, texts=[], close=None, max_gap=0.0)
    usable = len(pcm) - len(pcm) % chunk
    async with aiohttp.ClientSession(headers=auth()) as session:
        async with session.ws_connect(f"ws://{HOST}:{ARGS.port}{HEALTHY_WS}",
                                      max_msg_size=64 << 20) as ws:
            st["ready"].set()

            async def sender():
                t0, k = time.monotonic(), 0
                while not stop.is_set():
                    off = (k * chunk) % usable
                    await ws.send_bytes(pcm[off:off + chunk])
                    k += 1
                    await asyncio.sleep(max(0.0, t0 + k * 0.1 - time.monotonic()))

            task = asyncio.create_task(sender())
            binaries, t_last = 0, None
            async for msg in ws:
                now = time.monotonic()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    st["texts"].append(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY and not stop.is_set():
                    binaries += 1
                    if binaries == 1:
                        continue  # the init segment
                    i = binaries - 2  # frame index
                    st.setdefault("t_first", now)
                    if now > st["t_first"] + (i + 1) / fps:
                        st["late"] += 1
                    if t_last is not None:
                        st["max_gap"] = max(st["max_gap"], now - t_last)
                    t_last, st["frames"] = now, i + 1
            st["close"] = ws.close_code
            task.cancel()


async def run_all(pcm, results):
    stop, st = asyncio.Event(), {"ready": asyncio.Event()}
    late0 = await asyncio.to_thread(metric, "talkrender_frames_late_total")
    h_task = asyncio.create_task(healthy(pcm, stop, st))
    await asyncio.wait([h_task, asyncio.create_task(st["ready"].wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if h_task.done():
        h_task.result()  # raises why the healthy session did not start
    t_start = time.monotonic()
    for name, want, fn in CASES:
        if ARGS.skip_slow and fn is c_never_reads:
            continue
        t, f0 = time.monotonic(), st.get("frames", 0)
        try:
            got, ok = await asyncio.to_thread(fn)
        except Exception as e:  # noqa: BLE001 - a case that blows up is a failed case
            got, ok = f"{e.__class__.__name__}: {e}", False
        h = await asyncio.to_thread(settled)
        if h is None:
            got, ok = got + "; /health DOWN", False
        elif h["sessions"] > 1:
            got, ok = got + f"; {h['sessions'] - 1} session(s) not released in 5 s", False
        dt = time.monotonic() - t
        # the healthy session's frame rate meanwhile (meaningful for the longer cases)
        hfps = round((st.get("frames", 0) - f0) / dt, 1) if dt >= 1 else None
        results.append({"case": name, "expected": want, "got": got, "ok": bool(ok),
                        "seconds": round(dt, 2), "healthy_fps": hfps})
        print(f"  {'ok  ' if ok else 'FAIL'} {name} ({dt:.1f} s"
              f"{'' if hfps is None else f', healthy {hfps} fps'}): {got}",
              file=sys.stderr, flush=True)
    await asyncio.sleep(max(0.0, t_start + ARGS.min_seconds - time.monotonic()))
    late1 = await asyncio.to_thread(metric, "talkrender_frames_late_total")
    stop.set()
    elapsed = time.monotonic() - st.get("t_first", t_start)
    # Drain with the healthy client attached: SIGTERM -> final message, 1001, exit 0.
    PROC.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(h_task, 20)
    except Exception as e:  # noqa: BLE001
        st["error"] = repr(e)
    try:
        rc = await asyncio.to_thread(PROC.wait, 20)
    except subprocess.TimeoutExpired:
        rc = "none in 20 s"
    results.append({"case": "SIGTERM with the live session", "expected": "close 1001, exit 0",
                    "got": f"exit {rc}, ws close {st.get('close')}",
                    "ok": rc == 0 and st.get("close") == 1001, "seconds": 0})
    fps, frames = st.get("fps", 25), st.get("frames", 0)
    return {"frames": frames, "elapsed_s": round(elapsed, 2), "fps": fps,
            "frames_expected": int(elapsed * fps), "alive": frames >= 0.8 * elapsed * fps,
            "client_late_frames": st.get("late", 0),
            "max_gap_ms": round(1000 * st.get("max_gap", 0), 1),
            "server_frames_late_delta": None if None in (late0, late1) else int(late1 - late0),
            "notices": st.get("texts", [])[-5:], "error": st.get("error")}


def start_server(tmp):
    avatars = ARGS.avatars
    if not avatars:
        avatars = os.path.join(tmp, "avatars")
        demo = os.path.join(avatars, "demo")
        subprocess.run([ARGS.talkrender, "demo", "--avatar-only", demo], check=True,
                       capture_output=True)
        os.makedirs(os.path.join(demo, "models"))
        for m in ("generator.onnx", "audio_encoder.onnx"):
            shutil.copy(os.path.join(REPO, "models", "demo", m), os.path.join(demo, "models"))
    with open(os.path.join(tmp, "server.stderr"), "wb") as err:
        return subprocess.Popen(
            [ARGS.talkrender, "serve", "--avatars", avatars, "--listen", f"{HOST}:{ARGS.port}",
             "--token", ARGS.token, "--max-sessions", str(ARGS.max_sessions),
             # The cases need 2 sessions (the healthy one and one hostile at a time), not
             # full fps for both: on a machine that holds fewer, overcommit rather than skip.
             "--headroom", "1.5",
             "--idle-timeout", str(ARGS.idle_timeout)], stdout=subprocess.DEVNULL, stderr=err)


def main():
    global ARGS, PROC, AVATAR
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--talkrender", default=os.path.join(REPO, "build", "talkrender"))
    ap.add_argument("--avatars", help="avatars folder (default: a synthetic one in a temp dir)")
    ap.add_argument("--avatar", help="avatar name (default: the first /health lists)")
    shared = os.environ.get("TALKRENDER_SHARED") or next(
        (d for d in (os.path.join(REPO, "..", "shared"), "/work/shared") if os.path.isdir(d)),
        "/work/shared")
    ap.add_argument("--audio", default=os.path.join(shared, "data", "audio", "talk_hb.wav"))
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--token", default="hostile-token")
    ap.add_argument("--max-sessions", type=int, default=3)
    ap.add_argument("--idle-timeout", type=int, default=10)
    ap.add_argument("--min-seconds", type=float, default=5,
                    help="keep the healthy session streaming at least this long (default 5)")
    ap.add_argument("--slow-timeout", type=float, default=40,
                    help="seconds to wait for the never-reading client to be closed")
    ap.add_argument("--skip-slow", action="store_true", help="skip the never-reading client")
    ap.add_argument("--json", help="write the results here")
    ARGS = ap.parse_args()
    if not os.access(ARGS.talkrender, os.X_OK):
        skip(f"{ARGS.talkrender} is not built (the sanitizer jobs build only some targets)")
    if ARGS.port == 0:
        with socket.socket() as probe:  # a free loopback port (released for the server)
            probe.bind((HOST, 0))
            ARGS.port = probe.getsockname()[1]
    if not os.path.isfile(ARGS.audio):
        skip(f"no speech file {ARGS.audio}")
    if not shutil.which("ffmpeg"):
        skip("no ffmpeg")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        skip("no aiohttp (apt install python3-aiohttp)")
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", ARGS.audio, "-f", "s16le", "-ac", "1",
                        "-ar", str(RATE), "-"], capture_output=True)
    if p.returncode != 0 or len(p.stdout) < RATE:
        sys.exit(f"serve_hostile: ffmpeg cannot decode {ARGS.audio}")
    tmp = tempfile.mkdtemp(prefix="serve_hostile.")
    t0, results, hs = time.monotonic(), [], {}
    try:
        PROC = start_server(tmp)
        h = None
        while h is None and PROC.poll() is None and time.monotonic() - t0 < 90:
            time.sleep(0.3)
            h = health()
        if h is None:
            raise RuntimeError(f"the server did not come up (exit {PROC.poll()})")
        if h["admission_limit"] < 2:
            skip(f"admission limit {h['admission_limit']} (measured on a loaded machine?): "
                 "the cases need 2 sessions")
        AVATAR = ARGS.avatar or h["avatars"][0]
        print(f"serve_hostile: server up in {time.monotonic() - t0:.1f} s, admission limit "
              f"{h['admission_limit']}, avatar {AVATAR}", file=sys.stderr)
        hs = asyncio.run(run_all(p.stdout, results))
    except Exception as e:  # noqa: BLE001
        results.append({"case": "harness", "expected": "runs", "got": repr(e), "ok": False})
    finally:
        if PROC and PROC.poll() is None:
            PROC.send_signal(signal.SIGTERM)
            try:
                PROC.wait(20)
            except subprocess.TimeoutExpired:
                PROC.kill()
                PROC.wait()
        with open(os.path.join(tmp, "server.stderr"), errors="replace") as f:
            server_err = f.read().splitlines()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [("case", "expected", "got", "ok")] + [
        (r["case"], r["expected"], r["got"], "ok" if r["ok"] else "FAIL") for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if hs:
        print(f"healthy session: {hs['frames']} frames in {hs['elapsed_s']} s (~"
              f"{hs['frames_expected']} at {hs['fps']} fps: "
              f"{'alive' if hs['alive'] else 'STALLED'}), client-side late "
              f"{hs['client_late_frames']}, max gap {hs['max_gap_ms']} ms, server "
              f"talkrender_frames_late_total +{hs['server_frames_late_delta']}")
        print(f"healthy session notices (last 5): {hs['notices']}")
    ok = bool(results) and all(r["ok"] for r in results) and bool(hs) and hs["alive"]
    runtime = round(time.monotonic() - t0, 1)
    print(f"serve_hostile: {'PASS' if ok else 'FAIL'} in {runtime} s")
    if not ok:
        print("server stderr (tail):\n  " + "\n  ".join(server_err[-25:]))
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"ok": ok, "runtime_s": runtime, "cases": results, "healthy": hs}, f,
                      indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
