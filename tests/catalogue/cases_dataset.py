# The catalogue's "dataset" group (run in catalogue.py's namespace): SyncTalk_2D /
# Ultralight dataset folders given as `render --dataset` and `package --dataset` (issue 16).
# Each broken folder exits 2 with a message naming the offending file.

DS_FRAMES = PKG_FRAMES


def dataset_jpeg(path, w=PKG_W, h=PKG_H, seed=0):
    """A small noisy frame written with cv2.imwrite (as the reference's preprocessing)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    cv2.imwrite(path, img)


def lms_text(rect, points=110, floats=False):
    x1, y1, x2, _ = rect
    pts = [[50 + i % 7, 40 + i % 5] for i in range(points)]
    if points > 52:
        pts[1][0], pts[52][1], pts[31][0] = x1, y1, x2
    fmt = '%.3f %.3f' if floats else '%d %d'
    return '\n'.join(fmt % tuple(p) for p in pts) + '\n'


def make_dataset(d):
    ds = os.path.join(d, 'ds')
    os.makedirs(os.path.join(ds, 'full_body_img'))
    os.makedirs(os.path.join(ds, 'landmarks'))
    rects = base_rects(DS_FRAMES)
    for i in range(DS_FRAMES):
        dataset_jpeg(os.path.join(ds, 'full_body_img', '%d.jpg' % i), seed=i)
        write_bytes(os.path.join(ds, 'landmarks', '%d.lms' % i),
                    lms_text(rects[str(i)]['rect'], floats=i % 2 == 1).encode())
    write_npy_f32(os.path.join(ds, 'aud_ave.npy'), (4, 512))
    return ds


def dataset_case(e, d, mutate, **kw):
    ds = make_dataset(d)
    mutate(ds)
    out = os.path.join(d, 'out', 'frames') + '/'
    r = dict(args=['render', '--dataset', ds, '--generator', e.tiny, '--out', out,
                   '--no-progress'], rc=2, out=out)
    r.update(kw)
    return r


@case('dataset', 'renders')
def _(e, d):
    ds = make_dataset(d)
    out = os.path.join(d, 'out', 'frames') + '/'

    def check(proc):
        n = len(glob.glob(os.path.join(out, 'frame_*.png')))
        return None if n == 4 else '%d frames, wanted the 4 rows of aud_ave.npy' % n
    return dict(args=['render', '--dataset', ds, '--generator', e.tiny, '--out', out,
                      '--no-progress'], rc=0, out=None, check=check)


@case('dataset', 'missing_frame')
def _(e, d):
    def mutate(ds):
        os.remove(os.path.join(ds, 'full_body_img', '2.jpg'))
        os.remove(os.path.join(ds, 'landmarks', '2.lms'))
    return dataset_case(e, d, mutate, names=['2.jpg'], problem='missing')


@case('dataset', 'extra_frame_without_landmarks')
def _(e, d):
    return dataset_case(e, d, lambda ds: dataset_jpeg(
        os.path.join(ds, 'full_body_img', '%d.jpg' % DS_FRAMES)),
        names=['%d.lms' % DS_FRAMES], problem='missing|no landmarks')


@case('dataset', 'extra_landmarks_without_frame')
def _(e, d):
    return dataset_case(e, d, lambda ds: write_bytes(
        os.path.join(ds, 'landmarks', '%d.lms' % DS_FRAMES),
        lms_text([100, 60, 200, 160]).encode()),
        names=['%d.lms' % DS_FRAMES], problem='extra|no .*jpg')


@case('dataset', 'lms_109_points')
def _(e, d):
    return dataset_case(e, d, lambda ds: write_bytes(
        os.path.join(ds, 'landmarks', '3.lms'), lms_text([100, 60, 200, 160], 109).encode()),
        names=['3.lms'], problem='109 points')


@case('dataset', 'lms_not_numbers')
def _(e, d):
    def mutate(ds):
        p = os.path.join(ds, 'landmarks', '1.lms')
        lines = open(p).read().splitlines()
        lines[40] = '12 abc'
        write_bytes(p, ('\n'.join(lines) + '\n').encode())
    return dataset_case(e, d, mutate, names=['1.lms'], problem='line 41')


@case('dataset', 'rect_outside_image')
def _(e, d):
    return dataset_case(e, d, lambda ds: write_bytes(
        os.path.join(ds, 'landmarks', '4.lms'), lms_text([250, 60, 400, 210]).encode()),
        names=['4.lms'], problem='inside|frame')


@case('dataset', 'mixed_frame_sizes')
def _(e, d):
    return dataset_case(e, d, lambda ds: dataset_jpeg(
        os.path.join(ds, 'full_body_img', '5.jpg'), w=PKG_W + 16),
        names=['5.jpg'], problem='one size')


@case('dataset', 'corrupt_jpeg')
def _(e, d):
    def mutate(ds):
        p = os.path.join(ds, 'full_body_img', '2.jpg')
        write_bytes(p, open(p, 'rb').read()[:300])
    return dataset_case(e, d, mutate, names=['2.jpg'], problem='jpeg|decode')


@case('dataset', 'no_features')
def _(e, d):
    return dataset_case(e, d, lambda ds: os.remove(os.path.join(ds, 'aud_ave.npy')),
                        names=['ds'], problem='aud_ave.npy')


@case('dataset', 'package_and_dataset')
def _(e, d):
    ds = make_dataset(d)
    out = os.path.join(d, 'out', 'frames') + '/'
    return dict(args=['render', '--dataset', ds, '--package', e.package(d), '--generator', e.tiny,
                      '--out', out], rc=2, names=['--dataset'], problem='exclude', out=out)


@case('dataset', 'package_bad_lms_leaves_nothing')
def _(e, d):
    ds = make_dataset(d)
    write_bytes(os.path.join(ds, 'landmarks', '3.lms'), b'1 2\n')
    out = os.path.join(d, 'out', 'pkg')
    return dict(args=['package', '--dataset', ds, '--out', out], rc=2, names=['3.lms'],
                problem='1 points', out=out)


@case('dataset', 'package_into_nonempty_folder')
def _(e, d):
    ds = make_dataset(d)
    out = os.path.join(d, 'out', 'pkg')
    os.makedirs(out)
    keep = os.path.join(out, 'mine.txt')
    write_bytes(keep, b'keep me')
    return dict(args=['package', '--dataset', ds, '--out', out], rc=2, names=['pkg'],
                problem='not an empty folder', out=None, keep={keep: b'keep me'})
