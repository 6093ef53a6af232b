"""The Wav2Lip generator (Prajwal et al., "A Lip Sync Expert Is All You Need", ACM MM 2020) in torch.

Written from the published architecture so that the official checkpoints
(``wav2lip.pth``, ``wav2lip_gan.pth``) load into it unchanged: a state_dict
saved from ``Wav2Lip()`` has the official key names and shapes (the official
files prefix every key with ``module.``, from ``nn.DataParallel``, and keep the
weights under ``"state_dict"``; :func:`load_state_dict_file` accepts both that
and a bare state_dict).

Inputs and outputs, per video frame (batch ``B``):

- ``audio``: ``(B, 1, 80, 16)``, a window of 16 frames of an 80-bin mel
  spectrogram (0.2 s at 80 mel frames/s; see ``lipsync_audio``);
- ``face``: ``(B, 6, 96, 96)`` in [0, 1], BGR channel order (the model was
  trained on OpenCV frames): channels 0-2 the face crop with its lower half
  zeroed, channels 3-5 the unmasked reference crop;
- output: ``(B, 3, 96, 96)`` in [0, 1] (sigmoid), BGR.

Architecture: a face encoder of 7 blocks (96 -> 48 -> 24 -> 12 -> 6 -> 3 -> 1,
conv + BatchNorm + ReLU units, most with residual connections), an audio
encoder down to a 512-d embedding (80x16 -> 27x16 -> 9x6 -> 3x3 -> 1x1), and a
face decoder of transposed convolutions that starts from the audio embedding
and concatenates the matching face-encoder feature map after every block
(U-Net skips), then an output block ending in a sigmoid.

``base_channels`` scales every width (16 = the official model, 36.3 M
parameters; 4 = a 16x smaller model with the same key names, for tests and
CPU benchmarks). :func:`checkpoint_base_channels` reads it back from a
state_dict, so the adapter loads tiny and official checkpoints alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

OFFICIAL_BASE_CHANNELS = 16
TINY_BASE_CHANNELS = 4
IMG_SIZE = 96
MEL_BINS = 80
MEL_STEP = 16
# The key whose shape gives the width of a checkpoint: (base, 6, 7, 7).
WIDTH_KEY = "face_encoder_blocks.0.0.conv_block.0.weight"


class Conv2d(nn.Module):
    """Conv + BatchNorm (+ the input, when residual) + ReLU. Keys: ``conv_block.0`` conv, ``conv_block.1`` BN."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    """Transposed conv + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, output_padding=0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _res(channels: int) -> Conv2d:
    return Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, residual=True)


class Wav2Lip(nn.Module):
    """The Wav2Lip generator. ``base_channels=16`` is the official model."""

    def __init__(self, base_channels: int = OFFICIAL_BASE_CHANNELS):
        super().__init__()
        if base_channels < 1:
            raise ValueError(f"base_channels must be positive, got {base_channels}")
        self.base_channels = b = int(base_channels)
        c1, c2, c4, c8, c16, c32 = b, 2 * b, 4 * b, 8 * b, 16 * b, 32 * b  # 16 32 64 128 256 512

        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(6, c1, kernel_size=7, stride=1, padding=3)),  # 96x96
            nn.Sequential(Conv2d(c1, c2, kernel_size=3, stride=2, padding=1), _res(c2), _res(c2)),  # 48x48
            nn.Sequential(Conv2d(c2, c4, kernel_size=3, stride=2, padding=1), _res(c4), _res(c4), _res(c4)),  # 24
            nn.Sequential(Conv2d(c4, c8, kernel_size=3, stride=2, padding=1), _res(c8), _res(c8)),  # 12x12
            nn.Sequential(Conv2d(c8, c16, kernel_size=3, stride=2, padding=1), _res(c16), _res(c16)),  # 6x6
            nn.Sequential(Conv2d(c16, c32, kernel_size=3, stride=2, padding=1), _res(c32)),  # 3x3
            nn.Sequential(Conv2d(c32, c32, kernel_size=3, stride=1, padding=0),  # 1x1
                          Conv2d(c32, c32, kernel_size=1, stride=1, padding=0)),
        ])

        self.audio_encoder = nn.Sequential(
            Conv2d(1, c2, kernel_size=3, stride=1, padding=1), _res(c2), _res(c2),  # 80x16
            Conv2d(c2, c4, kernel_size=3, stride=(3, 1), padding=1), _res(c4), _res(c4),  # 27x16
            Conv2d(c4, c8, kernel_size=3, stride=3, padding=1), _res(c8), _res(c8),  # 9x6
            Conv2d(c8, c16, kernel_size=3, stride=(3, 2), padding=1), _res(c16),  # 3x3
            Conv2d(c16, c32, kernel_size=3, stride=1, padding=0),  # 1x1
            Conv2d(c32, c32, kernel_size=1, stride=1, padding=0),
        )

        c24 = 24 * b  # 384
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(Conv2d(c32, c32, kernel_size=1, stride=1, padding=0)),  # 1x1
            nn.Sequential(Conv2dTranspose(2 * c32, c32, kernel_size=3, stride=1, padding=0), _res(c32)),  # 3x3
            nn.Sequential(Conv2dTranspose(2 * c32, c32, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(c32), _res(c32)),  # 6x6
            nn.Sequential(Conv2dTranspose(c32 + c16, c24, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(c24), _res(c24)),  # 12x12
            nn.Sequential(Conv2dTranspose(c24 + c8, c16, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(c16), _res(c16)),  # 24x24
            nn.Sequential(Conv2dTranspose(c16 + c4, c8, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(c8), _res(c8)),  # 48x48
            nn.Sequential(Conv2dTranspose(c8 + c2, c4, kernel_size=3, stride=2, padding=1, output_padding=1),
                          _res(c4), _res(c4)),  # 96x96
        ])

        self.output_block = nn.Sequential(
            Conv2d(c4 + c1, c2, kernel_size=3, stride=1, padding=1),
            nn.Conv2d(c2, 3, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        """``audio (B, 1, 80, 16)``, ``face (B, 6, 96, 96)`` -> ``(B, 3, 96, 96)``.

        Also accepts the training layout ``audio (B, T, 1, 80, 16)``, ``face (B, 6, T, 96, 96)`` and then
        returns ``(B, 3, T, 96, 96)``.
        """
        batch = audio_sequences.size(0)
        sequences = face_sequences.dim() > 4
        if sequences:
            steps = face_sequences.size(2)
            audio_sequences = torch.cat([audio_sequences[:, i] for i in range(audio_sequences.size(1))], dim=0)
            face_sequences = torch.cat([face_sequences[:, :, i] for i in range(steps)], dim=0)

        feats = []
        x = face_sequences
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)

        x = self.audio_encoder(audio_sequences)  # (B, 512, 1, 1)
        for block in self.face_decoder_blocks:
            x = block(x)
            x = torch.cat((x, feats.pop()), dim=1)

        x = self.output_block(x)
        if sequences:
            x = torch.stack(torch.split(x, batch, dim=0), dim=2)
        return x


# ---------------------------------------------------------------------- checkpoints


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Keys without the ``module.`` prefix ``nn.DataParallel`` adds (official checkpoints have it)."""
    return {(key.removeprefix("module.")): value for key, value in state_dict.items()}


def extract_state_dict(checkpoint: Any) -> dict[str, Any]:
    """The generator's state_dict from a loaded checkpoint: ``{"state_dict": ...}`` (official) or bare."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(k, str) for k in checkpoint):
        raise ValueError("not a Wav2Lip checkpoint: expected a state_dict or {'state_dict': ...}")
    return strip_module_prefix(checkpoint)


def checkpoint_base_channels(state_dict: Mapping[str, Any]) -> int:
    """The ``base_channels`` a (prefix-stripped) state_dict was saved with (16 for the official files)."""
    weight = state_dict.get(WIDTH_KEY)
    if weight is None:
        if any(key.startswith(("conv1_1.", "fc6.")) for key in state_dict):
            raise ValueError("this is an S3FD face detector checkpoint, not a Wav2Lip generator")
        if any(key.startswith(("face_encoder.", "audio_encoder.")) for key in state_dict) and \
                not any(key.startswith("face_decoder_blocks.") for key in state_dict):
            raise ValueError("this looks like the SyncNet expert discriminator (lipsync_expert.pth), "
                             "not the Wav2Lip generator: use wav2lip.pth or wav2lip_gan.pth")
        if any(key.startswith("face_encoder_blocks.") for key in state_dict) and \
                not any(key.startswith("face_decoder_blocks.") for key in state_dict):
            raise ValueError("this looks like the visual quality discriminator (visual_quality_disc.pth), "
                             "not the Wav2Lip generator: use wav2lip.pth or wav2lip_gan.pth")
        raise ValueError(f"not a Wav2Lip generator checkpoint: no {WIDTH_KEY!r} key")
    shape = tuple(weight.shape)
    if len(shape) != 4 or shape[1:] != (6, 7, 7):
        raise ValueError(f"not a Wav2Lip generator checkpoint: {WIDTH_KEY} has shape {shape}, expected (C, 6, 7, 7)")
    return int(shape[0])


def load_state_dict_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only=True``: tensors and plain containers, no code)."""
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read {str(path)!r} as a torch checkpoint of tensors: {error}") from error
    return extract_state_dict(checkpoint)


def model_from_state_dict(state_dict: Mapping[str, Any]) -> Wav2Lip:
    """A ``Wav2Lip`` of the checkpoint's width with its weights loaded (strict), in eval mode, on the CPU."""
    state_dict = strip_module_prefix(state_dict)
    model = Wav2Lip(checkpoint_base_channels(state_dict))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the checkpoint does not match the Wav2Lip generator architecture: {error}") from error
    return model.eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------- random checkpoints


def build_random_model(seed: int = 0, base_channels: int = TINY_BASE_CHANNELS, *, calibrate: bool = True) -> Wav2Lip:
    """A randomly initialised generator (deterministic for ``seed``) in eval mode.

    With ``calibrate``, BatchNorm running statistics are estimated on a few
    random batches, so activations stay in range and the output is a varied
    picture rather than a saturated one; the cost of the forward pass does not
    depend on it.
    """
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        model = Wav2Lip(base_channels)
        if calibrate:
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.momentum = None  # cumulative average over the calibration batches
            model.train()
            with torch.no_grad():
                for _ in range(3):
                    model(torch.randn(4, 1, MEL_BINS, MEL_STEP), torch.rand(4, 6, IMG_SIZE, IMG_SIZE))
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = 0.1
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def save_random_checkpoint(path: str | Path, seed: int = 0, *, base_channels: int = TINY_BASE_CHANNELS) -> Path:
    """Write a random-weight generator in the official checkpoint layout and return ``path``.

    ``{"state_dict": {"module.<key>": tensor}, "global_step": 0, "global_epoch": 0}``,
    as the official training script saves it, so the adapter's loader is
    exercised exactly as with ``wav2lip.pth``. ``base_channels=16`` gives the
    official shapes (about 145 MB); the default 4 is about 9 MB.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_random_model(seed, base_channels)
    state = {f"module.{key}": value.detach().clone() for key, value in model.state_dict().items()}
    temp = path.with_name(path.name + ".partial")
    torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, str(temp))
    temp.replace(path)
    return path
