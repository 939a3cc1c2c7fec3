#!/usr/bin/python3
"""Hostile-input catalogue: runs the real `talkrender` binary on broken packages, audio,
feature files, models and output paths, and checks for each case

  * the exit code (0 ok, 2 bad input or usage, 3 runtime or I/O failure, 130 interrupted),
  * the message: it names the offending file and says what is wrong,
  * that nothing is left at the output path, and no temporary file next to it.

Every input is generated here. The expensive fixtures (a seeded S = 160 generator and the
audio encoder from tools/export_models.py, the tiny base package) are made once by
`--setup` and cached in $TALKRENDER_BUILD/catalogue_fixtures; each group then works in its
own scratch folder, so groups may run in parallel (ctest -j).

  /usr/bin/python3 tests/catalogue/catalogue.py --setup
  /usr/bin/python3 tests/catalogue/catalogue.py --group package [--case NAME] [-v]
  /usr/bin/python3 tests/catalogue/catalogue.py --list
"""

import argparse
import glob
import json
import math
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import wave

SOURCE = os.environ.get('TALKRENDER_SOURCE',
                        os.path.dirname(os.path.dirname(os.path.dirname(
                            os.path.abspath(__file__)))))
BUILD = os.environ.get('TALKRENDER_BUILD', os.path.join(SOURCE, 'build'))
BINARY = os.environ.get('CATALOGUE_BINARY', os.path.join(BUILD, 'talkrender'))
FIXTURES = os.path.join(BUILD, 'catalogue_fixtures')
PYTHON = '/usr/bin/python3'  # Debian's, with torch/onnx (see the preamble of the project)

# The tiny synthetic package: small frames keep decoding cheap under ASan.
PKG_FRAMES, PKG_W, PKG_H = 6, 320, 240
GEN_SIZE = 160  # the cached family generator: gen160-ave
CASE_TIMEOUT_S = 120  # generous: ASan builds load a 12 M-parameter model slowly


# ---------------------------------------------------------------------------------------
# Input makers


def write_wav_pcm16(path, samples, rate=16000):
    with wave.open(path, 'wb') as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b''.join(
            struct.pack('<h', int(max(-1.0, min(1.0, s)) * 32767)) for s in samples))


def sine(seconds, rate=16000, hz=220.0):
    return [0.3 * math.sin(2 * math.pi * hz * i / rate) for i in range(int(seconds * rate))]


def wav_header(data_bytes, rate=16000, channels=1, bits=16, fmt_tag=1):
    """A canonical 44-byte RIFF/WAVE header that claims `data_bytes` of samples."""
    block = channels * bits // 8
    return (b'RIFF' + struct.pack('<I', (36 + data_bytes) & 0xFFFFFFFF) + b'WAVE' + b'fmt ' +
            struct.pack('<IHHIIHH', 16, fmt_tag, channels, rate, rate * block, block, bits) +
            b'data' + struct.pack('<I', data_bytes & 0xFFFFFFFF))


def write_float_wav(path, samples, rate=16000):
    """IEEE float32 WAV (format tag 3), so NaN and Inf survive into the file."""
    data = struct.pack('<%df' % len(samples), *samples)
    with open(path, 'wb') as f:
        f.write(wav_header(len(data), rate=rate, bits=32, fmt_tag=3) + data)


def write_bytes(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def write_features(path, rows, block=512, value=0.1, sidecar_shape=None, special=None):
    """A .bin float32 feature file plus its .json sidecar (as in the sample package)."""
    vals = [value * ((i % 7) - 3) for i in range(rows * block)]
    if special is not None:
        vals[(rows // 2) * block + 5] = special
    write_bytes(path, struct.pack('<%df' % len(vals), *vals))
    shape = sidecar_shape if sidecar_shape is not None else [rows, block]
    with open(os.path.splitext(path)[0] + '.json', 'w') as f:
        json.dump({'num_frames': shape[0], 'feature_size': shape[-1], 'shape': shape}, f)


def write_npy_f32(path, shape, value=0.1):
    import numpy as np
    np.save(path, np.full(shape, value, dtype=np.float32))


def ffmpeg_video(path, frames, w, h, rate=25):
    subprocess.run(['ffmpeg', '-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i',
                    'testsrc=size=%dx%d:rate=%d' % (w, h, rate), '-frames:v', str(frames),
                    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', path],
                   check=True)


def base_rects(n=PKG_FRAMES):
    return {str(i): {'rect': [100 + i, 60, 200 + i, 160], 'original_path': 'x.jpg'}
            for i in range(n)}


def write_rects(pkg, rects):
    with open(os.path.join(pkg, 'cache', 'crop_rectangles.json'), 'w') as f:
        json.dump(rects, f)


def tiny_generator(path, size=GEN_SIZE, audio_shape=(32, 16, 16), names=('input', 'audio'),
                   out_channels=3, extra_op=None, opset=13):
    """A few-node model with the generator's interface: Sigmoid(Conv1x1(input) +
    audio[:, :1, :1, :1]) (ops the runtime has). Variants break one aspect at a time."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    image = helper.make_tensor_value_info(names[0], TensorProto.FLOAT, ['B', 6, size, size])
    audio = helper.make_tensor_value_info(names[1], TensorProto.FLOAT, ['B'] + list(audio_shape))
    out = helper.make_tensor_value_info('output', TensorProto.FLOAT,
                                        ['B', out_channels, size, size])
    inits = [
        numpy_helper.from_array(np.full((out_channels, 6, 1, 1), 0.1, dtype=np.float32), 'w'),
        numpy_helper.from_array(np.array([0, 0, 0], dtype=np.int64), 'starts'),
        numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64), 'ends'),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), 'axes'),
    ]
    nodes = [
        helper.make_node('Conv', [names[0], 'w'], ['conv']),
        helper.make_node('Slice', [names[1], 'starts', 'ends', 'axes'], ['amean']),
    ]
    nodes.append(helper.make_node('Add', ['conv', 'amean'], ['sum']))
    last = 'sum'
    if extra_op:
        nodes.append(helper.make_node(extra_op, [last], ['odd']))
        last = 'odd'
    nodes.append(helper.make_node('Sigmoid', [last], ['output']))
    graph = helper.make_graph(nodes, 'tiny_generator', [image, audio], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])
    onnx.save(model, path)


# ---------------------------------------------------------------------------------------
# Fixtures (cached per build directory)


def setup():
    os.makedirs(FIXTURES, exist_ok=True)
    models = os.path.join(FIXTURES, 'models')
    stamp = os.path.join(models, 'done')
    # The models depend only on the exporter and its seed, not on the build: reuse another
    # build directory's (tools/test.sh runs the release build's tests before the ASan job).
    cached = os.path.join(SOURCE, 'build', 'catalogue_fixtures', 'models')
    if (not os.path.exists(stamp) and os.path.exists(os.path.join(cached, 'done')) and
            os.path.realpath(cached) != os.path.realpath(models)):
        shutil.rmtree(models, ignore_errors=True)
        shutil.copytree(cached, models)
    if not os.path.exists(stamp):
        t = time.time()
        subprocess.run([PYTHON, os.path.join(SOURCE, 'tools', 'export_models.py'), '--out',
                        models, '--models', 'gen160-ave,encoder', '--no-goldens', '--seed',
                        '1234'], check=True)
        write_bytes(stamp, b'')
        print('exported gen160-ave + encoder in %.1f s' % (time.time() - t))
    # A few-node stand-in with the family's interface: loads in milliseconds, so the cases
    # that are about packages, features and outputs do not pay for a 12 M-parameter load.
    tiny_generator(os.path.join(models, 'tiny160.onnx'))
    pkg = os.path.join(FIXTURES, 'package')
    if not os.path.exists(os.path.join(pkg, 'done')):
        shutil.rmtree(pkg, ignore_errors=True)
        os.makedirs(os.path.join(pkg, 'cache'))
        ffmpeg_video(os.path.join(pkg, 'full_body_video.mp4'), PKG_FRAMES, PKG_W, PKG_H)
        write_rects(pkg, base_rects())
        # Face-crop videos for the "videos differ in length or size" cases.
        ffmpeg_video(os.path.join(FIXTURES, 'video_328.mp4'), PKG_FRAMES, 328, 328)
        ffmpeg_video(os.path.join(FIXTURES, 'video_168_short.mp4'), PKG_FRAMES - 2, 168, 168)
        write_bytes(os.path.join(pkg, 'done'), b'')
    print('fixtures ready in', FIXTURES)


class Env:
    """Paths of the shared fixtures plus a scratch folder for one group."""

    def __init__(self, group):
        self.fix = FIXTURES
        self.gen = os.path.join(FIXTURES, 'models', 'gen160-ave.onnx')
        self.enc = os.path.join(FIXTURES, 'models', 'encoder.onnx')
        self.tiny = os.path.join(FIXTURES, 'models', 'tiny160.onnx')
        self.base_pkg = os.path.join(FIXTURES, 'package')
        self.scratch = os.path.join(FIXTURES, 'run', group)
        shutil.rmtree(self.scratch, ignore_errors=True)
        os.makedirs(self.scratch)

    def case_dir(self, name):
        d = os.path.join(self.scratch, name)
        os.makedirs(os.path.join(d, 'out'))
        return d

    def package(self, d):
        """A private copy of the base package (without its stamp file)."""
        pkg = os.path.join(d, 'pkg')
        shutil.copytree(self.base_pkg, pkg, ignore=shutil.ignore_patterns('done'))
        return pkg

    def features(self, d, rows=4):
        path = os.path.join(d, 'feat.bin')
        write_features(path, rows)
        return path

    def audio(self, d, seconds=1.0):
        path = os.path.join(d, 'speech.wav')
        write_wav_pcm16(path, sine(seconds))
        return path


def render_args(pkg, out, gen, features=None, audio=None, enc=None, extra=()):
    args = ['render', '--package', pkg, '--generator', gen, '--out', out, '--no-progress']
    if features:
        args += ['--features', features]
    if audio:
        args += ['--audio', audio, '--audio-encoder', enc]
    return args + list(extra)


# ---------------------------------------------------------------------------------------
# The catalogue. Each case builds its inputs in its own folder `d` and returns a dict:
#   args:     talkrender arguments
#   rc:       expected exit code
#   names:    file name (basename) the message must contain
#   problem:  regex (case-insensitive) the message must match: what is wrong
#   out:      the output path that must not exist afterwards (None: the case checks itself)
#   keep:     {path: bytes} files that must be unchanged afterwards
#   limits:   {'fsize': bytes} resource limits for the child
#   check:    extra callable(result) -> error string or None
#   signal:   a signal to send once the render is writing (see wait_for_work)
#   skip:     the reason the case cannot run here (nothing else is given)
#   cleanup:  callable run after the checks

CASES = []


def case(group, name):
    def register(fn):
        CASES.append((group, name, fn))
        return fn
    return register


# --- packages --------------------------------------------------------------------------


def pkg_case(e, d, mutate, **kw):
    pkg = e.package(d)
    mutate(pkg)
    out = os.path.join(d, 'out', 'video.mp4')
    r = dict(args=render_args(pkg, out, e.tiny, features=e.features(d), extra=kw.pop('extra', ())),
             rc=2, out=out)
    r.update(kw)
    return r


@case('package', 'missing_directory')
def _(e, d):
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=render_args(os.path.join(d, 'no_such_pkg'), out, e.tiny,
                                 features=e.features(d)),
                rc=2, names=['no_such_pkg'], problem='not found|no such|missing', out=out)


@case('package', 'missing_video')
def _(e, d):
    return pkg_case(e, d, lambda p: os.remove(os.path.join(p, 'full_body_video.mp4')),
                    names=['full_body_video.mp4'], problem='missing|not found')


@case('package', 'corrupt_video')
def _(e, d):
    return pkg_case(e, d, lambda p: write_bytes(os.path.join(p, 'full_body_video.mp4'),
                                                b'\x00\x00\x00\x18ftypmp42' + os.urandom(3000)),
                    names=['full_body_video.mp4'],
                    problem='invalid|corrupt|cannot|decode|no video|open')


@case('package', 'truncated_video')
def _(e, d):
    def cut(p):
        path = os.path.join(p, 'full_body_video.mp4')
        data = open(path, 'rb').read()
        write_bytes(path, data[:len(data) // 3])
    return pkg_case(e, d, cut, names=['full_body_video.mp4'],
                    problem='invalid|corrupt|cannot|decode|truncat|no video|open|frames')


@case('package', 'missing_rects')
def _(e, d):
    return pkg_case(e, d, lambda p: os.remove(os.path.join(p, 'cache', 'crop_rectangles.json')),
                    names=['crop_rectangles.json'], problem='missing|not found')


@case('package', 'truncated_json')
def _(e, d):
    def cut(p):
        path = os.path.join(p, 'cache', 'crop_rectangles.json')
        write_bytes(path, open(path, 'rb').read()[:40])
    return pkg_case(e, d, cut, names=['crop_rectangles.json'], problem='json')


@case('package', 'invalid_json')
def _(e, d):
    return pkg_case(e, d, lambda p: write_bytes(
        os.path.join(p, 'cache', 'crop_rectangles.json'), b'{"0": {"rect": [1, 2, 3, 4]},, }'),
                    names=['crop_rectangles.json'], problem='json')


@case('package', 'rect_not_numbers')
def _(e, d):
    def mutate(p):
        r = base_rects()
        r['2']['rect'] = ['a', 60, 200, 160]
        write_rects(p, r)
    return pkg_case(e, d, mutate, names=['crop_rectangles.json'],
                    problem=r'frame 2|"2".*integer|integer.*\b2\b')


@case('package', 'rect_out_of_bounds')
def _(e, d):
    def mutate(p):
        r = base_rects()
        r['3']['rect'] = [250, 60, PKG_W + 40, 160]
        write_rects(p, r)
    return pkg_case(e, d, mutate, names=['crop_rectangles.json'],
                    problem=r'frame 3.*(outside|bounds|inside|exceed)')


@case('package', 'rect_negative')
def _(e, d):
    def mutate(p):
        r = base_rects()
        r['1']['rect'] = [-20, 60, 100, 160]
        write_rects(p, r)
    return pkg_case(e, d, mutate, names=['crop_rectangles.json'],
                    problem=r'frame 1|"1"')


@case('package', 'rect_empty')
def _(e, d):
    def mutate(p):
        r = base_rects()
        r['4']['rect'] = [120, 60, 120, 160]
        write_rects(p, r)
    return pkg_case(e, d, mutate, names=['crop_rectangles.json'],
                    problem=r'(frame 4|"4").*(empty|x2 > x1|x2 must)')


@case('package', 'rect_count_fewer_than_frames')
def _(e, d):
    return pkg_case(e, d, lambda p: write_rects(p, base_rects(PKG_FRAMES - 1)),
                    names=['crop_rectangles.json'],
                    problem=r'%d.*%d|%d.*%d' % (PKG_FRAMES - 1, PKG_FRAMES, PKG_FRAMES,
                                               PKG_FRAMES - 1))


@case('package', 'rect_count_more_than_frames')
def _(e, d):
    return pkg_case(e, d, lambda p: write_rects(p, base_rects(PKG_FRAMES + 3)),
                    names=['crop_rectangles.json'],
                    problem=r'%d.*%d|%d.*%d' % (PKG_FRAMES + 3, PKG_FRAMES, PKG_FRAMES,
                                               PKG_FRAMES + 3))


@case('package', 'rect_keys_with_gap')
def _(e, d):
    def mutate(p):
        r = base_rects()
        r['9'] = r.pop('2')
        write_rects(p, r)
    return pkg_case(e, d, mutate, names=['crop_rectangles.json'], problem=r'\b(2|9)\b')


@case('package', 'crops_video_shorter')
def _(e, d):
    return pkg_case(e, d, lambda p: shutil.copy(os.path.join(e.fix, 'video_168_short.mp4'),
                                                os.path.join(p, 'crops_328_video.mp4')),
                    names=['crops_328_video.mp4'], problem=r'frames|size|\d+x\d+',
                    extra=['--crops-from', 'video'])


@case('package', 'crops_video_wrong_size_for_model')
def _(e, d):
    # The sample's crops are 328 px (S = 320 + 8); this generator is S = 160, so a crop
    # video must be 168 px. Rendering from it would silently mis-scale every face.
    return pkg_case(e, d, lambda p: shutil.copy(os.path.join(e.fix, 'video_328.mp4'),
                                                os.path.join(p, 'crops_328_video.mp4')),
                    names=['crops_328_video.mp4'], problem=r'328.*168|168.*328',
                    extra=['--crops-from', 'video'])


@case('package', 'package_info_frame_count_disagrees')
def _(e, d):
    def mutate(p):
        with open(os.path.join(p, 'package_info.json'), 'w') as f:
            json.dump({'videos': {'full_body_img': {'video_file': 'full_body_video.mp4',
                                                    'frame_count': 523, 'fps': 25}}}, f)
    return pkg_case(e, d, mutate, names=['package_info.json'], problem=r'523')


@case('package', 'full_video_swapped_for_other_size')
def _(e, d):
    # Rects made for 320x240 frames against a 328x328 video: frame 0's rect still fits, so
    # use a video whose frames are smaller than the rects.
    def mutate(p):
        r = base_rects()
        for k in r:
            r[k]['rect'] = [200, 200, 300, 300]  # fits 328x328, not 320x240
        write_rects(p, r)
    return pkg_case(e, d, mutate, names=['crop_rectangles.json'],
                    problem=r'frame 0.*(outside|bounds|inside|exceed)')


# --- audio -----------------------------------------------------------------------------


def audio_case(e, d, make, **kw):
    path = os.path.join(d, kw.pop('file', 'speech.wav'))
    make(path)
    out = os.path.join(d, 'out', 'video.mp4')
    r = dict(args=render_args(e.base_pkg, out, e.tiny, audio=path, enc=e.enc), rc=2, out=out,
             names=[os.path.basename(path)])
    r.update(kw)
    return r


@case('audio', 'missing_file')
def _(e, d):
    return audio_case(e, d, lambda p: None, file='nowhere.wav', problem='not found|no such|open')


@case('audio', 'empty_file')
def _(e, d):
    return audio_case(e, d, lambda p: write_bytes(p, b''),
                      problem='empty|invalid|cannot|no audio|decode|short')


@case('audio', 'header_only_wav')
def _(e, d):
    return audio_case(e, d, lambda p: write_bytes(p, wav_header(0)),
                      problem='no audio|no samples|empty|short')


@case('audio', 'corrupt_mp3')
def _(e, d):
    junk = b'ID3\x03\x00\x00\x00\x00\x00\x00' + bytes((i * 37 + 11) % 256 for i in range(4000))
    return audio_case(e, d, lambda p: write_bytes(p, junk), file='speech.mp3',
                      problem='invalid|corrupt|cannot|decode|no audio|short')


@case('audio', 'not_audio_text')
def _(e, d):
    return audio_case(e, d, lambda p: write_bytes(p, b'this is not audio\n' * 50),
                      file='notes.wav', problem='invalid|cannot|decode|no audio|format')


@case('audio', 'nan_samples_float_wav')
def _(e, d):
    def make(p):
        s = sine(1.0)
        s[8000] = float('nan')
        write_float_wav(p, s)
    return audio_case(e, d, make, problem='nan')


@case('audio', 'inf_samples_float_wav')
def _(e, d):
    def make(p):
        s = sine(1.0)
        s[100] = float('inf')
        write_float_wav(p, s)
    return audio_case(e, d, make, problem='inf')


@case('audio', 'one_sample')
def _(e, d):
    return audio_case(e, d, lambda p: write_wav_pcm16(p, [0.5]), problem='short')


@case('audio', 'wav_claims_8_hours_holds_1_s')
def _(e, d):
    # The header says 8 h (0.9 GB of 16-bit samples); the file has 1 s. The decoder must
    # not trust the header for allocation: `mel` succeeds with 1 s worth of columns.
    path = os.path.join(d, 'liar.wav')
    body = b''.join(struct.pack('<h', int(v * 32767)) for v in sine(1.0))
    write_bytes(path, wav_header(8 * 3600 * 16000 * 2) + body)
    out = os.path.join(d, 'out', 'mel.npy')

    def check(res):
        import numpy as np
        if not os.path.exists(out):
            return 'no mel written'
        m = np.load(out)
        if m.shape != (80, 81):  # 1 + floor(16000 / 200) columns
            return 'mel shape %s, expected (80, 81) for 1 s' % (m.shape,)
        return None
    return dict(args=['mel', '--audio', path, '--out', out], rc=0, names=[], problem='',
                out=None, check=check)


@case('audio', 'stereo_44k1_ok')
def _(e, d):
    # Control case: a legal file must still render (two frames), proving the fixtures work.
    path = os.path.join(d, 'speech.wav')
    with wave.open(path, 'wb') as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b''.join(struct.pack('<hh', int(v * 32767), int(-v * 32767))
                               for v in sine(1.0, rate=44100)))
    out = os.path.join(d, 'out', 'video.mp4')

    def check(res):
        if not os.path.isfile(out) or os.path.getsize(out) < 1000:
            return 'no MP4 written'
        return None
    return dict(args=render_args(e.base_pkg, out, e.gen, audio=path, enc=e.enc,
                                 extra=['--frames', '2']),
                rc=0, names=[], problem='', out=None, check=check)


# --- features --------------------------------------------------------------------------


def feat_case(e, d, make, **kw):
    path = os.path.join(d, kw.pop('file', 'feat.bin'))
    make(path)
    out = os.path.join(d, 'out', 'video.mp4')
    r = dict(args=render_args(e.base_pkg, out, e.tiny, features=path), rc=2, out=out,
             names=[os.path.basename(path)])
    r.update(kw)
    return r


@case('features', 'control_renders_png_sequence')
def _(e, d):
    # Control case: legal features and the tiny generator render, so the failures of the
    # other cases are the hostile input's doing, not the fixtures'.
    out = os.path.join(d, 'out', 'frames') + '/'

    def check(res):
        got = sorted(os.listdir(out)) if os.path.isdir(out) else []
        if len(got) != 4 or not all(n.endswith('.png') for n in got):
            return 'expected 4 PNG frames, found %s' % got
        return None
    return dict(args=render_args(e.base_pkg, out, e.tiny, features=e.features(d)), rc=0,
                names=[], problem='', out=None, check=check)


@case('features', 'bench_json_rows')
def _(e, d):
    # Control case for `talkrender bench --json`: one line per batch x workers row with the
    # keys other checks read, and a ratio that is fps over the ceiling.
    keys = ['batch', 'workers', 'fps', 'infer_ms', 'composite_ms', 'encode_ms', 'ceiling_fps',
            'ratio']

    def check(res):
        rows = [json.loads(line) for line in res.stdout_text.splitlines()
                if line.startswith('{')]
        got = [(r.get('batch'), r.get('workers')) for r in rows]
        if got != [(1, 1), (1, 2), (2, 1), (2, 2)]:
            return 'bench rows %s, expected batch x workers 1,2 x 1,2' % got
        for r in rows:
            missing = [k for k in keys if k not in r]
            if missing:
                return 'bench row %s lacks %s' % (r, missing)
            if not (r['fps'] > 0 and r['ceiling_fps'] > 0 and
                    abs(r['ratio'] - r['fps'] / r['ceiling_fps']) < 1e-6 * r['ratio'] + 1e-9):
                return 'bench row %s: fps, ceiling and ratio disagree' % r
            rr = r.get('round_ratios', [])
            if len(rr) != 2 or not any(abs(x - r['ratio']) < 1e-9 for x in rr):
                return 'bench row %s: the ratio is not one of its 2 rounds\' ratios' % r
        return None
    args = ['bench', '--package', e.base_pkg, '--generator', e.tiny, '--features',
            e.features(d), '--batches', '1,2', '--workers', '1,2', '--frames', '4',
            '--rounds', '2', '--out-format', 'jpg', '--no-ffmpeg', '--json']
    return dict(args=args, rc=0, names=[], problem='', out=None, check=check)


@case('features', 'bin_size_not_multiple_of_512')
def _(e, d):
    def make(p):
        write_features(p, 4)
        with open(p, 'ab') as f:
            f.write(struct.pack('<3f', 1, 2, 3))
    return feat_case(e, d, make, problem='512')


@case('features', 'bin_not_multiple_of_4_bytes')
def _(e, d):
    def make(p):
        write_features(p, 4)
        with open(p, 'ab') as f:
            f.write(b'\x01\x02')
    return feat_case(e, d, make, problem=r'size|bytes|multiple|512')


@case('features', 'empty_bin')
def _(e, d):
    def make(p):
        write_features(p, 4)
        write_bytes(p, b'')
    return feat_case(e, d, make, problem=r'empty|no rows|0 rows|\b0\b')


@case('features', 'sidecar_disagrees')
def _(e, d):
    return feat_case(e, d, lambda p: write_features(p, 6, sidecar_shape=[9, 512]),
                     names=['feat.json'], problem=r'9.*6|6.*9')


@case('features', 'sidecar_invalid_json')
def _(e, d):
    def make(p):
        write_features(p, 4)
        write_bytes(os.path.splitext(p)[0] + '.json', b'{"shape": [4, 512')
    return feat_case(e, d, make, names=['feat.json'], problem='json')


@case('features', 'nan_value')
def _(e, d):
    return feat_case(e, d, lambda p: write_features(p, 6, special=float('nan')),
                     problem=r'nan|finite')


@case('features', 'inf_value')
def _(e, d):
    return feat_case(e, d, lambda p: write_features(p, 6, special=float('-inf')),
                     problem=r'inf|finite')


@case('features', 'hubert_block_for_ave_model')
def _(e, d):
    return feat_case(e, d, lambda p: write_features(p, 5, block=2048), problem=r'2048.*512|512.*2048')


@case('features', 'npy_wrong_dimension')
def _(e, d):
    return feat_case(e, d, lambda p: write_npy_f32(p, (5, 100)), file='feat.npy',
                     problem=r'100|512')


@case('features', 'npy_truncated')
def _(e, d):
    def make(p):
        write_npy_f32(p, (5, 512))
        data = open(p, 'rb').read()
        write_bytes(p, data[:len(data) - 100])
    return feat_case(e, d, make, file='feat.npy', problem=r'truncat|size|short|bytes|expected')


# --- models ----------------------------------------------------------------------------


def model_case(e, d, make, **kw):
    path = os.path.join(d, kw.pop('file', 'gen.onnx'))
    make(path)
    out = os.path.join(d, 'out', 'video.mp4')
    r = dict(args=render_args(e.base_pkg, out, path, features=e.features(d)), rc=2, out=out,
             names=[os.path.basename(path)])
    r.update(kw)
    return r


@case('model', 'truncated')
def _(e, d):
    def make(p):
        data = open(e.gen, 'rb').read()
        write_bytes(p, data[:len(data) // 2])
    return model_case(e, d, make, problem=r'parse|truncat|invalid|not an onnx|protobuf|corrupt')


@case('model', 'not_onnx')
def _(e, d):
    return model_case(e, d, lambda p: write_bytes(p, b'<html>404 not found</html>\n'),
                      problem=r'parse|invalid|not an onnx|protobuf|corrupt')


@case('model', 'empty_file')
def _(e, d):
    return model_case(e, d, lambda p: write_bytes(p, b''),
                      problem=r'empty|parse|invalid|not an onnx|no graph|no nodes')


@case('model', 'unsupported_op')
def _(e, d):
    return model_case(e, d, lambda p: tiny_generator(p, extra_op='Hardmax'),
                      problem=r'Hardmax.*not supported|unsupported.*Hardmax')


@case('model', 'wrong_input_names')
def _(e, d):
    return model_case(e, d, lambda p: tiny_generator(p, names=('image', 'speech')),
                      problem=r"'input'.*'audio'|input.*audio")


@case('model', 'audio_shape_not_a_family_mode')
def _(e, d):
    return model_case(e, d, lambda p: tiny_generator(p, audio_shape=(32, 8, 8)),
                      problem=r'32, 8, 8|32x8x8|audio')


@case('model', 'image_input_not_square')
def _(e, d):
    def make(p):
        import onnx
        tiny_generator(p)
        m = onnx.load(p)
        m.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 100
        onnx.save(m, p)
    return model_case(e, d, make, problem=r'B, 6, S, S|\[B, 6')


@case('model', 'output_not_B3SS')
def _(e, d):
    return model_case(e, d, lambda p: tiny_generator(p, out_channels=6),
                      problem=r'output.*6.*expected.*3|expected \[B, 3')


@case('model', 'S_too_small_for_family')
def _(e, d):
    return model_case(e, d, lambda p: tiny_generator(p, size=8), problem=r'B, 6, S, S|\b8\b')


@case('model', 'encoder_given_as_generator')
def _(e, d):
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=render_args(e.base_pkg, out, e.enc, features=e.features(d)), rc=2,
                out=out, names=['encoder.onnx'], problem=r"'input'.*'audio'|generator")


@case('model', 'generator_given_as_encoder')
def _(e, d):
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=render_args(e.base_pkg, out, e.gen, audio=e.audio(d), enc=e.gen), rc=2,
                out=out, names=['gen160-ave.onnx'], problem=r'80, 16|encoder|input')


# --- output ----------------------------------------------------------------------------


def out_case(e, d, out_path, **kw):
    r = dict(args=render_args(e.base_pkg, out_path, e.tiny, features=e.features(d),
                              extra=kw.pop('extra', ['--frames', '2'])),
             out=out_path)
    r.update(kw)
    return r


@case('output', 'parent_is_a_file')
def _(e, d):
    blocker = os.path.join(d, 'out', 'blocker')
    write_bytes(blocker, b'x')
    out = os.path.join(blocker, 'video.mp4')
    return out_case(e, d, out, rc=3, names=['blocker'],
                    problem=r'not a directory|cannot|create|open')


@case('output', 'parent_missing')
def _(e, d):
    out = os.path.join(d, 'out', 'no', 'such', 'video.mp4')
    return out_case(e, d, out, rc=3, names=['video.mp4'],
                    problem=r'no such|not found|cannot|create|open|exist')


@case('output', 'unwritable_directory')
def _(e, d):
    # Root ignores mode bits, so use a directory even root cannot create files in: /sys.
    out = '/sys/talkrender_catalogue_%d.mp4' % os.getpid()
    return out_case(e, d, out, rc=3, names=[os.path.basename(out)],
                    problem=r'cannot|denied|permission|create|open|no such|read-only')


@case('output', 'disk_full_mp4')
def _(e, d):
    out = os.path.join(d, 'out', 'video.mp4')
    return out_case(e, d, out, rc=3, names=['video.mp4'],
                    problem=r'write|space|too large|full|limit|I/O', limits={'fsize': 2048},
                    extra=['--frames', '4'])


@case('output', 'disk_full_png_sequence')
def _(e, d):
    out = os.path.join(d, 'out', 'frames') + '/'
    return out_case(e, d, out, rc=3, names=['frames'],
                    problem=r'write|space|too large|full|limit|I/O', limits={'fsize': 4096},
                    extra=['--frames', '4'])


@case('output', 'disk_full_tmpfs')
def _(e, d):
    # A real ENOSPC: an 8 KiB tmpfs, where mounting is allowed (root in a container);
    # elsewhere the RLIMIT_FSIZE cases above stand in for it.
    mnt = os.path.join(d, 'out', 'small_disk')
    os.makedirs(mnt)
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8k', 'tmpfs', mnt],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        return dict(skip='cannot mount a tmpfs here')
    out = os.path.join(mnt, 'frames') + '/'
    return out_case(e, d, out, rc=3, names=['frames'],
                    problem=r'space|write|full|I/O', extra=['--frames', '4'],
                    cleanup=lambda: subprocess.run(['umount', mnt]))


@case('output', 'exists_without_overwrite')
def _(e, d):
    out = os.path.join(d, 'out', 'video.mp4')
    write_bytes(out, b'precious')
    return out_case(e, d, out, rc=2, names=['video.mp4'], problem='exists.*overwrite',
                    keep={out: b'precious'}, out=None)


@case('output', 'out_is_the_audio_input')
def _(e, d):
    audio = e.audio(d)
    before = open(audio, 'rb').read()
    return dict(args=render_args(e.base_pkg, audio, e.tiny, audio=audio, enc=e.enc,
                                 extra=['--overwrite', '--frames', '2']),
                rc=2, names=['speech.wav'], problem=r'input|same', keep={audio: before},
                out=None)


@case('output', 'out_is_the_features_input')
def _(e, d):
    feat = e.features(d)
    before = open(feat, 'rb').read()
    return dict(args=render_args(e.base_pkg, feat, e.tiny, features=feat,
                                 extra=['--overwrite', '--frames', '2']),
                rc=2, names=['feat.bin'], problem=r'input|same', keep={feat: before}, out=None)


@case('output', 'out_is_the_package_video')
def _(e, d):
    pkg = e.package(d)
    video = os.path.join(pkg, 'full_body_video.mp4')
    before = open(video, 'rb').read()
    return dict(args=render_args(pkg, video, e.tiny, features=e.features(d),
                                 extra=['--overwrite', '--frames', '2']),
                rc=2, names=['full_body_video.mp4'], problem=r'input|same|package',
                keep={video: before}, out=None)


@case('output', 'mel_out_unwritable')
def _(e, d):
    out = '/sys/talkrender_catalogue_mel_%d.npy' % os.getpid()
    return dict(args=['mel', '--audio', e.audio(d), '--out', out], rc=3,
                names=[os.path.basename(out)], problem=r'cannot|denied|create|open|write',
                out=out)


@case('output', 'usage_unknown_flag')
def _(e, d):
    out = os.path.join(d, 'out', 'video.mp4')
    return dict(args=['render', '--package', e.base_pkg, '--out', out, '--bogus-flag'], rc=2,
                names=['--bogus-flag'], problem=r'bogus', out=out)


# --- signals ---------------------------------------------------------------------------


def signal_case(e, d, signum, out):
    # A long render (250 avatar frames' worth of features) that is stopped part-way.
    feat = os.path.join(d, 'long.bin')
    write_features(feat, 400)
    return dict(args=render_args(e.base_pkg, out, e.gen, features=feat, extra=['--batch', '1']),
                rc=130, names=[], problem=r'interrupt', out=out, signal=signum)


@case('signal', 'sigterm_mp4')
def _(e, d):
    return signal_case(e, d, signal.SIGTERM, os.path.join(d, 'out', 'video.mp4'))


@case('signal', 'sigint_png_sequence')
def _(e, d):
    return signal_case(e, d, signal.SIGINT, os.path.join(d, 'out', 'frames') + '/')


# ---------------------------------------------------------------------------------------
# Further groups, one file each: cases_<group>.py beside this one. They are run in this
# module's namespace (so they use case(), render_args(), Env and the input makers as the
# groups above do) in name order; a group's ctest entry is in CMakeLists.txt.

for _path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           'cases_*.py'))):
    with open(_path) as _f:
        exec(compile(_f.read(), _path, 'exec'), globals())


# ---------------------------------------------------------------------------------------
# Runner


def listing(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(root, n), folder))
    return sorted(out)


def child_limits(limits):
    def apply():
        # SIGXFSZ would kill the process; ignored, the write fails with EFBIG instead,
        # which is what a full disk looks like to the program.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if 'fsize' in limits:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits['fsize'], limits['fsize']))
    return apply


def wait_for_work(proc, out_dir, deadline_s):
    """Waits until the render is writing frames (something appears in out_dir) so the
    signal lands mid-render, not during start-up."""
    end = time.time() + deadline_s
    while time.time() < end and proc.poll() is None:
        if listing(out_dir):
            return True
        time.sleep(0.05)
    return False


def run_case(e, group, name, make, verbose):
    d = e.case_dir(name)
    spec = make(e, d)
    if 'skip' in spec:
        return None, 'skipped: ' + spec['skip']
    try:
        return check_case(spec, d, verbose)
    finally:
        if 'cleanup' in spec:
            spec['cleanup']()


def check_case(spec, d, verbose):
    out_dir = os.path.join(d, 'out')
    before = listing(out_dir)
    keep = spec.get('keep', {})
    env = dict(os.environ)
    limits = spec.get('limits', {})
    cmd = [BINARY] + spec['args']
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=child_limits(limits))
    stop_s = None
    if 'signal' in spec:
        # If the render never starts writing (or exits first), the exit code check below
        # reports it; send_signal does nothing to a process that has already exited.
        wait_for_work(proc, out_dir, CASE_TIMEOUT_S / 2)
        t_sig = time.time()
        proc.send_signal(spec['signal'])
    try:
        so, se = proc.communicate(timeout=CASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        so, se = proc.communicate()
        return ['timed out after %d s' % CASE_TIMEOUT_S], ''
    if 'signal' in spec:
        stop_s = time.time() - t_sig
    proc.stdout_text = so.decode('utf-8', 'replace')  # for the cases' check callables
    proc.stderr_text = se.decode('utf-8', 'replace')
    wall = time.time() - t0
    msg = (so + se).decode('utf-8', 'replace')
    errors = []
    if proc.returncode != spec['rc']:
        errors.append('exit code %d, expected %d' % (proc.returncode, spec['rc']))
    if spec['rc'] != 0:
        for n in spec.get('names', []):
            if n not in msg:
                errors.append('message does not name %r' % n)
        if spec.get('problem') and not re.search(spec['problem'], msg, re.I | re.S):
            errors.append('message does not say what is wrong (wanted /%s/)' % spec['problem'])
        out = spec.get('out')
        if out and os.path.lexists(out.rstrip('/')):
            errors.append('output left at %s' % out)
        after = listing(out_dir)
        if after != before:
            errors.append('files left in the output folder: %s' %
                          sorted(set(after) - set(before)))
    else:
        # A finished output is in place; no temporary or staging file may remain beside it.
        stray = [n for n in listing(out_dir) if re.search(r'\.(tmp|new)-', n)]
        if stray:
            errors.append('temporary files left: %s' % stray)
    for path, content in keep.items():
        if not os.path.exists(path) or open(path, 'rb').read() != content:
            errors.append('%s was changed or removed' % path)
    if 'check' in spec:
        err = spec['check'](proc)
        if err:
            errors.append(err)
    if 'AddressSanitizer' in msg or 'runtime error:' in msg or 'LeakSanitizer' in msg:
        errors.append('sanitizer report')
    note = 'rc %d in %.1f s' % (proc.returncode, wall)
    if stop_s is not None:
        note += ', stopped %.2f s after the signal' % stop_s
    first_line = msg.strip().splitlines()[-1] if msg.strip() else '(no message)'
    return errors, note + ': ' + first_line[:200] + ('\n' + msg if verbose or errors else '')


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--setup', action='store_true', help='make the cached fixtures')
    ap.add_argument('--group', help='run the cases of one group')
    ap.add_argument('--case', help='run one case (with --group)')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('-v', '--verbose', action='store_true')
    a = ap.parse_args()
    if a.list:
        for g, n, _ in CASES:
            print(g, n)
        print(len(CASES), 'cases')
        return 0
    if a.setup:
        setup()
        return 0
    if not os.access(BINARY, os.X_OK):
        print('no talkrender binary at', BINARY, '(build the talkrender target)')
        return 1
    if not os.path.exists(os.path.join(FIXTURES, 'package', 'done')):
        setup()
    e = Env(a.group or 'all')
    failed = 0
    ran = 0
    for g, n, make in CASES:
        if a.group and g != a.group:
            continue
        if a.case and n != a.case:
            continue
        ran += 1
        errors, note = run_case(e, g, n, make, a.verbose)
        status = 'skip' if errors is None else 'FAIL' if errors else 'ok  '
        errors = errors or []
        print('%s %s/%s: %s' % (status, g, n, note), flush=True)
        for err in errors:
            print('     - ' + err)
        failed += bool(errors)
    print('%d of %d cases failed' % (failed, ran))
    if ran == 0:
        return 1
    if not failed:
        shutil.rmtree(e.scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
