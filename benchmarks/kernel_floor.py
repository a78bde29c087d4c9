"""Issue 17's floor, measured: how much of the project's fastest CPU engine is onnxruntime's kernels, whether another
precision per step would be faster, and what the CPU bars ask for.

The engine is the cpu target's dynamic plan in stages (deploy.engines.staged), built from the preset as `toolkit
bench` builds it; its FP32 twin is the same cut of the same rewritten float graph, unquantized. At each --threads
budget it prints:
  1. per step, the wall ms as the engine runs it (its stages side by side where the step has two), int8 and FP32
     interleaved, and the faster of the two: what a per-step choice of precision would give;
  2. per step, the kernel ms by op type from onnxruntime's profile of each stage at its thread share (sequential:
     side-by-side stages are summed). The profiler adds its own cost to every node (a few microseconds), so the
     figure means something for large kernels (fog-1st-place's run 30-50 ms each), not for fog-small's;
  3. the bars: PyTorch eager and the naive export (toolkit.bench.int8.naive_session) at the same budget,
     interleaved with the engine: the ms that --vs-naive x the naive export and --vs-eager x eager ask for
     (issue 17: 2 and 2.5 for fog-1st-place, 1.3 and none for fog-small), beside the engine.

  PYTHONPATH=$PWD python benchmarks/kernel_floor.py fog-1st-place --threads 2,1
  PYTHONPATH=$PWD python benchmarks/kernel_floor.py fog-small --vs-naive 1.3 --vs-eager 0
"""
from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path

import torch

from deploy.engines.session import device_settings, open_session
from deploy.engines.staged import StagedEngine
from toolkit.bench.backends import DISABLED_OPTIMIZERS
from toolkit.bench.int8 import naive_session
from toolkit.bench.run import load_benched
from toolkit.bench.split import kernel_ms_by_op
from toolkit.export.cpu_plans import staged_dynamic
from toolkit.timing import interleaved

BUDGET_S = 30.0   # seconds per interleaved measurement: a slow step still gets the harness's minimum of blocks


_TWINS: dict[Path, dict] = {}   # the FP32 twin's plan per benched model's folder, cut once per process


def engines(benched, threads: int):
    """{"int8": engine, "fp32": engine}: the dynamic plan's stages and their FP32 twin at `threads`."""
    folder, plan = benched.staged(1)
    twin = benched.workdir / "fp32-stages"
    if twin not in _TWINS:
        twin.mkdir(exist_ok=True)
        _TWINS[twin] = staged_dynamic(benched.onnx("fp32", 1), twin, "fp32_stage",
                                      disabled_optimizers=DISABLED_OPTIMIZERS, quantize=False)
    if [len(step) for step in _TWINS[twin]["steps"]] != [len(step) for step in plan["steps"]]:
        raise SystemExit("the FP32 twin was cut differently from the int8 stages; nothing to compare step by step")
    return {name: StagedEngine(where, p, threads=threads, preoptimized=True, disabled_optimizers=DISABLED_OPTIMIZERS)
            for name, where, p in (("int8", folder, plan), ("fp32", twin, _TWINS[twin]))}


def step_inputs(engine, x) -> dict:
    tensors = {engine.input_name: x}
    for index in range(len(engine.steps)):
        tensors.update(engine.run_step(index, tensors))
    return tensors


def step_walls(pair: dict, x) -> dict[tuple[str, int], float]:
    """{(precision, step): median wall ms}, every step of both engines interleaved."""
    work = {}
    for name, engine in pair.items():
        tensors = step_inputs(engine, x)
        for index in range(len(engine.steps)):
            work[f"{name} {index}"] = (lambda e=engine, k=index, t=tensors: e.run_step(k, t))
    timings = interleaved(work, blocks=12, block_s=0.05, budget_s=BUDGET_S)
    return {(key.split()[0], int(key.split()[1])): 1e3 * t.median for key, t in timings.items()}


def kernel_ms(engine, folder: Path, plan: dict, x, calls: int = 3) -> list[dict[str, float]]:
    """Per step, {op type: kernel ms per call} from onnxruntime's profile of each stage at the engine's share."""
    tensors = step_inputs(engine, x)
    per_step = []
    for step_sessions, step in zip(engine.steps, plan["steps"]):
        ops: dict[str, float] = collections.defaultdict(float)
        for (session, _), stage in zip(step_sessions, step):
            threads = session.get_session_options().intra_op_num_threads
            settings = device_settings(threads, preoptimized=True, config=plan["session_config"])  # as the engine
            profiled = open_session(folder / stage["file"], settings.but(profile_prefix=str(folder / "profile")))
            feed = {name: tensors[name] for name in stage["inputs"]}
            for _ in range(calls + 1):
                profiled.run(stage["outputs"], feed)
            trace = Path(profiled.end_profiling())
            for op, ms in kernel_ms_by_op(json.loads(trace.read_text()), calls + 1).items():
                ops[op] += ms
            trace.unlink()
        per_step.append(dict(ops))
    return per_step


def bars(benched, engine, x, threads: int) -> dict[str, float]:
    """Median wall ms of eager, the naive export and the engine at `threads`, interleaved."""
    torch.set_num_threads(threads)
    model, xt = benched.torch_model(), torch.from_numpy(x)

    def eager():
        with torch.inference_mode():
            return model(xt)
    work = {"pytorch-eager": eager, "naive export": naive_session(benched.onnx("naive", 1), x, threads),
            "project (int8 stages)": lambda: engine.infer(x)}
    return {name: 1e3 * t.median for name, t in interleaved(work, blocks=8, budget_s=BUDGET_S).items()}


def report(benched, threads: int, vs_naive: float, vs_eager: float) -> None:
    x = benched.example(1)
    pair = engines(benched, threads)
    walls = step_walls(pair, x)
    folder, plan = benched.staged(1)
    kernels = kernel_ms(pair["int8"], folder, plan, x)
    print(f"\n{benched.name}, {threads} thread(s), batch 1, load {os.getloadavg()[0]:.1f}")
    print(f"  {'step':5s} {'stages':>6s} {'int8 ms':>9s} {'fp32 ms':>9s} {'kernels':>9s}  "
          "largest kernels (int8 profile, ms)")
    best = kernel_total = 0.0
    for index, ops in enumerate(kernels):
        int8, fp32 = walls["int8", index], walls["fp32", index]
        best += min(int8, fp32)
        kernel_total += sum(ops.values())
        top = ", ".join(f"{op} {ms:.1f}" for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:3])
        print(f"  {index:<5d} {len(plan['steps'][index]):6d} {int8:9.2f} {fp32:9.2f} {sum(ops.values()):9.2f}  {top}")
    steps_int8 = sum(v for (name, _), v in walls.items() if name == "int8")
    print(f"  steps: int8 {steps_int8:.1f} ms, best precision per step {best:.1f} ms; kernels (side-by-side stages "
          f"summed) {kernel_total:.1f} ms")
    ms = bars(benched, pair["int8"], x, threads)
    asks = {f"{k:g}x naive": ms["naive export"] / k for k in [vs_naive] if k} | \
        {f"{k:g}x eager": ms["pytorch-eager"] / k for k in [vs_eager] if k}
    print("  bars, interleaved: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()))
    if asks:
        need = min(asks.values())
        print("  " + ", ".join(f"{k} asks for {v:.2f} ms" for k, v in asks.items()) + f"; the engine ran "
              f"{ms['project (int8 stages)'] / need:.2f}x that, its steps measured alone {steps_int8 / need:.2f}x, "
              f"the best precision per step {best / need:.2f}x")
    for engine in pair.values():
        engine.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a registry preset")
    parser.add_argument("--threads", default="2,1", help="comma list of thread budgets (default 2,1)")
    parser.add_argument("--vs-naive", type=float, default=2.0, help="the bar against the naive export (0: none)")
    parser.add_argument("--vs-eager", type=float, default=2.5, help="the bar against PyTorch eager (0: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)   # exports and calibration here run on one thread; eager gets the budget in `bars`
    benched = load_benched(args.model)
    for threads in (int(t) for t in args.threads.split(",")):
        report(benched, threads, args.vs_naive, args.vs_eager)


if __name__ == "__main__":
    main()
