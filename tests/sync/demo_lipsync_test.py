#!/usr/bin/python3
"""The demo's trained model lip-syncs through the whole pipeline (issue 17, item 4).

Held-out espeak-ng speech (demo_speech.TEST_TEXT, never used in training) is rendered from
the audio file (`render --audio`: mel, encoder, windows, generator, compositing, MP4 mux)
onto the avatar the model was trained on (`demo --avatar-only`) with the committed models
in models/demo; `sync-check --package` on that MP4 must find the audio within one frame of
the picture (|lag| <= 1) with r >= 0.5 and a confident verdict. A window rule or audio mux
off by two frames moves the peak to +-2 and fails here (shown in the issue note).

Run: tests/sync/demo_lipsync_test.py (TALKRENDER_BUILD=build dir, TALKRENDER_SOURCE=source).
Exit 77 = skipped (no espeak-ng).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.environ.get("TALKRENDER_SOURCE",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
BUILD = os.environ.get("TALKRENDER_BUILD", os.path.join(SOURCE, "build"))
BIN = os.path.join(BUILD, "talkrender")
MODELS = os.path.join(SOURCE, "models", "demo")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
from demo_speech import TEST_TEXT  # noqa: E402


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, "%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr)
    return r


def main():
    if shutil.which("espeak-ng") is None:
        print("SKIP: espeak-ng is not installed (tools/install-deps.sh installs it)")
        return 77
    for f in ("generator.onnx", "audio_encoder.onnx"):
        assert os.path.isfile(os.path.join(MODELS, f)), \
            "%s missing: the demo model is committed with the source" % os.path.join(MODELS, f)
    tmp = tempfile.mkdtemp(prefix="tr-demo-sync-")
    try:
        avatar = os.path.join(tmp, "avatar")
        run([BIN, "demo", "--avatar-only", avatar])
        speech = os.path.join(tmp, "held_out.wav")
        run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", speech, TEST_TEXT])
        video = os.path.join(tmp, "out.mp4")
        run([BIN, "render", "--package", avatar, "--audio", speech, "--generator",
             os.path.join(MODELS, "generator.onnx"), "--audio-encoder",
             os.path.join(MODELS, "audio_encoder.onnx"), "--out", video])
        r = run([BIN, "sync-check", "--video", video, "--package", avatar, "--json"])
        res = json.loads(r.stdout)
        print("sync-check on the demo model's render of held-out speech: lag %+d frames "
              "(%.0f ms), r %.3f, %s (%d frames)" % (res["lag_frames"], res["lag_ms"],
                                                      res["correlation"], res["verdict"],
                                                      res["frames"]))
        assert res["confident"] is True, "not confident: %s" % res["reason"]
        assert abs(res["lag_frames"]) <= 1, "audio/video offset %+d frames" % res["lag_frames"]
        assert res["correlation"] >= 0.5, "correlation %.3f < 0.5" % res["correlation"]
        print("ok")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
