#!/usr/bin/python3
"""Dataset folders as avatars (issue 16, acceptance 1) and `talkrender package`.

From the sample package's first frames this builds a dataset folder in the exact
SyncTalk_2D / Ultralight layout: full_body_img/{i}.jpg written by cv2.imwrite, and
landmarks/{i}.lms with 110 points whose rect points (1, 52, 31) reproduce the package's
crop_rectangles.json, with integer coordinates in even frames and float ones in odd frames
(one of them "x.99999999", which float32 rounds up to the next integer before the
reference's int32 cast), plus aud_ave.npy. Then:

  1. `render --dataset` (features from the dataset's aud_ave.npy, a seeded non-saturated
     gen320-ave) is checked frame by frame: outside the rect byte for byte the JPEG as
     cv2.imread decodes it; inside within 1 level of the PyTorch + OpenCV reference
     (model-contract.md sections 3-5) computed on those decoded images. Again with
     --cache-mb (the streaming cache): the same bytes.
  2. `package --lossless` and the default `package`: rendering the package gives the same
     frames as the dataset (lossless) / differs by the printed, bounded amount (default).
  3. Bad datasets exit 2 naming the file: a missing frame, an extra frame, a .lms with 109
     points, a rect outside the image, a JPEG of another size.

Skips (exit 77) without the sample data or Debian's torch. Environment: TALKRENDER_BUILD,
TALKRENDER_SOURCE, TALKRENDER_SHARED (default ../shared/data beside the source).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get('TALKRENDER_SOURCE',
                     os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))
BUILD = os.environ.get('TALKRENDER_BUILD', os.path.join(SRC, 'build'))
SHARED = os.environ.get('TALKRENDER_SHARED', os.path.join(SRC, '..', 'shared', 'data'))
SAMPLE = os.path.join(SHARED, 'sanders')
EXE = os.path.join(BUILD, 'talkrender')
FRAMES = 12
SEED = 1234
MODEL = 'gen320-ave'

failures = []


def check(cond, msg):
    print(('ok:   ' if cond else 'FAIL: ') + msg, flush=True)
    if not cond:
        failures.append(msg)


def run(args, expect_rc=0):
    r = subprocess.run([EXE] + args, capture_output=True, text=True)
    if expect_rc is not None and r.returncode != expect_rc:
        print('$ talkrender ' + ' '.join(args))
        print(r.stderr[-3000:])
    return r


def write_dataset(d, np, cv2, rects):
    os.makedirs(os.path.join(d, 'full_body_img'))
    os.makedirs(os.path.join(d, 'landmarks'))
    cap = cv2.VideoCapture(os.path.join(SAMPLE, 'full_body_video.mp4'))
    rng = np.random.default_rng(16)
    for k in range(FRAMES):
        ok, frame = cap.read()
        assert ok, 'cannot read frame %d of the sample video' % k
        cv2.imwrite(os.path.join(d, 'full_body_img', '%d.jpg' % k), frame)
        x1, y1, x2, y2 = rects[str(k)]['rect']
        assert y2 - y1 == x2 - x1, 'the sample rects are square (the landmark rule)'
        pts = rng.uniform(0, 700, (110, 2))
        if k % 2 == 0:
            lines = ['%d %d' % (int(x), int(y)) for x, y in pts]
            lines[1] = '%d %d' % (x1, int(pts[1][1]))
            lines[52] = '%d %d' % (int(pts[52][0]), y1)
            lines[31] = '%d %d' % (x2, int(pts[31][1]))
        else:
            lines = ['%.6f %.6f' % (x, y) for x, y in pts]
            lines[1] = '%.4f %.6f' % (x1 + 0.75, pts[1][1])   # truncated to x1
            lines[52] = '%.6f %.3f' % (pts[52][0], y1 + 0.5)  # truncated to y1
            # float32(x2 - 1 + 0.99999999) == x2: the reference's cast then gives x2.
            lines[31] = '%d.99999999 %.6f' % (x2 - 1, pts[31][1])
        with open(os.path.join(d, 'landmarks', '%d.lms' % k), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    P = np.fromfile(os.path.join(SAMPLE, 'aud_ave.bin'), '<f4').reshape(-1, 512)[:FRAMES + 2]
    np.save(os.path.join(d, 'aud_ave.npy'), P)
    return P


def read_pngs(d, n, cv2):
    return [cv2.imread(os.path.join(d, 'frame_%06d.png' % i), cv2.IMREAD_UNCHANGED)
            for i in range(n)]


def main():
    if not os.path.isfile(os.path.join(SAMPLE, 'full_body_video.mp4')):
        print('SKIP: no sample package at %s (set TALKRENDER_SHARED)' % SAMPLE)
        return 77
    try:
        import cv2
        import numpy as np
        import torch
    except ImportError as e:
        print('SKIP: needs Debian python3 with cv2, numpy, torch (%s)' % e)
        return 77
    sys.path.insert(0, os.path.join(SRC, 'tests', 'e2e'))
    import reference_frames as ref
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rects = json.load(open(os.path.join(SAMPLE, 'cache', 'crop_rectangles.json')))
    tmp = tempfile.mkdtemp(prefix='dataset-e2e-')
    try:
        ds = os.path.join(tmp, 'ds')
        P = write_dataset(ds, np, cv2, rects)
        models = os.path.join(tmp, 'models')
        subprocess.run([sys.executable, os.path.join(SRC, 'tools', 'export_models.py'),
                        '--models', MODEL, '--seed', str(SEED), '--non-saturated',
                        '--no-goldens', '--out', models], check=True, capture_output=True)
        gen = os.path.join(models, MODEL + '.onnx')

        # 1. The dataset renders by the contract (features: its aud_ave.npy).
        out = os.path.join(tmp, 'out_ds')
        r = run(['render', '--dataset', ds, '--generator', gen, '--out', out + '/',
                 '--no-progress'])
        check(r.returncode == 0, 'render --dataset exits 0')
        n = len(P)
        got = read_pngs(out, n, cv2)
        model = ref.build_generator(os.path.join(SRC, 'tools'), MODEL, SEED, True)
        outside_max = inside_max = 0
        pred_lo, pred_hi = 255, 0
        for i in range(n):
            k = ref.avatar_frame(i, FRAMES, 'pingpong', 0)
            full = cv2.imread(os.path.join(ds, 'full_body_img', '%d.jpg' % k))
            x1, y1, x2, y2 = rects[str(k)]['rect']
            crop = cv2.resize(full[y1:y2, x1:x2], (328, 328), interpolation=cv2.INTER_CUBIC)
            roi = crop[4:324, 4:324].copy()
            masked = roi.copy()
            cv2.rectangle(masked, (5, 5, 310, 305), (0, 0, 0), -1)
            x = torch.cat([torch.from_numpy(roi.transpose(2, 0, 1).astype(np.float32) / 255.0),
                           torch.from_numpy(masked.transpose(2, 0, 1).astype(np.float32) / 255.0)
                           ], 0)[None]
            with torch.no_grad():
                pred = model(x, torch.from_numpy(ref.audio_window(P, i))[None])[0]
            pred = np.array(pred.numpy().transpose(1, 2, 0) * 255, dtype=np.uint8)
            pred_lo, pred_hi = min(pred_lo, int(pred.min())), max(pred_hi, int(pred.max()))
            canvas = crop.copy()
            canvas[4:324, 4:324] = pred
            expect = full.copy()
            expect[y1:y2, x1:x2] = cv2.resize(canvas, (x2 - x1, y2 - y1),
                                              interpolation=cv2.INTER_CUBIC)
            d = np.abs(got[i].astype(np.int16) - expect.astype(np.int16))
            inside_max = max(inside_max, int(d[y1:y2, x1:x2].max()))
            d[y1:y2, x1:x2] = 0
            outside_max = max(outside_max, int(d.max()))
        print('dataset render: %d frames, outside max diff %d, inside max diff %d '
              '(prediction spans %d..%d)' % (n, outside_max, inside_max, pred_lo, pred_hi))
        check(outside_max == 0, 'outside the rect: byte for byte cv2.imread of the .jpg')
        check(inside_max <= 1, 'inside the rect: within 1 level of PyTorch + OpenCV')
        check(pred_hi - pred_lo > 64, 'the model is not saturated (the inside check means '
                                      'something)')

        out_c = os.path.join(tmp, 'out_cache')
        r = run(['render', '--dataset', ds, '--generator', gen, '--out', out_c + '/',
                 '--cache-mb', '24', '--no-progress'])
        same = r.returncode == 0 and all(
            np.array_equal(a, b) for a, b in zip(read_pngs(out_c, n, cv2), got))
        check(same, 'render --dataset --cache-mb 24 (streaming): the same frames')

        # 2. Packages of the dataset.
        for flags, name in ((['--lossless'], 'lossless'), ([], 'default')):
            pkg = os.path.join(tmp, 'pkg_' + name)
            r = run(['package', '--dataset', ds, '--out', pkg, '--generator', gen,
                     '--no-progress'] + flags)
            check(r.returncode == 0, 'package %s exits 0' % name)
            outp = os.path.join(tmp, 'out_' + name)
            r = run(['render', '--package', pkg, '--features', os.path.join(pkg, 'aud_ave.bin'),
                     '--out', outp + '/', '--no-progress'])
            check(r.returncode == 0, 'render --package (%s package) exits 0' % name)
            frames = read_pngs(outp, n, cv2)
            diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(frames, got)]
            mx = max(int(d.max()) for d in diffs)
            mse = np.mean([np.mean(d.astype(np.float64) ** 2) for d in diffs])
            psnr = float('inf') if mse == 0 else 10 * np.log10(255 ** 2 / mse)
            size = os.path.getsize(os.path.join(pkg, 'full_body_video.mp4'))
            print('package %s: %.2f MB video; renders vs the dataset render: max diff %d, '
                  'PSNR %.2f dB' % (name, size / 1e6, mx, psnr))
            if name == 'lossless':
                check(mx == 0, 'lossless package renders the same bytes as the dataset')
            else:
                # RGB crf 8 (cmd_package.cc's measurement: 52.7 dB to the JPEG frames).
                check(psnr > 45, 'default package renders within 45 dB PSNR of the dataset')

        # 3. Bad datasets: exit 2, the file named.
        def bad(name, mutate, expect_file):
            d = os.path.join(tmp, 'bad_' + name)
            shutil.copytree(ds, d)
            mutate(d)
            for cmd in (['inspect', '--dataset', d],
                        ['render', '--dataset', d, '--generator', gen, '--out',
                         os.path.join(tmp, 'never_' + name) + '/']):
                r = run(cmd, expect_rc=None)
                line = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''
                check(r.returncode == 2 and expect_file in line,
                      '%s: %s exits 2 naming %s (rc %d: %s)' % (name, cmd[0], expect_file,
                                                                 r.returncode, line))
            check(not os.path.exists(os.path.join(tmp, 'never_' + name)),
                  '%s: no output left' % name)

        def drop_frame(d):
            os.remove(os.path.join(d, 'full_body_img', '5.jpg'))
            os.remove(os.path.join(d, 'landmarks', '5.lms'))

        def extra_frame(d):
            shutil.copy(os.path.join(d, 'full_body_img', '0.jpg'),
                        os.path.join(d, 'full_body_img', '%d.jpg' % FRAMES))

        def short_lms(d):
            p = os.path.join(d, 'landmarks', '3.lms')
            lines = open(p).read().splitlines()
            open(p, 'w').write('\n'.join(lines[:109]) + '\n')

        def rect_outside(d):
            p = os.path.join(d, 'landmarks', '4.lms')
            lines = open(p).read().splitlines()
            lines[31] = '1500 10'  # x2 beyond the 1280-wide frame
            open(p, 'w').write('\n'.join(lines) + '\n')

        def other_size(d):
            img = cv2.imread(os.path.join(d, 'full_body_img', '7.jpg'))
            cv2.imwrite(os.path.join(d, 'full_body_img', '7.jpg'), img[:, :1200])

        bad('missing-frame', drop_frame, 'full_body_img/5.jpg')
        bad('extra-frame', extra_frame, 'landmarks/%d.lms' % FRAMES)
        bad('lms-109-points', short_lms, 'landmarks/3.lms')
        bad('rect-outside', rect_outside, 'landmarks/4.lms')
        bad('mixed-sizes', other_size, 'full_body_img/7.jpg')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
