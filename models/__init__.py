"""PyTorch model zoo for freezing-of-gait detection: hybrid Transformer/RNN models, RNN+attention models, the
recurrent baselines, SCRN, and a registry of named presets. Imports torch only (never onnx: see onnx_export).
"""
from .recurrent import GRU, LSTM, RNN, RecurrentClassifier
from .registry import Preset, UnknownPreset, create_model, get_preset, list_presets, pretrained_path
from .rnn_attention import GRUAttentionPlus, LSTMAttentionPlus, RNNAttentionPlus, TSTMultiHeadAttention
from .scrn import SCRN, SCRNCell
from .transformer_rnn import TransformerGRUPlus, TransformerLSTMPlus, TransformerRNNPlus

# tsai 1.0.1's private helpers of these families, under tsai's names (not in __all__: private there too).
from .rnn_attention import (_MultiHeadAttention, _RNNAttentionPlus_Backbone, _RNNAttentionPlus_Base,  # noqa: E402
                            _ScaledDotProductAttention, _TSTEncoder, _TSTEncoderLayer)
from .transformer_rnn import _TransformerRNNEncoder, _TransformerRNNPlus  # noqa: E402

__all__ = [
    "Preset", "UnknownPreset", "create_model", "get_preset", "list_presets", "pretrained_path",
    "TransformerRNNPlus", "TransformerLSTMPlus", "TransformerGRUPlus",
    "RNNAttentionPlus", "LSTMAttentionPlus", "GRUAttentionPlus", "TSTMultiHeadAttention",
    "RNN", "GRU", "LSTM", "RecurrentClassifier", "SCRN", "SCRNCell",
]
