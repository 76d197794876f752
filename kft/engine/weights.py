"""What the engine reads from a loaded model, by reference: the decoder's shape, its norms, the seven projections of
every layer (plain tensors, or bitsandbytes ``Params4bit`` with their quant state), each PEFT adapter's LoRA A/B and
scaling, the embedding and the lm_head. Nothing here runs a module's forward or copies a 4-bit weight.

``unsupported(model)`` says why a model cannot be decoded by the engine (None when it can): the Llama family
(``llama``: Llama 3.x, SmolLM, kft's tiny model) and ``qwen2`` (q/k/v biases, tied or untied lm_head), full attention
on every layer, SiLU MLP, RoPE of a kind transformers computes ahead of time (default, linear, llama3). The same
walk serves a model loaded by Unsloth or by transformers + PEFT: both hold ``nn.Linear`` / ``Linear4bit`` base
layers inside PEFT's LoRA layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUPPORTED_TYPES = ("llama", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3")
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass
class Projection:
    """One base projection (by reference) and the LoRA adapters on it."""

    weight: Any  # nn.Parameter: a plain matrix (out, in) or a bitsandbytes Params4bit
    bias: Any | None
    out_features: int
    in_features: int
    quant_state: Any | None = None  # bitsandbytes' QuantState of a 4-bit weight
    lora: dict[str, tuple[Any, Any, float]] = field(default_factory=dict)  # adapter -> (A (r, in), B (out, r), scaling)

    @property
    def quantized(self) -> bool:
        return self.quant_state is not None


@dataclass
class Layer:
    input_norm: Any
    post_norm: Any
    proj: dict[str, Projection]


@dataclass
class ModelWeights:
    """A decoder's weights and shape, read from a (PEFT-wrapped) HF causal LM."""

    model_type: str
    layers: list[Layer]
    embed: Any
    norm: Any
    lm_head: Any
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    inv_freq: Any  # float32 (head_dim // 2,)
    rope_scaling: float
    adapters: tuple[str, ...]

    def lora_params(self) -> list[Any]:
        return [t for layer in self.layers for p in layer.proj.values() for a, b, _ in p.lora.values() for t in (a, b)]


def causal_lm(model: Any) -> Any:
    """The HF ``*ForCausalLM`` inside a PEFT wrapper (Unsloth's too), or the model itself."""
    get = getattr(type(model), "get_base_model", None)
    return get(model) if get is not None else model


def unsupported(model: Any) -> str | None:
    """Why the engine cannot decode ``model`` (None: it can)."""
    lm = causal_lm(model)
    cfg = getattr(lm, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_TYPES:
        return f"architecture {kind!r} (the engine decodes {', '.join(SUPPORTED_TYPES)})"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act!r}"
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or ())):
        return "sliding-window layers"
    rope = _rope_parameters(cfg)
    if rope.get("rope_type", "default") not in ROPE_TYPES:
        return f"RoPE type {rope.get('rope_type')!r}"
    decoder = getattr(lm, "model", None)
    if decoder is None or not hasattr(decoder, "layers") or not hasattr(decoder, "embed_tokens"):
        return "no decoder layers found"
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (weight is not None and not weight.is_floating_point() and getattr(weight, "quant_state", None) is None
                and getattr(module, "quant_state", None) is None):
            return f"a quantized weight of a kind the engine does not read ({type(module).__name__})"
        if getattr(module, "merged_adapters", None):
            return "merged LoRA weights"
        if any(getattr(module, "use_dora", {}).values()) or any((getattr(module, "lora_bias", {}) or {}).values()):
            return "DoRA or LoRA biases"
        if getattr(module, "fan_in_fan_out", False):
            return "fan_in_fan_out LoRA"
    return None


def _rope_parameters(cfg: Any) -> dict[str, Any]:
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rope = dict(rope)
    rope.setdefault("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    return rope


def rope_frequencies(cfg: Any) -> tuple[Any, float]:
    """(inv_freq float32, attention scaling) as transformers computes them for this config (no module runs)."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = _rope_parameters(cfg)
    kind = rope.get("rope_type", "default")
    if kind == "default":
        dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        base = float(rope["rope_theta"])
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), 1.0
    inv_freq, scaling = ROPE_INIT_FUNCTIONS[kind](cfg, None)
    return inv_freq.float(), float(scaling)


def _projection(module: Any) -> Projection:
    base = getattr(module, "base_layer", module)
    weight = base.weight
    out_f = getattr(base, "out_features", None) or weight.shape[0]
    in_f = getattr(base, "in_features", None) or weight.shape[1]
    # bitsandbytes keeps the quant state on the weight, or on the module for some loading paths
    quant = getattr(weight, "quant_state", None) or getattr(base, "quant_state", None)
    proj = Projection(weight, getattr(base, "bias", None), int(out_f), int(in_f), quant)
    lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
    if lora_a is not None and lora_b is not None:
        for name in lora_a:
            if name in lora_b:
                proj.lora[name] = (lora_a[name].weight, lora_b[name].weight, float(module.scaling[name]))
    return proj


def read_weights(model: Any) -> ModelWeights:
    """The weights of a model ``unsupported`` accepted, by reference."""
    lm = causal_lm(model)
    cfg, decoder = lm.config, lm.model
    layers = []
    for block in decoder.layers:
        attn, mlp = block.self_attn, block.mlp
        proj = {name: _projection(getattr(attn, name)) for name in ATTN}
        proj.update({name: _projection(getattr(mlp, name)) for name in MLP})
        layers.append(Layer(block.input_layernorm.weight, block.post_attention_layernorm.weight, proj))
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    inv_freq, scaling = rope_frequencies(cfg)
    adapters = tuple(sorted({a for layer in layers for p in layer.proj.values() for a in p.lora}))
    eps = getattr(cfg, "rms_norm_eps", None) or getattr(decoder.norm, "variance_epsilon", 1e-6)
    return ModelWeights(cfg.model_type, layers, decoder.embed_tokens.weight, decoder.norm.weight, lm.lm_head.weight,
                        float(eps), heads, getattr(cfg, "num_key_value_heads", None) or heads, head_dim,
                        cfg.hidden_size, lm.lm_head.weight.shape[0], inv_freq, scaling, adapters)


def version(weights: ModelWeights) -> tuple:
    """Changes whenever an adapter's weights are written in place (a training step) or replaced (a reload)."""
    return tuple((t.data_ptr(), t._version) for t in weights.lora_params())
