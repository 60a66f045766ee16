"""The model under torch.compile on CPU (inductor needs the C compiler that every CI machine has)."""

import pytest
import torch

from actionmoe.config import ModelConfig
from actionmoe.models.recognizer import build_model


@pytest.mark.slow
def test_compiled_model_matches_eager_without_graph_breaks():
    torch.manual_seed(0)
    config = ModelConfig(gate_hidden=16, expert_hidden=32, motion_taps=("layer3", "layer4"))
    model = build_model(config, 5).eval()
    assert torch._dynamo.explain(model.head)(torch.randn(2, 512)).graph_break_count == 0
    clip = torch.randn(2, 3, 16, 32, 32)
    assert torch._dynamo.explain(model)(clip).graph_break_count == 0
    torch._dynamo.reset()
    compiled = torch.compile(model)
    with torch.no_grad():
        out, expected = compiled(clip), model(clip)
    assert torch.allclose(out.logits, expected.logits, atol=1e-4)
    assert torch.equal(out.routing.gates > 0, expected.routing.gates > 0)
