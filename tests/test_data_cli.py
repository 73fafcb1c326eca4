"""`python -m disviz data ...` handlers."""

from __future__ import annotations

import numpy as np
from PIL import Image

from disviz.cli import main


def test_data_list_and_info(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "dsprites" in out and "shapes3d" in out and "correlation=0.9" in out
    assert main(["data", "info", "dsprites"]) == 0
    out = capsys.readouterr().out
    assert "737,280 images" in out and "orientation   40" in out
    assert main(["data", "info", "correlated_dsprites", "--data-option", "correlation=0.3"]) == 0
    assert "correlation=0.3" in capsys.readouterr().out


def test_data_render_writes_a_grid(tmp_path):
    out = tmp_path / "g.png"
    assert main(["data", "render", "dsprites", "--out", str(out), "--n", "9"]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (3 * 66 + 2, 3 * 66 + 2, 3)
    assert 0 < (img[2:66, 2:66] > 0).mean() < 0.3  # a sprite on black


def test_data_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.delenv("DISVIZ_DATA", raising=False)
    assert main(["data", "info", "correlated_dsprites", "--data-option", "nope=1"]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert main(["data", "info", "mpi3d"]) == 2
    assert "needs a real file" in capsys.readouterr().err
    assert main(["data", "build", "shapes3d"]) == 2
