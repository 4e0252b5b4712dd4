"""The analysis CLI configs."""

from norm_nerf.analysis.run import FreqConfig, NtkConfig


def test_method_lists_take_commas_and_spaces() -> None:
    assert NtkConfig(methods=("relu,pe+cn", "siren")).methods == ("relu", "pe+cn", "siren")
    assert FreqConfig(methods=("pe", "pe+cn,")).methods == ("pe", "pe+cn")
