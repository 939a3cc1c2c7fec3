#!/usr/bin/python3
"""talkrender sync-check on synthetic talking-box videos made here (issue 17).

A box face whose dark "mouth" opens with the loudness of espeak-ng speech is muxed with that
speech; ffmpeg -itsoffset then shifts the audio by +5 and -3 frames (as timestamps / an edit
list, checked with ffprobe). sync-check must find 0, +5 and -3 within one frame with
r >= 0.6 and confident; a mouth driven by other speech, a still mouth and a render walked
through a package's rects (--package) are checked too, silent audio must say "no speech",
and bad inputs must exit 2 naming the file.

Run: tests/sync/sync_check_test.py (TALKRENDER_BUILD=build dir). Exit 77 = skipped (no
ffmpeg / espeak-ng / numpy+cv2).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import cv2
    import numpy as np
except ImportError:
    print("SKIP: needs Debian's python3-numpy and python3-opencv (/usr/bin/python3)")
    sys.exit(77)

FPS = 25
W, H = 320, 240
FACE = (100, 40, 220, 200)  # x1, y1, x2, y2: the face rect given to --rect
BUILD = os.environ.get("TALKRENDER_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
BIN = os.path.join(BUILD, "talkrender")
TEXT_A = ("The quick brown fox jumps over the lazy dog. Then it rests for a while, "
          "and speaks again about the weather in the mountains.")
TEXT_B = ("Seven purple hippos paddle slowly past the harbour wall, humming tunes "
          "while the sailors count their nets.")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def ffmpeg(*args):
    r = run(["ffmpeg", "-loglevel", "error", "-y", *args])
    assert r.returncode == 0, f"ffmpeg {' '.join(args)}: {r.stderr}"


def speech(tmp, name, text, voice="en"):
    path = os.path.join(tmp, name + ".wav")
    r = run(["espeak-ng", "-v", voice, "-w", path, text])
    assert r.returncode == 0, r.stderr
    return path


def read_wav_mono(path):
    r = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", path, "-ac", "1", "-ar", "16000",
                        "-f", "f32le", "-"], capture_output=True, check=True)
    return np.frombuffer(r.stdout, dtype=np.float32)


def envelope(samples, frames):
    """Linear RMS per video frame, smoothed over 3 frames, scaled to [0, 1]."""
    hop = 16000 // FPS
    env = np.zeros(frames)
    for i in range(frames):
        seg = samples[i * hop:(i + 1) * hop]
        env[i] = np.sqrt(np.mean(seg.astype(np.float64) ** 2)) if len(seg) else 0.0
    env = np.convolve(env, [0.25, 0.5, 0.25], mode="same")
    return env / max(env.max(), 1e-9)


def draw(openness, face_rects=None, seed=0):
    """Frames of the box face; openness[i] in [0, 1] sets the mouth's height."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, o in enumerate(openness):
        img = np.full((H, W, 3), (90, 120, 150), np.uint8)
        x1, y1, x2, y2 = face_rects[i] if face_rects is not None else FACE
        fw, fh = x2 - x1, y2 - y1
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (120, 160, 215), -1)
        for ex in (0.3, 0.7):  # eyes
            cv2.circle(img, (x1 + int(ex * fw), y1 + int(0.2 * fh)), 6, (40, 40, 40), -1)
        cx, cy = x1 + fw // 2, y1 + int(0.62 * fh)
        half_h = 1 + int(round(o * 0.14 * fh))
        cv2.rectangle(img, (cx - int(0.2 * fw), cy - half_h), (cx + int(0.2 * fw), cy + half_h),
                      (30, 20, 60), -1)
        noise = rng.integers(-3, 4, size=img.shape, dtype=np.int16)  # sensor-like noise
        frames.append(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return frames


def write_video(tmp, name, frames, audio):
    """H.264 + AAC MP4 of the frames at 25 fps; audio is a file, or None for no audio."""
    out = os.path.join(tmp, name + ".mp4")
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-"]
    if audio:
        cmd += ["-i", audio, "-c:a", "aac", "-b:a", "96k"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
            "-shortest" if audio else "-an", out]
    p = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    return out


def shifted(tmp, src, frames_late):
    """src with its audio moved by frames_late frames through -itsoffset (stream copy)."""
    out = os.path.join(tmp, f"shift{frames_late:+d}.mp4")
    ffmpeg("-i", src, "-itsoffset", str(frames_late / FPS), "-i", src,
           "-map", "0:v", "-map", "1:a", "-c", "copy", out)
    return out


def audio_stream(path):
    r = run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries",
             "stream=start_time,duration", "-of", "json", path])
    s = json.loads(r.stdout)["streams"][0]
    return float(s["start_time"]), float(s["duration"])


def sync_check(video, *extra):
    r = run([BIN, "sync-check", "--video", video, *extra, "--json"])
    assert r.returncode == 0, f"sync-check {video}: exit {r.returncode}: {r.stderr}"
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"--json printed {len(lines)} lines"
    j = json.loads(lines[0])
    for key in ("lag_frames", "lag_ms", "correlation", "confident"):
        assert key in j, f"--json lacks {key}"
    return j


def rect_arg(r=FACE):
    return ["--rect", ",".join(map(str, r))]


failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def main():
    for tool in ("ffmpeg", "ffprobe", "espeak-ng"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} not installed")
            return 77
    if not os.access(BIN, os.X_OK):
        print(f"FAIL: {BIN} not built")
        return 1
    tmp = tempfile.mkdtemp(prefix="sync_check_test_")
    try:
        wav_a = speech(tmp, "a", TEXT_A)
        wav_b = speech(tmp, "b", TEXT_B, "en-us")
        a = read_wav_mono(wav_a)
        n = int(len(a) / 16000 * FPS)
        env_a = envelope(a, n)
        base = write_video(tmp, "base", draw(env_a), wav_a)

        # The shifts must be in the file's timestamps / edit list, not in the samples.
        plus, minus = shifted(tmp, base, 5), shifted(tmp, base, -3)
        b_start, b_dur = audio_stream(base)
        p_start, _ = audio_stream(plus)
        _, m_dur = audio_stream(minus)
        check(p_start > b_start + 0.1, f"+5 file: audio stream starts at {p_start:.3f} s")
        check(abs((b_dur - m_dur) - 0.12) < 0.03,
              f"-3 file: edit list trims the audio by {b_dur - m_dur:.3f} s")

        for video, want in ((base, 0), (plus, 5), (minus, -3)):
            j = sync_check(video, *rect_arg())
            print(f"     {os.path.basename(video)}: lag {j['lag_frames']} ({j['lag_ms']} ms) "
                  f"r {j['correlation']:.3f} confident {j['confident']} {j['reason']}")
            check(abs(j["lag_frames"] - want) <= 1 and j["correlation"] >= 0.6 and j["confident"],
                  f"{os.path.basename(video)}: lag {j['lag_frames']} (want {want}), "
                  f"r {j['correlation']:.3f}")
            check(abs(j["lag_ms"] - j["lag_frames"] * 40) < 1e-6, "lag_ms = 40 x lag_frames")

        # The plot is a PNG.
        png = os.path.join(tmp, "curve.png")
        r = run([BIN, "sync-check", "--video", plus, *rect_arg(), "--plot", png])
        check(r.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n",
              "--plot writes a PNG")
        check("confident" in r.stdout and "+5 frames" in r.stdout, "text report: " + r.stdout.splitlines()[-2])

        # A mouth that follows other speech, and one that never moves: no confident offset.
        b = read_wav_mono(wav_b)
        env_b = envelope(b, len(env_a)) if len(b) / 16000 * FPS >= n else np.resize(envelope(b, int(len(b) / 16000 * FPS)), n)
        other = write_video(tmp, "other", draw(env_b, seed=1), wav_a)
        still = write_video(tmp, "still", draw(np.zeros(n), seed=2), wav_a)
        for video in (other, still):
            j = sync_check(video, *rect_arg())
            print(f"     {os.path.basename(video)}: lag {j['lag_frames']} r {j['correlation']} "
                  f"confident {j['confident']}: {j['reason']}")
            check(not j["confident"] and j["verdict"] == "no confident offset",
                  f"{os.path.basename(video)}: no confident offset")

        # Silent audio: "no speech".
        silent_wav = os.path.join(tmp, "silent.wav")
        ffmpeg("-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-t", str(n / FPS), silent_wav)
        silent = write_video(tmp, "silent", draw(env_a), silent_wav)
        j = sync_check(silent, *rect_arg())
        check(j["verdict"] == "no speech" and not j["confident"] and j["lag_frames"] is None,
              f"silent audio: {j['verdict']}")
        r = run([BIN, "sync-check", "--video", silent, *rect_arg()])
        check(r.returncode == 0 and "no speech" in r.stdout, "silent audio: text says no speech")

        # --package: the face moves through the package's rects in render's ping-pong walk.
        pkg = os.path.join(tmp, "pkg")
        os.makedirs(os.path.join(pkg, "cache"))
        k_frames = 37
        rects = [(60 + 3 * k, 30 + k // 2, 180 + 3 * k, 190 + k // 2) for k in range(k_frames)]
        with open(os.path.join(pkg, "cache", "crop_rectangles.json"), "w") as f:
            json.dump({str(k): {"rect": list(r)} for k, r in enumerate(rects)}, f)
        period = 2 * (k_frames - 1)
        walk = [rects[i % period if i % period < k_frames else period - i % period]
                for i in range(n)]
        moving = write_video(tmp, "moving", draw(env_a, face_rects=walk, seed=3), wav_a)
        moving_plus = shifted(tmp, moving, 5)
        j = sync_check(moving_plus, "--package", pkg)
        print(f"     --package: lag {j['lag_frames']} r {j['correlation']:.3f} "
              f"confident {j['confident']}")
        check(abs(j["lag_frames"] - 5) <= 1 and j["correlation"] >= 0.6 and j["confident"],
              "--package (ping-pong rects), audio +5 frames")

        # Bad inputs: exit 2, one line naming the file.
        missing = os.path.join(tmp, "missing.mp4")
        no_audio = write_video(tmp, "noaudio", draw(env_a[:50]), None)
        no_video = os.path.join(tmp, "novideo.m4a")
        ffmpeg("-i", wav_a, "-c:a", "aac", no_video)
        for video, extra, what in ((missing, rect_arg(), "missing file"),
                                   (no_audio, rect_arg(), "no audio stream"),
                                   (no_video, rect_arg(), "no video stream"),
                                   (base, rect_arg((200, 100, 400, 300)), "rect outside the frame"),
                                   (base, [], "no --rect or --package")):
            r = run([BIN, "sync-check", "--video", video, *extra])
            lines = r.stderr.strip().splitlines()
            check(r.returncode == 2 and len(lines) == 1 and video in lines[0],
                  f"{what}: exit {r.returncode}, {lines}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all sync-check checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
