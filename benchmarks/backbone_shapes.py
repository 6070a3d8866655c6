"""What a training step of the long recipe's backbone costs in other shapes (depth, width), side
by side with the recipe's own shape in one run.

    python benchmarks/backbone_shapes.py [--quick] [--shape n_blocks=4 --shape dim=192,ff_dim=768]
    python benchmarks/backbone_shapes.py --no-residual --shape multiplicity=true  # the demo's

The backbone is the long recipe's (``benchmarks/fidelity.py --recipe long``: the ``small``
preset with 2 048 codes plus 256 residual codes for the 10 leading constituents, the code table
and 32 Fourier features; ``--no-residual``: without the residual codes, the default demo's
backbone); each ``--shape`` overrides some of its ``backbone.*`` settings. A step is forward,
backward and AdamW on a batch of 128 jets of 40 to 90 constituents (random codes in the token
grammar: a code and a residual token for each of the 10 leading constituents, codes after them,
then the stop), padded to the longest, as the training batches are. The machine is shared and
noisy: the shapes' steps are interleaved, best of the repeats, and the ratio to the recipe's
shape is the figure to use.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_interleaved, emit  # noqa: E402
from fidelity import CONFIGS, RECIPES  # noqa: E402

from jetfm.errors import InputError  # noqa: E402
from jetfm.omnijet.backbone import JetGPT  # noqa: E402
from jetfm.omnijet.config import load_omnijet_config  # noqa: E402

#: the long recipe's backbone settings, taken from fidelity.py: its codebook, the residual codes
#: of ``long_res`` (for fidelity.py's default 10 leading constituents) and its model overrides
RECIPE = [*(s for s in RECIPES["long"]["tok_set"] if s.startswith("tokenizer.quantizer.")),
          f"tokenizer.residual_codes={CONFIGS['long_res']['residual_codes']}",
          "tokenizer.residual_leading=10", *CONFIGS["long_res"]["model"]]
#: the same without the residual codes (``--no-residual``)
PLAIN = [s for s in RECIPE if not s.startswith("tokenizer.residual_")]
SHAPES = ["n_blocks=3", "n_blocks=4", "dim=192,ff_dim=768", "dim=192,ff_dim=768,n_blocks=3",
          "dim=256,ff_dim=1024,n_blocks=3"]


def batch_of_jets(cfg, n_jets: int, gen: torch.Generator) -> torch.Tensor:
    """(n_jets, L) token sequences, -1 padded, that follow the residual-code grammar."""
    k, r, lead = cfg.vocab_size - 2 - cfg.residual_codes, cfg.residual_codes, \
        cfg.residual_leading
    lens = torch.randint(40, 91, (n_jets,), generator=gen)
    seqs = torch.full((n_jets, int(lens.max()) + lead + 2), -1, dtype=torch.long)
    for i, n in enumerate(lens.tolist()):
        toks = [0]
        for c in range(n):
            toks.append(int(torch.randint(1, k + 1, (1,), generator=gen)))
            if c < lead:
                toks.append(int(torch.randint(k + 1, k + r + 1, (1,), generator=gen)))
        toks.append(cfg.stop_token)
        seqs[i, :len(toks)] = torch.tensor(toks)
    return seqs


def training_step(shape: str, seqs: torch.Tensor, recipe: list[str]):
    """(a training step, parameters in millions) of the backbone of ``recipe`` with ``shape``
    (comma-separated ``key=value`` of ``backbone.*``) applied."""
    over = [f"backbone.{kv}" for kv in shape.split(",") if kv]
    cfg = load_omnijet_config("small", [*recipe, *over]).backbone
    torch.manual_seed(0)
    net = JetGPT(cfg).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-2)

    def step():
        loss = net.loss(seqs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: allocations, AdamW state
    return step, sum(p.numel() for p in net.parameters()) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 jets, 1 repeat, one shape")
    ap.add_argument("--shape", action="append", default=None, metavar="KEY=VALUE[,..]",
                    help="backbone settings to compare with the recipe's (repeatable)")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-residual", action="store_true",
                    help="the recipe's backbone without residual codes (the default demo's)")
    args = ap.parse_args()
    recipe = PLAIN if args.no_residual else RECIPE
    torch.set_num_threads(args.threads)
    shapes = args.shape or (SHAPES[1:2] if args.quick else SHAPES)
    for shape in shapes:  # a bad shape is refused before anything is timed
        try:
            load_omnijet_config("small", [*recipe, *(f"backbone.{kv}" for kv in shape.split(","))])
        except InputError as err:
            print(f"backbone_shapes.py: --shape {shape}: {err}", file=sys.stderr)
            return 2
    n_jets, repeats = (16, 1) if args.quick else (128, args.repeats)
    base_cfg = load_omnijet_config("small", recipe).backbone
    seqs = batch_of_jets(base_cfg, n_jets, torch.Generator().manual_seed(0))
    built = [training_step(shape, seqs, recipe) for shape in ["", *shapes]]
    times = best_interleaved([fn for fn, _ in built], repeats)
    base, base_par = times[0], built[0][1]
    print(f"batch {n_jets} jets padded to {seqs.shape[1]} tokens, {args.threads} threads, "
          f"best of {repeats} interleaved steps")
    print(f"  {'shape':34s} {'params':>8s} {'step':>8s} {'x recipe':>9s}")
    name = "the recipe" + (" without residual codes" if args.no_residual else "")
    print(f"  {name + ' (dim 128, 2 blocks)':34s} {base_par:7.2f}M {base * 1e3:6.0f}ms "
          f"{1.0:9.2f}")
    for shape, (_, par), t in zip(shapes, built[1:], times[1:]):
        print(f"  {shape:34s} {par:7.2f}M {t * 1e3:6.0f}ms {t / base:9.2f}")
        emit("backbone_step_s", t, "s", base, t / base, shape=shape, jets=n_jets,
             threads=args.threads, baseline_unit="s per step of the recipe's shape")
    return 0


if __name__ == "__main__":
    sys.exit(main())
