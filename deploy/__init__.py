"""Everything the device runs. numpy + onnxruntime (+ tensorrt, lazily); never torch."""
