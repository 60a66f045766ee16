"""The model in eval mode (prediction) traces for torch.compile without graph breaks.

Tracing only (``torch._dynamo.explain``); that inductor's compiled code matches eager is tested once, on
the whole training step (forward and backward), in tests/runtime/test_precision.py.
"""

import torch

from actionmoe.config import ModelConfig
from actionmoe.models.recognizer import build_model


def test_the_model_in_eval_mode_traces_without_graph_breaks():
    torch.manual_seed(0)
    config = ModelConfig(gate_hidden=16, expert_hidden=32, motion_taps=("layer3", "layer4"))
    model = build_model(config, 5).eval()
    assert torch._dynamo.explain(model.head)(torch.randn(2, 512)).graph_break_count == 0
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 16, 32, 32))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
