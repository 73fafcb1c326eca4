"""The standing corpus of hostile but realistic inputs (issue 15): every case must end in a clear
one-line error (or work correctly), within bounded memory, with no file changed or lost.

Each numbered block is one case of the issue; the Hypothesis tests generate more of the same kinds
(corrupt cards, annealing JSON, optimiser metadata, uploads). This is the regression suite for every
later change: add a case here when a new kind of bad input is found.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disviz.app.uploads import UploadError, load_upload
from disviz.core.errors import CheckpointError, UserError
from disviz.core.limits import LimitError, check_batch, check_images
from disviz.diagnostics.annealing import AnnealConfig, AnnealingResultError, load_annealing_result, run_annealing
from disviz.engine.card import read_card
from disviz.engine.checkpoints import load_checkpoint, scan_checkpoints
from disviz.engine.folders import checkpoint_lock

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
        from disviz.app.annealing_view import annealing_summary, annealing_view

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

    from disviz.engine.checkpoints import load_optimizer_state

    (tmp_path / "optimizer.json").write_text(json.dumps(meta))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "optimizer.safetensors"))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(CheckpointError, match="--reset-optimizer|cannot resume"):
        load_optimizer_state(tmp_path, [opt])


def test_8_stale_temp_folders_are_cleaned_on_the_next_save(tmp_path):
    from disviz.engine.checkpoints import save_checkpoint

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


# ===================================================================================================
# Issue 32: the second corpus. Six classes, several (generated) instances each: every case is one
# clear error line (a UserError, or exit code 2 + "error: ..." from the CLI), refused before anything
# large is allocated (CLI cases run under a 2 GB address-space limit, in-process file cases under a
# tracemalloc peak), and changes no file.
# ===================================================================================================
AS_LIMIT = 2 * 1024**3  # RLIMIT_AS of the CLI batch: each quoted case needed 2.5-22 GB before the fix
_BATCH = """
import contextlib, io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from disviz.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except BaseException as exc:  # a traceback would have been printed: report it as one
            import traceback
            rc, _ = 99, err.write("Traceback\\n" + traceback.format_exc())
    out.append([rc, err.getvalue()])
print(json.dumps(out))
"""


def cli_batch(cases: list[list[str]]) -> list[tuple[int, str]]:
    """(exit code, stderr) of ``python -m disviz ARGV`` for each case, all in one child process (one
    torch import) whose address space is limited to AS_LIMIT: a refusal that allocated first fails."""
    proc = subprocess.run(
        [sys.executable, "-c", _BATCH.format(limit=AS_LIMIT), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [(rc, err) for rc, err in json.loads(proc.stdout.strip().splitlines()[-1])]


def assert_one_line(rc: int, err: str, *fragments: str) -> str:
    assert rc == 2, (rc, err[-2000:])
    line = one_line_error(err)
    for f in fragments:
        assert f in line, (f, line)
    return line


Scenario = tuple[list[list[str]], Callable[[list[tuple[int, str]]], None]]
CLI_SCENARIOS: dict[str, Callable[[Path], Scenario]] = {}


def cli_scenario(prepare: Callable[[Path], Scenario]) -> Callable[[Path], Scenario]:
    """Register CLI cases (prepared in their own folder) for the one shared ``cli_batch`` run: one child
    process and one torch import for every CLI case of the corpus instead of one per test."""
    CLI_SCENARIOS[prepare.__name__] = prepare
    return prepare


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[[], None]]:
    """name -> a call that checks that scenario's results (each test asserts only its own)."""
    cases: list[list[str]] = []
    spans: dict[str, tuple[int, int, Callable[[list[tuple[int, str]]], None]]] = {}
    for name, prepare in CLI_SCENARIOS.items():
        argvs, check = prepare(tmp_path_factory.mktemp(name.strip("_")))
        spans[name] = (len(cases), len(cases) + len(argvs), check)
        cases += argvs
    results = cli_batch(cases)
    return {name: functools.partial(check, results[a:b]) for name, (a, b, check) in spans.items()}


@contextlib.contextmanager
def bounded_allocation(mb: float = 64):
    """Fail when the block allocates more than ``mb`` MB (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < mb * 1e6, f"allocated {peak / 1e6:.0f} MB before refusing"


# --- 32.1 data loss: weights without a disviz card are never replaced ------------------------------
FOREIGN = [
    {"model.safetensors": "weights"},
    {"model.safetensors": "weights", "optimizer.safetensors": "weights", "optimizer.json": b"{}"},
    {"optimizer.json": b'{"optimizers": []}'},
    {"model.safetensors": "weights", "card.json": b'{"format": "someone-else", "steps": 9}'},
    {"model.safetensors": "weights", "card.json": b"not json"},
]


def _foreign_folder(folder: Path, files: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = (SHIPPED / "model.safetensors").read_bytes() if content == "weights" else content
        (folder / name).write_bytes(data)  # type: ignore[arg-type]
    return folder


@pytest.mark.parametrize("files", FOREIGN, ids=lambda f: "+".join(sorted(f)))
@pytest.mark.parametrize("resume", [True, False])
def test_32_1_train_refuses_a_folder_with_weights_but_no_disviz_card(tmp_path, files, resume):
    from disviz.engine.train import TrainConfig, train

    folder = _foreign_folder(tmp_path / "run", files)
    before = folder_digest(folder)
    cfg = TrainConfig(model="betavae", dataset="dsprites", out=folder, steps=2, batch_size=4, resume=resume)
    with pytest.raises(CheckpointError, match=r"disviz did not write|no card\.json") as exc:
        train(cfg)
    msg = str(exc.value)
    assert "\n" not in msg and "move them elsewhere" in msg and "python -m disviz import" in msg
    assert folder_digest(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@HYPO
@given(names=st.sets(st.sampled_from(["model.safetensors", "optimizer.safetensors", "optimizer.json"]), min_size=1),
       junk=st.binary(max_size=64))  # fmt: skip
def test_32_1_generated_foreign_folders_are_never_written(tmp_path, names, junk):
    from disviz.engine.checkpoints import save_checkpoint

    folder = tmp_path / f"f{abs(hash((tuple(sorted(names)), junk))) % 10**9}"
    _foreign_folder(folder, dict.fromkeys(names, junk))
    before = folder_digest(folder)
    model, card = load_checkpoint(SHIPPED)
    with pytest.raises(CheckpointError, match="would replace files disviz did not write"):
        save_checkpoint(folder, model, card)  # the last line of defence, below train's own check
    assert folder_digest(folder) == before
    shutil.rmtree(folder)


@cli_scenario
def _foreign_outputs(tmp_path: Path) -> Scenario:
    folder = _foreign_folder(tmp_path / "run", FOREIGN[1])
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG not really")
    before = folder_digest(tmp_path)
    cases = [
        ["train", "--model", "betavae", "--dataset", "dsprites", "--steps", "3", "--resume", "--out", str(folder)],
        ["anneal", "--dataset", "dsprites", "--steps", "10", "--out", str(mine)],
        ["data", "render", "dsprites", "--n", "4", "--out", str(photo)],
    ]

    def check(results: list[tuple[int, str]]) -> None:
        (r1, e1), (r2, e2), (r3, e3) = results
        assert_one_line(r1, e1, "no card.json", "move them elsewhere")
        assert_one_line(r2, e2, "is not an annealing result", "only replaces files it wrote")
        assert_one_line(r3, e3, "is not a grid rendered by disviz")
        assert folder_digest(tmp_path) == before

    return cases, check


def test_32_1_cli_train_resume_on_foreign_weights_and_outputs_it_did_not_write(cli_runs):
    cli_runs["_foreign_outputs"]()


# --- 32.2 unbounded requests: one size rule, checked before allocation -----------------------------
@cli_scenario
def _huge_counts(tmp_path: Path) -> Scenario:
    shipped_copy = tmp_path / "betavae"
    shutil.copytree(SHIPPED, shipped_copy)
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\nout = "o"\nmodels = ["betavae"]\n[random]\nsamples = 100000000\n'
                    '[random.betavae]\nbeta = { dist = "uniform", low = 1.0, high = 8.0 }\n')  # fmt: skip
    before = folder_digest(tmp_path)
    cases = [
        ["evaluate", str(shipped_copy), "--n", "1000000000", "--no-store"],
        ["evaluate", str(shipped_copy), "--n", "1000001", "--no-store"],
        ["anneal", "--dataset", "dsprites", "--bases", "1000000000", "--out", str(tmp_path / "a.json")],
        ["anneal", "--dataset", "dsprites", "--bases", "9000", "--out", str(tmp_path / "a.json")],
        ["anneal", "--dataset", "dsprites", "--bases", "2", "--batch-size", "100000000", "--out", str(tmp_path / "a.json")],
        ["sweep", str(spec), "--dry-run"],
        ["data", "render", "shapes3d", "--n", "100001", "--out", str(tmp_path / "g.png")],
        ["bench", "metrics", "--n", "1000000000"],
    ]  # fmt: skip

    def check(results: list[tuple[int, str]]) -> None:
        (r0, e0), (r1, e1), (r2, e2), (r3, e3), (r4, e4), (r5, e5), (r6, e6), (r7, e7) = results
        assert_one_line(r0, e0, "--n 1,000,000,000 is above the maximum 1,000,000")
        assert_one_line(r1, e1, "--n 1,000,001 is above the maximum")
        assert_one_line(r2, e2, "--bases 1,000,000,000 is above the maximum")
        assert_one_line(r3, e3, "--bases 9,000", "at most 10,000 runs")
        assert_one_line(r4, e4, "--batch-size 100,000,000 is above the maximum")
        assert_one_line(r5, e5, "[random] samples 100,000,000 is above the maximum 10,000")
        assert_one_line(r6, e6, "--n 100,001 is above the maximum")
        assert_one_line(r7, e7, "--n 1,000,000,000")
        assert folder_digest(tmp_path) == before

    return cases, check


def test_32_2_huge_counts_from_the_cli_are_refused_within_2_gb(cli_runs, tmp_path):
    cli_runs["_huge_counts"]()
    big_json = tmp_path / "huge.json"
    with open(big_json, "wb") as f:  # 500 MB, sparse: costs no disk
        f.truncate(500_000_000)
    with bounded_allocation(), pytest.raises(AnnealingResultError, match="500.0 MB, above the maximum 64 MB"):
        load_annealing_result(big_json)


def test_32_2_the_memory_budget_names_itself_and_how_to_raise_it(monkeypatch, shipped_copy):
    from disviz.engine.evaluate import evaluate_checkpoint

    monkeypatch.setenv("DISVIZ_MEMORY_LIMIT_GB", "0.2")
    with pytest.raises(LimitError, match=r"--n 100,000 samples needs about 1\.2 GB, more than the memory budget "
                                         r"\(0\.2 GB: DISVIZ_MEMORY_LIMIT_GB=0\.2\).*raise the budget"):  # fmt: skip
        evaluate_checkpoint(shipped_copy, n=100_000, store=False)
    with pytest.raises(LimitError, match="--bases 40 bases .* more than the memory budget"):
        run_annealing("dsprites", steps=10, bases=40)


@HYPO
@given(n=st.integers(max_value=0) | st.integers(min_value=10**6 + 1, max_value=10**40)
       | st.floats(allow_nan=True) | st.text(max_size=3) | st.booleans())  # fmt: skip
def test_32_2_generated_counts_are_refused_by_every_entry_point(n):
    from disviz.engine.evaluate import check_eval_request
    from disviz.sweeps.common import SweepError
    from disviz.sweeps.spec import parse_spec

    with bounded_allocation(16):
        with pytest.raises(LimitError):
            check_eval_request(n, 0)
        with pytest.raises(UserError):
            run_annealing("dsprites", steps=10, bases=n)
        with pytest.raises(LimitError):
            check_images(n)
        with pytest.raises(SweepError):
            parse_spec({"name": "x", "models": ["ae"], "random": {"samples": n, "lr": {"dist": "uniform", "low": 1e-4,
                                                                                      "high": 1e-3}}})  # fmt: skip


# --- 32.3 dataset files that lie about their size ---------------------------------------------------
def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npy_bytes_of(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def _npz(path: Path, members: dict[str, bytes], stored: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for k, v in members.items():
            zf.writestr(f"{k}.npy", v)
    return path


def _load_refused(name: str, path: Path, match: str, **options: str) -> None:
    from disviz.core.errors import DatasetError
    from disviz.data import load_dataset

    before = folder_digest(path.parent)
    with bounded_allocation(), pytest.raises(DatasetError, match=match) as exc:
        load_dataset(name, path=str(path), **options)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
    assert folder_digest(path.parent) == before


@HYPO
@given(rows=st.integers(min_value=2, max_value=10**12), key=st.sampled_from(["latents_classes", "latents_values", "imgs"]),
       stored=st.booleans())  # fmt: skip
def test_32_3_generated_npz_headers_claiming_more_rows_than_stored(tmp_path, rows, key, stored):
    """The 606-byte .npz claiming 10¹¹ rows, and every other claim beyond what a member holds."""
    small = {"imgs": (np.zeros((1, 64, 64), np.uint8), (rows, 64, 64), "|u1"),
             "latents_classes": (np.zeros((1, 6), np.int64), (rows, 6), "<i8"),
             "latents_values": (np.zeros((1, 6)), (rows, 6), "<f8")}  # fmt: skip
    members = {k: _npy_bytes_of(a) for k, (a, _, _) in small.items()}
    arr, shape, dtype = small[key]
    members[key] = _npy_header(shape, dtype) + arr.tobytes()
    path = _npz(tmp_path / f"d{rows}{key}{stored}.npz", members, stored)
    _load_refused("dsprites", path, "the header claims .* but the file holds")
    path.unlink()


@pytest.mark.parametrize("key", ["latents_classes", "imgs"])
def test_32_3_npz_members_that_inflate_1000x_are_refused(tmp_path, key):
    rows = 1_000_000  # 48 MB of int64 zeros (imgs: 4 GB) deflate to ≈ 50 KB / 4 MB
    members = {"latents_classes": _npy_bytes_of(np.zeros((2, 6), np.int64)),
               "latents_values": _npy_bytes_of(np.zeros((2, 6)))}  # fmt: skip
    if key == "imgs":
        rows = 2_000  # 8 MB of zero images: the streamed member is checked too
        members["imgs"] = _npy_header((rows, 64, 64), "|u1") + bytes(rows * 4096)
    else:
        members[key] = _npy_header((rows, 6), "<i8") + bytes(rows * 48)
        members["imgs"] = _npy_bytes_of(np.zeros((2, 64, 64), np.uint8))
    path = _npz(tmp_path / "bomb.npz", members)
    _load_refused("dsprites", path, r"would inflate to .*×, above the 500×")


def test_32_3_stored_npz_mapped_beyond_the_file_and_compressed_mpi3d(tmp_path):
    imgs = np.zeros((4, 64, 64, 3), np.uint8)
    lie = _npy_header((460_800, 64, 64, 3), "|u1") + imgs.tobytes()  # claims 5.7 GB, holds 49 KB
    _load_refused("mpi3d", _npz(tmp_path / "mpi3d_toy.npz", {"images": lie}, stored=True), "the header claims")
    _load_refused("mpi3d", _npz(tmp_path / "mpi3d_b.npz", {"images": lie}), "the header claims")


@pytest.mark.parametrize("rows", [10**9, 10**6, 1000])
def test_32_3_h5_extents_never_written_are_refused(tmp_path, rows):
    import h5py

    path = tmp_path / "3dshapes.h5"
    with h5py.File(path, "w") as f:  # a few KB: chunks are allocated only when written
        f.create_dataset("images", shape=(rows, 64, 64, 3), dtype=np.uint8, chunks=(1, 64, 64, 3))
        f.create_dataset("labels", shape=(rows, 6), dtype=np.float64, chunks=(100, 6))
        f["labels"][:1] = 1.0  # one chunk written: still not the claimed extent
    _load_refused("shapes3d", path, "the header claims .* but the file holds")


def test_32_3_h5_compressed_beyond_any_real_inflation(tmp_path):
    import h5py

    path = tmp_path / "3dshapes.h5"
    with h5py.File(path, "w") as f:  # 4.9 MB of zeros in ≈ 5 KB
        f.create_dataset(
            "images", data=np.zeros((400, 64, 64, 3), np.uint8), compression="gzip", chunks=(400, 64, 64, 3)
        )
        f.create_dataset("labels", data=np.zeros((400, 6)), compression="gzip")
    _load_refused("shapes3d", path, r"would inflate to")


def test_32_3_smallnorb_headers_beyond_the_file(tmp_path):
    from disviz.core.errors import DatasetError
    from disviz.data import files

    head = np.array([0x1E3D4C55, 4, 24300, 2, 96, 96], "<i4").tobytes()  # dat: claims 448 MB
    (tmp_path / "m.mat").write_bytes(head + bytes(100))
    with bounded_allocation(), pytest.raises(DatasetError, match="claims 447,897,600 bytes but the file holds 100"):
        files.read_norb_matrix(tmp_path / "m.mat")
    (tmp_path / "m.mat.gz").write_bytes(gzip.compress(head + bytes(300_000)))
    with bounded_allocation(), pytest.raises(DatasetError, match="inflate"):
        files.read_norb_matrix(tmp_path / "m.mat.gz")


# --- 32.4 one error line, never a traceback ---------------------------------------------------------
BAD_SEEDS = ["-1", str(2**32), str(2**64), str(2**70), "-99999999999999999999999"]


@cli_scenario
def _edges(tmp_path: Path) -> Scenario:
    shipped_copy = tmp_path / "betavae"
    shutil.copytree(SHIPPED, shipped_copy)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    long_name = str(tmp_path / ("n" * 300))
    deep = str(tmp_path / "/".join(["d" * 200] * 25))
    seed_cases = []
    for seed in BAD_SEEDS:
        seed_cases += [
            ["train", "--model", "betavae", "--dataset", "dsprites", "--steps", "2", "--seed", seed,
             "--out", str(tmp_path / "r")],
            ["evaluate", str(shipped_copy), "--n", "100", "--seed", seed, "--no-store"],
            ["anneal", "--dataset", "dsprites", "--steps", "10", "--seed", seed, "--out", str(tmp_path / "a.json")],
            ["data", "render", "dsprites", "--n", "4", "--seed", seed, "--out", str(tmp_path / "g.png")],
        ]  # fmt: skip
    other = [
        ["train", "--model", "betavae", "--dataset", "dsprites", "--steps", "2", "--out", long_name],
        ["train", "--model", "betavae", "--dataset", "dsprites", "--steps", "2", "--out", deep],
        ["anneal", "--dataset", "dsprites", "--steps", "10", "--out", long_name + ".json"],
        ["data", "render", "dsprites", "--out", str(tmp_path / ("g" * 250 + ".png"))],
        ["evaluate", str(tmp_path / "missing")],
        ["evaluate", str(tmp_path / "file")],
        ["evaluate", str(tmp_path / "empty")],
        ["evaluate", long_name],  # input paths too: no stat() of them may raise ENAMETOOLONG
        ["evaluate", deep],
        ["sweep", long_name + ".toml", "--dry-run"],
        ["data", "info", "dsprites", "--data-path", long_name + ".npz"],
    ]
    before_ck, before = folder_digest(shipped_copy), sorted(p.name for p in tmp_path.iterdir())

    def check(results: list[tuple[int, str]]) -> None:
        for (rc, err), case in zip(results[: len(seed_cases)], seed_cases, strict=True):
            assert "must be an integer from 0 to 4,294,967,295" in assert_one_line(rc, err), case
        names = [
            "allows",
            "PATH_MAX",
            "allows",
            "allows",
            "does not exist",
            "is a file, not a checkpoint",
            "has no card.json",
            "checkpoint folder: the name",
            "PATH_MAX",
            "sweep spec: the name",
            "--data-path: the name",
        ]
        for (rc, err), fragment in zip(results[len(seed_cases) :], names, strict=True):
            assert_one_line(rc, err, fragment)
        assert folder_digest(shipped_copy) == before_ck and sorted(p.name for p in tmp_path.iterdir()) == before

    return seed_cases + other, check


def test_32_4_cli_edges_seeds_paths_and_missing_checkpoints(cli_runs):
    cli_runs["_edges"]()


@HYPO
@given(seed=st.integers(max_value=-1) | st.integers(min_value=2**32) | st.floats() | st.text(max_size=4)
       | st.booleans() | st.none())  # fmt: skip
def test_32_4_generated_seeds_are_refused_wherever_seeds_are_accepted(tmp_path, seed):
    from disviz.engine.evaluate import check_eval_request
    from disviz.engine.train import TrainConfig, train
    from disviz.sweeps.common import SweepError
    from disviz.sweeps.spec import parse_spec

    with pytest.raises(UserError, match="seed"):
        train(TrainConfig(model="betavae", dataset="dsprites", out=tmp_path / "r", steps=2, seed=seed))
    with pytest.raises(LimitError, match="--seed must be an integer from 0"):
        check_eval_request(100, seed)
    with pytest.raises(LimitError, match="--seed must be an integer from 0"):
        run_annealing("dsprites", steps=10, bases=1, seed=seed)
    for spec in ({"seeds": [seed]}, {"random": {"seed": seed}}, {"eval": {"seed": seed}}):
        with pytest.raises(SweepError):
            parse_spec({"name": "x", "models": ["ae"], **spec}, out=tmp_path / "sw")
    assert not (tmp_path / "r").exists() and not (tmp_path / "sw").exists()


@pytest.mark.parametrize(
    "key,value",
    [("dataset", 5), ("dataset", ["dsprites"]), ("seed", "zero"), ("beta_max", "big"), ("label_free", "no"),
     ("dataset_options", [1]), ("pool", 1.5), ("scale", {"x": 1})],
)  # fmt: skip
def test_32_4_annealing_settings_are_typed(tmp_path, key, value):
    data = _shipped_annealing()
    data["settings"][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnealingResultError, match=rf"settings\.{key} must be .*re-run"):
        load_annealing_result(path)


@settings(HYPO, max_examples=25)
@given(key=st.sampled_from(["dataset", "seed", "scale", "recipe", "beta_max", "beta_max_note", "pool", "label_free",
                            "dataset_options", "warmup"]), value=JSON_VALUES)  # fmt: skip
def test_32_4_generated_annealing_settings_load_and_show_or_fail_clearly(tmp_path, key, value):
    from disviz.app.annealing_view import annealing_summary, annealing_view
    from disviz.cli.anneal import print_summary

    data = _shipped_annealing()
    data["settings"][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    try:
        loaded = load_annealing_result(path)
    except AnnealingResultError as exc:
        assert "re-run" in str(exc) and "\n" not in str(exc)
    else:  # accepted: then everything that shows a result must work on it
        annealing_view(loaded)
        annealing_summary(loaded)
        with contextlib.redirect_stdout(io.StringIO()):
            print_summary(loaded)


# --- 32.5 sweep specs are refused by the very checks train applies ----------------------------------
@pytest.mark.parametrize(
    "spec,option",
    [
        ({"batch_size": 10_000_000}, {"batch_size": 10_000_000}),
        ({"set": {"hidden": 2_000_000_000}}, {"hidden": 2_000_000_000}),
        ({"grid": {"hidden": [64, 500_000]}}, {"hidden": 500_000}),
        ({"grid": {"latent_dim": [10, 4_000_000]}}, {"latent_dim": 4_000_000}),
        ({"random": {"samples": 2, "hidden": {"dist": "int", "low": 10**9, "high": 2 * 10**9}}}, None),
        ({"batch_size": 70_000}, {"batch_size": 70_000}),
    ],
)
def test_32_5_sweep_specs_fail_the_same_checks_as_train_before_anything_starts(tmp_path, spec, option):
    from disviz.engine.train import TrainConfig, train
    from disviz.sweeps.common import SweepError
    from disviz.sweeps.spec import parse_spec

    t0 = time.perf_counter()
    with bounded_allocation(), pytest.raises(SweepError) as swept:
        parse_spec({"name": "x", "models": ["betavae"], **spec}, out=tmp_path / "sw")
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "sw").exists()
    message = str(swept.value)
    assert "\n" not in message
    if option is not None:  # train gives the same verdict, in the same words
        overrides = {k: v for k, v in option.items() if k != "batch_size"}
        cfg = TrainConfig(model="betavae", dataset="dsprites", out=tmp_path / "r", steps=2, overrides=overrides,
                          batch_size=option.get("batch_size"))  # fmt: skip
        with pytest.raises(UserError) as trained:
            train(cfg)
        verdict = str(trained.value).replace("--batch-size", "batch_size")
        assert verdict in message, (verdict, message)
        assert not (tmp_path / "r").exists()


@cli_scenario
def _sweep_specs(tmp_path: Path) -> Scenario:
    specs = {
        "b.toml": 'name = "b"\nout = "o"\nmodels = ["betavae"]\nbatch_size = 10000000\n',
        "h.toml": 'name = "h"\nout = "o"\nmodels = ["betavae"]\n[set]\nhidden = 2000000000\n',
        "e.toml": 'name = "e"\nout = "o"\nmodels = ["betavae"]\n[eval]\nn = 1000000000\n',
        "g.toml": 'name = "g"\nout = "o"\nmodels = ["betavae", "ae"]\nseeds = [0, 1]\n[grid]\nlatent_dim = ['
        + ", ".join(str(i) for i in range(1, 2600))
        + "]\n",
    }
    for name, text in specs.items():
        (tmp_path / name).write_text(text)
    before = folder_digest(tmp_path)

    def check(results: list[tuple[int, str]]) -> None:
        fragments = ["batch_size 10,000,000 is above the maximum 65,536", "parameters", "[eval] n 1,000,000,000",
                     "the spec's trials 10,396 is above the maximum 10,000"]  # fmt: skip
        for (rc, err), fragment in zip(results, fragments, strict=True):
            assert_one_line(rc, err, fragment)
        assert folder_digest(tmp_path) == before and not (tmp_path / "o").exists()

    return [["sweep", str(tmp_path / n), "--dry-run"] for n in specs], check


def test_32_5_sweep_dry_run_refuses_from_the_cli(cli_runs):
    cli_runs["_sweep_specs"]()


# --- 32.6 cluster: the node of every trial, and a clear line for Ray's token authentication ---------
def test_32_6_results_record_the_node_of_each_trial(tmp_path):
    from disviz.sweeps.results import SweepResults, flat_rows, load_results, results_csv
    from disviz.sweeps.runner import node_info
    from disviz.sweeps.spec import parse_spec

    info = node_info()
    assert info["node"] == socket.gethostname() and set(info) == {"node", "node_ip", "node_id"}
    spec = parse_spec({"name": "n", "models": ["ae"], "seeds": [0, 1]}, out=tmp_path / "sw")
    results = SweepResults(spec.out, spec)
    results.start(spec.trials, resume=False)
    results.update(spec.trials[0].id, status="done", node="worker-7", node_ip="10.0.0.7", node_id="abc123")
    data = load_results(spec.out)
    header, rows = flat_rows(data)
    assert {"node", "node_ip", "node_id"} <= set(header)
    assert rows[0]["node"] == "worker-7" and rows[0]["node_ip"] == "10.0.0.7" and rows[1]["node"] is None
    assert "worker-7,10.0.0.7,abc123" in results_csv(data)


@pytest.mark.parametrize("wrapped", [False, True])
def test_32_6_a_ray_auth_refusal_is_one_line_naming_the_fix(monkeypatch, wrapped):
    ray = pytest.importorskip("ray")
    from disviz.sweeps.common import SweepError
    from disviz.sweeps.runner import ray_session

    def refuse(*args, **kwargs):
        if not wrapped:
            raise ray.exceptions.AuthenticationError("InvalidAuthToken: token mismatch")
        try:  # what Ray 2.60 raises for a driver without RAY_AUTH_MODE=token (seen on this VM)
            raise RuntimeError("Failed to connect to GCS: Unauthenticated: RPC error: InvalidAuthToken")
        except RuntimeError as exc:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from exc

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(SweepError, match="RAY_AUTH_MODE=token.*README") as exc:
        with ray_session(address="10.0.0.1:6379"):
            pass
    assert "\n" not in str(exc.value)
    readme = (ROOT / "README.md").read_text()
    for needed in ("RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled", "ray get-auth-token --generate", "node_ip"):
        assert needed in readme


SHIPPED_SWEEP = ROOT / "checkpoints" / "sweeps" / "dsprites_vae_seeds"


@settings(HYPO, max_examples=20)  # each example draws the page's figures
@given(key=st.sampled_from(["status", "hparams", "scores", "config", "wall_s", "seed", "attempts", "node", "metrics",
                            "model", "error"]), value=JSON_VALUES)  # fmt: skip
def test_32_4_generated_results_tables_load_and_show_or_fail_clearly(tmp_path, key, value):
    """Every loaded JSON is typed: a sweep table edited or damaged by hand is one error line, or it works
    in the CLI report, the CSV and the Sweeps page's figures."""
    from disviz.sweeps.common import SweepError
    from disviz.sweeps.figures import rank_correlation_figure, score_distribution_figure, sweep_metrics
    from disviz.sweeps.results import format_table, load_results, results_csv

    data = json.loads((SHIPPED_SWEEP / "results.json").read_text())
    if key == "metrics":
        data["metrics"] = value
    else:
        data["trials"][0][key] = value
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example (Hypothesis reuses tmp_path)
    (folder / "results.json").write_text(json.dumps(data))
    try:
        loaded = load_results(folder, live=True)
    except SweepError as exc:
        assert "\n" not in str(exc) and "--resume" in str(exc)
    else:
        format_table(loaded)
        results_csv(loaded)
        for metric in sweep_metrics(loaded)[:2]:
            score_distribution_figure(loaded, metric)
        rank_correlation_figure(loaded)
