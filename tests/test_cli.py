"""`cotscale plan`: formats, errors (one line, exit 2) on hand-made tables, and a run on the paper's published
outputs whose first row is checked against lifetime FLOPs computed straight from the ingested usage records."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_plan import COMPUTE, TOKENS, benchmarks, sweep

from cotscale import cli

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper"


@pytest.fixture
def tables_dir(tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    benchmarks().to_csv(folder / "benchmarks.csv", index=False)
    TOKENS.to_csv(folder / "tokens.csv", index=False)
    sweep().to_csv(folder / "inference_scaling.csv", index=False)
    return folder


def plan(capsys, *args) -> tuple[int, str, str]:
    try:
        code = cli.main(["plan", *args])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["cotscale"] == "cotscale.cli:main"


def test_formats(tables_dir, capsys):
    code, out, _ = plan(capsys, "--requests", "1e11", "--target", "0.3", "--tables", str(tables_dir),
                        "--format", "csv")
    assert code == 0
    table = pd.read_csv(io.StringIO(out), keep_default_na=False)
    # by hand: B 6e20 + 1e11·2e9·5 = 1.6e21 < A 6e18 + 1e11·2e8·100 = 2.006e21 < A k=4 < C
    assert list(zip(table["model"], table["budget"])) == [("B", ""), ("A", ""), ("A", "k=4"), ("C", "")]
    assert table["lifetime_flops"].iloc[0] == pytest.approx(1.6e21)
    assert {"model", "strategy", "budget", "overall", "tokens_per_request", "train_flops", "inference_flops",
            "lifetime_flops"} <= set(table.columns)
    assert "lifetime_gpu_seconds" not in table  # nothing measured in these tables
    code, out, _ = plan(capsys, "--requests", "1e11", "--target", "0.3", "--tables", str(tables_dir),
                        "--format", "json")
    records = json.loads(out)
    assert code == 0 and records[0]["model"] == "B" and records[0]["lifetime_flops"] == pytest.approx(1.6e21)
    code, out, _ = plan(capsys, "--requests", "1e11", "--target", "0.3", "--tables", str(tables_dir))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["rank", "model", "strategy", "budget"]
    assert lines[1].split()[:3] == ["1", "B", "cot"] and "1.600e+21" in lines[1]


def test_measured_seconds_beside(tables_dir, capsys):
    COMPUTE.to_csv(tables_dir / "compute.csv", index=False)
    code, out, _ = plan(capsys, "--requests", "1e6", "--target", "0.3", "--tables", str(tables_dir),
                        "--format", "csv")
    table = pd.read_csv(io.StringIO(out)).set_index("model")
    assert code == 0 and table.loc["B", "lifetime_gpu_seconds"] == pytest.approx(2e6)
    assert table.loc["B", "rank_by_gpu_seconds"] == 1


@pytest.mark.parametrize("args, message", [
    (["--target", "0.9"], "no operating point reaches overall score 0.9"),
    (["--tables", "no/such/folder"], "tables folder no/such/folder does not exist"),
    (["--empty-tokens"], "no token counts"),
])
def test_errors_are_one_line_and_exit_2(tables_dir, capsys, args, message):
    if args == ["--empty-tokens"]:
        TOKENS.iloc[:0].to_csv(tables_dir / "tokens.csv", index=False)
        args = []
    base = {"--requests": "1e9", "--target": "0.3", "--tables": str(tables_dir)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    code, out, err = plan(capsys, *[x for kv in base.items() for x in kv])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("cotscale plan: error: ") and message in err


def test_bad_argument_exits_2(tables_dir, capsys):
    code, _, err = plan(capsys, "--requests", "1e9", "--target", "0.3", "--cost", "cheap")
    assert code == 2 and "invalid choice: 'cheap'" in err


# ---------------------------------------------------------------- the paper's published outputs


@pytest.fixture(scope="module")
def published_tables(tmp_path_factory):
    if not (PAPER / "models.csv").exists():
        pytest.skip(f"published paper outputs not found at {PAPER}")
    from cotscale import aggregate, published
    from cotscale.config import load_config

    root = tmp_path_factory.mktemp("published")
    published.ingest(PAPER, root)
    config = load_config(ROOT / "config" / "published.yaml")
    results = sorted(str(p) for p in (root / "evals").rglob("results.json"))
    for strategy in config["strategies"]:
        aggregate.write_strategy_tables(config, strategy, results, root / "tables" / strategy)
    aggregate.combine_tables([root / "tables" / s for s in config["strategies"]], root / "tables")
    return root


def lifetime_by_hand(evals: Path, requests: float) -> pd.DataFrame:
    """Per model × strategy from the usage records themselves: t = mean over benchmarks of (Σ generated tokens /
    Σ generate records) within each, lifetime = 6ND + R·2N·t."""
    rows = []
    for usage in sorted(evals.glob("*/*/*/usage.jsonl.gz")):
        meta = json.loads((usage.parent / "results.json").read_text())["cotscale"]
        records = [json.loads(line) for line in gzip.decompress(usage.read_bytes()).decode().splitlines() if line]
        generate = [r for r in records if r["kind"] == "generate"]
        if len(generate) < len(records):
            continue  # some benchmark of this strategy is scored without generating: not priced by generated tokens
        rows.append({"model": meta["model"], "strategy": usage.parts[-3], "N": float(meta["N"]),
                     "D": float(meta["D"]),
                     "t": sum(r["generated_tokens"] for r in generate) / len(generate)})
    per = pd.DataFrame(rows).groupby(["model", "strategy", "N", "D"], as_index=False)["t"].mean()
    per["lifetime"] = 6 * per["N"] * per["D"] + requests * 2 * per["N"] * per["t"]
    return per


@pytest.mark.parametrize("requests, target", [(1e11, 0.31), (1e6, 0.30), (1e14, 0.29)])
def test_plan_on_published_outputs(published_tables, requests, target):
    tables = published_tables / "tables"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-m", "cotscale.cli", "plan", "--requests", f"{requests:g}", "--target",
                          str(target), "--tables", str(tables), "--format", "csv"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    got = pd.read_csv(io.StringIO(run.stdout))
    overall = pd.read_csv(tables / "benchmarks.csv")[["model", "strategy", "overall"]]
    hand = lifetime_by_hand(published_tables / "evals", requests).merge(overall, on=["model", "strategy"])
    hand = hand[hand["overall"] >= target].sort_values("lifetime")
    assert (got.loc[0, "model"], got.loc[0, "strategy"]) == (hand.iloc[0]["model"], hand.iloc[0]["strategy"])
    assert got.loc[0, "lifetime_flops"] == pytest.approx(hand.iloc[0]["lifetime"], rel=1e-12)
    assert len(got) == len(hand)
