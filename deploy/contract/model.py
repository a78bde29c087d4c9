"""The manifest's sections about the model: what it is (`model`), its files (`models`), what goes in (`input`, with
its PreprocessSpec) and what comes out (`output`: classes, background classes, the any-FOG rule)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from deploy.contract import AXES, INPUT_NAME, OUTPUT_NAME
from deploy.contract.checks import names, shape
from deploy.contract.section import Section, key
from deploy.errors import ConfigError
from deploy.event_classes import ANY_FOG_RULES, check_background, event_columns
from deploy.preprocess import PreprocessSpec

ACTIVATIONS = ("sigmoid", "softmax", "none")
OUTPUT_PER = ("patch", "sample", "window")   # what one output row decides (deploy.offline.output_per)
ROLES = ("fp32", "fp16", "int8", "engine")
MAX_CLASSES = 256


@dataclass(frozen=True, kw_only=True)
class ModelSection(Section):
    """The manifest's `model`: where the model came from; informational, except `notes` (the daemon logs them)."""
    KEY: ClassVar[str] = "model"
    name: str = key(doc="the model's name")
    preset: str | None = key(None, "registry preset, or null")
    source: str | None = key(None, "preset | checkpoint | tsai | user")
    tsai_compat: bool = key(False, "built with tsai_compat=True (tsai's forward, batch-axis mixing and all)")
    factory: dict | None = key(None, "a user model: {path: \"package.module:factory\", kwargs: {...}}, else null")
    weights_sha256: str | None = key(None, "sha256 of the weights file (or of a factory's state)")
    parameters: int | None = key(None, "parameter count")
    macs: int | None = key(None, "multiply-accumulates per window")
    float_graph: str | None = key(None, "\"fused\" (a fused LSTM/GRU/RNN node) | \"traced: why\" | "
                                        "\"static (quantization off): why\"")
    notes: tuple[str, ...] = key((), "what a user must know (random initial weights above all)")
    trained_on: dict | None = key(None, "what the weights were trained on, as their checkpoint says: {recordings: "
                                        "[{name, subject, sha256}], subjects: [...]}; evaluate marks these in-sample")

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise ConfigError(f"model.name = {self.name!r}: expected a string")
        names(self.notes, "model.notes", non_empty=False)


@dataclass(frozen=True, kw_only=True)
class ModelFiles(Section):
    """The manifest's `models`: the file of each model role, null where the bundle has none."""
    KEY: ClassVar[str] = "models"
    fp32: str | None = key(None, "the float ONNX")
    fp16: str | None = key(None, "an FP16 ONNX (none yet: FP16 is the builder's flag on the fp32 graph)")
    int8: str | None = key(None, "the INT8 model (TensorRT: the Q/DQ ONNX; cpu: the chosen onnxruntime plan)")
    engine: str | None = key(None, "a TensorRT engine built at export")

    def __post_init__(self):
        for role in ROLES:
            if getattr(self, role) is not None and not isinstance(getattr(self, role), str):
                raise ConfigError(f"models.{role} = {getattr(self, role)!r}: expected a file name or null")

    def of(self, role: str) -> str | None:
        if role not in ROLES:
            raise ConfigError(f"model role {role!r} is not one of {ROLES}")
        return getattr(self, role)

    @property
    def present(self) -> list[str]:
        return [role for role in ROLES if getattr(self, role)]


@dataclass(frozen=True, kw_only=True)
class InputSection(Section):
    """The manifest's `input`: the one input tensor and the preprocessing that makes it (deploy.preprocess)."""
    KEY: ClassVar[str] = "input"
    name: str = key(INPUT_NAME, "the graph's input name")
    shape: tuple[int, ...] = key(doc="static input shape")
    dtype: str = key("float32", "input dtype")
    preprocess: PreprocessSpec = key(doc="PreprocessSpec.to_dict() form (the keys the model declared)")
    axes: tuple[str, ...] = key(AXES, "the three axes, in order")
    # The preprocess keys the manifest names, in its order (a preset names some; the rest are PreprocessSpec's
    # defaults). Kept so `to_dict` writes back exactly what was read.
    preprocess_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                    metadata={"manifest": False})

    def __post_init__(self):
        shape(self.shape, "input.shape")
        names(self.axes, "input.axes", limit=3, unique=True)
        if not isinstance(self.preprocess, PreprocessSpec):
            raise ConfigError("input.preprocess: expected a table (the PreprocessSpec's keys)")

    @classmethod
    def convert(cls, values: dict) -> dict:
        pre = values.get("preprocess")
        if isinstance(pre, dict):
            values = {**values, "preprocess": PreprocessSpec.from_dict(pre), "preprocess_keys": tuple(pre)}
        return values

    @classmethod
    def of(cls, shape, preprocess: dict, name: str = INPUT_NAME) -> "InputSection":
        """The section of a model with input `shape` and the preprocess dict it declares."""
        return cls.from_dict({"name": name, "shape": list(shape), "dtype": "float32", "preprocess": dict(preprocess),
                              "axes": list(AXES)})

    @property
    def spec(self) -> PreprocessSpec:
        return self.preprocess

    def to_dict(self) -> dict:
        out = super().to_dict()
        everything = self.preprocess.to_dict()
        out["preprocess"] = {k: everything[k] for k in (self.preprocess_keys or everything)}
        return out


@dataclass(frozen=True, kw_only=True)
class OutputSection(Section):
    """The manifest's `output`: the one output tensor, its classes, which are events, how any-FOG is formed."""
    KEY: ClassVar[str] = "output"
    name: str = key(OUTPUT_NAME, "the graph's output name (probabilities: the activation is in the graph)")
    shape: tuple[int, ...] = key((), "static output shape")
    classes: tuple[str, ...] = key(doc="class names, in output order")
    per: str | None = key(None, "\"patch\" | \"sample\" | \"window\": what one output row decides")
    activation: str = key("sigmoid", "\"sigmoid\" | \"softmax\" | \"none\"")
    background: tuple[str, ...] = key((), "classes that raise no event (e.g. NoEvent)")
    any_fog: str = key("max", "\"sum\" | \"max\": how the any-FOG probability is formed from the event classes")

    def __post_init__(self):
        names(self.classes, "output.classes", limit=MAX_CLASSES, unique=True)
        names(self.background, "output.background", non_empty=False, limit=MAX_CLASSES)
        shape(self.shape, "output.shape", empty=True)
        if self.any_fog not in ANY_FOG_RULES:
            raise ConfigError(f"output.any_fog is {self.any_fog!r}, not one of {ANY_FOG_RULES}")
        if self.per is not None and self.per not in OUTPUT_PER:
            raise ConfigError(f"output.per is {self.per!r}, not one of {OUTPUT_PER}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"output.activation is {self.activation!r}, not one of {ACTIVATIONS}")
        check_background(self.classes, list(self.background))

    @property
    def event_columns(self) -> list[int]:
        """Indexes of the classes that raise events (every class but the background ones)."""
        return event_columns(self.classes, self.background)

    @property
    def event_classes(self) -> list[str]:
        return [self.classes[i] for i in self.event_columns]
