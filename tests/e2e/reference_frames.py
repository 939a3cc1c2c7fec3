#!/usr/bin/python3
"""Checks frames rendered by `talkrender render --out DIR/` against the reference
semantics (docs/model-contract.md sections 3-5), computed here with PyTorch and OpenCV.

For every rendered frame i (frame_%06d.png): avatar frame k(i) of the ping-pong walk,
decoded with `ffmpeg -f rawvideo -pix_fmt bgr24`; crop with cv2 (the same OpenCV 4.6 as
the engine); the prediction of the export tool's seeded PyTorch generator for the ROI and
audio window i; the composite. Prints one JSON line of statistics; exit 0 when:
  * every pixel outside the rect equals the decoded frame,
  * inside, |engine - reference| has mean <= 0.5 and max <= --max-inside-diff.
Exit 1 on a mismatch, 2 on bad usage.

Run with Debian's Python: /usr/bin/python3 tests/e2e/reference_frames.py --help
"""

import argparse
import json
import os
import subprocess
import sys

import cv2
import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--package', required=True)
    p.add_argument('--features', required=True, help='padded features P (.bin + .json)')
    p.add_argument('--pngs', required=True, help='the engine output folder')
    p.add_argument('--start-frame', type=int, default=0)
    p.add_argument('--order', default='pingpong', choices=['pingpong', 'loop'])
    p.add_argument('--model', default='gen320-ave')
    p.add_argument('--seed', type=int, default=1234)
    p.add_argument('--non-saturated', action='store_true')
    p.add_argument('--max-inside-diff', type=int, default=2)
    p.add_argument('--tools', default=os.path.join(os.path.dirname(__file__), '..', '..',
                                                   'tools'))
    return p.parse_args()


def avatar_frame(i, n, order, start):
    pos = i + start
    if n <= 1:
        return 0
    if order == 'loop':
        return pos % n
    period = 2 * (n - 1)
    m = pos % period
    return m if m < n else period - m


def decode_frames(video, wanted):
    """The wanted frames (set of indices) of the video as BGR arrays, via the ffmpeg CLI."""
    probe = subprocess.run(['ffprobe', '-v', 'error', '-select_streams', 'v:0', '-show_entries',
                            'stream=width,height', '-of', 'json', video],
                           check=True, capture_output=True, text=True)
    s = json.loads(probe.stdout)['streams'][0]
    w, h = s['width'], s['height']
    size = w * h * 3
    proc = subprocess.Popen(['ffmpeg', '-v', 'error', '-i', video, '-f', 'rawvideo', '-pix_fmt',
                             'bgr24', '-'], stdout=subprocess.PIPE)
    frames = {}
    k = 0
    last = max(wanted)
    while k <= last:
        buf = proc.stdout.read(size)
        if len(buf) < size:
            break
        if k in wanted:
            frames[k] = np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()
        k += 1
    proc.kill()
    proc.wait()
    return frames


def build_generator(tools, name, seed, non_saturated):
    """The export tool's model, built with the same steps as export_models.export_one."""
    sys.path.insert(0, os.path.abspath(tools))
    import torch
    import export_models as em
    ms = em.model_seed(seed, name)
    torch.manual_seed(ms)
    gen = torch.Generator().manual_seed(ms)
    model = em.build_model(name)
    em.randomize_batchnorm(model, gen)
    model.eval()
    if non_saturated:
        em.calibrate_batchnorm(model, name, gen)
        em.spread_sigmoid_outputs(model, name, gen)
    model.eval()
    return model


def audio_window(P, i):
    rows, block = P.shape
    out = np.zeros((16, block), np.float32)
    for r in range(16):
        src = i - 8 + r
        if 0 <= src < rows:
            out[r] = P[src]
    return out.reshape(32, 16, 16)


def load_rects_and_pngs(package, pngs_dir):
    """The package's crop rects and the rendered frame_*.png names in order (shared with
    ultralight_reference.py)."""
    with open(os.path.join(package, 'cache', 'crop_rectangles.json')) as f:
        rects = json.load(f)
    pngs = sorted(x for x in os.listdir(pngs_dir) if x.startswith('frame_') and x.endswith('.png'))
    return rects, pngs


def compare_frame(pngs_dir, name, k, expect, rect, stats):
    """Reads the engine's `name` and compares it with the reference frame `expect` (avatar
    frame k): outside `rect` they must be equal (prints where not). Updates
    stats['outside_max'] and stats['inside_max']; returns (the engine's frame, |difference|
    inside the rect, whether outside matched), or None (printed) when the PNG is unreadable
    or of another size. Shared with ultralight_reference.py."""
    got = cv2.imread(os.path.join(pngs_dir, name), cv2.IMREAD_UNCHANGED)
    if got is None or got.shape != expect.shape:
        print('%s: unreadable or wrong size' % name)
        return None
    x1, y1, x2, y2 = rect
    diff = np.abs(got.astype(np.int16) - expect.astype(np.int16))
    outside = diff.copy()
    outside[y1:y2, x1:x2] = 0
    inside = diff[y1:y2, x1:x2]
    stats['outside_max'] = max(stats['outside_max'], int(outside.max()))
    stats['inside_max'] = max(stats['inside_max'], int(inside.max()))
    same_outside = bool(outside.max() == 0)
    if not same_outside:
        ys, xs, _ = np.nonzero(outside)
        print('%s (avatar frame %d): %d pixels outside the rect differ, first at x=%d y=%d' %
              (name, k, len(ys), xs[0], ys[0]))
    return got, inside, same_outside


def main():
    a = parse_args()
    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rects, pngs = load_rects_and_pngs(a.package, a.pngs)
    n = len(rects)
    if not pngs:
        print('no frame_*.png in %s' % a.pngs)
        return 2
    with open(os.path.splitext(a.features)[0] + '.json') as f:
        shape = json.load(f)['shape']
    P = np.fromfile(a.features, dtype='<f4').reshape(shape)

    ks = [avatar_frame(i, n, a.order, a.start_frame) for i in range(len(pngs))]
    frames = decode_frames(os.path.join(a.package, 'full_body_video.mp4'), set(ks))
    model = build_generator(a.tools, a.model, a.seed, a.non_saturated)

    stats = {'frames': len(pngs), 'avatar_frames': ks, 'outside_max': 0, 'inside_max': 0,
             'inside_mean': 0.0, 'inside_over_1': 0, 'pred_min': 255, 'pred_max': 0}
    inside_sum = 0.0
    inside_count = 0
    ok = True
    for i, name in enumerate(pngs):
        k = ks[i]
        full = frames[k]
        x1, y1, x2, y2 = rects[str(k)]['rect']
        w, h = x2 - x1, y2 - y1
        crop = cv2.resize(full[y1:y2, x1:x2], (328, 328), interpolation=cv2.INTER_CUBIC)
        roi = crop[4:324, 4:324].copy()
        masked = roi.copy()
        cv2.rectangle(masked, (5, 5, 310, 305), (0, 0, 0), -1)
        real_t = torch.from_numpy(roi.transpose(2, 0, 1).astype(np.float32) / 255.0)
        masked_t = torch.from_numpy(masked.transpose(2, 0, 1).astype(np.float32) / 255.0)
        x = torch.cat([real_t, masked_t], 0)[None]
        au = torch.from_numpy(audio_window(P, i))[None]
        with torch.no_grad():
            pred = model(x, au)[0].numpy().transpose(1, 2, 0) * 255
        pred = np.array(pred, dtype=np.uint8)
        stats['pred_min'] = min(stats['pred_min'], int(pred.min()))
        stats['pred_max'] = max(stats['pred_max'], int(pred.max()))
        canvas = crop.copy()
        canvas[4:324, 4:324] = pred
        patch = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_CUBIC)
        expect = full.copy()
        expect[y1:y2, x1:x2] = patch

        compared = compare_frame(a.pngs, name, k, expect, (x1, y1, x2, y2), stats)
        if compared is None:
            return 1
        _, inside, same_outside = compared
        stats['inside_over_1'] += int((inside > 1).sum())
        inside_sum += float(inside.sum())
        inside_count += inside.size
        ok = ok and same_outside
    stats['inside_mean'] = inside_sum / max(inside_count, 1)
    if stats['inside_mean'] > 0.5 or stats['inside_max'] > a.max_inside_diff:
        ok = False
    print(json.dumps(stats))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
