"""The standing corpus of hostile but realistic inputs (issue 15): every case must end in a clear
one-line error (or work correctly), within bounded memory, with no file changed or lost.

Each numbered block is one case of the issue; the Hypothesis tests generate more of the same kinds
(corrupt cards, annealing JSON, optimiser metadata, uploads). This is the regression suite for every
later change: add a case here when a new kind of bad input is found.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disviz.checkpoints import checkpoint_lock, load_checkpoint, read_card, scan_checkpoints
from disviz.diagnostics.annealing import AnnealConfig, AnnealingResultError, load_annealing_result, run_annealing
from disviz.errors import CheckpointError, UserError
from disviz.limits import LimitError, check_batch, check_images
from disviz.uploads import UploadError, load_upload

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "dsprites" / "betavae"
ANNEAL = ROOT / "checkpoints" / "annealing"
PEAK_RSS_LIMIT_MB = 1500  # a refused request must not grow the process
# derandomize: the same generated cases on every run, so CI cannot flake; new cases are added by
# changing the strategies (a random search found the empty-tie-group case below once; it is now fixed)
HYPO = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def folder_digest(path: Path) -> dict[str, str]:
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def cli(*args: str, timeout: float = 120) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS of the child in MB) of ``python -m disviz ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-m", "disviz", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux; max over all children so far
    return proc.returncode, proc.stderr, max(peak, before) / 1024


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return lines[-1]


@pytest.fixture()
def shipped_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "betavae"
    shutil.copytree(SHIPPED, dst)
    return dst


# --- 1. memory limits ------------------------------------------------------------------------------
def test_1_huge_batch_and_image_counts_are_refused_before_allocation(tmp_path):
    code, err, peak = cli("train", "--model", "betavae", "--dataset", "dsprites", "--batch-size", "1000000",
                          "--steps", "5", "--out", str(tmp_path / "x"))  # fmt: skip
    assert code == 2 and "--batch-size 1,000,000 is above the maximum 65,536" in one_line_error(err)
    assert peak < PEAK_RSS_LIMIT_MB and not (tmp_path / "x").exists()
    code, err, _ = cli("data", "render", "dsprites", "--n", "100000000", "--out", str(tmp_path / "g.png"))
    assert code == 2 and "--n 100,000,000 is above the maximum" in one_line_error(err)
    assert not (tmp_path / "g.png").exists()
    with pytest.raises(LimitError, match="memory budget"):
        os.environ["DISVIZ_MEMORY_LIMIT_GB"] = "0.01"
        try:
            check_batch(64)
        finally:
            del os.environ["DISVIZ_MEMORY_LIMIT_GB"]
    with pytest.raises(LimitError, match="larger than the dataset"):
        check_batch(100, dataset_size=50)
    with pytest.raises(LimitError, match="positive integer"):
        check_images(0)


# --- 2. hostile card.json ----------------------------------------------------------------------------
def test_2_hostile_config_is_refused_before_the_model_is_built(shipped_copy):
    card = json.loads((shipped_copy / "card.json").read_text())
    card["config"]["hidden"] = 2_000_000_000
    (shipped_copy / "card.json").write_text(json.dumps(card))
    before = folder_digest(shipped_copy)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="parameters"):
        load_checkpoint(shipped_copy)
    assert time.perf_counter() - t0 < 10 and folder_digest(shipped_copy) == before
    card["config"]["hidden"] = 300  # plausible but wrong: the error names tensor, both shapes and file
    (shipped_copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor '.*' has shape \(.*\) but .* expects \(.*\)"):
        load_checkpoint(shipped_copy)


def test_2_hostile_card_from_the_cli_is_one_line(shipped_copy):
    card = json.loads((shipped_copy / "card.json").read_text())
    card["config"]["hidden"] = 500_000
    (shipped_copy / "card.json").write_text(json.dumps(card))
    code, err, peak = cli("evaluate", str(shipped_copy), "--n", "100", "--no-store")
    assert code == 2 and "parameters" in one_line_error(err) and peak < PEAK_RSS_LIMIT_MB


# --- 3. stale metrics ------------------------------------------------------------------------------
def test_3_evaluate_refuses_a_folder_being_trained_and_records_what_it_measured(shipped_copy):
    before = folder_digest(shipped_copy)
    with checkpoint_lock(shipped_copy, purpose="train"):
        code, err, _ = cli("evaluate", str(shipped_copy), "--n", "200", "--preset", "fast")
    assert code == 2 and "is locked by pid" in one_line_error(err)
    assert folder_digest(shipped_copy) == before
    code, err, _ = cli("evaluate", str(shipped_copy), "--n", "200", "--preset", "fast")
    assert code == 0, err
    measured = read_card(shipped_copy)["metrics"]["checkpoint"]
    assert measured["step"] == read_card(shipped_copy)["steps"]
    assert measured["weights_sha256"] == hashlib.sha256((shipped_copy / "model.safetensors").read_bytes()).hexdigest()


# --- 4. output paths -------------------------------------------------------------------------------
def test_4_bad_output_paths_fail_before_any_work(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    code, err, _ = cli("train", "--model", "betavae", "--dataset", "dsprites", "--steps", "5",
                       "--out", str(a_file / "run"))  # fmt: skip
    assert code == 2 and "is a file" in one_line_error(err)
    code, err, _ = cli("data", "render", "dsprites", "--n", "4", "--out", str(tmp_path / "g.txt"))
    assert code == 2 and ".png" in one_line_error(err)
    t0 = time.perf_counter()
    code, err, _ = cli("anneal", "--dataset", "dsprites", "--out", str(tmp_path))  # a folder
    assert code == 2 and "is a folder" in one_line_error(err) and time.perf_counter() - t0 < 60
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        code, err, _ = cli("train", "--model", "betavae", "--dataset", "dsprites", "--out", str(ro / "run"))
        assert code == 2 and "not writable" in one_line_error(err)
    assert a_file.read_text() == "keep me"


# --- 5. annealing options -----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf"])
def test_5_bad_learning_rates_are_refused(value):
    overrides = AnnealConfig.cast_overrides({"lr": value})
    with pytest.raises(UserError, match="lr=.* must be a finite number > 0"):
        run_annealing("dsprites", steps=10, bases=1, **overrides)


# --- 6. 16-bit PNG -------------------------------------------------------------------------------------
def test_6_sixteen_bit_png_is_scaled_not_clamped():
    from PIL import Image

    arr = np.zeros((64, 64), np.uint16)
    arr[:, 32:] = 65535
    arr[:, 16:32] = 20000  # 30 % grey
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    grey = load_upload(buf.getvalue(), channels=3)
    assert grey[0, 0, 0] == 0 and grey[0, 20, 0] == 20000 >> 8 and grey[0, 40, 0] == 255
    binary = load_upload(buf.getvalue(), channels=1)
    assert binary[0, 20, 0] == 0 and binary[0, 40, 0] == 255  # was all white before


@HYPO
@given(st.binary(max_size=2000))
def test_6_arbitrary_upload_bytes_give_an_image_or_a_clear_error(data):
    try:
        out = load_upload(data, channels=1)
    except UploadError as exc:
        assert str(exc)
    else:
        assert out.shape == (64, 64, 1) and out.dtype == np.uint8


# --- 7. annealing JSON -------------------------------------------------------------------------------
def _shipped_annealing() -> dict:
    files = sorted(ANNEAL.glob("*.json"))
    assert files, "no shipped annealing results"
    return json.loads(files[0].read_text())


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d["factors"][next(iter(d["factors"]))].__setitem__("ifps", ["abc"]),
        lambda d: d["runs"][0].__setitem__("beta", ["x"] * len(d["runs"][0]["beta"])),
        lambda d: d["runs"][0].__setitem__("kl", [None] * len(d["runs"][0]["kl"])),
        lambda d: d.__setitem__("threshold", float("nan")),
        lambda d: d.__setitem__("threshold", -1),
        lambda d: d.__setitem__("ordering_groups", "posX"),
        lambda d: d.__setitem__("ordering_groups", [[]]),  # found by Hypothesis: an empty tie group
    ],
)
def test_7_annealing_json_with_wrong_element_types(tmp_path, corrupt):
    data = _shipped_annealing()
    corrupt(data)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnealingResultError, match="re-run"):
        load_annealing_result(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@HYPO
@given(key=st.sampled_from(["threshold", "runs", "factors", "settings", "ordering_groups", "format_version"]),
       value=JSON_VALUES)  # fmt: skip
def test_7_generated_annealing_corruptions_load_or_fail_clearly(tmp_path, key, value):
    data = _shipped_annealing()
    data[key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    try:
        loaded = load_annealing_result(path)
    except AnnealingResultError as exc:
        assert "re-run" in str(exc)
    else:  # accepted: then the page's helpers must work on it
        from disviz.diagnostics.annealing_view import annealing_summary, annealing_view

        annealing_view(loaded)
        annealing_summary(loaded)


# --- 8. resume edge cases ----------------------------------------------------------------------------
@pytest.mark.parametrize("steps", ["abc", -100, 1.5, None, True])
def test_8_card_steps_must_be_a_count(shipped_copy, steps):
    card = json.loads((shipped_copy / "card.json").read_text())
    card["steps"] = steps
    (shipped_copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="'steps' must be a non-negative integer"):
        read_card(shipped_copy)


@HYPO
@given(key=st.sampled_from(["model", "config", "dataset", "steps", "format", "format_version"]), value=JSON_VALUES)
def test_8_generated_card_corruptions_fail_clearly_and_change_nothing(tmp_path, key, value):
    folder = tmp_path / f"ck{abs(hash((key, repr(value)))) % 10**9}"
    shutil.copytree(SHIPPED, folder)
    card = json.loads((folder / "card.json").read_text())
    card[key] = value
    (folder / "card.json").write_text(json.dumps(card))
    before = folder_digest(folder)
    try:
        load_checkpoint(folder)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
    assert folder_digest(folder) == before
    shutil.rmtree(folder)


@pytest.mark.parametrize(
    "meta",
    [{}, {"optimizers": "x"}, {"optimizers": [{}]}, {"optimizers": [{"param_groups": 3}]}, [], "text"],
)
def test_8_malformed_optimizer_json_is_a_clear_error(tmp_path, meta):
    import torch

    from disviz.checkpoints import load_optimizer_state

    (tmp_path / "optimizer.json").write_text(json.dumps(meta))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "optimizer.safetensors"))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(CheckpointError, match="--reset-optimizer|cannot resume"):
        load_optimizer_state(tmp_path, [opt])


def test_8_stale_temp_folders_are_cleaned_on_the_next_save(tmp_path):
    from disviz.checkpoints import save_checkpoint

    model, card = load_checkpoint(SHIPPED)
    target = tmp_path / "ck"
    save_checkpoint(target, model, card)
    stale = tmp_path / ".ck.tmp-99999-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    save_checkpoint(target, model, card)
    assert not stale.exists() and (target / "card.json").is_file()


# --- 9. folder scans --------------------------------------------------------------------------------
def test_9_scanning_a_huge_folder_is_bounded(tmp_path):
    for i in range(30):
        (tmp_path / f"d{i}" / "sub").mkdir(parents=True)
    found, complete = scan_checkpoints(tmp_path, max_folders=10)
    assert complete is False and found == []
    t0 = time.perf_counter()
    scan_checkpoints("/", time_limit_s=1.0)
    assert time.perf_counter() - t0 < 10
    (tmp_path / "d3" / "card.json").write_text("{}")
    assert scan_checkpoints(tmp_path) == ([(tmp_path / "d3").resolve()], True)
