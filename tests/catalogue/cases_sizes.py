# Issue 23: sizes declared by a file (a .json sidecar's "shape", a .npy header) whose
# element or byte count overflows 64 bits. Each must be a bad-input error that names the
# file and prints the declared shape (never a wrapped number such as "rows of -4 bytes"),
# with no sanitizer report in the ASan+UBSan build. Run in this module's namespace (see
# catalogue.py), as part of the 'features' group.


def write_npy_header_only(path, shape_text, payload=b'\0' * 64):
    """A .npy whose header declares shape_text (a Python tuple literal) over a small payload."""
    h = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape_text
    h += ' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + '\n'
    write_bytes(path, b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + payload)


def sidecar_case(e, d, shape_text):
    def make(p):
        write_bytes(p, b'\0' * 2048)
        write_bytes(os.path.splitext(p)[0] + '.json', ('{"shape": %s}' % shape_text).encode())
    return feat_case(e, d, make, names=['feat.json'], problem=re.escape(shape_text))


@case('features', 'sidecar_shape_count_overflows')
def _(e, d):
    # The fuzzer's input (fuzz/regressions/fuzz_feature_file-shape-overflow-mul4): the
    # element count overflows int64.
    return sidecar_case(e, d, '[1, 1121000, 1121000009607009607]')


@case('features', 'sidecar_shape_bytes_overflow')
def _(e, d):
    # The element count fits int64, its size in bytes (x 4) does not.
    return sidecar_case(e, d, '[1, 4611686018427387904]')


@case('features', 'npy_header_shape_overflows')
def _(e, d):
    return feat_case(e, d, lambda p: write_npy_header_only(p, '(1099511627776, 1099511627776)'),
                     file='feat.npy', problem=re.escape('[1099511627776, 1099511627776]'))


@case('features', 'npy_zero_dimension_after_overflow')
def _(e, d):
    # The fuzz_npy finding (fuzz/regressions/fuzz_npy-zero-dim-after-overflow.npy): a zero
    # dimension must not hide the overflow of the others.
    return feat_case(e, d, lambda p: write_npy_header_only(p, '(8, 888888, 44, 444444, 444444, 4, 4, 0)'),
                     file='feat.npy', problem=r'too many elements')
