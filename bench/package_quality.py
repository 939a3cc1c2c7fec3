#!/usr/bin/python3
"""How close `talkrender package` keeps the frames render reads, per x264 setting.

Builds a dataset folder from the first N frames of a package (cv2.imwrite JPEGs, as
SyncTalk_2D's preprocessing writes them), packages it with each setting, decodes the
package video as render does (the ffmpeg CLI's bgr24, which render's decoder reproduces)
and compares with the JPEGs as cv2.imread decodes them: PSNR over all pixels, over the face
rects only, the largest level difference, and the video's size. yuv444p qp 0 is not a
`package` option; it is measured with the ffmpeg CLI on the same BGR frames to show what
4:4:4 "lossless" YUV loses in the BGR -> YUV -> BGR round trip.

usage: /usr/bin/python3 bench/package_quality.py [--package DIR] [--frames N] [--build DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def decode(video, w, h):
    raw = subprocess.run(['ffmpeg', '-v', 'error', '-i', video, '-f', 'rawvideo', '-pix_fmt',
                          'bgr24', '-'], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument('--package', default=os.path.join(here, '..', '..', 'shared', 'data',
                                                     'sanders'))
    p.add_argument('--frames', type=int, default=100)
    p.add_argument('--build', default=os.path.join(here, '..', 'build'))
    p.add_argument('--crfs', default='0,4,8,10,12,16,20')
    p.add_argument('--rgb-crfs', default='4,8,12,16')
    a = p.parse_args()
    exe = os.path.join(a.build, 'talkrender')
    rects = json.load(open(os.path.join(a.package, 'cache', 'crop_rectangles.json')))
    tmp = tempfile.mkdtemp(prefix='pkgq-')
    try:
        ds = os.path.join(tmp, 'ds')
        os.makedirs(os.path.join(ds, 'full_body_img'))
        os.makedirs(os.path.join(ds, 'landmarks'))
        cap = cv2.VideoCapture(os.path.join(a.package, 'full_body_video.mp4'))
        ref = []
        for k in range(a.frames):
            ok, fr = cap.read()
            if not ok:
                break
            jpg = os.path.join(ds, 'full_body_img', '%d.jpg' % k)
            cv2.imwrite(jpg, fr)
            ref.append(cv2.imread(jpg))
            x1, y1, x2, y2 = rects[str(k)]['rect']
            pts = [[0, 0]] * 110
            pts[1], pts[52], pts[31] = [x1, 0], [0, y1], [x2, 0]
            with open(os.path.join(ds, 'landmarks', '%d.lms' % k), 'w') as f:
                f.write('\n'.join('%d %d' % tuple(q) for q in pts) + '\n')
        ref = np.stack(ref)
        n, h, w, _ = ref.shape
        jpeg_bytes = sum(os.path.getsize(os.path.join(ds, 'full_body_img', '%d.jpg' % k))
                         for k in range(n))
        mask = np.zeros((n, h, w), bool)
        for k in range(n):
            x1, y1, x2, y2 = rects[str(k)]['rect']
            mask[k, y1:y2, x1:x2] = True
        rows = []

        def measure(name, video):
            got = decode(video, w, h)[:n]
            d = np.abs(got.astype(np.int16) - ref.astype(np.int16))
            rows.append({'setting': name, 'psnr_db': round(psnr(got, ref), 2),
                         'psnr_rects_db': round(psnr(got[mask], ref[mask]), 2),
                         'max_diff': int(d.max()), 'max_diff_rects': int(d[mask].max()),
                         'mb': round(os.path.getsize(video) / 1e6, 2),
                         'bytes_per_frame_kb': round(os.path.getsize(video) / n / 1e3, 1)})
            print(json.dumps(rows[-1]), flush=True)

        settings = [('--lossless', ['--lossless'])]
        settings += [('rgb crf %s medium' % c, ['--rgb', '--crf', c]) for c in a.rgb_crfs.split(',')]
        settings += [('crf %s medium' % c, ['--crf', c]) for c in a.crfs.split(',')]
        for name, flags in settings:
            out = os.path.join(tmp, 'pkg')
            subprocess.run([exe, 'package', '--dataset', ds, '--out', out, '--no-progress'] + flags,
                           check=True, capture_output=True)
            measure(name, os.path.join(out, 'full_body_video.mp4'))
            shutil.rmtree(out)
        v444 = os.path.join(tmp, 'yuv444.mp4')
        enc = subprocess.Popen(['ffmpeg', '-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'bgr24',
                                '-s', '%dx%d' % (w, h), '-r', '25', '-i', '-', '-c:v', 'libx264',
                                '-qp', '0', '-pix_fmt', 'yuv444p', v444], stdin=subprocess.PIPE)
        enc.communicate(ref.tobytes())
        measure('yuv444p qp 0 (ffmpeg CLI, not an option)', v444)
        print(json.dumps({'frames': n, 'size': [w, h], 'jpeg_mb': round(jpeg_bytes / 1e6, 2)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
