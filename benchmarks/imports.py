"""Benchmark: what an evaluation job pays to import its libraries, and what skipping sklearn would save.

Each statement runs in a fresh ``python -c`` process, paired rounds in alternating order, median wall and CPU seconds:

* ``python``        — ``pass`` (interpreter start-up, the floor)
* ``torch``         — ``import torch``
* ``transformers``  — ``import torch, transformers``
* ``hf``            — ``import torch, transformers; from lm_eval.models.huggingface import HFLM`` (what cotscale.lm
                      imports for backend hf; transformers' generation utilities pull in sklearn.metrics → scipy.stats
                      and torch._dynamo on the way)
* ``hf_nosklearn``  — the same after telling transformers that sklearn is unavailable (``is_sklearn_available`` →
                      False, patched in transformers.utils before the generation utilities load). sklearn is only
                      used there for assisted generation's ``roc_curve``, which cotscale never uses.
* ``hf_os_exit``    — ``hf`` ending in ``os._exit(0)``: the difference to ``hf`` is the interpreter's own
                      teardown with torch and transformers loaded, which every job process pays after its work
* ``hf_both_fixes`` — ``hf_nosklearn`` ending in ``os._exit(0)``: both fixes together
* ``lm_eval_tasks`` — ``import lm_eval.tasks`` (datasets, pandas; every evaluation needs it)
* ``snakemake_script`` — ``import snakemake.script`` (what a ``script:`` job's preamble imports to unpickle its
                      ``snakemake`` object, before cotscale runs)

Also ``load_config`` of the paper grid, the first call in a fresh process as in the DAG build and in every job
(seconds inside the process): ``config`` as it is, ``config_v0`` with the schema and task table parsed by PyYAML's
pure-Python loader on every call, as before (twice per load_config).

Run:

    python benchmarks/imports.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _common import PYTHON, add_quick, load_line, save_json, timed

NOSKLEARN = (
    "import transformers.utils as tu, transformers.utils.import_utils as iu\n"
    "iu.is_sklearn_available = tu.is_sklearn_available = lambda: False\n"
)
STATEMENTS = {
    "python": "pass",
    "torch": "import torch",
    "transformers": "import torch, transformers",
    "hf": "import torch, transformers\nfrom lm_eval.models.huggingface import HFLM",
    "hf_nosklearn": "import torch, transformers\n" + NOSKLEARN + "from lm_eval.models.huggingface import HFLM\n"
                    "import sys; assert 'sklearn' not in sys.modules, 'sklearn was imported'",
    "hf_os_exit": "import os, torch, transformers\nfrom lm_eval.models.huggingface import HFLM\nos._exit(0)",
    "hf_both_fixes": "import os, torch, transformers\n" + NOSKLEARN
                     + "from lm_eval.models.huggingface import HFLM\nos._exit(0)",
    "lm_eval_tasks": "import lm_eval.tasks",
    "snakemake_script": "import snakemake.script",
}


CONFIG = """
import sys, time, yaml
from pathlib import Path
import cotscale.config as C
if sys.argv[1] == "config_v0":
    C._schema = lambda: yaml.safe_load(C.SCHEMA.read_text())
    C._default_tasks = lambda: yaml.safe_load(C.DEFAULT_TASKS.read_text())
raw = yaml.safe_load(Path(sys.argv[2]).read_text())
t = time.perf_counter()
C.load_config(raw)
print(time.perf_counter() - t)
"""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    add_quick(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds = 1
    rows = {k: [] for k in STATEMENTS}
    names = list(STATEMENTS)
    for rnd in range(a.rounds):
        for name in (names if rnd % 2 == 0 else names[::-1]):
            res = timed([PYTHON, "-c", STATEMENTS[name]])
            rows[name].append({"wall_s": res["wall_s"], "cpu_s": res["cpu_s"]})
    from _common import ROOT

    cfg_rows = {"config_v0": [], "config": []}
    for rnd in range(a.rounds):
        for name in (list(cfg_rows) if rnd % 2 == 0 else list(cfg_rows)[::-1]):
            res = timed([PYTHON, "-c", CONFIG, name, str(ROOT / "config" / "config.yaml")])
            cfg_rows[name].append(float(res["stdout"].strip()))
    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("wall_s", "cpu_s")} for k, rs in rows.items()}
    print(f"fresh-process imports, {a.rounds} rounds (medians); {load_line()}")
    print(f"{'what':18s} {'wall s':>7s} {'cpu s':>7s}")
    for k, m in med.items():
        print(f"{k:18s} {m['wall_s']:7.2f} {m['cpu_s']:7.2f}")
    saved = med["hf"]["cpu_s"] - med["hf_nosklearn"]["cpu_s"]
    print(f"skipping sklearn in transformers saves {saved:.2f} CPU-s "
          f"({med['hf']['wall_s'] - med['hf_nosklearn']['wall_s']:.2f} s wall) per evaluation job")
    cfg_med = {k: statistics.median(v) for k, v in cfg_rows.items()}
    print(f"load_config(config/config.yaml), first call in a process: {1000 * cfg_med['config']:.1f} ms "
          f"(before: {1000 * cfg_med['config_v0']:.1f} ms)")
    print(f"both fixes together: {med['hf']['cpu_s'] - med['hf_both_fixes']['cpu_s']:.2f} CPU-s "
          f"({med['hf']['wall_s'] - med['hf_both_fixes']['wall_s']:.2f} s wall) per job")
    print(f"interpreter teardown after those imports: {med['hf']['wall_s'] - med['hf_os_exit']['wall_s']:.2f} s wall "
          f"({med['hf']['cpu_s'] - med['hf_os_exit']['cpu_s']:.2f} CPU-s) per job process")
    result = {"medians": med, "rounds": rows, "load_config_s": cfg_med, "load_config_rounds": cfg_rows,
              "load": load_line()}
    save_json(a.json, result)
    return result


if __name__ == "__main__":
    main()
