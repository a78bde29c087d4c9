"""The toolkit's Python API: the main jobs as functions that take models (names, files or `torch.nn.Module`
objects) and return result objects. The `toolkit` command line is a thin layer over it. See docs/api.md.

    from toolkit import api
    result = api.export(my_module, target="cpu", out="bundles/mine", preprocess={"rate_hz": 100, "patch": 1})
    figures = api.evaluate(result.out, recordings, precision="int8")
    timing = api.bench(result.out, backends=["onnxruntime-fp32"], batches=[1, 4])
    cohort = api.score_cohort(["data/unlabeled"], result.out, out="runs/cohort")
"""
from toolkit.api.bench import BenchResult, bench
from toolkit.api.evaluate import EvaluationResult, evaluate
from toolkit.api.export import ExportResult, export
from toolkit.api.model import as_source
from toolkit.score.api import ScoreResult, score_cohort

__all__ = ["export", "ExportResult", "evaluate", "EvaluationResult", "bench", "BenchResult", "score_cohort",
           "ScoreResult", "as_source"]
