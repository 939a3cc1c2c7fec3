"""A tiny, slow, obviously-written numpy evaluator for the ONNX ops that the lip-sync
exports contain (onnx 1.12 has no onnx.reference, and onnxruntime is not packaged).

It exists to check the exported graph itself against PyTorch, independently of the
engine under test: when talkrender and the golden disagree, this says which side the
export is on. Only the ops and attributes that torch.onnx.export emits for these models
are supported; anything else raises NotImplementedError naming the op.
"""

import numpy as np
import onnx
from onnx import numpy_helper


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv(x, w, b, attrs):
    group = attrs.get('group', 1)
    strides = attrs.get('strides', [1, 1])
    dilations = attrs.get('dilations', [1, 1])
    if dilations != [1, 1] or attrs.get('auto_pad', b'NOTSET') not in (b'NOTSET', 'NOTSET'):
        raise NotImplementedError('Conv with dilations/auto_pad')
    pads = attrs.get('pads', [0, 0, 0, 0])  # top, left, bottom, right
    kh, kw = w.shape[2], w.shape[3]
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, c, h, wd = x.shape
    sh, sw = strides
    oh = (h - kh) // sh + 1
    ow = (wd - kw) // sw + 1
    cout = w.shape[0]
    if group == 1:
        out = np.zeros((n, cout, oh, ow), np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                # [N,C,OH,OW] x [Cout,C] -> [N,Cout,OH,OW]
                out += np.einsum('nchw,oc->nohw', patch, w[:, :, i, j], optimize=True)
    elif group == c and cout == c and w.shape[1] == 1:  # depthwise
        out = np.zeros((n, cout, oh, ow), np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                out += patch * w[None, :, 0, i, j, None, None]
    else:
        raise NotImplementedError('Conv with group=%d (C=%d)' % (group, c))
    if b is not None:
        out += b[None, :, None, None]
    return out


def _interp_matrix(in_size, out_size):
    """Linear interpolation with align_corners: out[i] samples in[i*(in-1)/(out-1)]."""
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        src = i * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        lo = min(int(np.floor(src)), in_size - 1)
        hi = min(lo + 1, in_size - 1)
        frac = src - lo
        m[i, lo] += 1 - frac
        m[i, hi] += frac
    return m


def _resize(x, inputs, attrs):
    mode = attrs.get('mode', b'nearest')
    ctm = attrs.get('coordinate_transformation_mode', b'half_pixel')
    if mode != b'linear' or ctm != b'align_corners':
        raise NotImplementedError('Resize mode=%s coordinate_transformation_mode=%s' % (mode, ctm))
    scales = inputs[2] if len(inputs) > 2 and inputs[2] is not None and inputs[2].size else None
    sizes = inputs[3] if len(inputs) > 3 and inputs[3] is not None and inputs[3].size else None
    if sizes is not None:
        out_shape = [int(s) for s in sizes]
    else:
        out_shape = [int(np.floor(d * s)) for d, s in zip(x.shape, scales)]
    if out_shape[:2] != list(x.shape[:2]):
        raise NotImplementedError('Resize over N or C')
    mh = _interp_matrix(x.shape[2], out_shape[2])
    mw = _interp_matrix(x.shape[3], out_shape[3])
    return np.einsum('ph,nchw,qw->ncpq', mh, x, mw, optimize=True)


def _pad(x, pads, value, attrs):
    if attrs.get('mode', b'constant') != b'constant':
        raise NotImplementedError('Pad mode %s' % attrs.get('mode'))
    r = x.ndim
    pads = [int(p) for p in pads]
    begin, end = pads[:r], pads[r:]
    # Negative pads crop.
    sl = tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(zip(begin, end)))
    x = x[sl]
    width = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    return np.pad(x, width, constant_values=value)


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return (np.trunc(a / b)).astype(np.result_type(a, b))  # ONNX integer Div truncates
    return a / b


def _onnx_dtype(to):
    return onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[to]


def run(model_path, feeds):
    """Evaluates the graph in float64 (so the evaluator's own rounding is negligible)
    and returns the first output as float32."""
    model = onnx.load(model_path)
    graph = model.graph
    opset = max(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))
    values = {}
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        values[init.name] = arr.astype(np.float64) if arr.dtype == np.float32 else arr
    for name, arr in feeds.items():
        values[name] = np.asarray(arr, np.float64)
    for node in graph.node:
        ins = [values[i] if i else None for i in node.input]
        a = _attrs(node)
        op = node.op_type
        if op == 'Constant':
            out = numpy_helper.to_array(a['value'])
            if out.dtype == np.float32:
                out = out.astype(np.float64)
        elif op == 'Identity':
            out = ins[0]
        elif op == 'Conv':
            out = _conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
        elif op == 'BatchNormalization':
            x, scale, bias, mean, var = ins[:5]
            eps = a.get('epsilon', 1e-5)
            shp = (1, -1) + (1,) * (x.ndim - 2)
            out = (x - mean.reshape(shp)) / np.sqrt(var.reshape(shp) + eps) * scale.reshape(
                shp) + bias.reshape(shp)
        elif op == 'Relu':
            out = np.maximum(ins[0], 0)
        elif op == 'Sigmoid':
            out = 1 / (1 + np.exp(-ins[0]))
        elif op == 'Add':
            out = ins[0] + ins[1]
        elif op == 'Sub':
            out = ins[0] - ins[1]
        elif op == 'Mul':
            out = ins[0] * ins[1]
        elif op == 'Div':
            out = _div(ins[0], ins[1])
        elif op == 'Concat':
            out = np.concatenate(ins, axis=a['axis'])
        elif op == 'Shape':
            shape = np.array(ins[0].shape, np.int64)
            out = shape[a.get('start', 0):a.get('end', len(shape))]
        elif op == 'Gather':
            out = np.take(ins[0], ins[1].astype(np.int64), axis=a.get('axis', 0))
        elif op == 'Cast':
            dtype = _onnx_dtype(a['to'])
            out = ins[0].astype(np.float64 if dtype == np.float32 else dtype)
        elif op == 'ConstantOfShape':
            fill = numpy_helper.to_array(a['value']) if 'value' in a else np.zeros(1, np.float32)
            out = np.full([int(d) for d in ins[0]], fill.reshape(-1)[0], dtype=fill.dtype)
        elif op == 'Reshape':
            shape = [int(d) for d in ins[1]]
            shape = [ins[0].shape[i] if d == 0 and not a.get('allowzero', 0) else d
                     for i, d in enumerate(shape)]
            out = ins[0].reshape(shape)
        elif op == 'Slice':
            data = ins[0]
            starts, ends = ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
            steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
            sl = [slice(None)] * data.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                ax = int(ax) % data.ndim
                # Clamp the int64 "to the end" sentinels that torch emits.
                e = int(max(min(e, 2**31), -2**31))
                sl[ax] = slice(int(s), e, int(st))
            out = data[tuple(sl)]
        elif op == 'Transpose':
            out = np.transpose(ins[0], a.get('perm'))
        elif op in ('Unsqueeze', 'Squeeze'):
            axes = a.get('axes') if opset < 13 else (
                [int(v) for v in ins[1]] if len(ins) > 1 and ins[1] is not None else None)
            if op == 'Unsqueeze':
                out = ins[0]
                for ax in sorted(int(v) % (out.ndim + len(axes)) for v in axes):
                    out = np.expand_dims(out, ax)
            else:
                out = np.squeeze(ins[0], axis=None if axes is None else tuple(axes))
        elif op == 'Resize':
            out = _resize(ins[0], ins, a)
        elif op == 'Pad':
            if opset < 11:
                raise NotImplementedError('Pad before opset 11')
            value = ins[2] if len(ins) > 2 and ins[2] is not None else 0.0
            out = _pad(ins[0], ins[1], float(np.asarray(value).reshape(-1)[0]) if np.size(value)
                       else 0.0, a)
        else:
            raise NotImplementedError('op %s' % op)
        values[node.output[0]] = out
    return values[graph.output[0].name].astype(np.float32)
