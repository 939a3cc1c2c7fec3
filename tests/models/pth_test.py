#!/usr/bin/python3
"""`--generator X.pth` / `--audio-encoder X.pth` (issue 16): a PyTorch state dict, written by
torch.save as SyncTalk_2D (bare state_dict) and Ultralight ({"epoch", "model", "optimizer"})
write theirs, runs in talkrender exactly as the ONNX export of the same weights does.

Per family member (--list): seeded random weights with calibrated, perturbed BatchNorm
statistics (so the output depends on every layer and BN folding is exercised), saved both
ways, exported to ONNX (opset 17, dynamic batch, BN folded by the exporter, as users export);
`talkrender infer` runs the .pth and the .onnx on the same batch-2 inputs. Checks:
  .pth vs .onnx     max |diff| <= 1e-5 (the same plan but for rounding in BN folding; ~1e-7)
  .pth vs PyTorch   max |diff| <= 1e-4 (generators; the encoder relative to its max |output|)
Case `errors`: a tensor removed, one added, one with a wrong shape, an unrelated state dict:
exit 2 with one line naming the file and the tensor, leaving no output. Case `render`: a few
frames of the sample package (SyncTalk_2D 320 / 160 from its aud_ave.bin, Ultralight hubert
from random aud_hu.npy-shaped features) rendered with the .pth and with the .onnx give the
same PNGs (max 1 level); skipped when the sample data is absent.

Run with Debian's Python (/usr/bin/python3: torch, onnx, numpy). Exit 0 passed, 1 failed,
77 skipped (ctest SKIP_RETURN_CODE).
"""

import argparse
import warnings
import os
import shutil
import subprocess
import sys
import time

SKIP = 77
SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tools'))

NARROW = (16, 32, 64, 128, 256)
# case -> (size, mode, widths); size 0 = the audio encoder.
MEMBERS = {
    'gen320-ave': (320, 'ave', None),
    'gen320-hubert': (320, 'hubert', None),
    'gen320-wenet': (320, 'wenet', None),
    'gen160-ave': (160, 'ave', None),
    'gen160-hubert': (160, 'hubert', None),
    'gen160-wenet': (160, 'wenet', None),
    'ul-hubert': (160, 'ul-hubert', None),
    'ul-wenet': (160, 'ul-wenet', None),
    'ul-hubert-narrow': (160, 'ul-hubert', NARROW),
    'ul-wenet-narrow': (160, 'ul-wenet', NARROW),
    'encoder': (0, None, None),
}
CASES = list(MEMBERS) + ['errors', 'render']

PTH_VS_ONNX_TOL = 1e-5
VS_TORCH_TOL = 1e-4
BATCH = 2


def skip(message):
    print('SKIP: ' + message)
    sys.exit(SKIP)


def fail(message):
    print('FAIL: ' + message)
    sys.exit(1)


def find_talkrender(explicit):
    path = explicit or os.path.join(os.environ.get('TALKRENDER_BUILD',
                                                   os.path.join(SOURCE_ROOT, 'build')),
                                    'talkrender')
    if not os.access(path, os.X_OK):
        skip('talkrender not built: %s' % path)
    return path


def build_model(size, mode, widths):
    import model_arch
    if size == 0:
        return model_arch.AudioEncoder()
    if mode not in model_arch.AUDIO_SHAPES:
        skip('tools/model_arch.py has no %s mode yet' % mode)
    if widths is None:
        return model_arch.Generator(size, mode)
    return model_arch.Generator(size, mode, widths=widths)


def make_inputs(model, size, mode, batch, gen):
    import torch
    import model_arch
    if size == 0:
        return {'mel': torch.rand(batch, 1, 80, 16, generator=gen) * 8 - 4}
    audio = torch.randn(batch, *model_arch.AUDIO_SHAPES[mode], generator=gen)
    if mode == 'ave':
        audio = torch.relu(audio)  # ave features are ReLU outputs
    return {'input': torch.rand(batch, 6, size, size, generator=gen), 'audio': audio}


def seeded_weights(model, size, mode, gen):
    """Random convs; BN statistics set from a calibration batch, then perturbed, and the BN
    scales damped (deep random nets are otherwise chaotic: the float32 noise grows layer by
    layer); the last conv rescaled so the sigmoid's input spreads around 0. The output then
    depends on every layer, so a wrong stride, residual or fold shows."""
    import torch
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        model(*make_inputs(model, size, mode, 16 if size == 0 else 2, gen).values())
    model.eval()
    with torch.no_grad():
        for bn in bns:
            n = bn.num_features
            bn.weight.copy_((torch.rand(n, generator=gen) + 0.5) * (1.0 if size == 0 else 0.7))
            bn.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            bn.running_mean.add_(torch.randn(n, generator=gen) * 0.1 * bn.running_var.sqrt())
            bn.running_var.mul_(torch.rand(n, generator=gen) * 0.45 + 0.8)
            bn.momentum = 0.1
        if size:
            calib = make_inputs(model, size, mode, 2, gen)
            logits = model.logits(calib['input'], calib['audio'])
            scale = 1.5 / logits.std(dim=(0, 2, 3)).clamp_min(1e-12)
            conv = model.outc.conv
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - logits.mean(dim=(0, 2, 3))) * scale)


def save_npy(path, array):
    import numpy as np
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))


def export_onnx(model, inputs, path):
    import inspect
    import torch
    legacy = ({'dynamo': False}
              if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {})
    names = list(inputs)
    with torch.no_grad():
        torch.onnx.export(model, tuple(inputs.values()), path, input_names=names,
                          output_names=['output'],
                          dynamic_axes={n: {0: 'batch'} for n in names + ['output']},
                          opset_version=17, do_constant_folding=True, **legacy)


def prepare(case, work):
    """Writes <work>/<case>/{<case>.pth, <case>.ul.pth, model.onnx, <input>.npy, torch.npy} once per
    case (reused by later runs: exports cost seconds on 2 cores)."""
    import torch
    size, mode, widths = MEMBERS[case]
    final = os.path.join(work, case)
    if os.path.exists(os.path.join(final, 'done')):
        return final
    # Written aside and renamed into place: ctest runs cases in parallel, and `errors` and
    # `render` use other cases' files.
    out = '%s.tmp%d' % (final, os.getpid())
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    seed = 1000 + CASES.index(case)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(size, mode, widths)
    seeded_weights(model, size, mode, gen)
    sd = model.state_dict()
    # SyncTalk_2D: torch.save(net.state_dict(), path). The encoder ships as its Sequential's
    # state dict, without the 'audio_encoder.' attribute prefix.
    if size == 0:
        sd = {k[len('audio_encoder.'):]: v for k, v in sd.items()}
    # Named after the case: SyncTalk_2D's ave and hubert generators have the same tensors,
    # and talkrender tells them apart by 'hubert' in the file's (or its folder's) name.
    torch.save(sd, os.path.join(out, case + '.pth'))
    # Ultralight: {"epoch", "model", "optimizer"}; one Adam step with zero gradients fills
    # the optimizer state with tensors (exp_avg, ...) without changing the weights.
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.save({'epoch': 7, 'model': model.state_dict(), 'optimizer': opt.state_dict()},
               os.path.join(out, case + '.ul.pth'))
    inputs = make_inputs(model, size, mode, BATCH, gen)
    export_onnx(model, inputs, os.path.join(out, 'model.onnx'))
    with torch.no_grad():
        ref = model(*inputs.values())
    for name, t in inputs.items():
        save_npy(os.path.join(out, name + '.npy'), t.numpy())
    save_npy(os.path.join(out, 'torch.npy'), ref.numpy())
    open(os.path.join(out, 'done'), 'w').close()
    if os.path.exists(final) and not os.path.exists(os.path.join(final, 'done')):
        shutil.rmtree(final, ignore_errors=True)  # an interrupted earlier run's leftovers
    try:
        os.rename(out, final)
    except OSError:  # another process got there first, with the same seeded content
        shutil.rmtree(out, ignore_errors=True)
    return final


def run_infer(talkrender, model, inputs_dir, names, out):
    cmd = [talkrender, 'infer', '--model', model, '--out', out]
    for n in names:
        cmd += ['--input', '%s=%s' % (n, os.path.join(inputs_dir, n + '.npy'))]
    t0 = time.time()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        fail('%s exited %d: %s' % (' '.join(cmd), proc.returncode, proc.stdout.strip()))
    return wall


def member_case(case, talkrender, work):
    import numpy as np
    size = MEMBERS[case][0]
    d = prepare(case, work)
    names = ['mel'] if size == 0 else ['input', 'audio']
    want = np.load(os.path.join(d, 'torch.npy'))
    t_onnx = run_infer(talkrender, os.path.join(d, 'model.onnx'), d, names,
                       os.path.join(d, 'onnx.out.npy'))
    got_onnx = np.load(os.path.join(d, 'onnx.out.npy'))
    scale = float(np.abs(want).max()) if size == 0 else 1.0
    ok = True
    for form in ('bare', 'ul'):
        pth = os.path.join(d, case + ('.pth' if form == 'bare' else '.ul.pth'))
        out = os.path.join(d, form + '.out.npy')
        t_pth = run_infer(talkrender, pth, d, names, out)
        got = np.load(out)
        if got.shape != want.shape:
            fail('%s %s.pth: output %s, PyTorch %s' % (case, form, got.shape, want.shape))
        vs_onnx = float(np.abs(got - got_onnx).max())
        vs_torch = float(np.abs(got - want).max()) / scale
        good = vs_onnx <= PTH_VS_ONNX_TOL * scale and vs_torch <= VS_TORCH_TOL
        ok &= good
        print('%-18s %-4s.pth (%5.1f MB): max|diff| vs onnx %.3g, vs PyTorch %.3g%s; '
              'infer wall %.2f s (.onnx %.2f s)%s' %
              (case, form, os.path.getsize(pth) / 1e6, vs_onnx, vs_torch,
               ' (relative)' if size == 0 else '', t_pth, t_onnx, '' if good else '  FAIL'))
    if not ok:
        fail(case)


def expect_exit2(talkrender, pth, inputs_dir, names, needles, what):
    cmd = [talkrender, 'infer', '--model', pth, '--out', pth + '.out.npy']
    for n in names:
        cmd += ['--input', '%s=%s' % (n, os.path.join(inputs_dir, n + '.npy'))]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = proc.stdout.strip()
    lines = text.splitlines()
    good = (proc.returncode == 2 and len(lines) == 1 and all(n in text for n in needles)
            and not os.path.exists(pth + '.out.npy'))
    print('%-28s exit %d: %s%s' % (what, proc.returncode, text, '' if good else '  FAIL'))
    return good


def errors_case(talkrender, work):
    import torch
    d = prepare('ul-hubert-narrow', work)
    sd = torch.load(os.path.join(d, 'ul-hubert-narrow.pth'), map_location='cpu',
                    weights_only=True)
    e = os.path.join(work, 'errors')
    os.makedirs(e, exist_ok=True)
    names = ['input', 'audio']
    ok = True
    key = 'audio_model.conv3.weight'

    def save(name, state):
        path = os.path.join(e, name)
        torch.save(state, path)
        if os.path.exists(path + '.out.npy'):
            os.remove(path + '.out.npy')
        return path

    missing = dict(sd)
    del missing[key]
    p = save('missing.pth', missing)
    ok &= expect_exit2(talkrender, p, d, names, [p, key, 'missing'], 'tensor removed')
    extra = dict(sd)
    extra['audio_model.conv8.weight'] = torch.zeros(3, 3)
    p = save('extra.pth', extra)
    ok &= expect_exit2(talkrender, p, d, names, [p, 'audio_model.conv8.weight'], 'tensor added')
    wrong = dict(sd)
    dw = 'down2.maxpool_conv.0.double_conv.1.conv.3.weight'
    wrong[dw] = torch.zeros(wrong[dw].shape[0], 1, 5, 5)
    p = save('wrong_shape.pth', wrong)
    ok &= expect_exit2(talkrender, p, d, names, [p, dw, 'shape'], 'wrong shape')
    bn = 'up1.conv.double_conv.0.conv.4.running_var'
    wrong_bn = dict(sd)
    wrong_bn[bn] = torch.ones(wrong_bn[bn].numel() + 1)
    p = save('wrong_bn.pth', wrong_bn)
    ok &= expect_exit2(talkrender, p, d, names, [p, bn, 'shape'], 'wrong BN size')
    other = {'features.0.weight': torch.zeros(8, 3, 3, 3), 'classifier.weight': torch.zeros(10, 8)}
    p = save('other.pth', other)
    ok &= expect_exit2(talkrender, p, d, names,
                       [p, 'not a SyncTalk_2D / Ultralight generator or audio encoder',
                        'found 2 tensors'], 'unrelated state dict')
    enc = prepare('encoder', work)
    esd = torch.load(os.path.join(enc, 'encoder.pth'), map_location='cpu', weights_only=True)
    del esd['11.conv_block.1.running_mean']
    p = save('encoder_missing.pth', esd)
    ok &= expect_exit2(talkrender, p, enc, ['mel'], [p, '11.conv_block.1.running_mean'],
                       'encoder tensor removed')
    # DataParallel's 'module.' prefix is not an error: the same model.
    import numpy as np
    p = save('ul-hubert-narrow.module.pth', {'module.' + k: v for k, v in sd.items()})
    run_infer(talkrender, p, d, names, p + '.out.npy')
    want = np.load(os.path.join(d, 'torch.npy'))
    diff = float(np.abs(np.load(p + '.out.npy') - want).max())
    good = diff <= VS_TORCH_TOL
    ok &= good
    print('%-28s loads: max|diff| vs PyTorch %.3g%s' % ("'module.' prefixes", diff,
                                                        '' if good else '  FAIL'))
    if not ok:
        fail('errors')


def shared_data():
    for root in (os.environ.get('TALKRENDER_SHARED'), os.path.join(SOURCE_ROOT, '..', 'shared',
                                                                      'data')):
        if root and os.path.isdir(os.path.join(root, 'sanders')):
            return os.path.join(root, 'sanders')
    return None


def render_case(talkrender, work, frames=4):
    """Issue 16's acceptance at render level: the same frames from the .pth and the .onnx."""
    import numpy as np
    package = shared_data()
    if not package:
        skip('the sample package (../shared/data/sanders or $TALKRENDER_SHARED) is absent')
    feats = os.path.join(package, 'aud_ave.bin')
    if not os.path.exists(feats):
        skip('%s is absent' % feats)
    try:
        import cv2
    except ImportError:
        skip('python3-opencv is absent')
    ok = True
    # Ultralight's hubert model renders from aud_hu.npy-shaped features [n, 2, 1024].
    hu = os.path.join(work, 'render', 'aud_hu.npy')
    os.makedirs(os.path.dirname(hu), exist_ok=True)
    save_npy(hu, np.random.RandomState(5).randn(frames + 8, 2, 1024))
    for case in ('gen320-ave', 'gen160-ave', 'ul-hubert'):
        d = prepare(case, work)
        outs = {}
        # Each family's own checkpoint form: SyncTalk_2D's bare dict, Ultralight's wrapper.
        pth = case + ('.ul.pth' if case.startswith('ul-') else '.pth')
        for form, model in (('onnx', 'model.onnx'), ('pth', pth)):
            out = os.path.join(work, 'render', case, form) + '/'
            os.makedirs(os.path.dirname(os.path.dirname(out)), exist_ok=True)
            cmd = [talkrender, 'render', '--package', package, '--features',
                   hu if case.startswith('ul-') else feats,
                   '--generator', os.path.join(d, model), '--frames', str(frames), '--out', out,
                   '--overwrite', '--no-progress']
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            if proc.returncode != 0:
                fail('%s exited %d: %s' % (' '.join(cmd), proc.returncode, proc.stdout.strip()))
            outs[form] = out
        worst = 0
        for i in range(frames):
            name = 'frame_%06d.png' % i
            a = cv2.imread(os.path.join(outs['onnx'], name), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(os.path.join(outs['pth'], name), cv2.IMREAD_UNCHANGED)
            if a is None or b is None or a.shape != b.shape:
                fail('%s: frame %s missing or of another size' % (case, name))
            worst = max(worst, int(np.abs(a.astype(int) - b.astype(int)).max()))
        good = worst <= 1
        ok &= good
        print('%-18s render %d frames: .pth vs .onnx max %d level(s)%s' %
              (case, frames, worst, '' if good else '  FAIL'))
    if not ok:
        fail('render')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--list', action='store_true', help='print the case names')
    ap.add_argument('--case', action='append', help='run this case (default: all)')
    ap.add_argument('--talkrender', help='the binary (default: $TALKRENDER_BUILD/talkrender)')
    ap.add_argument('--work', default=os.path.join(SOURCE_ROOT, 'build', 'tests', 'pth'))
    args = ap.parse_args()
    # The TorchScript exporter's shape-inference chatter about the F.pad chain.
    warnings.filterwarnings('ignore', category=UserWarning)
    if args.list:
        print('\n'.join(CASES))
        return 0
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as e:
        skip('Debian python3 lacks %s' % e.name)
    talkrender = find_talkrender(args.talkrender)
    os.makedirs(args.work, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for case in args.case or CASES:
        if case not in CASES:
            fail('unknown case %s (--list)' % case)
        t0 = time.time()
        if case == 'errors':
            errors_case(talkrender, args.work)
        elif case == 'render':
            render_case(talkrender, args.work)
        else:
            member_case(case, talkrender, args.work)
        print('%-18s done in %.1f s' % (case, time.time() - t0))
    return 0


if __name__ == '__main__':
    sys.exit(main())
