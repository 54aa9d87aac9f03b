"""The reference benchmarks' shared setup: diffusers' QwenImageTransformer2DModel at full size (random bf16
weights) and one forward's inputs (batch 1, all-ones text mask), so that every reference figure times the
same model on the same shapes."""
import torch
from diffusers import QwenImageTransformer2DModel
from diffusers.models.transformers.transformer_qwenimage import QwenEmbedRope


def build(device, layers=60):
    with torch.device("meta"):
        m = QwenImageTransformer2DModel(num_layers=layers)
    m = m.to_empty(device=device).to(torch.bfloat16)
    m.pos_embed = QwenEmbedRope(theta=10000, axes_dim=[16, 56, 56], scale_rope=True)  # plain-tensor tables: rebuild off meta
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for n, t in m.named_parameters():
            if t.dim() >= 2:
                t.normal_(0, 0.02, generator=g)
            else:
                t.zero_() if n.endswith("bias") else t.fill_(1.0)
    m.eval()
    return m


def inputs(device, res, txt, generator=None):
    """A `res`² image's tokens and `txt` text tokens; pass a seeded generator for the same inputs everywhere."""
    h = w = res // 16
    x = torch.randn(1, h * w, 64, device=device, dtype=torch.bfloat16, generator=generator)
    e = torch.randn(1, txt, 3584, device=device, dtype=torch.bfloat16, generator=generator)
    mask = torch.ones(1, txt, device=device, dtype=torch.long)
    t = torch.full((1,), 0.5, device=device, dtype=torch.bfloat16)
    return dict(hidden_states=x, encoder_hidden_states=e, encoder_hidden_states_mask=mask,
                timestep=t, img_shapes=[[(1, h, w)]], return_dict=False)
