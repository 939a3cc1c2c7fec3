#!/usr/bin/python3
"""tools/serve_client.py against a real `talkrender serve` (docs/serve.md).

One server, started with --token, on a temporary avatars folder (the synthetic demo avatar
and models/demo). Then:
  1. the client without the token exits non-zero and its message names 401;
  2. the client with --token streams 4 s of speech in real time and exits 0; its JSON line
     parses and agrees with the input; the MP4 it writes has one H.264 and one AAC stream,
     both starting at 0 (within one frame), at least speech_s * fps video frames (every
     speech frame arrived; when the server's "speaking"/"idle" notices are there, the whole
     utterance lies inside the file), and audio and video durations within one frame period
     plus one AAC frame of each other;
  3. SIGTERM stops the server with exit 0 within 20 s.

Run: tests/serve/serve_client_test.py (TALKRENDER_BUILD=build dir, TALKRENDER_SOURCE=source).
Exit 77 = skipped (no speech recording, ffmpeg or python3-aiohttp).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_testlib as L  # noqa: E402

CLIENT = os.path.join(L.SOURCE, "tools", "serve_client.py")
TOKEN = "s3cret-test-token"
SPEECH_S = 4.0


def client(url, wav, out, token=None, timeout=60):
    cmd = [L.PY, CLIENT, "--url", url, "--avatar", "demo", "--audio", wav, "--out", out]
    if token:
        cmd += ["--token", token]
    env = dict(os.environ)
    env.pop("TALKRENDER_TOKEN", None)  # the client's default: keep it out of the test
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return r, time.monotonic() - t0


def probe(path):
    r = L.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
               "stream=codec_type,codec_name,start_time,duration,nb_read_packets,"
               "avg_frame_rate,r_frame_rate,sample_rate:format=duration", "-of", "json", path])
    return json.loads(r.stdout)


def main():
    L.require_tools()
    if importlib.util.find_spec("aiohttp") is None:  # the client needs it
        L.skip("python3-aiohttp is not installed")
    tmp = tempfile.mkdtemp(prefix="tr-serve-client-")
    t_all = time.monotonic()
    try:
        wav = L.make_speech(tmp, SPEECH_S)
        avatars = L.make_avatars(tmp)
        out = os.path.join(tmp, "out.mp4")
        with L.Server(avatars, tmp, token=TOKEN) as srv:
            # 1. No token: refused, and the message says why.
            r, dt = client(srv.url, wav, os.path.join(tmp, "refused.mp4"))
            print("without the token: exit %d in %.1f s: %s"
                  % (r.returncode, dt, r.stderr.strip()))
            assert r.returncode != 0, "the client without the token succeeded:\n" + r.stdout
            assert "401" in r.stderr + r.stdout, \
                "the refusal does not mention 401:\n%s%s" % (r.stdout, r.stderr)
            assert not os.path.exists(os.path.join(tmp, "refused.mp4"))

            # 2. With the token: the whole utterance, in sync.
            r, dt = client(srv.url, wav, out, token=TOKEN)
            print("with the token: exit %d in %.1f s" % (r.returncode, dt))
            sys.stdout.write(r.stderr)
            assert r.returncode == 0, "client failed (%d):\n%s%s" % (r.returncode, r.stdout,
                                                                     r.stderr)
        # (the server is stopped here: SIGTERM -> 0 within 20 s, asserted by Server.stop)

        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        assert lines, "the client printed no JSON line"
        try:
            rep = json.loads(lines[-1])
        except ValueError as e:
            raise AssertionError("the client's last line is not JSON (%s): %r" % (e, lines[-1]))
        print("client report: %s" % json.dumps(rep))
        for k in ("out", "messages", "frames_expected_speech", "speech_s",
                  "first_frame_latency_ms", "bytes", "elapsed_s"):
            assert k in rep, "client report lacks %r: %s" % (k, rep)
        assert rep["out"] == out, rep
        assert abs(rep["speech_s"] - SPEECH_S) < 0.05, "speech_s %s != %s" % (rep["speech_s"],
                                                                              SPEECH_S)
        assert os.path.isfile(out) and os.path.getsize(out) > 0, "no MP4 written"

        info = probe(out)
        streams = info["streams"]
        video = [s for s in streams if s["codec_type"] == "video"]
        audio = [s for s in streams if s["codec_type"] == "audio"]
        assert len(video) == 1 and len(audio) == 1, "streams: %s" % streams
        v, a = video[0], audio[0]
        assert v["codec_name"] == "h264", v
        assert a["codec_name"] == "aac", a
        num, den = (int(x) for x in v["avg_frame_rate"].split("/"))
        fps = num / den
        assert fps > 0, v
        frame_s = 1.0 / fps
        aac_s = 1024.0 / int(a["sample_rate"])
        nv, na = int(v["nb_read_packets"]), int(a["nb_read_packets"])
        vdur, adur = float(v["duration"]), float(a["duration"])
        vstart, astart = float(v["start_time"]), float(a["start_time"])
        print("video: h264 %d frames @ %.2f fps, start %.3f s, %.3f s; audio: aac %d Hz, "
              "%d frames, start %.3f s, %.3f s; |dv - da| = %.1f ms (bound %.1f ms)"
              % (nv, fps, vstart, vdur, int(a["sample_rate"]), na, astart, adur,
                 1000 * abs(vdur - adur), 1000 * (frame_s + aac_s)))
        assert abs(vstart) <= frame_s + 1e-6, "video starts at %.3f s" % vstart
        assert abs(astart) <= frame_s + 1e-6, "audio starts at %.3f s" % astart
        speech_frames = int(SPEECH_S * fps)
        assert rep["frames_expected_speech"] == speech_frames, rep
        assert nv >= speech_frames, \
            "%d video frames < %d frames of speech: frames are missing" % (nv, speech_frames)
        assert rep["messages"] >= nv, "%d messages for %d frames" % (rep["messages"], nv)
        # The bound is met with equality at worst: at the cut, the live AAC encoder still
        # holds its delay (1024 samples), one frame of look-ahead and the partial block of
        # (frames * 1920) % 1024 samples, i.e. up to 2944 samples = 61.3 ms at 25 fps, 48 kHz;
        # hence the 1 ms of slack (ffprobe rounds to microseconds).
        assert abs(vdur - adur) <= frame_s + aac_s + 1e-3, \
            "audio %.3f s vs video %.3f s: off by more than a frame + an AAC frame" % (adur,
                                                                                      vdur)
        # The server's notices, when present, say where the utterance lies in the stream.
        notes = {}
        for ln in r.stderr.splitlines():
            if ln.startswith("server: "):
                try:
                    j = json.loads(ln[len("server: "):])
                except ValueError:
                    continue
                if isinstance(j, dict) and isinstance(j.get("frame"), int):
                    notes.setdefault(j.get("type"), j["frame"])
        if "speaking" in notes and "idle" in notes:
            said = notes["idle"] - notes["speaking"]
            print("speech frames %d..%d (%d frames for %d of speech)"
                  % (notes["speaking"], notes["idle"], said, speech_frames))
            assert said >= speech_frames - 1, \
                "the utterance took %d frames, %d expected" % (said, speech_frames)
            assert notes["idle"] <= nv, \
                "back to idle at frame %d, but the file has %d frames" % (notes["idle"], nv)
        print("ok (%.1f s)" % (time.monotonic() - t_all))
        return 0
    finally:
        keep = os.environ.get("TALKRENDER_KEEP_TMP")
        if keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
