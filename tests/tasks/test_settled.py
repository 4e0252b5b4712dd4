"""Settled orderings: which "A beats B" a table can state while some cells are still rising."""

from norm_nerf.tasks.settled import settled_orderings, settled_text
from norm_nerf.tasks.table import markdown_table


def _cells() -> dict[str, dict]:
    return {
        "pe": {"psnr": 18.3, "converged": True, "gain_from_half_steps": -0.06},
        "siren": {"psnr": 18.8, "converged": True, "gain_from_half_steps": 0.0},
        "pe+cn": {"psnr": 24.1, "converged": False, "gain_from_half_steps": 0.56},
        "pe+gn": {"psnr": 31.4, "converged": False, "gain_from_half_steps": 8.2},
        "relu": {"psnr": 12.0, "converged": False, "gain_from_half_steps": 3.0},
    }


def test_only_orderings_over_converged_methods_are_settled() -> None:
    got = settled_orderings(_cells(), "psnr", 0.1)
    # siren and pe converged: every method above them is settled above them, best first
    assert got == {"pe": ["pe+gn", "pe+cn", "siren"], "siren": ["pe+gn", "pe+cn"]}
    # pe+gn > pe+cn: both still rising, so not settled; relu is below everything converged: nothing about it either
    assert "pe+cn" not in got and "relu" not in got


def test_seed_spread_and_a_falling_leader_unsettle() -> None:
    cells = _cells()
    cells["siren"]["psnr_std"] = 0.3
    cells["pe"]["psnr_std"] = 0.3  # 18.3 + 0.3 > 18.8 - 0.3: within the seed spread
    cells["pe+cn"]["gain_from_half_steps"] = -0.5  # lost 0.5 dB from more steps: may fall further
    got = settled_orderings(cells, "psnr", 0.1)
    assert got == {"pe": ["pe+gn"], "siren": ["pe+gn"]}
    assert settled_orderings({"a": {"psnr": None, "converged": True}, "b": {"psnr": 30.0}}, "psnr", 0.1) == {}
    # a converged method may still move by up to the threshold: a smaller lead over it is not settled
    near = {"b": {"psnr": 30.0, "converged": True}, "a": {"psnr": 30.08, "converged": True}}
    assert settled_orderings(near, "psnr", 0.1) == {}
    assert settled_orderings(near, "psnr", 0.05) == {"b": ["a"]}


def test_table_markdown_states_the_settled_orderings_and_gains() -> None:
    res = {"metric": "psnr", "nets": {"2x256": _cells()}}
    res["settled"] = {"2x256": settled_orderings(_cells(), "psnr", 0.1)}
    text = markdown_table(res)
    assert "gain from half the steps" in text and "| pe | 18.30 |" in text and "-0.06 |" in text
    assert "- 2x256: best converged `siren` (18.8); settled above it: `pe+gn`, `pe+cn`" in text
    assert settled_text({"2x256": {"pe+cn": _cells()["pe+cn"]}}, {"2x256": {}}, "psnr") == ""
