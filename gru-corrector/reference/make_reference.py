#!/usr/bin/env python3
"""PyTorch reference for segvol-gru, written independently of the Rust code from
shared/docs/GRU_CORRECTION.md (D2-D7, section 4.1 and section 6). Writes gru-corrector/tests/data/:

  corrector.safetensors   a corrector in PyTorch layout (K=16, H=24, coordinate head,
                          max_shift 1): gru.{weight,bias}_{ih,hh}_l0, delta_head.*, coord_head.*
  session.npz             logits0 (12x20x24), the clicks of two rounds, and per round the
                          hidden state, delta, shift and the corrected logits (numpy write-back)
  seed.pth                the seed's five-block layout (GRU_CORRECTION.md 3.1) at a small size
                          (K=4 -> input 32, hidden 10, fc_prob 10+24 -> 8), saved by torch.save
                          with the seed's `model.gru_blocks.*` keys
  seed.npz                a 3-round token sequence and coords, and each block's sigmoid output

The sampler is segvol-sampler's numpy reference (sampler/bench/numpy_reference.py).
Needs torch (tested 2.15.0 CPU), numpy 1.26.3, safetensors. Never run in CI:
    python3 gru-corrector/reference/make_reference.py
"""
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sampler" / "bench"))
from numpy_reference import sample  # noqa: E402

OUT = ROOT / "gru-corrector" / "tests" / "data"
K, H, MAX_SHIFT = 16, 24, 1.0
DIMS = (12, 20, 24)


class Corrector(torch.nn.Module):
    def __init__(self, k, h):
        super().__init__()
        self.gru = torch.nn.GRU(8 * k, h, batch_first=True)
        self.delta_head = torch.nn.Linear(h + 6 * k, 2 * k)
        self.coord_head = torch.nn.Linear(h + 6 * k, 6 * k)

    def forward(self, tokens, coords, h):
        out, _ = self.gru(tokens, h)
        ht = out[:, -1]
        z = torch.cat([ht, coords], 1)
        return ht, self.delta_head(z), MAX_SHIFT * torch.tanh(self.coord_head(z)).reshape(1, -1, 3)


def logits0():
    """A sphere of radius 6 predicted at radius ~5 plus a false blob, quantised to 0.25 so
    sigmoid ties are exact on both sides."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in DIMS], indexing="ij")
    d = np.sqrt((z - 6.0) ** 2 + (y - 10.0) ** 2 + (x - 11.0) ** 2)
    blob = np.sqrt((z - 3.0) ** 2 + (y - 3.0) ** 2 + (x - 20.0) ** 2)
    l = np.clip(1.2 * (5.0 - d), -6, 6) + np.clip(1.5 * (2.5 - blob), 0, 6) - 0.0
    return (np.round(l * 4) / 4).astype(np.float32)


def rows(state, first, dims):
    norm = lambda c: [c[a] / (dims[a] - 1) if dims[a] > 1 else 0.0 for a in range(3)]
    feats, coords, raw, valid = [], [], [], []
    f = norm(first) if first is not None else [0.0, 0.0, 0.0]
    for name in ("uncertainty", "error"):
        s = state[name]
        n = len(s["coords"])
        for i in range(K):
            if i < n:
                c = s["coords"][i]
                zc = norm(c)
                feats.append(zc + [s["values"][i], 1.0] + f)
                coords.append(zc)
                raw.append(c)
                valid.append(True)
            else:
                feats.append([0.0] * 8)
                coords.append([0.0, 0.0, 0.0])
                raw.append([0, 0, 0])
                valid.append(False)
    feats = np.asarray(feats, np.float32)
    return feats.reshape(1, 2, 8 * K), np.asarray(coords, np.float32).reshape(1, 6 * K), raw, valid


def round_half_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    model = Corrector(K, H).eval()
    with torch.no_grad():  # larger corrections than the default init, so writes are visible
        model.delta_head.weight.mul_(4.0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / "corrector.safetensors")

    L = logits0()
    out = {"logits0": L.copy()}
    # Round 1: a fg click inside the missed rim; round 2 adds a bg click in the false blob.
    click_rounds = [[((6, 10, 16), True)], [((6, 10, 16), True), ((3, 3, 20), False)]]
    h = torch.zeros(1, 1, H)
    first = click_rounds[0][0][0]
    for r, clicks in enumerate(click_rounds, start=1):
        p = (np.float32(1) / (np.float32(1) + np.exp(-L))).astype(np.float32)
        state = sample(p, clicks, k=K)
        tokens, coords, raw, valid = rows(state, first, DIMS)
        with torch.no_grad():
            ht, delta, shift = model(torch.from_numpy(tokens), torch.from_numpy(coords), h)
        h = ht.unsqueeze(0)
        delta = delta.numpy()[0]
        shift = shift.numpy()[0]
        for i in range(2 * K):
            if not valid[i]:
                continue
            c = np.asarray(raw[i], np.float32) + shift[i]
            t = np.clip(round_half_away(c), 0, np.asarray(DIMS) - 1).astype(int)
            L[t[0], t[1], t[2]] += delta[i]
        out[f"hidden{r}"] = ht.numpy()
        out[f"delta{r}"] = delta
        out[f"shift{r}"] = shift
        out[f"valid{r}"] = np.asarray(valid)
        out[f"logits{r}"] = L.copy()
        out[f"clicks{r}"] = np.asarray([[*c, int(fg)] for c, fg in clicks], np.int64)
        print(f"round {r}: {sum(valid)} real rows, max |delta| {np.abs(delta).max():.3f}")
    np.savez(OUT / "session.npz", **out)

    # The seed's layout at a small size: 5 blocks of GRU(8k -> hs) + fc_prob(hs + 6k -> 2k).
    k, hs = 4, 10
    blocks = torch.nn.ModuleList()
    for _ in range(5):
        b = torch.nn.Module()
        b.gru = torch.nn.GRU(8 * k, hs, batch_first=True)
        b.fc_prob = torch.nn.Linear(hs + 6 * k, 2 * k)
        blocks.append(b)
    sd = {f"model.gru_blocks.{n}": t for n, t in blocks.state_dict().items()}
    torch.save(sd, OUT / "seed.pth")
    seq = torch.randn(1, 6, 8 * k)  # three rounds of two tokens
    coords = torch.rand(1, 2 * k * 3)
    seed = {"seq": seq.numpy(), "coords": coords.numpy()}
    with torch.no_grad():
        for s in range(3):
            b = blocks[s]
            out_s, _ = b.gru(seq[:, : 2 * (s + 1)])  # h0 = 0, whole history, last step kept
            prob = torch.sigmoid(b.fc_prob(torch.cat([out_s[:, -1], coords], 1)))
            seed[f"prob{s}"] = prob.numpy()
    np.savez(OUT / "seed.npz", **seed)
    print("wrote", *sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
