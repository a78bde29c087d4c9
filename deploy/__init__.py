"""Everything the device runs, and the numpy code both sides share: the bundle's vocabulary (contract), recordings,
preprocessing, engines, events, the daemon; also the synthetic generator, the metrics and the freeze index, which
the workstation uses and the device does not need. numpy + onnxruntime (+ tensorrt, lazily); never torch.

What a Jetson runs is `DEVICE_MODULES`: every module the daemon and the engines import, at any depth (lazily
imported ones included). tests/test_architecture.py computes that import closure from the source and fails when it
differs from this list, so a new import on the daemon's path is a decision someone writes down, and docs/architecture.md
shows the list (generated from here, checked by the same test). `WORKSTATION_MODULES` is the numpy code kept here so
both sides use one copy without torch, which the device never imports.
"""

# The daemon (deploy.daemon, python -m deploy) and the engines, and everything they import.
DEVICE_MODULES = (
    "deploy", "deploy.__main__", "deploy.daemon", "deploy.daemon_args", "deploy.config", "deploy.settings",
    "deploy.validate", "deploy.service", "deploy.counters", "deploy.errors", "deploy.lazy", "deploy.signing",
    # the bundle and its contract
    "deploy.bundle", "deploy.contract", "deploy.contract.checks", "deploy.contract.events",
    "deploy.contract.manifest", "deploy.contract.model", "deploy.contract.runtime", "deploy.contract.section",
    "deploy.contract.batching",
    # sources and what they read (replay reads any recording the toolkit reads, Daphnet's and Stanford's included)
    "deploy.sources", "deploy.feed", "deploy.blocks", "deploy.recording", "deploy.layouts", "deploy.cells",
    "deploy.daphnet", "deploy.stanford", "deploy.stanford_xlsx", "deploy.subjects",
    # the stream: intake, preprocessing, windows, the wearer's normalization, events, sinks
    "deploy.intake", "deploy.clock", "deploy.plausibility", "deploy.stream", "deploy.preprocess", "deploy.resample",
    "deploy.offline", "deploy.wearer", "deploy.batching", "deploy.wearers",
    # the gateway: many wearers in one process, their sources and formats, the per-wearer inbox and metrics
    "deploy.gateway", "deploy.gateway_metrics", "deploy.inbox", "deploy.sources_multi", "deploy.wearer_formats",
    "deploy.events", "deploy.event_classes", "deploy.onsets", "deploy.sinks", "deploy.mqtt_options",
    # engines
    "deploy.thread_cap", "deploy.engines", "deploy.engines.session", "deploy.engines.onnxruntime", "deploy.engines.staged",
    "deploy.engines.precision", "deploy.engines.tensorrt",
)

# numpy code the workstation shares from here (evaluate, score, export's checks, training data); never on the
# daemon's path.
WORKSTATION_MODULES = (
    "deploy.synth",         # seeded synthetic recordings (tests, calibration and verification windows, training)
    "deploy.metrics",       # the competition metric, event metrics
    "deploy.freeze_index",  # Moore's freeze index, the baseline
    "deploy.scoring",       # the one scorer of evaluate, the model report and the LOSO study
    "deploy.operating_points",  # evaluate's threshold sweep and the operating point it chooses
    "deploy.fidelity",      # the daemon's pipeline against offline prediction, measured at export
    "deploy.chunked",       # offline prediction over chunks of a long recording (toolkit score)
    "deploy.operating_points",  # evaluate's on-threshold sweep
    "deploy.settings_docs",  # the daemon's example TOML and settings table, written from deploy.settings
)
