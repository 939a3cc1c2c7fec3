#!/usr/bin/python3
"""Checks tools/export_models.py's command line: checkpoint loading (wrappers, 'module.'
prefixes, the encoder's bare Sequential keys), its one-line errors with exit 2, and
determinism, on the small encoder; then Ultralight's own model (ul-hubert / ul-wenet):
its parameter names and counts, --widths, an Ultralight training checkpoint (narrow widths
read from the weights, optimizer state beside them), a checkpoint whose pickle names a
global outside the allow-list, and the --fixed-batch 1 --opset 11 export of pth2onnx.py.

Exit 0 passed, 1 failed, 77 skipped (no torch in this python).
"""

import json
import os
import subprocess
import sys
import tempfile

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
EXPORTER = os.path.join(SOURCE_ROOT, 'tools', 'export_models.py')

failures = []


def check(condition, what):
    print('%s %s' % ('PASS' if condition else 'FAIL', what))
    if not condition:
        failures.append(what)


def export(*args):
    proc = subprocess.run([sys.executable, EXPORTER] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def expect_usage_error(args, needle, what):
    rc, _, err = export(*args)
    lines = err.strip().splitlines()
    check(rc == 2 and len(lines) == 1 and needle in err,
          '%s -> exit 2 with one line naming "%s" (got exit %d: %r)' % (what, needle, rc,
                                                                         err.strip()[-300:]))


# Parameter names and shapes as Ultralight-Digital-Human's unet.py `Model` has them at the
# default widths (a sample from every part of the tree), so its state dicts load unchanged.
UL_NAMES = {
    'ul-hubert': {
        'audio_model.conv1.conv.0.weight': (32, 16, 1, 1),
        'audio_model.conv1.conv.7.running_var': (64,),
        'audio_model.conv3.weight': (256, 128, 3, 3),
        'audio_model.bn3.weight': (256,),
        'audio_model.conv5.weight': (512, 256, 3, 3),
        'audio_model.bn5.running_mean': (512,),
        'audio_model.conv7.conv.6.weight': (512, 1024, 1, 1),
    },
    'ul-wenet': {
        'audio_model.conv1.conv.0.weight': (256, 128, 1, 1),
        'audio_model.conv1.conv.6.weight': (256, 256, 1, 1),
        'audio_model.conv2.conv.3.weight': (512, 1, 3, 3),
        'audio_model.conv3.weight': (256, 256, 3, 3),
        'audio_model.conv4.conv.0.weight': (512, 256, 1, 1),
    },
    'both': {
        'inc.inconv.0.conv.0.weight': (12, 6, 1, 1),
        'inc.inconv.0.conv.7.weight': (32,),
        'down1.maxpool_conv.0.double_conv.0.conv.3.weight': (64, 1, 3, 3),
        'down4.maxpool_conv.0.double_conv.1.conv.6.weight': (512, 1024, 1, 1),
        'fuse_conv.0.double_conv.0.conv.0.weight': (2048, 1024, 1, 1),
        'fuse_conv.1.double_conv.1.conv.7.num_batches_tracked': (),
        'up1.conv.double_conv.0.conv.0.weight': (1024, 512, 1, 1),
        'up4.conv.double_conv.1.conv.6.weight': (32, 64, 1, 1),
        'outc.conv.weight': (3, 32, 1, 1),
        'outc.conv.bias': (3,),
    },
}


def check_ultralight(tmp, np, torch, model_arch):
    import json
    counts = {'ul-hubert': 12.160, 'ul-wenet': 12.796}  # the contract's figures
    for name in ('ul-hubert', 'ul-wenet'):
        model = model_arch.Generator(160, name)
        state = model.state_dict()
        want = dict(UL_NAMES[name], **UL_NAMES['both'])
        wrong = ['%s %s' % (k, tuple(state[k].shape) if k in state else 'absent')
                 for k, shape in want.items() if k not in state or tuple(state[k].shape) != shape]
        check(not wrong, '%s has unet.py\'s parameter names and shapes %s' % (name, wrong))
        params = model_arch.count_parameters(model) / 1e6
        check(round(params, 3) == counts[name], '%s: %.3f M parameters (contract %.3f M)' %
              (name, params, counts[name]))
    expect_usage_error(['--out', os.path.join(tmp, 'w'), '--models', 'gen160-wenet',
                        '--widths', '16,32,64,128,256'], 'gen160-wenet',
                       '--widths on a SyncTalk_2D wenet model (its input is tied to c3)')
    # ave/hubert generators and the encoder take widths (the demo's small model is one).
    for name, want in (('gen160-ave', 797215), ('encoder', 227392)):
        rc, _, err = export('--out', os.path.join(tmp, 'narrow'), '--models', name, '--widths',
                            '8,16,32,64,128', '--no-goldens')
        info = (json.load(open(os.path.join(tmp, 'narrow', name + '.json'))) if rc == 0 else {})
        check(rc == 0 and info.get('widths') == [8, 16, 32, 64, 128] and
              info.get('parameters') == want,
              '%s --widths 8,16,32,64,128 exports %d parameters (got exit %d, %s; %s)' %
              (name, want, rc, info.get('parameters'), err.strip()[-200:]))
    expect_usage_error(['--out', os.path.join(tmp, 'w'), '--models', 'ul-hubert',
                        '--widths', '16,32,64'], '--widths', '--widths with three values')

    # An Ultralight training checkpoint: {"epoch", "model", "optimizer"} (floats in the
    # optimizer state), narrow widths that the exporter reads from the weights.
    torch.manual_seed(11)
    narrow = (16, 32, 64, 128, 256)
    ul = model_arch.Generator(160, 'ul-wenet', widths=narrow)
    opt = torch.optim.Adam(ul.parameters(), lr=1e-3)
    ul(torch.rand(1, 6, 160, 160), torch.randn(1, 128, 16, 32)).mean().backward()
    opt.step()
    ul.eval()
    ckpt = os.path.join(tmp, 'ul_wenet_20.pth')
    torch.save({'epoch': 20, 'model': ul.state_dict(), 'optimizer': opt.state_dict()}, ckpt)
    out = os.path.join(tmp, 'ul')
    rc, stdout, err = export('--out', out, '--models', 'ul-wenet', '--checkpoint', ckpt,
                             '--fixed-batch', '1', '--opset', '11')
    check(rc == 0, 'Ultralight checkpoint with narrow widths and optimizer state exports '
          '(exit %d %s)' % (rc, err.strip()[-300:]))
    if rc == 0:
        with open(os.path.join(out, 'ul-wenet.json')) as f:
            info = json.load(f)
        check(info['widths'] == list(narrow), 'widths read from the checkpoint: %s' %
              info['widths'])
        check(info['opset'] == 11 and info['dynamic_batch'] is False and
              info['inputs']['audio'] == [1, 128, 16, 32] and info['golden_batches'] == [1],
              '--fixed-batch 1 --opset 11: opset 11, batch fixed at 1 (%s)' %
              {k: info[k] for k in ('opset', 'dynamic_batch', 'inputs')})
        import onnx
        graph = onnx.load(os.path.join(out, 'ul-wenet.onnx')).graph
        dims = [[d.dim_value if d.HasField('dim_value') else d.dim_param
                 for d in v.type.tensor_type.shape.dim] for v in list(graph.input) +
                list(graph.output)]
        check(dims == [[1, 6, 160, 160], [1, 128, 16, 32], [1, 3, 160, 160]],
              'the ONNX file has batch 1 baked into its inputs and output %s' % dims)
        prefix = os.path.join(out, 'ul-wenet.b1.')
        with torch.no_grad():
            want = ul(torch.from_numpy(np.load(prefix + 'input.npy')),
                      torch.from_numpy(np.load(prefix + 'audio.npy'))).numpy()
        err = float(np.abs(np.load(prefix + 'output.npy') - want).max())
        check(err <= 1e-6, 'golden output is the checkpoint model\'s output (max|diff| %g)' % err)

    # A pickle naming a global outside the allow-list is refused before anything runs.
    marker = os.path.join(tmp, 'pwned')

    class Evil:

        def __reduce__(self):
            return (os.mkdir, (marker,))

    evil = os.path.join(tmp, 'evil.pth')
    torch.save({'model': ul.state_dict(), 'extra': Evil()}, evil)
    expect_usage_error(['--out', out, '--models', 'ul-wenet', '--checkpoint', evil],
                       'posix.mkdir is not allowed', 'checkpoint naming os.mkdir')
    check(not os.path.exists(marker), 'the refused checkpoint ran nothing')


def main():
    sys.stdout.reconfigure(line_buffering=True)
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print('SKIP: %s lacks torch/numpy (%s)' % (sys.executable, e))
        return 77
    sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tools'))
    import model_arch

    with tempfile.TemporaryDirectory(prefix='tr_exporter_selftest_') as tmp:
        out = os.path.join(tmp, 'out')
        # Errors: each is one line on stderr, exit 2, and names the problem.
        expect_usage_error(['--out', out, '--models', 'gen999-ave'], 'gen999-ave',
                           'unknown model')
        expect_usage_error(['--out', out, '--models', 'encoder', '--checkpoint',
                            os.path.join(tmp, 'absent.pth')], 'absent.pth', 'missing checkpoint')
        not_a_dir = os.path.join(tmp, 'file')
        open(not_a_dir, 'w').close()
        expect_usage_error(['--out', os.path.join(not_a_dir, 'sub'), '--models', 'encoder'],
                           not_a_dir, 'unwritable --out')
        garbage = os.path.join(tmp, 'garbage.pth')
        with open(garbage, 'w') as f:
            f.write('not a checkpoint\n')
        expect_usage_error(['--out', out, '--models', 'encoder', '--checkpoint', garbage],
                           'not a PyTorch checkpoint', 'unreadable checkpoint')

        # A user's encoder checkpoint: bare Sequential keys, as SyncTalk_2D saves it.
        torch.manual_seed(7)
        encoder = model_arch.AudioEncoder()
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        encoder.eval()
        bare = {k[len('audio_encoder.'):]: v for k, v in encoder.state_dict().items()}
        ckpt = os.path.join(tmp, 'encoder.pth')
        torch.save(bare, ckpt)
        rc, _, err = export('--out', out, '--models', 'encoder', '--checkpoint', ckpt,
                            '--golden-batch', '2')
        check(rc == 0, 'encoder checkpoint with bare keys exports (exit %d %s)' %
              (rc, err.strip()[-300:]))
        if rc == 0:
            mel = np.load(os.path.join(out, 'encoder.b2.mel.npy'))
            golden = np.load(os.path.join(out, 'encoder.b2.output.npy'))
            with torch.no_grad():
                want = encoder(torch.from_numpy(mel)).numpy()
            # Not bitwise: this process may use another thread count than the exporter.
            err = float(np.abs(golden - want).max())
            check(err <= 1e-6 * float(np.abs(want).max()),
                  'golden output is the checkpoint model\'s output (max|diff| %g)' % err)

        # Wrapped and DataParallel-prefixed: {'state_dict': {'module.audio_encoder...'}}.
        wrapped = os.path.join(tmp, 'wrapped.pth')
        torch.save({'state_dict': {'module.' + k: v for k, v in encoder.state_dict().items()},
                    'epoch': 3}, wrapped)
        out2 = os.path.join(tmp, 'out2')
        rc, _, err = export('--out', out2, '--models', 'encoder', '--checkpoint', wrapped,
                            '--golden-batch', '2')
        check(rc == 0, 'wrapped module.-prefixed checkpoint exports (exit %d %s)' %
              (rc, err.strip()[-300:]))
        if rc == 0:
            same = np.array_equal(np.load(os.path.join(out, 'encoder.b2.output.npy')),
                                  np.load(os.path.join(out2, 'encoder.b2.output.npy')))
            check(same, 'both checkpoint forms give the same golden')

        # Wrong architecture: keys are listed.
        broken = dict(encoder.state_dict())
        del broken['audio_encoder.12.conv_block.0.weight']
        broken['audio_encoder.13.extra'] = torch.zeros(1)
        bad = os.path.join(tmp, 'bad.pth')
        torch.save(broken, bad)
        rc, _, err = export('--out', out, '--models', 'encoder', '--checkpoint', bad)
        check(rc == 2 and 'audio_encoder.12.conv_block.0.weight' in err and
              'audio_encoder.13.extra' in err and len(err.strip().splitlines()) == 1,
              'mismatched checkpoint -> exit 2 listing missing and unexpected keys')

        # Determinism: the same seed gives byte-identical goldens; another seed differs.
        a, b, c = (os.path.join(tmp, d) for d in ('a', 'b', 'c'))
        for d, seed in ((a, '5'), (b, '5'), (c, '6')):
            rc, _, err = export('--out', d, '--models', 'encoder', '--seed', seed,
                                '--golden-batch', '1')
            check(rc == 0, 'export --seed %s (exit %d %s)' % (seed, rc, err.strip()[-200:]))

        def read(d, f):
            with open(os.path.join(d, f), 'rb') as fh:
                return fh.read()

        try:
            check(read(a, 'encoder.b1.output.npy') == read(b, 'encoder.b1.output.npy'),
                  'same seed -> identical golden')
            check(read(a, 'encoder.b1.output.npy') != read(c, 'encoder.b1.output.npy'),
                  'different seed -> different golden')
        except OSError as e:
            check(False, 'golden files readable (%s)' % e)
        leftovers = [f for f in os.listdir(a) if f.startswith('.')]
        check(not leftovers, 'no temporary files left behind (%s)' % leftovers)

        check_ultralight(tmp, np, torch, model_arch)

    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
