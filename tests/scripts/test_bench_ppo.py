import re

import pytest


def test_bench_ppo_quick_prints_both_tables(capsys, load_script):
    module = load_script("bench_ppo")
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for row in ("SB3 PPO (MlpPolicy)", "CaRLPPO (Gaussian)", "CaRLPPO (BetaPolicy)", "16 "):
        line = next(line for line in out.splitlines() if line.startswith(f"| {row}"))
        rate = float(line.split("|")[2].replace(",", ""))
        assert rate > 0, line
    assert re.search(r"\| SB3 PPO \(MlpPolicy\) .*\| +1\.00x / 1\.00x \|", out)


@pytest.mark.parametrize("nets", [["64,x"], ["64,0"]])
def test_bench_ppo_rejects_bad_network(capsys, load_script, nets):
    module = load_script("bench_ppo")
    with pytest.raises(SystemExit):
        module.main(["--quick", "--e2e-nets", *nets])
    assert "--e2e-nets" in capsys.readouterr().err
