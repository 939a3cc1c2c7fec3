#!/usr/bin/python3
"""A SyncTalk_2D hubert user's three commands (README "From SyncTalk_2D / Ultralight") with a
.pth checkpoint whose tensors cannot say ave or hubert (only a stride differs):

  1. render --dataset D --generator 195.pth        hubert, from the dataset's aud_hu.npy
  2. package --dataset D --generator 195.pth       models/generator.pth, its audio shape
                                                   recorded in package_info.json
  3. render --package P --features aud_hu.npy      hubert again, from the package

Each render must equal, byte for byte, the render of the same avatar with the ONNX export
of the same weights; an ave guess (the file is named 195.pth) would refuse the hubert
features or render other frames. Exit 77 (skip) without the sample data or Debian's torch.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get('TALKRENDER_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.environ.get('TALKRENDER_BUILD', os.path.join(SRC, 'build'))
SHARED = os.environ.get('TALKRENDER_SHARED', os.path.join(SRC, '..', 'shared', 'data'))
PKG = os.path.join(SHARED, 'sanders')
FRAMES = 6

try:
    import cv2
    import numpy as np
    import torch
except ImportError as e:
    print('SKIP: needs Debian python3-opencv, numpy and torch (%s)' % e)
    sys.exit(77)
if not os.path.isdir(PKG):
    print('SKIP: sample package not found at %s (set TALKRENDER_SHARED)' % PKG)
    sys.exit(77)
sys.path.insert(0, os.path.join(SRC, 'tools'))
import export_models  # noqa: E402

TR = os.path.join(BUILD, 'talkrender')
failures = []


def check(what, ok, detail=''):
    print('%s %s%s' % ('ok  ' if ok else 'FAIL', what, (': ' + detail) if detail and not ok else ''))
    if not ok:
        failures.append(what)


def run(args, cwd):
    r = subprocess.run([TR] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        print(' '.join(args), '->', r.returncode, r.stderr.strip()[-600:])
    return r


def make_dataset(d):
    """FRAMES frames of the sample as cv2.imwrite JPEGs, .lms whose rule points give its rects."""
    rects = json.load(open(os.path.join(PKG, 'cache', 'crop_rectangles.json')))
    cap = cv2.VideoCapture(os.path.join(PKG, 'full_body_video.mp4'))
    os.makedirs(os.path.join(d, 'full_body_img'))
    os.makedirs(os.path.join(d, 'landmarks'))
    for i in range(FRAMES):
        ok, frame = cap.read()
        assert ok, 'cannot decode frame %d of the sample' % i
        cv2.imwrite(os.path.join(d, 'full_body_img', '%d.jpg' % i), frame)
        x1, y1, x2, _ = rects[str(i)]['rect']
        pts = np.tile(np.array([[x1 + 1, y1 + 1]], dtype=np.int64), (110, 1))
        pts[1] = (x1, y1 + 4)
        pts[52] = (x1 + 2, y1)
        pts[31] = (x2, y1 + 6)
        np.savetxt(os.path.join(d, 'landmarks', '%d.lms' % i), pts, fmt='%d')
    feats = np.random.default_rng(5).standard_normal((FRAMES, 2, 1024)).astype(np.float32)
    np.save(os.path.join(d, 'aud_hu.npy'), feats)


def max_diff(a_dir, b_dir):
    a = sorted(glob.glob(os.path.join(a_dir, '*.png')))
    b = sorted(glob.glob(os.path.join(b_dir, '*.png')))
    if not a or len(a) != len(b):
        return None
    return max(int(np.abs(cv2.imread(x).astype(int) - cv2.imread(y).astype(int)).max())
               for x, y in zip(a, b))


def main():
    with tempfile.TemporaryDirectory(prefix='tr_pth_pkg_') as w:
        ds = os.path.join(w, 'dataset', 'run1')
        make_dataset(ds)
        model = export_models.build_model('gen160-hubert')
        export_models.randomize_batchnorm(model, torch.Generator().manual_seed(3))
        os.makedirs(os.path.join(w, 'ckpt'))
        pth = os.path.join(w, 'ckpt', '195.pth')
        torch.save(model.state_dict(), pth)
        r = subprocess.run([sys.executable, os.path.join(SRC, 'tools', 'export_models.py'),
                            '--out', os.path.join(w, 'onnx'), '--models', 'gen160-hubert',
                            '--checkpoint', pth, '--no-goldens'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check('export the same weights to ONNX', r.returncode == 0, r.stdout[-400:])
        onnx = os.path.join(w, 'onnx', 'gen160-hubert.onnx')
        common = ['--no-progress', '--batch', '2']

        r = run(['render', '--dataset', ds, '--generator', pth, '--out', 'ds_pth/'] + common, w)
        check('1. render --dataset with the .pth', r.returncode == 0 and 'hubert' in r.stderr)
        r = run(['render', '--dataset', ds, '--generator', onnx, '--out', 'ds_onnx/'] + common, w)
        check('   render --dataset with the ONNX export', r.returncode == 0)
        d = max_diff(os.path.join(w, 'ds_pth'), os.path.join(w, 'ds_onnx'))
        check('   .pth and ONNX renders identical (max %s)' % d, d == 0)

        r = run(['package', '--dataset', ds, '--generator', pth, '--lossless', '--out', 'pkg/'], w)
        check('2. package --dataset with the .pth', r.returncode == 0)
        info = json.load(open(os.path.join(w, 'pkg', 'package_info.json')))
        check('   models/generator.pth written',
              os.path.isfile(os.path.join(w, 'pkg', 'models', 'generator.pth')))
        audio = info.get('onnx', {}).get('input_shapes', {}).get('audio')
        check('   package_info.json records the hubert audio input', audio == [-1, 32, 32, 32],
              str(audio))

        feats = os.path.join(ds, 'aud_hu.npy')
        r = run(['render', '--package', 'pkg', '--features', feats, '--out', 'pkg_pth/'] + common,
                w)
        check('3. render --package (models/generator.pth) from aud_hu.npy', r.returncode == 0)
        d = max_diff(os.path.join(w, 'pkg_pth'), os.path.join(w, 'ds_onnx'))
        check('   identical to the dataset render with the ONNX export (max %s)' % d, d == 0)
        r = run(['inspect', '--package', 'pkg'], w)
        check('   inspect reads the package .pth as hubert',
              r.returncode == 0 and 'audio hubert' in r.stdout, r.stdout[-400:])
        r = run(['render', '--dataset', ds, '--generator', pth, '--asr', 'ave', '--out', 'x/'] +
                common, w)
        check('   --asr ave on hubert features exits 2', r.returncode == 2, r.stderr[-300:])
    if failures:
        print('%d failure(s): %s' % (len(failures), '; '.join(failures)))
        return 1
    print('all passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
