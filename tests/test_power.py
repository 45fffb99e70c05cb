"""measure/analysis/power.py: exact McNemar power by enumeration, checked against statsmodels' test itself,
a closed form and a seeded simulation; the planner on the paper's stage ablation; `measure plan`."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom
from statsmodels.stats.contingency_tables import mcnemar

from measure.analysis.power import mcnemar_power, min_detectable_rise, questions_needed, rejection_thresholds
from measure.cli import main


def _rejects(b: int, c: int, alpha: float) -> bool:
    """The toolkit's own test (measure.analysis.paired_stats): statsmodels' exact McNemar, and a rise."""
    return b + c > 0 and c > b and mcnemar([[0, b], [c, 0]], exact=True).pvalue < alpha


@pytest.mark.parametrize("alpha", [0.05, 0.05 / 12])
def test_rejection_region_is_statsmodels_exact_mcnemar(alpha):
    cstar = rejection_thresholds(40, alpha)
    for d in range(41):
        for c in range(d + 1):
            assert (c >= cstar[d]) == _rejects(d - c, c, alpha), (d, c)


def test_power_with_no_way_down_has_a_closed_form():
    """down = 0: every discordant question moved up, so c = d and the test rejects iff 2 / 2**d < alpha,
    i.e. d >= 6 at alpha 0.05: power = P(Bin(n, up) >= 6)."""
    for n in (50, 200, 315):
        assert mcnemar_power(n, 0.025, 0.0, 0.05) == pytest.approx(binom.sf(5, n, 0.025), rel=1e-12)


def test_power_matches_a_seeded_simulation_of_the_real_test():
    """20000 simulated comparisons through statsmodels' test; the enumeration must sit within 4 binomial
    standard errors of the simulated rejection rate (sd <= 0.0036 here)."""
    rng = np.random.default_rng(0)
    n, up, down, alpha, trials = 60, 0.12, 0.03, 0.05, 20000
    moves = rng.multinomial(n, [down, up, 1 - up - down], size=trials)   # (b, c, unchanged) per trial
    hits = sum(_rejects(int(b), int(c), alpha) for b, c, _ in moves)
    exact = mcnemar_power(n, up, down, alpha)
    assert abs(hits / trials - exact) <= 4 * math.sqrt(exact * (1 - exact) / trials)
    assert 0.2 < exact < 0.9   # a regime where the check has teeth


def test_min_detectable_rise_is_the_threshold_of_power():
    rise = min_detectable_rise(144, 0.01, 0.05 / 12)
    assert mcnemar_power(144, rise + 0.01, 0.01, 0.05 / 12) >= 0.8
    assert mcnemar_power(144, rise + 0.01 - 0.002, 0.01, 0.05 / 12) < 0.8
    assert min_detectable_rise(3, 0.0, 0.05) is None      # 3 questions can never reach p < 0.05 (2/8 = 0.25)


def test_the_papers_stage_ablation_needs_315_questions_not_200():
    """Alignment Tax paper, Mistral-7B chain: SCR 1.5% -> 4.0% on 200 TruthfulQA questions. Even if no
    question left the single-cluster set, 200 questions detect it with power 0.38; 315 reach 0.8."""
    n = questions_needed(0.015, 0.04)
    assert n == 315
    assert all(mcnemar_power(m, 0.025, 0.0, 0.05) >= 0.8 for m in range(n, n + 16))
    assert mcnemar_power(n - 1, 0.025, 0.0, 0.05) < 0.8
    assert mcnemar_power(200, 0.025, 0.0, 0.05) == pytest.approx(0.384, abs=0.001)
    assert questions_needed(0.015, 0.04, down=0.01) > n   # questions leaving the set cost power


def test_measure_plan_cli(capsys):
    main(["plan", "scr_from=0.015", "scr_to=0.04"])
    out = capsys.readouterr().out
    assert "questions needed for power 0.8: 315" in out and "power with 200 questions: 0.384" in out
    for argv, message in ((["plan", "scr_from=0.04", "scr_to=0.015"], "scr_from < scr_to"),
                          (["plan", "scr_from=0.015"], "missing scr_to"),
                          (["plan", "scr_from=0.015", "scr_to=0.04", "alpha=0"], "alpha: must be strictly between")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and message in capsys.readouterr().err
