#!/usr/bin/python3
"""Ultralight-Digital-Human's render rules, as its published inference.py / face_utils.py
apply them (model-contract.md, "Ultralight-Digital-Human's own model"), with PyTorch and
OpenCV, checked against frames rendered by `talkrender render --out DIR/`.

  make-features OUT.npy --rows N [--block-shape 2,1024] [--seed S]
      seeded random float32 features [N, *block-shape], written with np.save as
      Ultralight's tools write aud_hu.npy ([n, 2, 1024]) and aud_wenet.npy ([n, 16, 512]).
  make-probe OUT.onnx [--model probe-hubert|probe-wenet]
      a small seeded generator with Ultralight's interface (input [B, 6, 160, 160], audio
      [B, 16, 32, 32] or [B, 128, 16, 32]) whose output depends strongly on every audio
      block: sigmoid(1x1 conv of the image + a 3-vector from a full-window conv of the
      audio). The exporter's random Ultralight model barely reacts to its audio (a wrong
      window moves it by 1 level), so this one is what makes a window mistake visible.
  check --package DIR --features F.npy --pngs DIR [--model ul-hubert] [--crop-interp area]
      for every rendered frame_%06d.png i: the avatar frame of Ultralight's walk (its index
      steps before use, so 1, 2, ..., N-1, N-2, ..., 0, 1, ...), decoded with the ffmpeg
      CLI; crop resize to 168 x 168 with the given interpolation (INTER_AREA by default),
      ROI [4:164], mask (5, 5, 150, 145); audio blocks i-4 .. i+3 with zero blocks outside
      the file, reshaped to the model's input; the exporter's seeded PyTorch model; pred
      pasted into the crop and resized back bilinearly. Prints one JSON line; exit 0 when
      every pixel outside the rect equals the decoded frame and inside differs by at most
      --max-inside-diff. It also renders each frame with wrong rules (a window shifted by
      one block, edge blocks repeated instead of zeros, a bilinear instead of an area crop,
      the walk started at 0) and reports how far the engine is from those, so a test can
      tell that the comparison would catch them.

Run with Debian's Python (torch, cv2): /usr/bin/python3 tests/e2e/ultralight_reference.py
"""

import argparse
import json
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_frames as rf  # noqa: E402  (ours: ffmpeg decode, exporter's model, comparison)

AUDIO_SHAPES = {'ul-hubert': (16, 32, 32), 'ul-wenet': (128, 16, 32),
                'probe-hubert': (16, 32, 32), 'probe-wenet': (128, 16, 32)}
INTERP = {'area': cv2.INTER_AREA, 'linear': cv2.INTER_LINEAR, 'cubic': cv2.INTER_CUBIC}
HALF_WINDOW = 4  # face_utils.py AUDIO_HALF_WINDOW


def ultralight_walk(n_images, steps):
    """inference.py's loop: the index is stepped before it is used."""
    len_img = n_images - 1
    img_idx, stride, out = 0, 0, []
    for _ in range(steps):
        if img_idx > len_img - 1:
            stride = -1
        if img_idx < 1:
            stride = 1
        img_idx += stride
        out.append(img_idx)
    return out


def audio_window(feats, i, shape, mode='zeros', shift=0):
    """Blocks i-4 .. i+3 (zeros outside the file), reshaped to the model's input.
    mode='edge' repeats the end blocks instead (a wrong rule, for the sensitivity check)."""
    n = feats.shape[0]
    blocks = []
    for j in range(i - HALF_WINDOW + shift, i + HALF_WINDOW + shift):
        if 0 <= j < n:
            blocks.append(feats[j])
        elif mode == 'edge':
            blocks.append(feats[min(max(j, 0), n - 1)])
        else:
            blocks.append(np.zeros_like(feats[0]))
    return np.stack(blocks).astype(np.float32).reshape(shape)


def probe_weights(name):
    """The probe's seeded weights: image [3, 6, 1, 1], audio [3, *audio shape], bias [3]."""
    shape = AUDIO_SHAPES[name]
    rng = np.random.default_rng(11)
    w_img = (rng.standard_normal((3, 6, 1, 1)) * 2).astype(np.float32)
    # Each block of 2048 (hubert) or 8192 (wenet) N(0,1) features moves a logit by about
    # 0.4: tens of levels when a block is wrong, without saturating the sigmoid.
    block = int(np.prod(shape)) // 8
    w_aud = (rng.standard_normal((3,) + shape) * 0.4 / np.sqrt(block)).astype(np.float32)
    bias = np.array([-1.0, 0.0, 1.0], np.float32)
    return w_img, w_aud, bias


class Probe:
    """The probe model in PyTorch: the same arithmetic as the ONNX graph of make-probe."""

    def __init__(self, name):
        import torch
        self.w = [torch.from_numpy(t) for t in probe_weights(name)]

    def __call__(self, x, audio):
        import torch.nn.functional as F
        w_img, w_aud, bias = self.w
        img = F.conv2d(x, w_img)
        aud = F.conv2d(audio, w_aud, bias)  # [B, 3, 1, 1]
        return (img + aud).sigmoid()


def cmd_make_probe(a):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w_img, w_aud, bias = probe_weights(a.model)
    shape = list(AUDIO_SHAPES[a.model])
    nodes = [
        helper.make_node('Conv', ['input', 'w_img'], ['img']),
        helper.make_node('Conv', ['audio', 'w_aud', 'bias'], ['aud']),
        helper.make_node('Add', ['img', 'aud'], ['logits']),
        helper.make_node('Sigmoid', ['logits'], ['output']),
    ]
    graph = helper.make_graph(
        nodes, a.model,
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 6, 160, 160]),
         helper.make_tensor_value_info('audio', TensorProto.FLOAT, ['batch'] + shape)],
        [helper.make_tensor_value_info('output', TensorProto.FLOAT, ['batch', 3, 160, 160])],
        [numpy_helper.from_array(w_img, 'w_img'), numpy_helper.from_array(w_aud, 'w_aud'),
         numpy_helper.from_array(bias, 'bias')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx.checker.check_model(model)
    onnx.save(model, a.out)
    print('%s: %s probe, audio %s' % (a.out, a.model, shape))
    return 0


def render_frame(model, full, rect, audio, crop_interp):
    import torch
    x1, y1, x2, y2 = rect
    h, w = y2 - y1, x2 - x1
    crop = cv2.resize(full[y1:y2, x1:x2], (168, 168), interpolation=crop_interp)
    crop_ori = crop.copy()
    roi = crop[4:164, 4:164].copy()
    masked = cv2.rectangle(roi.copy(), (5, 5, 150, 145), (0, 0, 0), -1)
    real_t = torch.from_numpy(roi.transpose(2, 0, 1).astype(np.float32) / 255.0)
    masked_t = torch.from_numpy(masked.transpose(2, 0, 1).astype(np.float32) / 255.0)
    x = torch.cat([real_t, masked_t], 0)[None]
    with torch.no_grad():
        pred = model(x, torch.from_numpy(audio)[None])[0].numpy().transpose(1, 2, 0) * 255
    pred = np.array(pred, dtype=np.uint8)
    crop_ori[4:164, 4:164] = pred
    patch = cv2.resize(crop_ori, (w, h))  # inference.py names no interpolation: bilinear
    out = full.copy()
    out[y1:y2, x1:x2] = patch
    return out, pred


def inside_max(got, expect, rect):
    x1, y1, x2, y2 = rect
    d = np.abs(got[y1:y2, x1:x2].astype(np.int16) - expect[y1:y2, x1:x2].astype(np.int16))
    return int(d.max())


def cmd_make_features(a):
    shape = [int(s) for s in a.block_shape.split(',')]
    rng = np.random.default_rng(a.seed)
    feats = rng.standard_normal([a.rows] + shape).astype(np.float32)
    np.save(a.out, feats)
    print('%s: %s float32' % (a.out, list(feats.shape)))
    return 0


def cmd_check(a):
    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rects, pngs = rf.load_rects_and_pngs(a.package, a.pngs)
    n = len(rects)
    if not pngs:
        print('no frame_*.png in %s' % a.pngs)
        return 2
    feats = np.load(a.features)
    shape = AUDIO_SHAPES[a.model]
    # Ultralight's own walk; --first-frame K (talkrender's --start-frame) starts the same
    # ping-pong at K instead.
    ks = (ultralight_walk(n, len(pngs)) if a.first_frame is None else
          [rf.avatar_frame(i, n, 'pingpong', a.first_frame) for i in range(len(pngs))])
    ks0 = [rf.avatar_frame(i, n, 'pingpong', 0) for i in range(len(pngs))]  # a walk from 0
    frames = rf.decode_frames(os.path.join(a.package, 'full_body_video.mp4'), set(ks) | set(ks0))
    if a.model.startswith('probe-'):
        model = Probe(a.model)
    else:
        model = rf.build_generator(a.tools, a.model, a.seed, a.non_saturated)
    sens = set()
    if a.sensitivity:
        for s in a.sensitivity.split(','):
            sens.add(int(s) % len(pngs))
    crop_interp = INTERP[a.crop_interp]
    other_interp = cv2.INTER_LINEAR if crop_interp == cv2.INTER_AREA else cv2.INTER_AREA

    stats = {'frames': len(pngs), 'avatar_frames': ks, 'outside_max': 0, 'inside_max': 0,
             'inside_mean': 0.0, 'pred_min': 255, 'pred_max': 0,
             # How far the engine is from renders with wrong rules, per frame (max level).
             'vs_shifted_window': [], 'vs_edge_blocks': [], 'vs_other_crop': [],
             'vs_walk_from_0_outside': []}
    inside_sum, inside_count, ok = 0.0, 0, True
    for i, name in enumerate(pngs):
        k = ks[i]
        full = frames[k]
        rect = rects[str(k)]['rect']
        x1, y1, x2, y2 = rect
        expect, pred = render_frame(model, full, rect, audio_window(feats, i, shape), crop_interp)
        stats['pred_min'] = min(stats['pred_min'], int(pred.min()))
        stats['pred_max'] = max(stats['pred_max'], int(pred.max()))
        compared = rf.compare_frame(a.pngs, name, k, expect, rect, stats)
        if compared is None:
            return 1
        got, inside, same_outside = compared
        inside_sum += float(inside.sum())
        inside_count += inside.size
        ok = ok and same_outside
        if i in sens:
            wrong, _ = render_frame(model, full, rect, audio_window(feats, i, shape, shift=1),
                                    crop_interp)
            stats['vs_shifted_window'].append(inside_max(got, wrong, rect))
            wrong, _ = render_frame(model, full, rect, audio_window(feats, i, shape, 'edge'),
                                    crop_interp)
            stats['vs_edge_blocks'].append(inside_max(got, wrong, rect))
            wrong, _ = render_frame(model, full, rect, audio_window(feats, i, shape),
                                    other_interp)
            stats['vs_other_crop'].append(inside_max(got, wrong, rect))
            # The walk from 0: frame i would show avatar frame ks0[i], whose pixels outside
            # its rect are the decoded frame itself.
            k0 = ks0[i]
            mask = np.ones(full.shape[:2], bool)
            mask[y1:y2, x1:x2] = False
            r0 = rects[str(k0)]['rect']
            mask[r0[1]:r0[3], r0[0]:r0[2]] = False
            d0 = np.abs(got.astype(np.int16) - frames[k0].astype(np.int16))[mask]
            stats['vs_walk_from_0_outside'].append(int(d0.max()) if d0.size else 0)
    stats['inside_mean'] = inside_sum / max(inside_count, 1)
    if stats['inside_max'] > a.max_inside_diff:
        ok = False
    print(json.dumps(stats))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    m = sub.add_parser('make-features')
    m.add_argument('out')
    m.add_argument('--rows', type=int, required=True)
    m.add_argument('--block-shape', default='2,1024')
    m.add_argument('--seed', type=int, default=7)
    c = sub.add_parser('check')
    c.add_argument('--package', required=True)
    c.add_argument('--features', required=True, help='the .npy the engine rendered from')
    c.add_argument('--pngs', required=True, help='the engine output folder')
    c.add_argument('--model', default='ul-hubert', choices=sorted(AUDIO_SHAPES))
    c.add_argument('--crop-interp', default='area', choices=sorted(INTERP))
    c.add_argument('--first-frame', type=int, default=None,
                   help="start the ping-pong walk here instead of Ultralight's (1)")
    c.add_argument('--seed', type=int, default=1234)
    c.add_argument('--non-saturated', action='store_true')
    c.add_argument('--sensitivity', default='',
                   help='frames (e.g. 0,1,-1; negative from the end) also compared against '
                   'renders with wrong rules')
    c.add_argument('--max-inside-diff', type=int, default=1)
    c.add_argument('--tools', default=os.path.join(os.path.dirname(__file__), '..', '..',
                                                   'tools'))
    pr = sub.add_parser('make-probe')
    pr.add_argument('out')
    pr.add_argument('--model', default='probe-hubert', choices=['probe-hubert', 'probe-wenet'])
    a = p.parse_args()
    return {'make-features': cmd_make_features, 'make-probe': cmd_make_probe,
            'check': cmd_check}[a.cmd](a)


if __name__ == '__main__':
    sys.exit(main())
