"""The bundle's contract: the words the exporter writes into a bundle and the device reads back, each defined once,
and (in the modules of this package) the manifest's sections as typed objects.

Here, the vocabulary: axes and classes (in order), the model's tensor names, the manifest's schema version and model
files, the event settings a bundle carries unless export is told otherwise, the stream normalizations, and why the
cpu target runs fp32. Numpy-free and torch-free. The sections: `deploy.contract.events` (EventSettings: the one
layering of event settings and the one seconds -> samples rule), `deploy.contract.model` (model, models, input with
its PreprocessSpec, output), `deploy.contract.runtime` (precision plan, onnxruntime, streaming) and
`deploy.contract.manifest` (the whole manifest, one schema version), read through `deploy.bundle.Bundle`.
"""
from __future__ import annotations

from deploy.layouts import AXES, CLASSES  # the columns of every recording layout: the bundle speaks the same words

__all__ = ["AXES", "CLASSES", "INPUT_NAME", "OUTPUT_NAME", "SCHEMA_VERSION", "MANIFEST", "SIGNATURE_FILE", "FP32_FILE",
           "INT8_FILE", "EVENT_DEFAULTS", "EVENT_KEYS", "EVENT_HELP", "EVENT_MODES", "event_help", "event_flag",
           "event_flag_kind",
           "EVENT_FLAG_ALIASES", "STREAM_NORMALIZATIONS", "CPU_FP32_REASON"]

INPUT_NAME, OUTPUT_NAME = "x", "probs"   # the bundled graph's one input and one output (probabilities)

SCHEMA_VERSION = 1                       # of manifest.json; Bundle.load refuses any other
MANIFEST = "manifest.json"
SIGNATURE_FILE = "signature.json"        # beside the manifest, outside its file list: signs its digest (deploy.signing)
FP32_FILE, INT8_FILE = "model_fp32.onnx", "model_int8_qdq.onnx"

# The event settings a bundle carries unless export is told otherwise (deploy.contract.events.EventSettings layers
# everything over them). The daemon, `toolkit evaluate` and the model report fall back to the same values, so the
# figures a model card reports are what a device runs.
# `mode`'s default is what bundles written before the key did (one event stream per event class); export chooses
# it from what the model was trained on (toolkit.export.event_mode).
EVENT_DEFAULTS = {"hop_s": 0.5, "lookahead_s": 1.0, "smoothing_s": 0.5, "on": 0.5, "off": 0.35,
                  "min_duration_s": 1.0, "refractory_s": 2.0, "mode": "per_class"}
# How events are raised: "any", one any-FOG event per freeze (the event classes' any-FOG probability,
# deploy.event_classes, through one detector); "per_class", one detector per event class (a freeze may raise
# one event per class that crosses its threshold).
EVENT_MODES = ("any", "per_class")
EVENT_KEYS = tuple(EVENT_DEFAULTS)       # the manifest's `events` keys, and the flags that set them (--smoothing-s)
# What each event key means, as every command line's --hop-s, --smoothing-s ... says it (toolkit and daemon alike).
EVENT_HELP = {
    "hop_s": "seconds between window decisions",
    "lookahead_s": "look-ahead, s: how long a sample's probability may wait for later windows ('full' where accepted)",
    "smoothing_s": "moving-average smoothing of the probabilities, s",
    "on": "probability that starts an event",
    "off": "probability that ends an event (<= on)",
    "min_duration_s": "shortest event reported, s",
    "refractory_s": "quiet time after an event of the same class, s",
    "mode": "'any': one any-FOG event per freeze (a model trained on untyped freezes); 'per_class': one event "
            "stream per event class",
}


# Spellings `toolkit evaluate` used before its flags were named after the manifest keys: still accepted, not shown.
EVENT_FLAG_ALIASES = {"smoothing_s": "--smoothing", "min_duration_s": "--min-duration", "refractory_s": "--refractory"}


def event_flag(key: str) -> str:
    """The command-line flag of manifest event key `key`, spelled as the key is: --hop-s for hop_s (`mode` is
    --event-mode: a bare --mode would say nothing)."""
    return "--event-mode" if key == "mode" else "--" + key.replace("_", "-")


def event_flag_kind(key: str) -> dict:
    """The argparse keywords that read the flag of event key `key`: a number, or one of EVENT_MODES."""
    return {"choices": EVENT_MODES} if key == "mode" else {"type": float}


def event_help(key: str) -> str:
    """The help of the flag for manifest event key `key` (its name: --hop-s for hop_s), the same in every command."""
    default = EVENT_DEFAULTS[key]
    shown = f"{default:g}" if isinstance(default, (int, float)) else default
    return f"{EVENT_HELP[key]} (manifest events.{key}; default: the bundle's, else {shown})"


# How the daemon may normalize a stream (deploy.wearer; the manifest's streaming.normalization).
STREAM_NORMALIZATIONS = ("declared", "window", "running", "running-warm", "wearer", "fixed")


# Why a cpu-target bundle runs fp32 (the target's note and the manifest's cpu precision say it with these words).
CPU_FP32_REASON = ("the INT8 graph is the TensorRT Q/DQ graph (recurrence unrolled), which ONNX Runtime CPU runs "
                   "several times slower than the fused FP32 graph (docs/bench.md); --precision fastest measures both "
                   "on this machine and keeps the faster")
