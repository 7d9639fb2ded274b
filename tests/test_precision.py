"""train.precision = "bf16": networks under bfloat16 autocast, the maths in float32, for every model."""

import pytest
import torch

from conftest import tiny_settings
from vaekit.config import TrainConfig
from vaekit.distributions import DiagonalGaussian
from vaekit.errors import ConfigError
from vaekit.models import MODELS, Batch, build_model, model_config
from vaekit.precision import full_precision
from vaekit.train import Trainer

SHAPE = (1, 16, 16)


def _loss_terms(model, batch, phase, bf16):
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model.loss(batch, 0, phase)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_term_is_float32_and_near_the_fp32_value_under_bf16_autocast(name):
    """Without full_precision at the maths' entry, likelihood and KL sums come out in bfloat16."""
    torch.manual_seed(0)
    model = build_model(name, model_config(name, tiny_settings(name)), SHAPE)
    batch = Batch(torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(0)), torch.arange(6) % 3)
    for phase in range(len(model.update_phases())):
        full, mixed = _loss_terms(model, batch, phase, False), _loss_terms(model, batch, phase, True)
        assert set(full) == set(mixed)
        for k, v in mixed.items():
            assert v.dtype == torch.float32, (k, v.dtype)
            assert float(v.detach()) == pytest.approx(float(full[k].detach()), rel=0.02, abs=0.05), k


def test_full_precision_raises_half_floats_only():
    assert full_precision(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert full_precision(torch.ones(2, dtype=torch.float16)).dtype == torch.float32
    assert full_precision(torch.ones(2, dtype=torch.float64)).dtype == torch.float64
    q = DiagonalGaussian(torch.zeros(2, 3, dtype=torch.bfloat16), torch.zeros(2, 3, dtype=torch.bfloat16))
    assert q.kl().dtype == torch.float32


def test_a_bf16_run_follows_the_fp32_run_with_float32_weights(tiny_data):
    finals = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        settings = {**tiny_settings("btcvae"), "dataset_size": len(tiny_data)}
        model = build_model("btcvae", model_config("btcvae", settings), tiny_data.image_shape)
        cfg = TrainConfig(steps=40, batch_size=32, lr=3e-3, log_every=10, eval_every=0, checkpoint_every=1000,
                          precision=precision)
        trainer = Trainer(model, tiny_data, cfg, progress=False)
        first = float(model.loss(trainer.batch_at(0))["loss"].detach())
        finals[precision] = trainer.fit()["loss"]
        assert finals[precision] < 0.9 * first
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert finals["bf16"] == pytest.approx(finals["fp32"], rel=0.05)


def test_unknown_precision_is_refused_by_name():
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize("line, has", [
    ("flags\t\t: fpu sse2 avx2 avx512f avx512bw amx_bf16 amx_tile", True),  # Intel Sapphire Rapids
    ("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16", True),  # AMD Zen 4
    ("flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni", False),  # Ice Lake: bf16 emulated
    ("Features\t: fp asimd sve bf16 i8mm", True),  # Arm v8.6 (Graviton 3)
    ("Features\t: fp asimd crc32", False),
])
def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_bf16(tmp_path, line, has):
    from vaekit.precision import cpu_has_bf16_matrix_units

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\n{line}\n\nprocessor\t: 1\n{line}\n")
    assert cpu_has_bf16_matrix_units(str(info)) is has
    assert cpu_has_bf16_matrix_units(str(tmp_path / "missing")) is False


def test_auto_precision_resolves_to_what_the_trainer_runs_in():
    from vaekit.precision import cpu_has_bf16_matrix_units, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_bf16_matrix_units() else "fp32")
