#!/usr/bin/python3
"""Train the demo's small lip-sync model on the CPU and export it to ONNX.

The data is made here: espeak-ng speech (several voices, speeds and pitches) and the
synthetic demo avatar (`talkrender demo --avatar-only`) with its mouth drawn in the shape
each phoneme calls for (tools/demo_speech.py says why phonemes). The model is a member of
the model family at reduced widths: the ave audio encoder (mel [B,1,80,16] -> [B,512]) and
a SyncTalk_2D-style S = 160 ave generator (tools/model_arch.py), trained end to end from
the mel spectrogram, so it learns audio -> mouth; the mouth is never one of its inputs.

    /usr/bin/python3 tools/train_demo.py --talkrender build/talkrender --out models/demo

writes generator.onnx, audio_encoder.onnx, train_log.txt and README.md into --out.
Seeded (numpy, torch; deterministic algorithms on). That a rerun is bit-identical has not
been checked; what is checked is that a run from scratch passes the sync tests (issue 17).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import audio_reference  # noqa: E402  (the contract's mel front-end, section 4)
import demo_speech  # noqa: E402
import export_models  # noqa: E402
import model_arch  # noqa: E402

SIZE = 160
GENERATOR_WIDTHS = (8, 16, 32, 64, 128)
# 16 channels and up: oneDNN has no JIT kernel for the encoder's 8-channel residual convs
# (an 8-wide encoder measured 300 ms per conv at batch 16, reference code; 16-wide: 5.7 ms
# for the whole encoder).
ENCODER_WIDTHS = (16, 32, 64, 128, 128)
MASK = (slice(5, 150), slice(5, 155))  # contract section 3, S = 160: rectangle (5, 5, 150, 145)
RUN = 4  # consecutive frames per utterance in a batch (their audio windows share encodings)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--out', default='models/demo', help='output folder')
    p.add_argument('--talkrender', default='build/talkrender',
                   help='the talkrender binary (draws the avatar: demo --avatar-only)')
    p.add_argument('--seed', type=int, default=1234)
    p.add_argument('--minutes', type=float, default=12.0, help='minutes of training speech')
    p.add_argument('--steps', type=int, default=1600, help='optimiser steps (>= 50)')
    p.add_argument('--batch-runs', type=int, default=4,
                   help='utterances per batch (each gives %d consecutive frames)' % RUN)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--avatar-frames', type=int, default=150,
                   help='frames of the synthetic avatar (as talkrender demo draws it)')
    p.add_argument('--work', help='keep the avatar and speech here (default: a temporary '
                   'folder)')
    args = p.parse_args(argv)
    if args.steps < 50:
        p.error('--steps must be at least 50 (the learning-rate schedule warms up over 5 %)')
    return args


class Log:
    def __init__(self, path):
        self.t0 = time.time()
        self.lines = []
        self.path = path

    def __call__(self, msg):
        line = '[%7.1f s] %s' % (time.time() - self.t0, msg)
        print(line, flush=True)
        self.lines.append(line)

    def elapsed(self):
        return time.time() - self.t0


def avatar_rois(talkrender, work, frames):
    """The avatar's model ROIs [N, 160, 160, 3] uint8, prepared as talkrender prepares them
    for an S = 160 model (contract section 3: bilinear crop to 168, ROI [4:164])."""
    import cv2
    package = os.path.join(work, 'avatar')
    subprocess.run([talkrender, 'demo', '--avatar-only', package, '--avatar-frames',
                    str(frames)], check=True, stdout=subprocess.DEVNULL)
    rects = json.load(open(os.path.join(package, 'cache', 'crop_rectangles.json')))
    cap = cv2.VideoCapture(os.path.join(package, 'full_body_video.mp4'))
    rois = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        x1, y1, x2, y2 = rects[str(len(rois))]['rect']
        crop = cv2.resize(frame[y1:y2, x1:x2], (SIZE + 8, SIZE + 8),
                          interpolation=cv2.INTER_LINEAR)
        rois.append(crop[4:SIZE + 4, 4:SIZE + 4].copy())
    if len(rois) != frames:
        raise RuntimeError('%s: decoded %d frames, expected %d' % (package, len(rois), frames))
    return np.stack(rois)


def utterance(espeak, text, voice, rate, pitch, lead, gain_db):
    """Speech -> its mel windows [n, 1, 80, 16], mouth track [n + 2, 2] and 16 kHz audio."""
    samples, events = espeak.say(text, voice, rate=rate, pitch=pitch)
    tail = 0.4
    x = np.concatenate([np.zeros(int(lead * 16000)), demo_speech.to_16k(samples),
                        np.zeros(int(tail * 16000))]) * 10**(gain_db / 20)
    mel = audio_reference.mel_spectrogram(x).astype(np.float32)
    T = mel.shape[1]
    n = audio_reference.frame_count(T)
    windows = np.empty((n, 1, 80, 16), np.float32)
    for j in range(n):
        s, e = audio_reference.mel_window(j, T)
        windows[j, 0] = mel[:, s:e]
    track = demo_speech.mouth_track(events, len(samples), n + 2, lead_s=lead)
    return {'windows': windows, 'track': track.astype(np.float32), 'text': text,
            'voice': voice, 'seconds': len(x) / 16000.0, 'audio': x}


def make_corpus(espeak, rng, minutes, log):
    utts, seconds = [], 0.0
    while seconds < minutes * 60:
        voice = demo_speech.VOICES[rng.randint(len(demo_speech.VOICES))] + \
            demo_speech.VARIANTS[rng.randint(len(demo_speech.VARIANTS))]
        u = utterance(espeak, demo_speech.corpus_utterance(rng), voice,
                      rate=115 + rng.randint(86), pitch=20 + rng.randint(61),
                      lead=demo_speech.lead_silence(rng), gain_db=-10 * rng.rand())
        del u['audio']
        utts.append(u)
        seconds += u['seconds']
    log('corpus: %d utterances, %.1f min of speech, %d frames' %
        (len(utts), seconds / 60, sum(len(u['track']) for u in utts)))
    return utts


def window_index(n, frames):
    """[len(frames), 16] rows of F (0..n-1) for each output frame's window, -1 = zero row
    (contract section 4 steps 11-12: P = [F0, F0..F(n-1), F(n-1)], rows i-8 .. i+7)."""
    r = np.asarray(frames)[:, None] + np.arange(-8, 8)[None, :]
    f = np.clip(r - 1, 0, n - 1)
    return np.where((r >= 0) & (r <= n + 1), f, -1)


def model_inputs(torch, rois_u8):
    roi = torch.from_numpy(rois_u8).permute(0, 3, 1, 2).float() / 255.0
    masked = roi.clone()
    masked[:, :, MASK[0], MASK[1]] = 0.0
    return torch.cat([roi, masked], dim=1)


def forward(torch, encoder, generator, windows, index, images):
    """windows [m, 1, 80, 16] (the mel windows the batch needs), index [B, 16] into them
    (-1 = zero row), images [B, 6, S, S] -> generator output [B, 3, S, S]."""
    feats = encoder(torch.from_numpy(windows))
    feats = torch.cat([feats, torch.zeros(1, feats.shape[1])], dim=0)  # row -1: zeros
    idx = torch.from_numpy(np.where(index < 0, feats.shape[0] - 1, index))
    audio = feats[idx].reshape(index.shape[0], 32, 16, 16)
    return generator(images, audio)


def sample_batch(utts, weights, rois, rng, runs):
    wins, index, imgs, targets = [], [], [], []
    offset = 0
    for _ in range(runs):
        u = utts[rng.choice(len(utts), p=weights)]
        n, frames = len(u['windows']), len(u['track'])
        i0 = rng.randint(0, frames - RUN + 1)
        idx = window_index(n, range(i0, i0 + RUN))
        used = np.unique(idx[idx >= 0])
        remap = -np.ones(n, np.int64)
        remap[used] = np.arange(len(used)) + offset
        index.append(np.where(idx >= 0, remap[np.maximum(idx, 0)], -1))
        wins.append(u['windows'][used])
        offset += len(used)
        for i in range(i0, i0 + RUN):
            k = rng.randint(len(rois))
            imgs.append(rois[k])
            targets.append(demo_speech.draw_mouth(rois[k], *u['track'][i]))
    return (np.concatenate(wins), np.concatenate(index), np.stack(imgs), np.stack(targets))


def evaluate(torch, encoder, generator, u, rois):
    """Held-out speech: mean |error| in the mouth box (grey levels) and the correlation of
    the predicted mouth's darkness with the target's, over every frame."""
    n, frames = len(u['windows']), len(u['track'])
    idx = window_index(n, range(frames))
    ks = np.arange(frames) % len(rois)
    with torch.no_grad():
        out = forward(torch, encoder, generator, u['windows'], idx,
                      model_inputs(torch, rois[ks]))
    pred = (out.permute(0, 2, 3, 1).numpy() * 255.0)
    target = np.stack([demo_speech.draw_mouth(rois[k], *u['track'][i])
                       for i, k in enumerate(ks)]).astype(np.float32)
    box = (slice(None), demo_speech.MOUTH_BOX[0], demo_speech.MOUTH_BOX[1])
    err = np.abs(pred[box] - target[box]).mean()
    dark_p = -pred[box].mean(axis=(1, 2, 3))
    dark_t = -target[box].mean(axis=(1, 2, 3))
    r = float(np.corrcoef(dark_p, dark_t)[0, 1]) if np.std(dark_p) > 0 else float('nan')
    return err, r


def export(torch, encoder, generator, out_dir):
    encoder.eval()
    generator.eval()
    dyn = lambda names: {k: {0: 'batch'} for k in names + ['output']}
    gen_example = {'input': torch.rand(1, 6, SIZE, SIZE), 'audio': torch.rand(1, 32, 16, 16)}
    enc_example = {'mel': torch.rand(1, 1, 80, 16) * 8 - 4}
    for model, example, name in ((generator, gen_example, 'generator.onnx'),
                                 (encoder, enc_example, 'audio_encoder.onnx')):
        export_models.save_atomic(
            os.path.join(out_dir, name),
            lambda tmp, m=model, e=example: export_models.write_onnx(
                m, e, tmp, 17, dyn(list(e.keys()))))


def write_readme(out_dir, args, log, summary):
    cmd = ('/usr/bin/python3 tools/train_demo.py --talkrender %s --out %s --seed %d '
           '--minutes %g --steps %d' % (args.talkrender, args.out, args.seed, args.minutes,
                                        args.steps))
    text = """# The demo's small lip-sync model

Made by `tools/train_demo.py` (nothing here was downloaded):

    {cmd}

- seed {seed}; {threads} CPU threads; PyTorch {torch}; wall time {wall:.1f} min
  on {cpu}.
- `audio_encoder.onnx`: the ave audio encoder (model-contract.md section 4) at widths
  {ew} (then the 1x1 to 512): mel [B,1,80,16] -> output [B,512]; {ep} parameters.
- `generator.onnx`: the S = 160 ave generator (SyncTalk_2D family, section 2) at widths
  {gw}: input [B,6,160,160], audio [B,32,16,16] -> output [B,3,160,160];
  {gp} parameters. BatchNorm folded, opset 17, dynamic batch (as users export).
- Data: {corpus}; espeak-ng voices {voices} with variants, speed 115-200 wpm, pitch
  20-80, level 0 to -10 dB, 0.1-0.8 s of silence before each utterance. The avatar is
  `talkrender demo --avatar-only` ({frames} frames); each training target is its face with
  the mouth drawn as the phonemes say (tools/demo_speech.py: closed for m/b/p, rounded for
  o/u, open for a, closed in pauses). The model sees the avatar frame and the mel
  spectrogram, never the mouth.
- Held out (never trained on): "{demo}" (`talkrender demo`) and "{test}" (the CI sync test).
- Result: {result}

The full log is `train_log.txt`.
""".format(cmd=cmd, seed=args.seed, threads=args.threads, torch=summary['torch'],
           wall=log.elapsed() / 60, cpu=summary['cpu'], ew=','.join(map(str, ENCODER_WIDTHS)),
           ep=summary['encoder_params'], gw=','.join(map(str, GENERATOR_WIDTHS)),
           gp=summary['generator_params'], corpus=summary['corpus'],
           voices=', '.join(demo_speech.VOICES), frames=args.avatar_frames,
           demo=demo_speech.DEMO_TEXT, test=demo_speech.TEST_TEXT, result=summary['result'])
    open(os.path.join(out_dir, 'README.md'), 'w').write(text)


def cpu_name():
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'


def main(argv):
    args = parse_args(argv)
    if os.environ.get('MALLOC_MMAP_MAX_') != '0':
        # PyTorch allocates and frees tens of MB per layer per step; glibc serves those with
        # fresh mmaps that the kernel zero-fills every time (a third of the step in page
        # faults, measured). Keep them on the heap instead: re-run with that setting.
        env = dict(os.environ, MALLOC_MMAP_MAX_='0', MALLOC_TRIM_THRESHOLD_='100000000000')
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + argv, env)
    if not os.access(args.talkrender, os.X_OK):
        print('train_demo.py: error: %s is not an executable talkrender (build it first, or '
              'pass --talkrender)' % args.talkrender, file=sys.stderr)
        return 2
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    import warnings
    warnings.filterwarnings('ignore', category=UserWarning)
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, 'train_log.txt'))
    log('train_demo.py %s on %s, torch %s, %d threads' % (' '.join(argv), cpu_name(),
                                                          torch.__version__, args.threads))
    rng = np.random.RandomState(args.seed)
    work = args.work or tempfile.mkdtemp(prefix='talkrender-train-')
    try:
        if os.path.exists(os.path.join(work, 'avatar')):
            shutil.rmtree(os.path.join(work, 'avatar'))
        rois = avatar_rois(args.talkrender, work, args.avatar_frames)
        log('avatar: %d frames from %s demo --avatar-only' % (len(rois), args.talkrender))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    espeak = demo_speech.Espeak()
    utts = make_corpus(espeak, rng, args.minutes, log)
    held = utterance(espeak, demo_speech.TEST_TEXT, 'en-us', 150, 50, 0.3, 0.0)
    log('held-out: "%s" (%d frames); a perfect mouth would correlate r = %.2f with its '
        'loudness' % (held['text'], len(held['track']),
                      demo_speech.envelope_correlation(held['audio'], held['track'][:, 0])))
    weights = np.array([len(u['track']) for u in utts], np.float64)
    weights /= weights.sum()

    encoder = model_arch.AudioEncoder(ENCODER_WIDTHS)
    generator = model_arch.Generator(SIZE, 'ave', widths=GENERATOR_WIDTHS)
    params = list(encoder.parameters()) + list(generator.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.05)
    log('model: encoder %d + generator %d parameters; %d steps of %d frames' %
        (model_arch.count_parameters(encoder), model_arch.count_parameters(generator),
         args.steps, args.batch_runs * RUN))
    box = (slice(None), slice(None), demo_speech.MOUTH_BOX[0], demo_speech.MOUTH_BOX[1])
    running = None
    for step in range(1, args.steps + 1):
        encoder.train()
        generator.train()
        wins, index, imgs, targets = sample_batch(utts, weights, rois, rng, args.batch_runs)
        target = torch.from_numpy(targets).permute(0, 3, 1, 2).float() / 255.0
        out = forward(torch, encoder, generator, wins, index, model_inputs(torch, imgs))
        diff = (out - target).abs()
        loss = diff.mean() + 4.0 * diff[box].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps:
            err, r = evaluate(torch, encoder, generator, held, rois)
            log('step %5d  loss %.4f  held-out mouth |err| %.1f grey levels, darkness r %.3f'
                % (step, running, err, r))
    export(torch, encoder, generator, args.out)
    err, r = evaluate(torch, encoder, generator, held, rois)
    sizes = sum(os.path.getsize(os.path.join(args.out, f))
                for f in ('generator.onnx', 'audio_encoder.onnx'))
    summary = {
        'torch': torch.__version__,
        'cpu': cpu_name(),
        'encoder_params': model_arch.count_parameters(encoder),
        'generator_params': model_arch.count_parameters(generator),
        'corpus': '%d utterances, %.1f min of speech' %
        (len(utts), sum(u['seconds'] for u in utts) / 60),
        'result': 'final loss %.4f; on the held-out test sentence the mouth box is off by '
        '%.1f grey levels on average and its darkness follows the target with r = %.3f; '
        'both files %.2f MB' % (running, err, r, sizes / 1e6),
    }
    log('exported %s/generator.onnx and audio_encoder.onnx (%.2f MB); %s' %
        (args.out, sizes / 1e6, summary['result']))
    write_readme(args.out, args, log, summary)
    open(log.path, 'w').write('\n'.join(log.lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
