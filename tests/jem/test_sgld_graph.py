"""The CUDA-graphed SGLD chain (the GPU test is marked `cuda`: skipped without a device)."""

from __future__ import annotations

import pytest
import torch

from jem import JEM, GraphedSGLD, SGLDConfig, create_backbone, run_chain
from jem._frozen import frozen_for_input_grads


def test_graph_needs_a_cuda_device() -> None:
    model = JEM(create_backbone("digits_cnn", width=4))
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        GraphedSGLD(model, (2, 1, 8, 8), SGLDConfig(), torch.device("cpu"))


@pytest.mark.cuda
def test_graphed_sgld_matches_the_eager_chain_and_sees_weight_updates() -> None:
    torch.manual_seed(0)
    model = JEM(create_backbone("digits_cnn", width=8)).cuda()
    config = SGLDConfig(steps=10, step_size=1.0, noise_std=0.0)
    x0 = torch.rand(32, 1, 8, 8, device="cuda") * 2 - 1
    graph = GraphedSGLD(model, tuple(x0.shape), config, torch.device("cuda"))

    def eager() -> torch.Tensor:
        with frozen_for_input_grads(model):
            return run_chain(model, x0.clone(), config, None, torch.randn_like)

    torch.testing.assert_close(graph(x0), eager(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # an optimiser step: in place, so the captured graph sees it
        for p in model.parameters():
            p.mul_(1.5)
    torch.testing.assert_close(graph(x0), eager(), atol=1e-5, rtol=1e-4)
    noisy = GraphedSGLD(model, tuple(x0.shape), SGLDConfig(steps=5), torch.device("cuda"))
    assert not torch.equal(noisy(x0), noisy(x0))  # the noise advances on every replay
