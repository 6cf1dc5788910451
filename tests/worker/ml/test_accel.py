"""The GPU trainer's fast path (worker.ml.accel) run on the CPU: the same code with a device and
a dtype as parameters. No GPU is needed (nor, on this machine, available): bfloat16 autocast and
channels-last exist on the CPU too, so every branch but the device itself runs here."""

from typing import Any

import pytest
import torch

from tests.ml_data import write_colour_samples
from worker.ml import TrainConfig
from worker.ml.accel import Accel, accel_for, infer, prepare_model, to_device, train_steps
from worker.ml.data import Normalize, make_loader
from worker.ml.factory import build_model

CPU = torch.device("cpu")
# resnet18: the GPU worker's architecture (ML_ARCH=auto picks it on CUDA), whose path this tests.
TINY: dict[str, Any] = {
    "arch": "resnet18",
    "image_size": 32,
    "batch_size": 8,
    "pretrained": False,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_colour_samples(tmp_path_factory.mktemp("colours"), per_class=8)


def tiny_model(accel: Accel) -> torch.nn.Module:
    torch.manual_seed(0)
    return prepare_model(build_model(TrainConfig(**TINY), 3).model, accel)


@pytest.mark.parametrize(
    "device, precision, bf16_there, expected",
    [
        ("cpu", "auto", False, (None, False)),
        ("cpu", "bf16", False, (torch.bfloat16, False)),
        ("cuda", "auto", True, (torch.bfloat16, True)),
        ("cuda", "auto", False, (None, True)),  # an older GPU: float32
        ("cuda", "fp32", True, (None, True)),
    ],
)
def test_the_precision_and_layout_follow_the_device(
    monkeypatch, device, precision, bf16_there, expected
):
    # Only the question put to the driver is answered here; no tensor goes to a GPU.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16_there)
    accel = accel_for(torch.device(device), precision)
    assert (accel.dtype, accel.channels_last) == expected
    with pytest.raises(ValueError, match="precision"):
        accel_for(torch.device(device), "fp16")


def test_channels_last_batches_and_model_share_the_layout():
    accel = Accel(CPU, None, channels_last=True)
    batch = to_device(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), accel)
    assert batch.dtype == torch.uint8 and batch.is_contiguous(memory_format=torch.channels_last)
    model = tiny_model(accel)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_runs_the_convolutions_in_bf16_and_keeps_weights_float32():
    accel = Accel(CPU, torch.bfloat16, channels_last=True)
    model = tiny_model(accel)
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    with accel.autocast():
        model(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize(
    "accel",
    [Accel(CPU), Accel(CPU, torch.bfloat16, True)],
    ids=["fp32", "bf16-channels-last"],
)
def test_training_steps_learn_and_inference_gives_float32_logits(samples, accel):
    config = TrainConfig(**TINY)
    model = tiny_model(accel)
    normalize = Normalize().to(accel.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = make_loader(samples, config, training=True, device=accel.device)
    losses = [
        loss for _ in range(4) for loss in train_steps(model, normalize, loader, optimizer, accel)
    ]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    logits = infer(
        model, normalize, make_loader(samples, config, training=False, device=accel.device), accel
    )
    assert logits.shape == (len(samples), 3) and logits.dtype == torch.float32


def test_bf16_inference_agrees_with_float32(samples):
    config = TrainConfig(**TINY)
    plain, fast = Accel(CPU), Accel(CPU, torch.bfloat16, True)
    model = tiny_model(plain)
    normalize = Normalize()
    reference = infer(
        model, normalize, make_loader(samples, config, training=False, device=CPU), plain
    )
    prepare_model(model, fast)
    mixed = infer(model, normalize, make_loader(samples, config, training=False, device=CPU), fast)
    agree = (mixed.argmax(1) == reference.argmax(1)).float().mean()
    assert agree >= 0.9 and torch.allclose(mixed, reference, atol=0.15, rtol=0.1)


def test_loader_workers_deliver_the_same_batches_as_the_training_process(samples):
    config = TrainConfig(**TINY)
    inline = list(make_loader(samples, config, training=False, device=CPU))
    config.num_workers = 2
    parallel = list(make_loader(samples, config, training=False, device=CPU))
    assert len(parallel) == len(inline)
    for (a, ta), (b, tb) in zip(inline, parallel, strict=True):
        assert torch.equal(a, b) and torch.equal(ta, tb)
