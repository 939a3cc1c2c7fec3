#!/usr/bin/python3
"""Benchmark client of `talkrender serve` (docs/serve.md): capacity, latency, interrupt.

    # K sessions (default: the server's admission limit) talking in real time for 10 minutes
    tools/serve_bench.py capacity --avatar anna --audio talk.wav --minutes 10 \\
        --server-pid $(pidof talkrender) --out-dir /tmp/cap
    # chunk-to-frame latency over 200 chunks of 100 ms (fmp4 or jpeg)
    tools/serve_bench.py latency --avatar anna --audio talk.wav --chunks 200 --format jpeg
    # interrupt (barge-in) reaction over 20 trials
    tools/serve_bench.py interrupt --avatar anna --audio talk.wav --trials 20

Each prints a human summary to stderr and ONE JSON object to stdout (also OUT_DIR/report.json
with --out-dir). Exit 0: the run completed; 2: bad arguments; 3: the server refused or the run
failed.

What is timed (all client-side times are time.monotonic() on this machine):
  * a frame's arrival: when its WebSocket message is read by the client's event loop;
    frame i = the i-th video frame after the "started" notice (fmp4: video samples counted
    in each fragment's moof/traf/trun; jpeg: the 'J' messages).
  * a chunk's send time: when ws.send_bytes() of its PCM returned (handed to the socket).
  * client-late frame: arrival_i > arrival_0 + i/fps + one period.
  * server numbers are deltas of GET /metrics between the start and the end of the run.
PCM is paced on absolute time (chunk k at t0 + samples before it / 16000), so there is no
drift. Capacity: session n connects n*period/K after the first (frame clocks interleaved)
and starts its loop n/K of the way into the speech file, so utterance ends are spread too.
Needs python3-aiohttp, ffmpeg, ffprobe.
"""
import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import aiohttp

RATE = 16000


class Failed(Exception):
    """The server refused or the run failed (exit 3)."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pct(values, q):
    """Nearest-rank percentile (q in 0..100) of a list; None if empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def stats_ms(values, period_s=None):
    out = {"n": len(values)}
    for k, q in (("p50", 50), ("p95", 95), ("max", 100)):
        v = pct(values, q)
        out[k + "_ms"] = None if v is None else round(1000 * v, 1)
        if period_s:
            out[k + "_periods"] = None if v is None else round(v / period_s, 2)
    return out


def read_pcm(path):
    """Any audio file -> s16le 16 kHz mono bytes (ffmpeg)."""
    if not shutil.which("ffmpeg") or not shutil.which("ffprobe"):
        raise Failed("needs ffmpeg and ffprobe on PATH")
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "s16le", "-ac", "1",
                        "-ar", str(RATE), "-"], capture_output=True)
    if not os.path.isfile(path) or p.returncode != 0 or len(p.stdout) < 2 * RATE // 10:
        raise Failed(f"--audio {path}: ffmpeg cannot decode it (or < 100 ms): "
                     f"{p.stderr.decode(errors='replace').strip()}")
    return p.stdout[: len(p.stdout) // 2 * 2]


# ---------------------------------------------------------------- MP4 boxes

def mp4_boxes(b, start=0, end=None):
    """Yields (type, body_start, box_end) of the boxes in b[start:end]."""
    end = len(b) if end is None else end
    while start + 8 <= end:
        size, typ = struct.unpack_from(">I4s", b, start)
        if size < 8 or start + size > end:
            return
        yield typ.decode("latin1"), start + 8, start + size
        start += size


def mp4_children(b, typ, start, end):
    return [(s, e) for t, s, e in mp4_boxes(b, start, end) if t == typ]


def init_tracks(init):
    """Init segment -> {track_id: "vide"|"soun"|...} (moov/trak/tkhd + mdia/hdlr)."""
    tracks = {}
    for ms, me in mp4_children(init, "moov", 0, len(init)):
        for ts, te in mp4_children(init, "trak", ms, me):
            tid = kind = None
            for hs, _ in mp4_children(init, "tkhd", ts, te):
                tid = struct.unpack_from(">I", init, hs + (20 if init[hs] == 1 else 12))[0]
            for ds, de in mp4_children(init, "mdia", ts, te):
                for hs, _ in mp4_children(init, "hdlr", ds, de):
                    kind = init[hs + 8:hs + 12].decode("latin1")
            if tid is not None:
                tracks[tid] = kind
    return tracks


def fragment_samples(msg):
    """A moof+mdat message -> {track_id: samples} (tfhd track_ID, trun sample_count)."""
    out = {}
    for ms, me in mp4_children(msg, "moof", 0, len(msg)):
        for ts, te in mp4_children(msg, "traf", ms, me):
            tids = [struct.unpack_from(">I", msg, s + 4)[0] for s, _ in mp4_children(msg, "tfhd", ts, te)]
            n = sum(struct.unpack_from(">I", msg, s + 4)[0] for s, _ in mp4_children(msg, "trun", ts, te))
            if tids:
                out[tids[0]] = out.get(tids[0], 0) + n
    return out


# ---------------------------------------------------------------- /metrics

LINE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text):
    """Prometheus text -> list of (name, labels_str, value)."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and not line.startswith("#"):
            try:
                out.append((m.group(1), m.group(2) or "", float(m.group(3))))
            except ValueError:
                pass
    return out


def msum(series, pattern):
    """Sum of the series whose name fully matches pattern (any labels, any prefix in it)."""
    rx = re.compile(pattern)
    return sum(v for n, _, v in series if rx.fullmatch(n))


def server_snapshot(series):
    b = r"(?:\w+_)?batcher_"
    buckets = {}
    for n, lab, v in series:
        m = re.search(r'le="([^"]+)"', lab)
        if re.fullmatch(b + "batch_size_bucket", n) and m:
            buckets[m.group(1)] = buckets.get(m.group(1), 0) + v
    quant = {}
    for n, lab, v in series:
        m = re.search(r'quantile="([^"]+)"', lab)
        if re.fullmatch(b + "inference_ms", n) and m and not math.isnan(v):
            quant[f"{n}{{q={m.group(1)}}}"] = round(v, 2)
    return {
        "frames_sent": msum(series, r"talkrender_frames_sent_total"),
        "frames_late": msum(series, r"talkrender_frames_late_total"),
        "batches": msum(series, b + "batches_total"),
        "frames_inferred": msum(series, b + "frames_inferred_total"),
        "batcher_frames_late": msum(series, b + "frames_late_total"),
        "inference_ms_sum": msum(series, b + "inference_ms_sum"),
        "inference_ms_count": msum(series, b + "inference_ms_count"),
        "buckets": buckets, "inference_ms_quantiles": quant,
        "sessions": msum(series, r"talkrender_sessions"),
        "admission_limit": msum(series, r"talkrender_admission_limit"),
        "measured_fps": msum(series, r"talkrender_measured_frames_per_second"),
    }


def server_delta(a, b):
    """What the server did between snapshots a and b (wall time: between the two GETs)."""
    wall_s = b["t"] - a["t"]
    def le(k):
        return math.inf if k == "+Inf" else float(k)
    keys = sorted(set(a["buckets"]) | set(b["buckets"]), key=le)
    hist, prev = {}, 0.0
    for k in keys:
        cum = b["buckets"].get(k, 0) - a["buckets"].get(k, 0)
        if cum - prev:
            hist[k if k == "+Inf" else str(int(le(k)))] = int(cum - prev)
        prev = cum
    d = {k: int(b[k] - a[k]) for k in ("frames_sent", "frames_late", "batches", "frames_inferred",
                                       "batcher_frames_late")}
    n = b["inference_ms_count"] - a["inference_ms_count"]
    d["batch_size_counts"] = hist
    d["mean_batch_size"] = round(d["frames_inferred"] / d["batches"], 2) if d["batches"] else None
    d["inference_ms_mean"] = round((b["inference_ms_sum"] - a["inference_ms_sum"]) / n, 2) if n else None
    d["inference_ms_quantiles_at_end"] = b["inference_ms_quantiles"]  # server's own window
    d["inference_frames_per_s"] = round(d["frames_inferred"] / wall_s, 1) if wall_s else None
    d["wall_s"] = round(wall_s, 2)
    d["measured_frames_per_s_at_start"] = round(b["measured_fps"], 1)
    d["admission_limit"] = int(b["admission_limit"])
    return d


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# ---------------------------------------------------------------- one session

class Stream:
    """One session: POST, WebSocket, a receiver task that timestamps frames and notices."""

    def __init__(self, bench, fmt="fmp4", save=None):
        self.b, self.fmt = bench, fmt
        self.info, self.ws, self.started, self.tracks = None, None, None, {}
        self.frames_t, self.notices, self.errors = [], [], []
        self.speech_frames, self.close_code, self.closed, self.throttled = 0, None, False, 0
        self.changed = asyncio.Event()
        self.file = open(save, "wb") if save else None

    async def open(self):
        status, body = await self.b.post_session(self.fmt)
        if status != 201:
            raise Failed(f"POST /v1/sessions: {status} {body.get('error', body)}")
        self.info = body
        url = self.b.ws_base + body["ws"]
        if self.b.token:
            url += f"?access_token={self.b.token}"
        self.ws = await self.b.http.ws_connect(url, max_msg_size=64 << 20, heartbeat=20)
        self.task = asyncio.create_task(self._receive())
        await self.wait(lambda: self.started is not None, 10, "no 'started' notice")
        self.fps = self.started["fps"]
        self.period = 1 / self.fps
        self.spf = RATE // self.fps

    def state(self):
        """'speaking'/'idle' from the last notice."""
        for n in reversed(self.notices):
            if n["type"] in ("speaking", "idle"):
                return n["type"]
        return "idle"

    async def _receive(self):
        try:
            async for msg in self.ws:
                now = time.monotonic()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self._binary(msg.data, now)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self._text(msg.data, now)
                self.changed.set()
        finally:
            self.closed, self.close_code = True, self.ws.close_code
            if self.file:
                self.file.close()
            self.changed.set()

    def _binary(self, data, now):
        if self.fmt == "fmp4":
            if self.file:
                self.file.write(data)
            if not self.tracks and data[4:8] in (b"ftyp", b"moov"):
                self.tracks = init_tracks(data)
                return
            vid = [t for t, k in self.tracks.items() if k == "vide"] or [1]
            n = fragment_samples(data).get(vid[0], 0)
        else:
            n = 1 if data[:1] == b"J" else 0
        for _ in range(n):
            if self.state() == "speaking":
                self.speech_frames += 1
            self.frames_t.append(now)

    def _text(self, data, now):
        try:
            m = json.loads(data)
        except ValueError:
            m = {"type": "?", "raw": data}
        if m.get("type") == "started":
            self.started = m
        elif m.get("type") in ("speaking", "idle"):
            self.notices.append({"type": m["type"], "frame": m.get("frame"),
                                 "client_frame": len(self.frames_t), "t": now})
        else:
            self.errors.append(m)
            if "throttled" in str(m.get("error", "")):
                self.throttled += 1  # that PCM message was refused, nothing of it taken

    async def wait(self, pred, timeout, what=None):
        """Waits until pred() holds; False (or Failed with `what`) on timeout/close."""
        end = time.monotonic() + timeout
        while not pred():
            left = end - time.monotonic()
            if left <= 0 or self.closed:
                if what:
                    raise Failed(f"{what} (closed={self.closed}, code={self.close_code})")
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True

    async def send_pcm(self, b):
        await self.ws.send_bytes(b)
        return time.monotonic()

    async def control(self, typ):
        if not self.ws.closed:
            await self.ws.send_str(json.dumps({"type": typ}))
        return time.monotonic()

    async def close(self, timeout=10):
        try:
            await self.control("close")
        except (ConnectionError, RuntimeError):
            pass
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except asyncio.TimeoutError:
            await self.ws.close()

    def notice_mismatches(self):
        """Notices whose server "frame" differs from the client's frame count at arrival."""
        return sum(1 for n in self.notices if n["frame"] != n["client_frame"])

    def client_late(self):
        t0 = self.frames_t[0] if self.frames_t else 0
        return sum(1 for i, t in enumerate(self.frames_t) if t > t0 + (i + 1) * self.period)


class Bench:
    """HTTP side: the server URL, token, metrics, RSS sampling."""

    def __init__(self, args, http):
        self.args, self.http, self.token = args, http, args.token
        self.base = args.url.rstrip("/")
        self.ws_base = self.base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    async def get(self, path):
        async with self.http.get(self.base + path, headers=self.headers) as r:
            if r.status != 200:
                raise Failed(f"GET {path}: {r.status} {await r.text()}")
            return await r.text()

    async def post_session(self, fmt):
        async with self.http.post(self.base + "/v1/sessions", headers=self.headers,
                                  json={"avatar": self.args.avatar, "format": fmt}) as r:
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = {"error": "reply not JSON"}
            return r.status, body

    async def delete_session(self, sid):
        async with self.http.delete(f"{self.base}/v1/sessions/{sid}", headers=self.headers):
            pass

    async def poll_inference_ms(self, out, every=0.2):
        """Samples inference_ms_last whenever *_inference_ms_count moved (until cancelled):
        the duration of one predict call per sample, not all of them."""
        last = None
        while True:
            series = parse_metrics(await self.get("/metrics"))
            n = msum(series, r"(?:\w+_)?batcher_inference_ms_count")
            if last is not None and n != last:
                out.append(msum(series, r"(?:\w+_)?batcher_inference_ms_last") / 1000)
            last = n
            await asyncio.sleep(every)

    async def snapshot(self):
        snap = server_snapshot(parse_metrics(await self.get("/metrics")))
        snap["t"] = time.monotonic()
        return snap


async def stream_speech(s, pcm, chunk_ms, t0, t_end=None, on_chunk=None, until=None,
                        loop_gap=None):
    """Sends pcm in real time from t0 (chunk k when its first sample is due), looping:
    speak-end at each loop end. Stops at t_end, or when until() holds (no speak-end then).
    on_chunk(utterance, end_sample, send_time) after each chunk. loop_gap(): awaited between
    loops (e.g. to wait for idle). Returns samples sent."""
    step, total, utt = RATE * chunk_ms // 1000 * 2, 0, 0
    while True:
        for off in range(0, len(pcm), step):
            due = t0 + total / RATE
            if t_end is not None and due >= t_end:
                if off:  # mid-utterance (at a loop end, speak-end went already)
                    await s.control("speak-end")
                return total
            if until and until():
                return total
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if until and until():
                return total
            chunk = pcm[off:off + step]
            t = await s.send_pcm(chunk)
            total += len(chunk) // 2
            if on_chunk and on_chunk(utt, (off + len(chunk)) // 2, t) is False:
                await s.control("speak-end")
                return total
        await s.control("speak-end")
        utt += 1
        if loop_gap:
            await loop_gap()
            t0 = time.monotonic() - total / RATE


# ---------------------------------------------------------------- capacity

def ffprobe_check(frag, mp4, fps):
    """Remux the fMP4 with -c copy and probe it: frames, durations, A/V end gap."""
    p = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", frag, "-c", "copy", mp4],
                       capture_output=True)
    if p.returncode != 0:
        return {"error": "remux failed: " + p.stderr.decode(errors="replace")[-300:]}
    p = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                        "packet=stream_index,pts_time,duration_time:stream=index,codec_type",
                        "-of", "json", mp4], capture_output=True, text=True)
    d = json.loads(p.stdout or "{}")
    kinds = {st["index"]: st["codec_type"] for st in d.get("streams", [])}
    ends, starts, count = {}, {}, {}
    for pk in d.get("packets", []):
        k = kinds.get(pk["stream_index"])
        pts, dur = float(pk.get("pts_time", 0)), float(pk.get("duration_time", 0) or 0)
        count[k] = count.get(k, 0) + 1
        starts[k] = min(starts.get(k, pts), pts)
        ends[k] = max(ends.get(k, 0.0), pts + dur)
    if "video" not in ends or "audio" not in ends:
        return {"error": f"streams found: {sorted(count)}"}
    gap = abs(ends["video"] - ends["audio"])
    return {"video_frames": count["video"],
            "video_s": round(ends["video"] - starts["video"], 3),
            "audio_s": round(ends["audio"] - starts["audio"], 3),
            "av_end_gap_ms": round(1000 * gap, 1), "av_end_gap_periods": round(gap * fps, 2)}


async def capacity(b, args, pcm):
    health = json.loads(await b.get("/health"))
    k = args.sessions or health["admission_limit"]
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="serve_bench_")
    os.makedirs(out_dir, exist_ok=True)
    snap0 = await b.snapshot()
    streams, sent, samples = [], [0] * k, []
    for n in range(k):  # interleave the frame clocks by one period / K
        s = Stream(b, "fmp4", os.path.join(out_dir, f"session_{n}.frag.mp4"))
        await s.open()
        streams.append(s)
        await asyncio.sleep(s.period / k)
    extra, inf = {}, []
    t0 = time.monotonic()
    t_end = t0 + args.minutes * 60

    async def talk(n, s):
        rot = (len(pcm) // 2 * n // k) * 2
        sent[n] = await stream_speech(s, pcm[rot:] + pcm[:rot], 100, t0 + n * s.period / k, t_end)

    async def probe():  # session K+1 while the K are talking: expect 503
        await asyncio.sleep(min(2.0, args.minutes * 30))
        status, body = await b.post_session("fmp4")
        extra.update(status=status, error=body.get("error"))
        if status == 201:
            await b.delete_session(body["id"])
        log(f"capacity: {k} sessions talking; session {k + 1}: {status} {body.get('error', '')}")

    async def sampler():
        while True:
            snap = await b.snapshot()
            samples.append({"t_s": round(time.monotonic() - t0, 1),
                            "rss_kib": rss_kib(args.server_pid) if args.server_pid else None,
                            "frames_sent": int(snap["frames_sent"] - snap0["frames_sent"]),
                            "frames_late": int(snap["frames_late"] - snap0["frames_late"]),
                            "sessions": int(snap["sessions"])})
            if time.monotonic() >= t_end:
                return
            await asyncio.sleep(min(10, max(0.0, t_end - time.monotonic())))

    poller = asyncio.create_task(b.poll_inference_ms(inf, 0.5))
    await asyncio.gather(probe(), sampler(), *(talk(n, s) for n, s in enumerate(streams)))
    poller.cancel()
    wall = time.monotonic() - t0
    # let the last utterances finish (up to 10 s), then close
    await asyncio.gather(*(s.wait(lambda s=s: s.state() == "idle", 10) for s in streams))
    snap1 = await b.snapshot()
    for s in streams:
        await s.close()
    sessions = [session_report(n, s, sent[n], out_dir, args.out_dir) for n, s in enumerate(streams)]
    rep = {"subcommand": "capacity", "sessions": k, "minutes": args.minutes,
           "wall_s": round(wall, 1), "session_k_plus_1": extra, "per_session": sessions,
           "client_frames_late_total": sum(x["client_frames_late"] for x in sessions),
           "chunks_refused_throttled_total": sum(x["chunks_refused_throttled"] for x in sessions),
           "all_nothing_dropped": all(x.get("nothing_dropped") for x in sessions),
           "server": server_delta(snap0, snap1),
           "inference_ms_sampled_last": stats_ms(inf),
           "rss": rss_report(samples), "samples": samples}
    if not args.out_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
    return rep


def session_report(n, s, samples_sent, out_dir, keep):
    frag = os.path.join(out_dir, f"session_{n}.frag.mp4")
    mp4 = os.path.join(out_dir, f"session_{n}.mp4")
    r = {"session": n, "frames_received": len(s.frames_t),
         "client_frames_late": s.client_late(), "speech_frames": s.speech_frames,
         "speech_s_sent": round(samples_sent / RATE, 2),
         "chunks_refused_throttled": s.throttled,
         "speech_s_accepted": round(samples_sent / RATE - 0.1 * s.throttled, 2),
         "close_code": s.close_code, "server_errors": s.errors[:5],
         "notice_frame_mismatches": s.notice_mismatches()}
    if s.frames_t:
        wall = s.frames_t[-1] - s.frames_t[0] + s.period
        r["stream_wall_s"] = round(wall, 2)
        r["frames_expected_by_wall"] = round(wall * s.fps)
    r["file"] = ffprobe_check(frag, mp4, s.fps)
    f = r["file"]
    if "error" not in f:
        r["nothing_dropped"] = (f["video_frames"] == r["frames_received"]
                                and abs(r["frames_received"] - r["frames_expected_by_wall"]) <= 1
                                and f["video_frames"] == round(f["video_s"] * s.fps)
                                and s.throttled == 0
                                and r["speech_frames"] * s.period >= r["speech_s_sent"] - 0.1
                                and f["audio_s"] >= r["speech_s_sent"])
    if keep:
        os.unlink(frag)
    return r


def rss_report(samples):
    pts = [(x["t_s"], x["rss_kib"]) for x in samples if x["rss_kib"]]
    if not pts:
        return None

    def near(t):
        return min(pts, key=lambda p: abs(p[0] - t))

    rep = {f"min{m}": {"t_s": near(60 * m)[0], "mib": round(near(60 * m)[1] / 1024, 1)}
           for m in (1, 5, 10)}
    ref_t = near(60)[0]
    after = [v for t, v in pts if t >= ref_t]
    rep["min_mib_after_min1"] = round(min(after) / 1024, 1)
    rep["max_mib_after_min1"] = round(max(after) / 1024, 1)
    rep["spread_pct_of_min1"] = round(100 * (max(after) - min(after)) / near(60)[1], 2)
    return rep


# ---------------------------------------------------------------- latency

def speech_frame_index(s, utt, j):
    """Client frame index of speech frame j of utterance utt (by its 'speaking' notice)."""
    sp = [n for n in s.notices if n["type"] == "speaking"]
    return sp[utt]["client_frame"] + j if utt < len(sp) else None


async def latency(b, args, pcm):
    s = Stream(b, args.format)
    await s.open()
    snap0 = await b.snapshot()
    chunks, inf = [], []  # (utterance, end sample, send time); sampled predict durations
    poller = asyncio.create_task(b.poll_inference_ms(inf))

    def on_chunk(utt, e, t):
        chunks.append((utt, e, t))
        return len(chunks) < args.chunks

    async def wait_idle():
        await s.wait(lambda: s.state() == "idle", 30, "no 'idle' after speak-end")

    await stream_speech(s, pcm, args.chunk_ms, time.monotonic(), on_chunk=on_chunk,
                        loop_gap=wait_idle)
    await wait_idle()
    await s.wait(lambda: False, 0.5)
    snap1 = await b.snapshot()
    poller.cancel()
    await s.close()
    win, spf = args.window_end_samples, s.spf
    uses, plays, missing = [], [], 0
    for utt, e, t in chunks:
        i_use = speech_frame_index(s, utt, max(0, math.ceil((e - win) / spf)))
        i_play = speech_frame_index(s, utt, (e - 1) // spf)
        if i_use is None or i_use >= len(s.frames_t) or i_play >= len(s.frames_t):
            missing += 1
            continue
        uses.append(s.frames_t[i_use] - t)
        plays.append(s.frames_t[i_play] - t)
    srv = server_delta(snap0, snap1)
    la = s.started.get("lookahead_frames")
    return {"subcommand": "latency", "format": args.format, "chunks": len(chunks),
            "chunk_ms": args.chunk_ms, "chunks_without_frame": missing,
            "chunk_to_first_frame_using_it": stats_ms(uses, s.period),
            "chunk_to_frame_playing_it": stats_ms(plays, s.period),
            "lookahead_frames": la, "lookahead_ms": None if la is None else round(1000 * la * s.period, 1),
            "inference_ms_mean": srv["inference_ms_mean"],
            "inference_ms_quantiles_at_end": srv["inference_ms_quantiles_at_end"],
            "inference_ms_sampled_last": stats_ms(inf),
            "client_frames_late": s.client_late(), "chunks_refused_throttled": s.throttled,
            "server": srv,
            "notice_frame_mismatches": s.notice_mismatches(),
            "utterances": sum(1 for n in s.notices if n["type"] == "speaking")}


# ---------------------------------------------------------------- interrupt

async def interrupt(b, args, pcm):
    s = Stream(b, "fmp4")
    await s.open()
    snap0 = await b.snapshot()
    rng = random.Random(args.seed)
    to_notice, to_frame, after = [], [], []
    for trial in range(args.trials):
        hold, n0, stop = rng.uniform(0.5, 1.5), len(s.notices), {"t": None}

        def notices(typ, since=0.0):
            return [n for n in s.notices[n0:] if n["type"] == typ and n["t"] >= since]

        def ready():
            sp = notices("speaking")
            return bool(sp) and len(s.frames_t) - sp[0]["client_frame"] >= hold * s.fps

        def idle_frame_in():
            idle = notices("idle", stop["t"])
            return bool(idle) and len(s.frames_t) > idle[0]["client_frame"]

        sender = asyncio.create_task(stream_speech(
            s, pcm, 100, time.monotonic(), until=lambda: stop["t"] is not None))
        await s.wait(ready, 30, f"trial {trial}: no speech frames")
        await asyncio.sleep(rng.uniform(0, s.period))  # random phase against the frame clock
        stop["t"] = t_int = await s.control("interrupt")
        await sender
        await s.wait(idle_frame_in, 10, f"trial {trial}: no idle frame after interrupt")
        idle, sp = notices("idle", t_int)[0], notices("speaking")[0]
        k = idle["client_frame"]
        to_notice.append(idle["t"] - t_int)
        to_frame.append(s.frames_t[k] - t_int)
        after.append(sum(1 for i in range(sp["client_frame"], k) if s.frames_t[i] > t_int))
        if args.verbose:
            log("  frame arrivals, ms after interrupt (frame - idle frame:ms): " + " ".join(
                f"{i - k:+d}:{1000 * (s.frames_t[i] - t_int):.0f}"
                for i in range(max(0, k - 3), min(len(s.frames_t), k + 3))))
        log(f"trial {trial}: held {hold:.2f} s; idle notice +{1000 * to_notice[-1]:.1f} ms, "
            f"idle frame +{1000 * to_frame[-1]:.1f} ms, {after[-1]} speech frames after")
        await s.wait(lambda: False, 1.0)
    snap1 = await b.snapshot()
    await s.close()
    return {"subcommand": "interrupt", "trials": args.trials, "seed": args.seed,
            "to_idle_notice": stats_ms(to_notice, s.period),
            "to_first_idle_frame": stats_ms(to_frame, s.period),
            "speech_frames_after_interrupt": {"per_trial": after, "max": max(after)},
            "client_frames_late": s.client_late(), "server_errors": s.errors[:5],
            "notice_frame_mismatches": s.notice_mismatches(),
            "server": server_delta(snap0, snap1)}


# ---------------------------------------------------------------- main

def summary(rep):
    """The top-level numbers for humans (per-session details and samples: in the JSON)."""
    for k, v in rep.items():
        if k not in ("per_session", "samples", "subcommand"):
            log(f"  {k}: {json.dumps(v)}")


async def run(args, pcm):
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        b = Bench(args, http)
        return await {"capacity": capacity, "latency": latency,
                      "interrupt": interrupt}[args.cmd](b, args, pcm)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="http://127.0.0.1:8080")
    common.add_argument("--avatar", required=True)
    common.add_argument("--audio", required=True, help="speech: any file ffmpeg reads")
    common.add_argument("--token", default=os.environ.get("TALKRENDER_TOKEN", ""))
    common.add_argument("--server-pid", type=int, help="read the server's RSS from /proc")
    common.add_argument("--out-dir", help="keep the streams and report.json here")
    c = sub.add_parser("capacity", parents=[common], help="K sessions talking for M minutes")
    c.add_argument("--sessions", type=int, help="K (default: /health admission_limit)")
    c.add_argument("--minutes", type=float, required=True)
    la = sub.add_parser("latency", parents=[common], help="chunk -> frame latency")
    la.add_argument("--chunks", type=int, default=200)
    la.add_argument("--chunk-ms", type=int, default=100)
    la.add_argument("--format", choices=("fmp4", "jpeg"), default="fmp4")
    la.add_argument("--window-end-samples", type=int, default=7240,
                    help="speech frame j's audio window ends at sample spf*j + this")
    it = sub.add_parser("interrupt", parents=[common], help="interrupt -> idle reaction")
    it.add_argument("--trials", type=int, default=20)
    it.add_argument("--seed", type=int, default=1)
    it.add_argument("--verbose", action="store_true", help="frame arrivals around each idle")
    args = ap.parse_args()
    try:
        pcm = read_pcm(args.audio)
    except Failed as e:
        ap.error(str(e))
    if getattr(args, "sessions", 1) is not None and getattr(args, "sessions", 1) < 1:
        ap.error("--sessions must be >= 1")
    if getattr(args, "minutes", 1) <= 0 or getattr(args, "chunks", 1) < 1 \
            or getattr(args, "trials", 1) < 1 or not 10 <= getattr(args, "chunk_ms", 100) <= 1000:
        ap.error("--minutes, --chunks, --trials must be positive; --chunk-ms 10..1000")
    try:
        rep = asyncio.run(run(args, pcm))
    except (Failed, aiohttp.ClientError, OSError, KeyError) as e:
        log(f"serve_bench: {type(e).__name__}: {e}")
        sys.exit(3)
    summary(rep)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "report.json"), "w") as f:
            json.dump(rep, f, indent=1)
    print(json.dumps(rep))


if __name__ == "__main__":
    main()
