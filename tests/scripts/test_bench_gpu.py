import os
import re
import subprocess
import sys
from pathlib import Path

import torch as th

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_gpu.py"


def test_bench_gpu_exits_cleanly_without_a_cuda_device():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no CUDA device: ")


def test_bench_gpu_quick_cpu_mode_measures_updates_and_checks_the_loss(capsys, load_script):
    module = load_script("bench_gpu")
    threads = th.get_num_threads()
    try:
        code = module.main(["--device", "cpu", "--quick", "--threads", str(threads)])
    finally:
        th.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"torch.set_num_threads({threads})" in out
    for agent in ("QDIQN", "CaRLPPO"):
        rate = re.search(rf"^{agent}\s+cpu\s+([0-9.]+)$", out, re.M)
        assert rate and float(rate.group(1)) > 0, out
        assert re.search(rf"^{agent} fixed-batch loss: cpu \S+\s+cpu \S+ .*-> agree$", out, re.M), out
    assert "FAILED" not in out


def test_bench_gpu_loss_check_sees_different_weights(load_script):
    """The check compares real losses: models whose weights differ give different losses."""
    module = load_script("bench_gpu")
    sizes = module.QUICK
    a, b = module.build_qdiqn("cpu", sizes, 0), module.build_qdiqn("cpu", sizes, 1)
    ref, other = module.loss_agreement("QDIQN", {"ref": a, "other": b})
    assert ref == other  # b took a's weights
    with th.no_grad():
        next(b.policy.parameters()).add_(0.5)
    gen = th.Generator().manual_seed(0)
    batch = a.replay_buffer.samples_at(list(range(sizes.qd_batch)), [0] * sizes.qd_batch)
    tau_next, taus = th.rand(sizes.qd_batch, 8, generator=gen), th.rand(sizes.qd_batch, 8, generator=gen)
    assert module.qdiqn_fixed_loss(a, batch, tau_next, taus) != module.qdiqn_fixed_loss(b, batch, tau_next, taus)
