#!/usr/bin/env python3
"""Reference fixtures for SegVol's text prompt (issue 22), made by the original code.

What it records, in this folder:
- `names.json`: for every test name, SegVol's prompt ("A computerized tomography of a {}.") and
  the token ids of the tokenizer SegVol really runs: `AutoTokenizer.from_pretrained(
  "config/clip")` of the BAAI-DCAI/SegVol repository, i.e. `CLIPTokenizerFast` on its
  `tokenizer.json`.
- `tower_pooled.npy` `[N, 512]`, `tower_aligned.npy` `[N, 768]`: `transformers.CLIPTextModel(
  CLIPTextConfig())` (the library-default config SegVol builds) and `dim_align` (Linear 512 ->
  768), with the deterministic weights of `formula_weights` below, on all names in one padded
  batch, exactly as SegVol's `TextEncoder.forward` runs them (`pooler_output`, then `dim_align`).
- `micro.json` + `micro.{bin,pth,safetensors}`: a tiny CLIP (vocabulary 64, width 16, 1 layer)
  with formula weights, saved in the three official layouts (HF `.bin` with `model.` keys,
  `SegVol_v1.pth` as `{'model': {'module.…'}}`, and `.safetensors` with transformers 5.x names,
  which drop the `text_model.` level), and its output on one id sequence: the loaders' test.
- `tiny_text_*.npy`: SegVol's own `forward_decoder` (network/model.py, imported from the
  repository, not copied) on the tiny parity fixture (`shared/fixtures/segvol_tiny`: its
  weights and image embedding) with a text prompt, text only and text + box. The tiny decoder
  is 96 wide, so `dim_align` is Linear(512 -> 96) here and `txt_align_upscaled_embedding`
  Linear(96 -> 12), as the tiny fixture's manifest says; the CLIP tower is full size.

Weights are not stored (the full tower is 254 MB): every tensor is a function of its key, its
shape and the element index (`formula_weights`), computed identically by the Rust test in f32.

Run (never in CI; the outputs are committed):

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.15.0 transformers==5.23.0 tokenizers==0.23.3 \
        numpy safetensors
    # the original code: github.com/BAAI-DCAI/SegVol at 5768c97 (a checkout or bare mirror)
    /tmp/refvenv/bin/python segvol-core/tests/text_fixtures/make_text_fixtures.py \
        --segvol-repo /path/to/SegVol --shared ../shared

Made with torch 2.15.0, transformers 5.23.0, tokenizers 0.23.3, numpy 2.4.6, Python 3.11.
"""
import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = "A computerized tomography of a {}."

# Organ names of the challenge and of SegVol's demo, upper/lower case, punctuation, numbers,
# whitespace runs, apostrophes, non-ASCII (composed and decomposed accents, Greek with a final
# sigma, CJK, emoji), the special-token strings, and a long one.
NAMES = [
    "liver", "spleen", "pancreas", "aorta", "kidney", "left kidney", "right kidney",
    "kidney_left", "gallbladder", "esophagus", "stomach", "duodenum", "colon", "small bowel",
    "urinary bladder", "prostate", "inferior vena cava", "postcava", "portal vein and splenic vein",
    "left adrenal gland", "right adrenal gland", "lung", "heart", "brain", "whole brain",
    "autochthon_right", "hepatic tumor", "liver tumor", "kidney tumor", "lung nodule",
    "rib left 7", "rib_right_12", "vertebrae L1", "vertebra C7", "T12", "femur-left",
    "LIVER", "Liver", "SpLeEn", "  liver  ", "left\tkidney", "liver\n\ntumour",
    "liver's lobe", "can't", "lesion (primary)", "organ #3", "heart & lungs", "1.5 cm nodule",
    "2nd rib", "x-ray", "Leber", "hígado", "hi\u0301gado", "fémur", "Ænema", "ΣΗΜΑΣ",
    "肝臓", "간", "🫀 heart", "<|endoftext|>", "<end_of_text> liver", "<start_of_text>",
    "a", "", "...", "left lower lobe of the right lung near the hilum with calcified nodes",
]

SEGVOL_SHA = "5768c97"


# ---------------------------------------------------------------- the weights' formula
def fnv1a32(s):
    h = 0x811C9DC5
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def uniform(key, n):
    """n values in [-1, 1): splitmix64 of (fnv1a32(key) << 32) + (i + 1) * golden, top 24 bits."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = (np.uint64(fnv1a32(key)) << np.uint64(32)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    k = (z >> np.uint64(40)).astype(np.float32)  # < 2**24: exact
    return k * np.float32(2.0 ** -23) - np.float32(1.0)


def formula_weights(key, shape):
    """The value of every tensor, by the last part of its key (see the Rust twin in
    segvol-core/tests/text.rs): embeddings 0.5·u, LayerNorm weight 1 + 0.2·u, any other
    2-D weight u / sqrt(fan_in) (fan_in = shape[1], f64 → f32), every bias 0.1·u."""
    n = int(np.prod(shape))
    u = uniform(key, n)
    if key.endswith("embedding.weight"):
        v = np.float32(0.5) * u
    elif "layer_norm" in key and key.endswith(".weight"):
        v = np.float32(1.0) + np.float32(0.2) * u
    elif key.endswith(".weight"):
        v = u * np.float32(1.0 / math.sqrt(shape[1]))
    else:
        v = np.float32(0.1) * u
    return v.astype(np.float32).reshape(shape)


def official(name):
    """A CLIPTextModel parameter's name as SegVol's checkpoint has it: transformers 5.x dropped
    the `text_model.` level that the official checkpoint (and transformers 4.x) has."""
    return name if name.startswith("text_model.") else "text_model." + name


def fill(module, prefix, clip=True):
    """Formula weights for every parameter of `module`, keyed `prefix + name` in the official
    naming."""
    sd = module.state_dict()
    new = {}
    for name, t in sd.items():
        if name.endswith("position_ids"):
            new[name] = t
            continue
        key = prefix + (official(name) if clip else name)
        new[name] = torch.from_numpy(formula_weights(key, tuple(t.shape)))
    module.load_state_dict(new)


# ---------------------------------------------------------------- the original code
def segvol_checkout(repo):
    """A work tree of the SegVol repository at SEGVOL_SHA (a bare mirror is checked out into a
    temporary folder)."""
    if os.path.isdir(os.path.join(repo, "network")):
        return repo
    tmp = tempfile.mkdtemp(prefix="segvol-src-")
    subprocess.run(
        ["git", f"--git-dir={repo}", f"--work-tree={tmp}", "checkout", SEGVOL_SHA, "--", "."],
        check=True,
    )
    return tmp


def import_original(src):
    """network/model.py and the 3-D SAM modules, without MONAI and without CUDA: the package
    __init__ files (which import MONAI for the image encoder) are bypassed, model.py's training
    helpers are stubbed, and `.cuda()` is the identity."""
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    for pkg in ["segment_anything_volumetric", "segment_anything_volumetric.modeling"]:
        m = types.ModuleType(pkg)
        m.__path__ = [os.path.join(src, *pkg.split("."))]
        sys.modules[pkg] = m
    utils = types.ModuleType("utils")
    utils.__path__ = []
    sys.modules["utils"] = utils
    mi = types.ModuleType("utils.monai_inferers_utils")
    mi.select_points = mi.generate_box = None
    sys.modules["utils.monai_inferers_utils"] = mi

    class _Loss(torch.nn.Module):
        def forward(self, *a):
            raise RuntimeError("training only")

    lo = types.ModuleType("utils.loss")
    lo.BCELoss = lo.BinaryDiceLoss = _Loss
    sys.modules["utils.loss"] = lo
    sys.path.insert(0, src)
    model = importlib.import_module("network.model")
    pe = importlib.import_module("segment_anything_volumetric.modeling.prompt_encoder")
    md = importlib.import_module("segment_anything_volumetric.modeling.mask_decoder")
    tr = importlib.import_module("segment_anything_volumetric.modeling.transformer")
    return model, pe, md, tr


# ---------------------------------------------------------------- fixtures
def tokens(text_encoder, names):
    out = []
    for n in names:
        ids = text_encoder.tokenizer([TEMPLATE.format(n)])["input_ids"][0]
        out.append({"name": n, "prompt": TEMPLATE.format(n), "ids": [int(i) for i in ids]})
    return out


def tower(text_encoder, names):
    fill(text_encoder.clip_text_model, "text_encoder.clip_text_model.")
    fill(text_encoder.dim_align, "text_encoder.dim_align.", clip=False)
    with torch.no_grad():
        toks = text_encoder.organ2tokens(names)  # one padded batch, as SegVol runs it
        pooled = text_encoder.clip_text_model(**toks).pooler_output
        aligned = text_encoder.dim_align(pooled)
    return pooled.numpy(), aligned.numpy()


def micro(transformers):
    cfg = transformers.CLIPTextConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, eos_token_id=63, bos_token_id=62,
        pad_token_id=63,
    )
    clip = transformers.CLIPTextModel(cfg).eval()
    fill(clip, "text_encoder.clip_text_model.")
    align = torch.nn.Linear(16, 24)
    fill(align, "text_encoder.dim_align.", clip=False)
    ids = [62, 5, 17, 40, 3, 63]
    with torch.no_grad():
        pooled = clip(input_ids=torch.tensor([ids])).pooler_output
        aligned = align(pooled)
    # The official naming (with `text_model.`) in the .bin and .pth; transformers 5.x's naming
    # (without) in the .safetensors, to exercise both (the note).
    sd = {f"model.text_encoder.clip_text_model.{official(k)}": v
          for k, v in clip.state_dict().items()}
    sd.update({f"model.text_encoder.dim_align.{k}": v for k, v in align.state_dict().items()})
    torch.save(sd, os.path.join(HERE, "micro.bin"))
    torch.save({"model": {"module." + k[len("model."):]: v for k, v in sd.items()}, "epoch": 1},
               os.path.join(HERE, "micro.pth"))
    st = {k.replace(".text_model.", "."): v.numpy() for k, v in sd.items()
          if not k.endswith("position_ids")}
    assert not any(".text_model." in k for k in st) and any(".text_model." in k for k in sd)
    save_file(st, os.path.join(HERE, "micro.safetensors"))
    return {
        "config": {"vocab_size": 64, "width": 16, "mlp_dim": 32, "layers": 1, "heads": 2,
                   "max_positions": 77, "eos_token_id": 63, "out_dim": 24},
        "ids": ids,
        "pooled": pooled[0].tolist(),
        "aligned": aligned[0].tolist(),
    }


def tiny_end_to_end(model_mod, pe_mod, md_mod, tr_mod, clip_dir, shared):
    fx = os.path.join(shared, "fixtures", "segvol_tiny")
    pe = pe_mod.PromptEncoder(embed_dim=96, image_embedding_size=[8, 4, 4],
                              input_image_size=[32, 64, 64], mask_in_chans=16)
    md = md_mod.MaskDecoder(
        image_encoder_type="vit", num_multimask_outputs=3,
        transformer=tr_mod.TwoWayTransformer(depth=2, embedding_dim=96, mlp_dim=256, num_heads=8),
        transformer_dim=96, iou_head_depth=3, iou_head_hidden_dim=32,
        image_size=np.array([32, 64, 64]), patch_size=np.array([4, 16, 16]),
    )
    md.txt_align_upscaled_embedding = torch.nn.Linear(96, 12)  # as the tiny fixture
    w = load_file(os.path.join(fx, "weights.safetensors"))
    for part, mod in [("prompt_encoder", pe), ("mask_decoder", md)]:
        pre = f"model.{part}."
        sd = {k[len(pre):]: torch.from_numpy(v) for k, v in w.items() if k.startswith(pre)}
        missing, unexpected = mod.load_state_dict(sd, strict=False)
        assert not unexpected, unexpected
        assert all(k.startswith("mask_downscaling") for k in missing), missing
    segvol = model_mod.SegVol(image_encoder=torch.nn.Identity(), mask_decoder=md,
                              prompt_encoder=pe, clip_ckpt=clip_dir, roi_size=[32, 64, 64],
                              patch_size=[4, 16, 16], test_mode=True).eval()
    te = segvol.text_encoder
    fill(te.clip_text_model, "text_encoder.clip_text_model.")
    te.dim_align = torch.nn.Linear(512, 96)
    fill(te.dim_align, "text_encoder.dim_align.", clip=False)
    emb = torch.from_numpy(np.load(os.path.join(fx, "image_embedding.npy")))
    box = torch.from_numpy(np.load(os.path.join(fx, "box.npy")))
    out = {}
    with torch.no_grad():
        out["text_embedding"] = te(["liver"]).numpy()
        for tag, boxes in [("text", None), ("text_box", box)]:
            logits = segvol.forward_decoder(emb, (32, 64, 64), text=["liver"], boxes=boxes)
            out[f"{tag}_logits"] = logits.numpy()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segvol-repo", required=True)
    ap.add_argument("--shared", required=True)
    a = ap.parse_args()
    import transformers

    src = segvol_checkout(a.segvol_repo)
    model_mod, pe_mod, md_mod, tr_mod = import_original(src)
    clip_dir = os.path.join(src, "config", "clip")
    te = model_mod.TextEncoder(clip_dir).eval()

    toks = tokens(te, NAMES)
    with open(os.path.join(HERE, "names.json"), "w") as f:
        json.dump({"template": TEMPLATE, "tokenizer": type(te.tokenizer).__name__,
                   "source": f"BAAI-DCAI/SegVol@{SEGVOL_SHA} config/clip", "names": toks},
                  f, ensure_ascii=False, indent=1)
    pooled, aligned = tower(te, NAMES)
    np.save(os.path.join(HERE, "tower_pooled.npy"), pooled)
    np.save(os.path.join(HERE, "tower_aligned.npy"), aligned)
    with open(os.path.join(HERE, "micro.json"), "w") as f:
        json.dump(micro(transformers), f, indent=1)
    e2e = tiny_end_to_end(model_mod, pe_mod, md_mod, tr_mod, clip_dir, a.shared)
    for k, v in e2e.items():
        np.save(os.path.join(HERE, f"tiny_{k}.npy"), v.astype(np.float32))
    print(f"{len(toks)} names; pooled {pooled.shape}; e2e {sorted(e2e)}; "
          f"tokenizer {type(te.tokenizer).__name__}; transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
