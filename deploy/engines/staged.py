"""A model run as a sequence of onnxruntime sessions, the stages of one step side by side on their own threads.

The cpu target's dynamic plan splits each bidirectional LSTM into a forward and a reverse node and cuts the graph
around them (toolkit.export.cpu_stages): onnxruntime itself runs a CPU graph's nodes one after the other, so the
two directions, each a chain of 864 small matrix-vector products, would leave a second core idle. Here each step's
stages run concurrently when the engine has a thread per stage (`threads` >= 2): the first on the calling thread,
the others on a small pool (onnxruntime releases the GIL while it runs). With one thread they run in turn, and
the engine never uses more cores than it was given: a step of two stages gets `threads // 2` intra-op threads
per stage, a step of one stage all of them.

The plan is the manifest's `onnxruntime.staged.<role>`: {"steps": [[{"file", "inputs", "outputs"}, ...], ...],
"input": name, "output": name, "session_config": {onnxruntime session config entry: value}}, files relative to
the bundle folder. The export's plan turns intra-op spinning off (`session.intra_op.allow_spinning` 0): a session's
idle pool thread spinning after its stage would take the core the next step's second branch needs (measured at 2
threads on fog-1st-place: 161-207 ms without spinning against 198-239 ms with it, three interleaved runs).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from deploy.bundle import inside
from deploy.engines.session import device_settings, open_session
from deploy.errors import BundleError


def _session(path, threads: int, preoptimized: bool, disabled_optimizers, config: dict):
    # the plan's session settings, e.g. no spinning (see the module docstring)
    settings = device_settings(threads, preoptimized, config).but(disabled_optimizers=tuple(disabled_optimizers))
    return open_session(path, settings, what="stage")


def check_plan(folder, plan) -> None:
    """Raise BundleError naming the problem when `plan` is not a staged plan whose files the bundle lists."""
    try:
        files = [stage["file"] for step in plan["steps"] for stage in step]
        names = [plan["input"], plan["output"]] + [n for step in plan["steps"] for s in step
                                                   for n in s["inputs"] + s["outputs"]]
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{folder}: onnxruntime.staged is not a staged plan ({exc!r} missing or malformed); "
                          "re-export the bundle") from None
    for rel in files:
        path = inside(Path(folder), rel)
        if not path.is_file():
            raise BundleError(f"{folder}: the staged plan names {rel}, which is not in the bundle; re-export it")
    if not all(isinstance(n, str) for n in names):
        raise BundleError(f"{folder}: the staged plan's tensor names must be strings; re-export the bundle")


class StagedEngine:
    backend = "onnxruntime"
    thread_cap = None   # the manifest's cap this engine honours (deploy.engines.onnxruntime.from_bundle), else None

    def __init__(self, folder, plan: dict, *, threads: int | None = None, precision: str = "int8",
                 preoptimized: bool = False, disabled_optimizers=()):
        self.threads = int(threads or os.cpu_count() or 1)
        self.precision = precision
        self.concurrent = self.threads >= 2
        self.session_config = dict(plan.get("session_config") or {})
        self.steps = []
        for step in plan["steps"]:
            per_stage = max(1, self.threads // len(step)) if self.concurrent else self.threads
            self.steps.append([(_session(Path(folder) / stage["file"], per_stage, preoptimized,
                                         disabled_optimizers, self.session_config), stage) for stage in step])
        widest = max(len(step) for step in self.steps)
        self._pool = ThreadPoolExecutor(widest - 1) if self.concurrent and widest > 1 else None
        first, last = self.steps[0][0][0], self.steps[-1][0][0]
        self.input_name, self.output_name = plan["input"], plan["output"]
        self.input_shape = tuple(first.get_inputs()[0].shape)
        self.output_shape = tuple(next(o for o in last.get_outputs() if o.name == self.output_name).shape)
        if not all(isinstance(d, int) and d > 0 for d in self.input_shape + self.output_shape):
            raise BundleError(f"{folder}: staged plan has dynamic shapes {self.input_shape} -> {self.output_shape}; "
                              "re-export the bundle")
        self.input_buffer = np.zeros(self.input_shape, np.float32)
        self.output_buffer = np.zeros(self.output_shape, np.float32)

    @staticmethod
    def _run(session, stage, tensors: dict) -> list:
        return session.run(stage["outputs"], {name: tensors[name] for name in stage["inputs"]})

    def run_step(self, index: int, tensors: dict) -> dict:
        """{name: array} of step `index`'s outputs, its stages concurrent when the engine has the threads."""
        step = self.steps[index]
        if self._pool is not None and len(step) > 1:
            others = [self._pool.submit(self._run, s, stage, tensors) for s, stage in step[1:]]
            results = [self._run(*step[0], tensors)] + [f.result() for f in others]
        else:
            results = [self._run(s, stage, tensors) for s, stage in step]
        return {name: value for (_, stage), values in zip(step, results)
                for name, value in zip(stage["outputs"], values)}

    def infer(self, x: np.ndarray) -> np.ndarray:
        if x is not self.input_buffer:
            np.copyto(self.input_buffer, x, casting="same_kind")
        tensors = {self.input_name: self.input_buffer}
        for index in range(len(self.steps)):
            tensors.update(self.run_step(index, tensors))
        np.copyto(self.output_buffer, tensors[self.output_name])
        return self.output_buffer

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.steps = []
