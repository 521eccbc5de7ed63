"""The HTML report, read back the way a browser would: every figure embedded, tables = CSVs."""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from _small_sweep import small_sweep

from vae_core.cli import main
from vae_core.config import TrainConfig
from vae_core.errors import RunDirError
from vae_core.experiments.sweep import REPEATS_DIR
from vae_core.outputs.report import build_report, format_value
from vae_core.outputs.tables import read_table

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parent.parent


class _Page(HTMLParser):
    """Collects <img> (alt, data-source, src) and <table> (id, data-source, header, rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.tables: list[dict] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_head = False
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.external.append(a.get("href") or a.get("src"))
        elif tag == "table":
            self.tables.append({"id": a.get("id"), "source": a.get("data-source"),
                                "header": [], "rows": []})
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            t = self.tables[-1]
            (t["header"].extend(self._row) if self._in_head else t["rows"].append(self._row))
            self._row = None
        elif tag == "thead":
            self._in_head = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _check_images(page: _Page, folder: Path) -> set[str]:
    """Every <img> is an embedded PNG identical to the file it names."""
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data.startswith(PNG)
        assert data == (folder / img["data-source"]).read_bytes(), img["data-source"]
    assert not page.external  # self-contained: nothing loaded from elsewhere
    return {img["data-source"] for img in page.images}


def _same(cell: str, value) -> bool:
    """A cell equals the CSV value at the precision the report prints."""
    if isinstance(value, float) and pd.isna(value):
        return cell == ""
    if isinstance(value, bool) or str(value) in ("True", "False"):
        return cell == ("yes" if str(value) == "True" else "no")
    try:
        v = float(value)
    except (TypeError, ValueError):
        return cell == str(value)
    return float(cell) == pytest.approx(v, abs=0.006 if abs(v) >= 100 else 6e-4 if abs(v) >= 1
                                        else 6e-5)


def _check_table(table: dict, path: Path) -> None:
    df = read_table(path)  # .csv or .parquet
    assert set(table["header"]) <= set(df.columns)
    assert len(table["rows"]) == len(df)
    for row, (_, rec) in zip(table["rows"], df.iterrows(), strict=True):
        for col, cell in zip(table["header"], row, strict=True):
            assert _same(cell, rec[col]), (table["id"], col, cell, rec[col])


@pytest.fixture(scope="module")
def sweep_dir(mnist_dir):
    return small_sweep(mnist_dir)


def test_sweep_report_embeds_every_figure_and_matches_the_csvs(sweep_dir, tmp_path):
    target = tmp_path / "r.html"
    assert main(["report", str(sweep_dir), "-o", str(target), "-q"]) == 0
    page = _parse(target.read_text())
    sources = _check_images(page, sweep_dir)
    for png in (sweep_dir / "figures").glob("*.png"):
        assert f"figures/{png.name}" in sources, png.name  # every sweep figure is in
    lab = sweep_dir / "configs" / "z2_beta1" / "figures"
    for png in lab.glob("*.png"):
        assert f"configs/z2_beta1/figures/{png.name}" in sources, png.name
    by_id = {t["id"]: t for t in page.tables}
    for tid in ("table-experiments", "table-headline"):
        _check_table(by_id[tid], sweep_dir / "experiments.csv")
    _check_table(by_id["table-kl-per-dim"], sweep_dir / "kl_per_dim.csv")
    claims = json.loads((sweep_dir / "claims.json").read_text())
    text = target.read_text()
    for c in claims["claims"]:
        assert f'id="claim-{c["id"]}"' in text and c["verdict"] in text
    recon = claims["claims"][0]["numbers"]["recon_by_beta_then_latent"]
    grid = by_id["table-claim-0-0"]
    assert grid["header"] == ["β", "2", "3"] and grid["rows"][0][0] == "1"
    assert [float(x) for x in grid["rows"][0][1:]] == pytest.approx(
        [recon["1"]["2"], recon["1"]["3"]], abs=0.006)
    assert len(by_id["table-targets"]["rows"]) == len(claims["targets"])


def _make_commands(target: str) -> list[list[str]]:
    """The ``vae-mnist`` command lines ``make -n TARGET`` prints (nothing is run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.replace("\\\n", " ").splitlines()
    return [words[1:] for words in map(shlex.split, lines)
            if words and words[0].endswith("/vae-mnist")]


def _option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_make_targets_writes_where_the_report_of_make_experiments_looks():
    experiments = _make_commands("experiments")
    sweep_out = Path(_option(next(w for w in experiments if w[0] == "sweep"), "--out"))
    assert [w for w in experiments if w[0] == "report"] == [["report", str(sweep_out)]]
    repeats = [Path(_option(w, "--out")) for w in _make_commands("targets") if w[0] == "repeat"]
    assert [r.name for r in repeats] == ["lab", "tuned"]
    assert {r.parent for r in repeats} == {sweep_out / REPEATS_DIR}


def test_sweep_report_shows_seed_repeats(sweep_dir, tmp_path, mnist_dir):
    """A `vae-mnist repeat` folder where `make targets` writes (REPEATS_DIR of the sweep)
    appears in `vae-mnist report` of the sweep folder."""
    from vae_core.experiments.repeat import run_repeats

    folder = tmp_path / "sweep"
    shutil.copytree(sweep_dir, folder)
    base = TrainConfig(epochs=1, train_limit=1000, eval_limit=200, device="cpu",
                       lr_schedule="cosine")
    run_repeats(folder / REPEATS_DIR / "tuned", base, [2], [0, 1], data_dir=mnist_dir,
                log=lambda m: None)
    assert main(["report", str(folder), "-q"]) == 0
    text = (folder / "report.html").read_text()
    table = {t["id"]: t for t in _parse(text).tables}["table-repeats-0"]
    assert table["source"] == f"{REPEATS_DIR}/tuned/summary.csv"
    _check_table(table, folder / REPEATS_DIR / "tuned" / "summary.csv")
    assert "tuned: beta = 1, epochs = 1, batch_size = 128, learning_rate = 0.001, lr_schedule = " \
        "cosine" in text


def test_run_report_has_configuration_loss_lab_figures_and_metrics(sweep_dir):
    run = sweep_dir / "configs" / "z2_beta1"
    page = _parse(build_report(run))
    sources = _check_images(page, run)
    assert {f"figures/{p.name}" for p in (run / "figures").glob("*.png")} == sources
    by_id = {t["id"]: t for t in page.tables}
    _check_table(by_id["table-loss"], run / "tables" / "loss.csv")
    _check_table(by_id["table-probe"], run / "tables" / "probe.csv")
    _check_table(by_id["table-latent_dims"], run / "tables" / "latent_dims.csv")
    config = json.loads((run / "config.json").read_text())
    settings = dict(by_id["table-config"]["rows"])
    assert settings["latent_dim"] == "2" and settings["beta"] == format_value(config["beta"])
    metrics = dict(by_id["table-metrics"]["rows"])
    m = json.loads((run / "metrics.json").read_text())
    assert float(metrics["held-out neg-ELBO at β = 1 (nats/image)"]) == pytest.approx(
        m["neg_elbo"], abs=0.006)
    assert any("BCE bound" in k for k in metrics) and not any("NLL" in k for k in metrics)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_report_of_a_plain_run_folder_evaluates_it_first(tmp_path, mnist_dir, fmt):
    """The evaluation's tables follow the run's table format, and the report reads either."""
    from vae_core.training.jobs import run_training

    cfg = TrainConfig(epochs=1, train_limit=500, eval_limit=120, device="cpu", latent_dim=3)
    run = tmp_path / "run"
    run_training(cfg, run, data_dir=mnist_dir, progress=False, log=lambda m: None,
                 table_format=fmt)
    assert main(["report", str(run), "--data-dir", str(mnist_dir), "-q",
                 "--iw-k", "5", "--iw-images", "10"]) == 0
    assert sorted(p.name for p in (run / "tables").iterdir()) == sorted(
        f"{name}.{fmt}" for name in ("loss", "samples", "latent", "reconstructions", "generated",
                                     "latent_dims", "probe", "interpolation"))
    page = _parse((run / "report.html").read_text())
    assert _check_images(page, run) == {f"figures/{p.name}" for p in (run / "figures").glob("*")}
    assert "figures/interpolation.png" in _check_images(page, run)
    by_id = {t["id"]: t for t in page.tables}
    for name in ("loss", "latent_dims", "probe"):
        assert by_id[f"table-{name}"]["source"] == f"tables/{name}.{fmt}"
        _check_table(by_id[f"table-{name}"], run / "tables" / f"{name}.{fmt}")
    m = json.loads((run / "metrics.json").read_text())
    shown = dict(by_id["table-metrics"]["rows"])
    assert shown["active units"] == f"{m['active_units']} of 3"
    assert _same(shown["held-out neg-ELBO at β = 1 (nats/image)"], m["neg_elbo"])
    last = read_table(run / "tables" / f"loss.{fmt}").iloc[-1]
    # one estimator: the metrics' neg-ELBO is the loss table's last held-out recon + KL
    assert m["neg_elbo"] == last["test_recon"] + last["test_kl"]


def test_report_user_errors(tmp_path, capsys):
    with pytest.raises(RunDirError, match="neither a run"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_format_value():
    assert format_value(152.3456) == "152.35"
    assert format_value(0.97123) == "0.9712"
    assert format_value(0.5) == "0.5" and format_value(3) == "3" and format_value(True) == "yes"
    assert format_value(float("nan")) == ""


def test_sweep_folder_from_before_lr_schedule_still_reports_and_resumes(sweep_dir, tmp_path):
    from vae_core.config import SWEEP_SHARED
    from vae_core.experiments.saved_settings import check_saved_settings
    from vae_core.experiments.sweep import SWEEP_FILE, load_sweep

    folder = tmp_path / "old"
    shutil.copytree(sweep_dir, folder)
    spec = json.loads((folder / SWEEP_FILE).read_text())
    current = json.loads(json.dumps(spec))
    del spec["shared"]["lr_schedule"]
    (folder / SWEEP_FILE).write_text(json.dumps(spec))
    # the missing setting reads as its default: no error
    check_saved_settings(folder / SWEEP_FILE, "shared", current["shared"], SWEEP_SHARED, "a sweep")
    assert load_sweep(folder)[0]["shared"]["lr_schedule"] == "constant"
    settings = {t["id"]: t for t in _parse(build_report(folder)).tables}["table-settings"]
    assert ["lr_schedule", "constant"] in settings["rows"]
    current["shared"]["lr_schedule"] = "cosine"
    with pytest.raises(RunDirError, match="lr_schedule: 'constant' before, 'cosine' now"):
        check_saved_settings(folder / SWEEP_FILE, "shared", current["shared"], SWEEP_SHARED,
                             "a sweep")
