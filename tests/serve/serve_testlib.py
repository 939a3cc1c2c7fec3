"""Shared helpers of the Python tests of `talkrender serve` (serve_client_test.py,
serve_chromium_test.py): paths, a temporary avatars folder with the synthetic demo avatar
and the committed demo models, a short speech clip, and a server started on a free port
that must stop cleanly (SIGTERM -> exit 0).

Environment: TALKRENDER_BUILD (build dir), TALKRENDER_SOURCE (source dir),
TALKRENDER_SHARED (shared data; default /work/shared). Skips exit with SKIP (77).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SKIP = 77
SOURCE = os.environ.get("TALKRENDER_SOURCE",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
BUILD = os.environ.get("TALKRENDER_BUILD", os.path.join(SOURCE, "build"))
BIN = os.path.join(BUILD, "talkrender")
MODELS = os.path.join(SOURCE, "models", "demo")
PY = "/usr/bin/python3"


def skip(why):
    print("skipped: %s" % why)
    sys.exit(SKIP)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, "%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr)
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def speech_source():
    """The shared speech recording, or None."""
    cands = []
    if os.environ.get("TALKRENDER_SHARED"):
        cands.append(os.path.join(os.environ["TALKRENDER_SHARED"], "data/audio/talk_hb.wav"))
    cands.append(os.path.join(SOURCE, "..", "shared", "data/audio/talk_hb.wav"))
    cands.append("/work/shared/data/audio/talk_hb.wav")
    for c in cands:
        if os.path.isfile(c):
            return c
    return None


def require_tools():
    if not os.access(BIN, os.X_OK):
        skip("%s not built" % BIN)
    for t in ("ffmpeg", "ffprobe"):
        if shutil.which(t) is None:
            skip("%s is not installed" % t)
    for f in ("generator.onnx", "audio_encoder.onnx"):
        assert os.path.isfile(os.path.join(MODELS, f)), \
            "%s missing: the demo model is committed with the source" % os.path.join(MODELS, f)


def make_speech(tmp, seconds=4.0):
    """The first `seconds` of the shared speech as 16 kHz mono WAV in tmp; skips without it."""
    src = speech_source()
    if src is None:
        skip("no speech recording (data/audio/talk_hb.wav under $TALKRENDER_SHARED "
             "or /work/shared)")
    out = os.path.join(tmp, "speech_%gs.wav" % seconds)
    run(["ffmpeg", "-v", "error", "-y", "-i", src, "-t", str(seconds), "-ac", "1", "-ar",
         "16000", "-c:a", "pcm_s16le", out])
    return out


def make_avatars(tmp):
    """TMP/avatars/demo: the synthetic avatar package plus models/demo's two models."""
    avatars = os.path.join(tmp, "avatars")
    demo = os.path.join(avatars, "demo")
    run([BIN, "demo", "--avatar-only", demo])
    os.makedirs(os.path.join(demo, "models"), exist_ok=True)
    for f in ("generator.onnx", "audio_encoder.onnx"):
        shutil.copy(os.path.join(MODELS, f), os.path.join(demo, "models", f))
    return avatars


def http_json(url, token=None, timeout=2.0):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read().decode())


class Server:
    """`talkrender serve` on a free loopback port; use as a context manager. stop() sends
    SIGTERM and asserts exit 0 within 20 s (killing it otherwise)."""

    def __init__(self, avatars, tmp, token=None, name="serve"):
        self.avatars, self.token = avatars, token
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(tmp, "%s.log" % name)
        self.proc = None
        self.stopped = False

    def start(self, timeout=60.0):
        cmd = [BIN, "serve", "--avatars", self.avatars, "--listen",
               "127.0.0.1:%d" % self.port]
        if self.token:
            cmd += ["--token", self.token]
        self.log = open(self.log_path, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("serve exited with %d during startup:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            try:
                status, body = http_json(self.url + "/health", self.token, timeout=1.0)
                if status == 200 and body.get("status") == "ok":
                    break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() - t0 > timeout:
                raise AssertionError("serve not healthy after %.0f s:\n%s"
                                     % (timeout, self.log_text()))
            time.sleep(0.25)
        self.health = body
        self.startup_s = time.monotonic() - t0
        print("server %s up in %.1f s: %s" % (self.url, self.startup_s, json.dumps(body)))
        assert "demo" in body.get("avatars", []), "avatar 'demo' not listed: %s" % body
        return self

    def log_text(self):
        try:
            self.log.flush()
            with open(self.log_path) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM; assert it exits 0 within 20 s."""
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("serve did not exit within 20 s of SIGTERM:\n%s"
                                 % self.log_text())
        finally:
            self.log.close()
        assert rc == 0, "serve exited with %d after SIGTERM:\n%s" % (rc, self.log_text())
        print("server stopped (SIGTERM -> exit 0 in %.1f s)" % (time.monotonic() - t0))

    def kill(self):
        """Cleanup for failure paths: never leave a server behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = True

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            if self.proc is not None and self.proc.poll() is None:
                print("server log (tail):\n%s" % self.log_text(), file=sys.stderr)
            self.kill()
        return False
