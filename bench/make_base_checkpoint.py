#!/usr/bin/env python3
"""A stand-in for the official SegVol checkpoint: every one of the 475 keys of
shared/docs/SEGVOL.md section 11.3 with its exact shape and dtype (random float32 values; int64
position_ids), written as HF's `pytorch_model.bin` (torch.save, zip) and as `model.safetensors`.
Used to time weight loading at full size (`segvol convert`, `segvol bench`) and to check that the
strict loader accepts the official key list, where the real 724 MB file cannot be downloaded.
Without torch (numpy + safetensors only) it writes model.safetensors alone. Never run in CI.

    python3 bench/make_base_checkpoint.py OUT_DIR
"""
import sys
from pathlib import Path

try:
    import torch
except ImportError:  # numpy + safetensors alone: model.safetensors only
    torch = None


def keys():
    k = {}
    e = "model.image_encoder."
    k[e + "patch_embedding.position_embeddings"] = (1, 2048, 768)
    k[e + "patch_embedding.patch_embeddings.1.weight"] = (768, 1024)
    k[e + "patch_embedding.patch_embeddings.1.bias"] = (768,)
    for i in range(12):
        b = f"{e}blocks.{i}."
        for n in ("norm1", "norm2"):
            k[b + n + ".weight"] = (768,)
            k[b + n + ".bias"] = (768,)
        k[b + "attn.qkv.weight"] = (2304, 768)
        k[b + "attn.out_proj.weight"] = (768, 768)
        k[b + "attn.out_proj.bias"] = (768,)
        k[b + "mlp.linear1.weight"] = (3072, 768)
        k[b + "mlp.linear1.bias"] = (3072,)
        k[b + "mlp.linear2.weight"] = (768, 3072)
        k[b + "mlp.linear2.bias"] = (768,)
    k[e + "norm.weight"] = (768,)
    k[e + "norm.bias"] = (768,)

    d = "model.mask_decoder."
    def attn(p, inner):
        for n in ("q", "k", "v"):
            k[f"{p}.{n}_proj.weight"] = (inner, 768)
            k[f"{p}.{n}_proj.bias"] = (inner,)
        k[f"{p}.out_proj.weight"] = (768, inner)
        k[f"{p}.out_proj.bias"] = (768,)
    for l in range(2):
        t = f"{d}transformer.layers.{l}."
        attn(t + "self_attn", 768)
        attn(t + "cross_attn_token_to_image", 384)
        attn(t + "cross_attn_image_to_token", 384)
        k[t + "mlp.lin1.weight"] = (2048, 768)
        k[t + "mlp.lin1.bias"] = (2048,)
        k[t + "mlp.lin2.weight"] = (768, 2048)
        k[t + "mlp.lin2.bias"] = (768,)
        for n in range(1, 5):
            k[f"{t}norm{n}.weight"] = (768,)
            k[f"{t}norm{n}.bias"] = (768,)
    attn(d + "transformer.final_attn_token_to_image", 384)
    k[d + "transformer.norm_final_attn.weight"] = (768,)
    k[d + "transformer.norm_final_attn.bias"] = (768,)
    k[d + "iou_token.weight"] = (1, 768)
    k[d + "mask_tokens.weight"] = (4, 768)
    k[d + "output_upscaling.0.weight"] = (768, 192, 2, 2, 2)
    k[d + "output_upscaling.0.bias"] = (192,)
    k[d + "output_upscaling.1.weight"] = (192, 16, 32, 32)
    k[d + "output_upscaling.1.bias"] = (192, 16, 32, 32)
    k[d + "output_upscaling.3.weight"] = (192, 96, 2, 2, 2)
    k[d + "output_upscaling.3.bias"] = (96,)
    for m in range(4):
        h = f"{d}output_hypernetworks_mlps.{m}.layers."
        for j, shape in enumerate([(768, 768), (768, 768), (96, 768)]):
            k[f"{h}{j}.weight"] = shape
            k[f"{h}{j}.bias"] = (shape[0],)
    for j, shape in enumerate([(256, 768), (256, 256), (4, 256)]):
        k[f"{d}iou_prediction_head.layers.{j}.weight"] = shape
        k[f"{d}iou_prediction_head.layers.{j}.bias"] = (shape[0],)
    k[d + "txt_align_upscaled_embedding.weight"] = (96, 768)
    k[d + "txt_align_upscaled_embedding.bias"] = (96,)

    p = "model.prompt_encoder."
    k[p + "pe_layer.positional_encoding_gaussian_matrix"] = (3, 384)
    for i in range(4):
        k[f"{p}point_embeddings.{i}.weight"] = (1, 768)
    k[p + "not_a_point_embed.weight"] = (1, 768)
    k[p + "no_mask_embed.weight"] = (1, 768)
    for j, (w, b) in {0: ((4, 1, 2, 2), (4,)), 1: ((4,), (4,)), 3: ((16, 4, 2, 2), (16,)),
                      4: ((16,), (16,)), 6: ((768, 16, 1, 1), (768,))}.items():
        k[f"{p}mask_downscaling.{j}.weight"] = w
        k[f"{p}mask_downscaling.{j}.bias"] = b

    t = "model.text_encoder.clip_text_model.text_model."
    k[t + "embeddings.token_embedding.weight"] = (49408, 512)
    k[t + "embeddings.position_embedding.weight"] = (77, 512)
    k[t + "embeddings.position_ids"] = (1, 77)
    for l in range(12):
        b = f"{t}encoder.layers.{l}."
        for n in ("q", "k", "v", "out"):
            k[f"{b}self_attn.{n}_proj.weight"] = (512, 512)
            k[f"{b}self_attn.{n}_proj.bias"] = (512,)
        for n in ("layer_norm1", "layer_norm2"):
            k[f"{b}{n}.weight"] = (512,)
            k[f"{b}{n}.bias"] = (512,)
        k[b + "mlp.fc1.weight"] = (2048, 512)
        k[b + "mlp.fc1.bias"] = (2048,)
        k[b + "mlp.fc2.weight"] = (512, 2048)
        k[b + "mlp.fc2.bias"] = (512,)
    k[t + "final_layer_norm.weight"] = (512,)
    k[t + "final_layer_norm.bias"] = (512,)
    k["model.text_encoder.dim_align.weight"] = (768, 512)
    k["model.text_encoder.dim_align.bias"] = (768,)
    return k


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/segvol_base_random")
    out.mkdir(parents=True, exist_ok=True)
    k = keys()
    if torch is None:
        import numpy as np
        from safetensors.numpy import save_file

        rng = np.random.default_rng(0)
        sd = {
            name: (np.arange(77, dtype=np.int64).reshape(1, 77) if name.endswith("position_ids")
                   else (rng.standard_normal(shape, dtype=np.float32) * 0.02))
            for name, shape in k.items()
        }
        print(f"{len(sd)} tensors")
        save_file(sd, str(out / "model.safetensors"))
        print("model.safetensors", (out / "model.safetensors").stat().st_size, "bytes")
        return
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sd = {}
    for name, shape in k.items():
        if name.endswith("position_ids"):
            sd[name] = torch.arange(77).reshape(1, 77)
        else:
            sd[name] = torch.randn(shape) * 0.02
    n = sum(v.numel() for v in sd.values() if v.dtype == torch.float32)
    print(f"{len(sd)} tensors, {n:,} float32 values")
    torch.save(sd, out / "pytorch_model.bin")
    save_file({a: b.contiguous() for a, b in sd.items()}, out / "model.safetensors")
    for f in ("pytorch_model.bin", "model.safetensors"):
        print(f, (out / f).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
