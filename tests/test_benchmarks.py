"""The GPU check runs where only torch, lightning, numpy, pandas and scikit-learn exist."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow

# Installed as sitecustomize: the packages a bare GPU machine lacks cannot be imported.
# Their distributions' metadata is hidden too: libraries that ask it (torchmetrics asks for
# transformers) then see them absent, as there, and do not import them.
BLOCKER = """
import importlib.abc, importlib.metadata as md, sys
ABSENT = {absent!r}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, Absent())
def hidden(found):
    def lookup(name):
        if name.lower().replace("-", "_") in ABSENT:
            raise md.PackageNotFoundError(name)
        return found(name)
    return lookup
md.distribution, md.version = hidden(md.distribution), hidden(md.version)
"""
# What the lock installs and that machine lacks (its package list: device tool's KINDS.md).
ABSENT = ("pydantic", "mlflow", "prefect", "bentoml", "evidently", "great_expectations",
          "optuna", "dvc", "transformers", "peft", "accelerate")  # fmt: skip


def test_gpu_check_runs_with_only_the_gpu_machines_packages(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(absent=ABSENT))
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PYTHON": sys.executable,
        "ROUNDS": "1",
        "CNN_EPOCHS": "1",
        "RESNET_SAMPLES": "128",
        "RESNET_BATCH": "64",
        "RESNET_EPOCHS": "1",
        "RESNET_PRECISION": "32-true",
    }
    out = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "blocked" not in out.stderr
    assert out.stdout.count("ratio mloop/plain:") == 2
    assert "resnet on 128 x (3, 32, 32)" in out.stdout
    assert "text fsdp: skipped, no GPU" in out.stdout  # the CPU here; a GPU runs it
    assert "skipped: fine-tuning a pretrained encoder needs transformers" in out.stdout
    final = [line for line in out.stdout.splitlines() if "final: test accuracy" in line]
    assert final and float(final[0].split()[3]) >= 0.97


def test_the_pretrained_fine_tuning_check_runs_a_tiny_model_on_the_cpu(tmp_path):
    """Step 5 of the GPU check, as a GPU machine with transformers runs it, on a tiny
    random BERT and the CPU: it trains, scores each epoch and says its throughput."""
    import pandas as pd

    from tests.helpers.pretrained import tiny_bert

    texts = pd.read_csv(REPO.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv")["text"]
    folder = tiny_bert(tmp_path / "tiny", texts.astype(str).tolist()[:1000])
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "hf_finetune.py"), "--model", str(folder),
         "--allow-cpu", "--samples", "256", "--epochs", "2", "--max-length", "32"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "epoch 2:" in out.stdout and "32-true on cpu" in out.stdout, out.stdout
    assert "samples/s over the fit" in out.stdout


def test_every_name_a_benchmark_imports_from_the_project_exists():
    """Benchmarks import inside their functions (fast --help); a name that moved fails only
    when the benchmark runs (benchmarks/request_limits.py imported rss_mb from tests.helpers).
    Every ``from components... / tests... import name`` of every benchmark is checked."""
    import ast
    import importlib

    missing = []
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "components", "tests", "benchmarks", "flows", "pipelines"
            ):  # fmt: skip
                module = importlib.import_module(node.module)
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    if not hasattr(module, alias.name) and importlib.util.find_spec(name) is None:
                        missing.append(f"{path.name}: {name}")
    assert not missing, missing
