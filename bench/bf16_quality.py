#!/usr/bin/python3
"""bf16 against fp32 on real face crops: PSNR of `talkrender infer --precision bf16` against
`--precision fp32` on the same generator and inputs (and the speed of each, from
infer-bench), for deciding the render default.

  /usr/bin/python3 bench/bf16_quality.py --talkrender build/talkrender \\
      --model gen320-ave.onnx --package ../shared/data/sanders [--frames 8]

Inputs follow docs/model-contract.md: ROIs from rois_<S>_video.mp4 (BGR / 255) with the
masked copy (section 3), audio windows of 16 rows of the package's aud_ave.bin features
(ave models). Use a non-saturated generator (tools/export_models.py --non-saturated): a
saturated one outputs ~0.5 everywhere and hides any error. Prints PSNR over the float
outputs and over the 8-bit images a render would write, per frame and overall.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--talkrender', required=True)
    ap.add_argument('--model', required=True)
    ap.add_argument('--package', required=True)
    ap.add_argument('--frames', type=int, default=8)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    size = 320 if '320' in os.path.basename(args.model) else 160
    video = os.path.join(args.package, 'rois_%d_video.mp4' % size)
    if not os.path.exists(video):
        video = os.path.join(args.package, 'rois_320_video.mp4')
    cap = cv2.VideoCapture(video)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    picks = np.linspace(0, total - 1, args.frames).astype(int)
    rois = []
    for k in picks:
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(k))
        ok, frame = cap.read()
        if not ok:
            sys.exit('cannot read frame %d of %s' % (k, video))
        if frame.shape[0] != size:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        rois.append(frame)
    roi = np.stack(rois).astype(np.float32) / 255.0  # N,H,W,3 BGR
    masked = roi.copy()
    if size == 320:
        masked[:, 5:310, 5:315, :] = 0
    else:
        masked[:, 5:150, 5:155, :] = 0
    image = np.concatenate([roi, masked], axis=3).transpose(0, 3, 1, 2).copy()
    with open(os.path.join(args.package, 'aud_ave.json')) as f:
        rows = json.load(f)['shape'][0]
    feats = np.fromfile(os.path.join(args.package, 'aud_ave.bin'), dtype='<f4').reshape(rows, 512)
    audio = np.stack([feats[min(max(int(k) - 8, 0), rows - 16):][:16].reshape(32, 16, 16)
                      for k in picks]).astype(np.float32)
    tmp = tempfile.mkdtemp(prefix='bf16q_')
    np.save(os.path.join(tmp, 'input.npy'), image)
    np.save(os.path.join(tmp, 'audio.npy'), audio)
    outs = {}
    for precision in ('fp32', 'bf16'):
        out = os.path.join(tmp, precision + '.npy')
        cmd = [args.talkrender, 'infer', '--model', args.model, '--input',
               'input=' + os.path.join(tmp, 'input.npy'), '--input',
               'audio=' + os.path.join(tmp, 'audio.npy'), '--out', out, '--threads',
               str(args.threads), '--precision', precision]
        subprocess.run(cmd, check=True)
        outs[precision] = np.load(out).astype(np.float64)

    def psnr(a, b, peak):
        mse = np.mean((a - b) ** 2)
        return float('inf') if mse == 0 else 10 * np.log10(peak * peak / mse)

    a, b = outs['fp32'], outs['bf16']
    qa = np.clip(np.round(a * 255), 0, 255)
    qb = np.clip(np.round(b * 255), 0, 255)
    print('model %s, %d real crops from %s (frames %s)' % (os.path.basename(args.model),
                                                          len(picks), video, list(picks)))
    print('fp32 output range [%.3f, %.3f], std %.3f (a saturated generator would be ~0.5, std ~0)'
          % (a.min(), a.max(), a.std()))
    for i in range(len(picks)):
        print('  frame %4d: PSNR float %.1f dB, 8-bit %.1f dB, max |diff| %.4f' %
              (picks[i], psnr(a[i], b[i], 1.0), psnr(qa[i], qb[i], 255.0),
               np.abs(a[i] - b[i]).max()))
    print('overall: PSNR float %.1f dB, 8-bit %.1f dB; worst frame %.1f dB; max |diff| %.4f; '
          'mean |diff| %.5f' % (psnr(a, b, 1.0), psnr(qa, qb, 255.0),
                                min(psnr(a[i], b[i], 1.0) for i in range(len(picks))),
                                np.abs(a - b).max(), np.abs(a - b).mean()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
