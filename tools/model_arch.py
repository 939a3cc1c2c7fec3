"""PyTorch definitions of the lip-sync model family (docs/model-contract.md, sections 2 and 4).

The module tree and attribute names follow the SyncTalk_2D / Ultralight-Digital-Human
reference code, so that (a) a user's state dict loads into these classes unchanged and
(b) torch.onnx.export produces the same graph shapes users' exports have (BatchNorm after
every conv, bilinear align_corners upsampling, and the F.pad-to-skip-size that traces into a
Shape/Gather/.../Pad sub-graph).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

# Channel widths shared by every generator variant.
CHANNELS = (32, 64, 128, 256, 512)


class InvertedResidual(nn.Module):
    """block(cin, cout, s, res): 1x1 expand, ReLU, 3x3 depthwise (stride s), ReLU, 1x1
    project; BatchNorm after every conv; plus the input when `use_res_connect`."""

    def __init__(self, inp, oup, stride, use_res_connect, expand_ratio=2):
        super().__init__()
        hidden = inp * expand_ratio
        self.stride = stride
        self.use_res_connect = use_res_connect
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class DoubleConvDW(nn.Module):
    """stage(cin, cout, s) = block(cin, cout, s, no) then block(cout, cout, 1, yes)."""

    def __init__(self, in_channels, out_channels, stride=2):
        super().__init__()
        self.double_conv = nn.Sequential(
            InvertedResidual(in_channels, out_channels, stride, False),
            InvertedResidual(out_channels, out_channels, 1, True),
        )

    def forward(self, x):
        return self.double_conv(x)


class InConvDw(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.inconv = nn.Sequential(
            InvertedResidual(in_channels, out_channels, 1, False))

    def forward(self, x):
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            DoubleConvDW(in_channels, out_channels, stride=2))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Bilinear x2 (align_corners) upsample, zero-pad to the skip's size, concat, stage."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2,
                              mode='bilinear',
                              align_corners=True)
        self.conv = DoubleConvDW(in_channels, out_channels, stride=1)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        # A no-op at the contract's sizes, but kept exactly as the reference writes it:
        # under tracing it becomes the Shape/Gather/.../Pad chain importers must fold.
        diff_y = x2.shape[2] - x1.shape[2]
        diff_x = x2.shape[3] - x1.shape[3]
        x1 = F.pad(x1, [
            diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2
        ])
        x = torch.cat([x1, x2], axis=1)
        return self.conv(x)


class OutConv(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class AudioConv(nn.Module):
    """Audio path; `mode` picks the first layers (contract section 2):
    ave [32,16,16], hubert [32,32,32] (first 3x3 conv stride 2), wenet [256,16,32]
    (two residual blocks at 256 first, first 3x3 conv stride (1, 2)); Ultralight's own
    model ("Ultralight-Digital-Human's own model"): ul-hubert [16,32,32] (as hubert, but
    16 input channels), ul-wenet [128,16,32] (block 128 -> c3, a residual block at c3,
    then the (1, 2)-stride 3x3 conv at c3 -> c3). Output [c4,10,10]. Attribute names are
    Ultralight's AudioConvHubert / AudioConvWenet ones (conv1..conv7, bn3, bn5, relu)."""

    def __init__(self, mode, ch=CHANNELS):
        super().__init__()
        if mode == 'wenet':
            self.conv1 = InvertedResidual(ch[3], ch[3], 1, True)
            self.conv2 = InvertedResidual(ch[3], ch[3], 1, True)
            conv3_in, conv3_out, conv3_stride = ch[3], ch[3], (1, 2)
        elif mode == 'ul-wenet':
            # Ultralight writes ch[2] for the input channels, which is 128 only at the
            # default widths; the wenet features are 128 channels whatever the widths, so
            # the input stays 128 (narrow wenet models then still take real features).
            self.conv1 = InvertedResidual(AUDIO_SHAPES[mode][0], ch[3], 1, False)
            self.conv2 = InvertedResidual(ch[3], ch[3], 1, True)
            conv3_in, conv3_out, conv3_stride = ch[3], ch[3], (1, 2)
        else:
            # ave / hubert / ul-hubert: the input channels are the features' (32 or 16),
            # a constant in Ultralight's code too, not one of the widths.
            self.conv1 = InvertedResidual(AUDIO_SHAPES[mode][0], ch[1], 1, False)
            self.conv2 = InvertedResidual(ch[1], ch[2], 1, False)
            conv3_in, conv3_out = ch[2], ch[3]
            conv3_stride = (2, 2) if mode in ('hubert', 'ul-hubert') else 1
        self.conv3 = nn.Conv2d(conv3_in,
                               conv3_out,
                               kernel_size=3,
                               padding=1,
                               stride=conv3_stride)
        self.bn3 = nn.BatchNorm2d(conv3_out)
        self.conv4 = InvertedResidual(ch[3], ch[3], 1, True)
        self.conv5 = nn.Conv2d(ch[3], ch[4], kernel_size=3, padding=3, stride=2)
        self.bn5 = nn.BatchNorm2d(ch[4])
        self.relu = nn.ReLU()
        self.conv6 = InvertedResidual(ch[4], ch[4], 1, True)
        self.conv7 = InvertedResidual(ch[4], ch[4], 1, True)

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.conv4(x)
        x = self.relu(self.bn5(self.conv5(x)))
        x = self.conv6(x)
        x = self.conv7(x)
        return x


# Per-mode audio input shape (without batch), contract section 2.
AUDIO_SHAPES = {
    'ave': (32, 16, 16),
    'hubert': (32, 32, 32),
    'wenet': (256, 16, 32),
    # Ultralight-Digital-Human's own model: a window of 8 blocks reinterpreted row-major.
    'ul-hubert': (16, 32, 32),
    'ul-wenet': (128, 16, 32),
}

# Ultralight's own model exists only at S = 160.
ULTRALIGHT_MODES = ('ul-hubert', 'ul-wenet')


class Generator(nn.Module):
    """The U-Net generator. size 320: SyncTalk_2D "328" model (5 down levels);
    size 160: Ultralight (4 down levels). Both reach a 10x10 deepest map.

    mode ul-hubert / ul-wenet with size 160 is Ultralight-Digital-Human's own `Model`
    (unet.py): same module tree and parameter names, so its state dicts load unchanged.
    `widths` are the five channel widths c0..c4 (Ultralight suggests (16, 32, 64, 128, 256)
    for weak devices). ave and hubert take any widths too (their audio input channels are
    the features' 32, whatever c0 is: the demo's small model, tools/train_demo.py, is a
    narrow ave generator); wenet takes only the default widths, because its audio input
    channels are tied to c3."""

    def __init__(self, size=320, mode='ave', n_channels=6, widths=CHANNELS):
        super().__init__()
        if size not in (160, 320):
            raise ValueError(f'generator size must be 160 or 320, got {size}')
        if mode not in AUDIO_SHAPES:
            raise ValueError(f'unknown audio mode {mode!r}')
        if mode in ULTRALIGHT_MODES and size != 160:
            raise ValueError(f'{mode} exists only at size 160')
        widths = tuple(int(c) for c in widths)
        if len(widths) != 5 or any(c < 2 or c % 2 for c in widths):
            raise ValueError(f'widths must be five even channel counts, got {widths}')
        if mode == 'wenet' and widths != CHANNELS:
            raise ValueError(f'mode {mode} takes only the widths {CHANNELS}')
        ch = widths
        self.size = size
        self.mode = mode
        self.widths = widths
        self.audio_model = AudioConv(mode, ch)
        self.fuse_conv = nn.Sequential(DoubleConvDW(ch[4] * 2, ch[4], stride=1),
                                       DoubleConvDW(ch[4], ch[3], stride=1))
        self.inc = InConvDw(n_channels, ch[0])
        if size == 320:
            self.down1 = Down(ch[0], ch[0])
            self.down2 = Down(ch[0], ch[1])
            self.down3 = Down(ch[1], ch[2])
            self.down4 = Down(ch[2], ch[3])
            self.down5 = Down(ch[3], ch[4])
            self.up1 = Up(ch[4], ch[3] // 2)
            self.up2 = Up(ch[3], ch[2] // 2)
            self.up3 = Up(ch[2], ch[1] // 2)
            self.up4 = Up(ch[1], ch[0])
            self.up5 = Up(ch[1], ch[0] // 2)
            self.outc = OutConv(ch[0] // 2, 3)
        else:
            self.down1 = Down(ch[0], ch[1])
            self.down2 = Down(ch[1], ch[2])
            self.down3 = Down(ch[2], ch[3])
            self.down4 = Down(ch[3], ch[4])
            self.up1 = Up(ch[4], ch[3] // 2)
            self.up2 = Up(ch[3], ch[2] // 2)
            self.up3 = Up(ch[2], ch[1] // 2)
            self.up4 = Up(ch[1], ch[0])
            self.outc = OutConv(ch[0], 3)

    def logits(self, x, audio_feat):
        """Everything up to (not including) the final sigmoid."""
        skips = [self.inc(x)]
        downs = [self.down1, self.down2, self.down3, self.down4]
        if self.size == 320:
            downs.append(self.down5)
        for down in downs:
            skips.append(down(skips[-1]))
        deepest = torch.cat([skips.pop(), self.audio_model(audio_feat)], axis=1)
        x = self.fuse_conv(deepest)
        ups = [self.up1, self.up2, self.up3, self.up4]
        if self.size == 320:
            ups.append(self.up5)
        for up in ups:
            x = up(x, skips.pop())
        return self.outc(x)

    def forward(self, x, audio_feat):
        return torch.sigmoid(self.logits(x, audio_feat))


class EncoderConv(nn.Module):
    """Conv (with bias) + BatchNorm, optional residual add, then ReLU."""

    def __init__(self, cin, cout, kernel_size, stride, padding, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding),
            nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class AudioEncoder(nn.Module):
    """The ave audio encoder: mel window [B,1,80,16] -> [B,512] (contract section 4).

    `widths` are the channels of its five levels (default 32, 64, 128, 256, 512); the last
    1x1 conv always maps to 512, the feature size the generator's window needs, so a narrow
    encoder (the demo's) still feeds any ave generator."""

    def __init__(self, widths=CHANNELS):
        super().__init__()
        widths = tuple(int(c) for c in widths)
        if len(widths) != 5 or any(c < 1 for c in widths):
            raise ValueError(f'encoder widths must be five channel counts, got {widths}')
        e0, e1, e2, e3, e4 = widths
        self.widths = widths
        c = EncoderConv
        self.audio_encoder = nn.Sequential(
            c(1, e0, 3, 1, 1),
            c(e0, e0, 3, 1, 1, residual=True),
            c(e0, e0, 3, 1, 1, residual=True),
            c(e0, e1, 3, (3, 1), 1),
            c(e1, e1, 3, 1, 1, residual=True),
            c(e1, e1, 3, 1, 1, residual=True),
            c(e1, e2, 3, 3, 1),
            c(e2, e2, 3, 1, 1, residual=True),
            c(e2, e2, 3, 1, 1, residual=True),
            c(e2, e3, 3, (3, 2), 1),
            c(e3, e3, 3, 1, 1, residual=True),
            c(e3, e4, 3, 1, 0),
            c(e4, 512, 1, 1, 0),
        )

    def forward(self, x):
        out = self.audio_encoder(x)
        return out.squeeze(2).squeeze(2)


def count_parameters(model):
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())
