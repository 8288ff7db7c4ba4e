"""The JEM math, torch only, no I/O: backbones, energies, SGLD, replay buffer, OOD, metrics."""

from jem.backbones import (
    DigitsCNN,
    WideResNet,
    create_backbone,
    list_backbones,
    register_backbone,
)
from jem.buffer import (
    ClassGaussianInit,
    MixedInit,
    ReplayBuffer,
    UniformInit,
    init_from_state_dict,
)
from jem.metrics import (
    accuracy,
    auroc,
    expected_calibration_error,
    fit_temperature,
    fpr_at_tpr,
    negative_log_likelihood,
    reliability_bins,
    threshold_at_tpr,
)
from jem.model import JEM, energy_from_logits, use_fast_layout
from jem.ood import (
    OOD_SCORES,
    energy_score,
    grad_norm_score,
    max_softmax_from_logits,
    max_softmax_score,
    ood_scores,
)
from jem.preprocess import (
    BACKGROUND_NAMES,
    InputSpec,
    parse_background,
    tensor_to_uint8,
    uint8_to_tensor,
)
from jem.sgld import EnergyModel, SGLDConfig, run_chain, sgld_sample
from jem.sgld_graph import GraphedSGLD

__all__ = [
    "BACKGROUND_NAMES",
    "JEM",
    "OOD_SCORES",
    "ClassGaussianInit",
    "DigitsCNN",
    "EnergyModel",
    "GraphedSGLD",
    "InputSpec",
    "MixedInit",
    "ReplayBuffer",
    "SGLDConfig",
    "UniformInit",
    "WideResNet",
    "accuracy",
    "auroc",
    "create_backbone",
    "energy_from_logits",
    "energy_score",
    "expected_calibration_error",
    "fit_temperature",
    "fpr_at_tpr",
    "grad_norm_score",
    "init_from_state_dict",
    "list_backbones",
    "max_softmax_from_logits",
    "max_softmax_score",
    "negative_log_likelihood",
    "ood_scores",
    "parse_background",
    "register_backbone",
    "reliability_bins",
    "run_chain",
    "sgld_sample",
    "tensor_to_uint8",
    "threshold_at_tpr",
    "uint8_to_tensor",
    "use_fast_layout",
]
