#!/usr/bin/env python3
"""A command-line client of `talkrender serve` (docs/serve.md).

Opens a session (fMP4), streams an audio file's PCM in real time over the WebSocket,
sends speak-end, keeps receiving until the speech's frames are done plus a short idle tail,
and saves the stream as a regular MP4 (ffmpeg -c copy). Prints frames and first-frame
latency.

    tools/serve_client.py --url http://127.0.0.1:8080 --avatar anna --audio talk.wav --out anna.mp4

Needs python3-aiohttp (Debian) and ffmpeg.
"""
import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

RATE = 16000


def die(msg, code=2):
    print(f"serve_client: {msg}", file=sys.stderr)
    sys.exit(code)


def read_pcm(path):
    """Any audio file -> s16le 16 kHz mono bytes (ffmpeg)."""
    if not os.path.isfile(path):
        die(f"--audio {path}: no such file")
    if not shutil.which("ffmpeg"):
        die("ffmpeg not found (apt install ffmpeg)", 3)
    p = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
        capture_output=True)
    if p.returncode != 0:
        die(f"--audio {path}: ffmpeg cannot decode it: {p.stderr.decode(errors='replace').strip()}")
    pcm = p.stdout
    return pcm[: len(pcm) // 2 * 2]


async def run(args):
    try:
        import aiohttp
    except ImportError:
        die("needs aiohttp: apt install python3-aiohttp", 3)
    pcm = read_pcm(args.audio)
    speech_s = len(pcm) / 2 / RATE
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    base = args.url.rstrip("/")
    chunk_bytes = int(RATE * args.chunk_ms / 1000) * 2
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        async with http.post(f"{base}/v1/sessions",
                             json={"avatar": args.avatar, "format": "fmp4"}) as r:
            body = await r.json(content_type=None)
            if r.status != 201:
                die(f"session refused ({r.status}): {body.get('error', body)}", 3)
        info = body
        fps = info["fps"]
        print(f"session {info['id']}: {info['avatar']} {info['width']}x{info['height']} "
              f"@ {fps} fps, {info['mime']}", file=sys.stderr)
        ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + info["ws"]
        chunks, texts = [], []
        stats = {"messages": 0, "first": None, "first_after_audio": None}
        t_connect = time.monotonic()
        audio_started = None
        async with http.ws_connect(ws_url, max_msg_size=64 << 20, heartbeat=20) as ws:

            async def sender():
                nonlocal audio_started
                t0 = time.monotonic()
                audio_started = t0
                for k, i in enumerate(range(0, len(pcm), chunk_bytes)):
                    wait = t0 + k * args.chunk_ms / 1000 - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)  # real time, without drift
                    await ws.send_bytes(pcm[i:i + chunk_bytes])
                await ws.send_str(json.dumps({"type": "speak-end"}))

            send_task = asyncio.create_task(sender())
            # Speech frames are due by (audio start + speech + look-ahead); then an idle tail.
            deadline = None
            while True:
                if deadline is None and send_task.done():
                    deadline = time.monotonic() + args.tail
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                try:
                    msg = await asyncio.wait_for(ws.receive(), timeout=0.5 if left is None else left)
                except asyncio.TimeoutError:
                    continue
                if msg.type == aiohttp.WSMsgType.BINARY:
                    now = time.monotonic()
                    if stats["first"] is None:
                        stats["first"] = now - t_connect
                    stats["messages"] += 1
                    chunks.append(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    texts.append(msg.data)
                    print(f"server: {msg.data}", file=sys.stderr)
                else:  # closed or error
                    if msg.type == aiohttp.WSMsgType.CLOSE:
                        print(f"closed by the server: {msg.data} {msg.extra or ''}",
                              file=sys.stderr)
                    break
            if not send_task.done():
                send_task.cancel()
            if not ws.closed:
                # Ask the server to close, then keep what it still sends (the encoders'
                # last fragment: audio to the end) until its close frame arrives.
                try:
                    await ws.send_str(json.dumps({"type": "close"}))
                    until = time.monotonic() + 5
                    while time.monotonic() < until:
                        msg = await asyncio.wait_for(ws.receive(), until - time.monotonic())
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            chunks.append(msg.data)
                        elif msg.type == aiohttp.WSMsgType.TEXT:
                            texts.append(msg.data)
                        else:
                            break
                except (ConnectionError, asyncio.TimeoutError):
                    pass
                await ws.close()
    if not chunks:
        die("no video received", 3)
    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
        f.write(b"".join(chunks))
        frag = f.name
    try:
        p = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", frag, "-c", "copy",
                            "-movflags", "+faststart", args.out], capture_output=True)
        if p.returncode != 0:
            die(f"remux to {args.out} failed: {p.stderr.decode(errors='replace').strip()}", 3)
    finally:
        os.unlink(frag)
    elapsed = time.monotonic() - t_connect
    print(json.dumps({
        "out": args.out,
        "messages": stats["messages"],
        "frames_expected_speech": int(speech_s * fps),
        "speech_s": round(speech_s, 3),
        "first_frame_latency_ms": round(1000 * stats["first"], 1),
        "bytes": sum(len(c) for c in chunks),
        "elapsed_s": round(elapsed, 2),
        "text_messages": len(texts),
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server, e.g. http://127.0.0.1:8080")
    ap.add_argument("--avatar", required=True, help="avatar name (GET /health lists them)")
    ap.add_argument("--audio", required=True, help="speech: any file ffmpeg reads")
    ap.add_argument("--out", required=True, help="the MP4 to write")
    ap.add_argument("--token", default=os.environ.get("TALKRENDER_TOKEN", ""),
                    help="bearer token (default $TALKRENDER_TOKEN)")
    ap.add_argument("--chunk-ms", type=int, default=100, help="PCM per message, 40..100 ms")
    ap.add_argument("--tail", type=float, default=2.0,
                    help="seconds to keep receiving after speak-end (default 2)")
    args = ap.parse_args()
    if not 40 <= args.chunk_ms <= 100:
        die("--chunk-ms must be 40..100")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
