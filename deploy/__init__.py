"""Everything the device runs, and the numpy code both sides share: the bundle's vocabulary (contract), recordings,
preprocessing, engines, events, the daemon; also the synthetic generator, the metrics and the freeze index, which
the workstation uses and the device does not need. numpy + onnxruntime (+ tensorrt, lazily); never torch."""
