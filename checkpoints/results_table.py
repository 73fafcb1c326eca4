"""Print the results tables of checkpoints/README.md from the shipped cards (never typed by hand).

    python checkpoints/results_table.py            # markdown: results, campaign targets
    python checkpoints/results_table.py --write    # the same, into checkpoints/README.md between its markers

Every number comes from a card's stored ``evaluate`` report (10,000 samples, seed 0) or its
training record (steps, images seen, precision, wall time, segments). ``--write`` also records the
extra seeds (``checkpoints/seeds/<dataset>/<model>-seed<k>``) on the shipped seed-0 card as
``seed_runs``, so the card itself reports the seed-to-seed spread (issue 12), not only this README.
Seeds trained for a different number of steps than seed 0 are also compared at one step, the last
that both MIG tracks reached (2,000 samples per point), since scores at different steps say little.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

#: issue 12's campaign targets: checkpoint -> (description, check(scores of all cards) -> bool | None)
TARGETS = {
    "dsprites/devae": ("MIG ≥ 0.35 (paper 0.35 ± 0.02)", lambda s: s["dsprites/devae"]["mig"] >= 0.35),
    "dsprites/deft": (
        "MIG ≥ 0.30 and above β-VAE's",
        lambda s: s["dsprites/deft"]["mig"] >= 0.30 and s["dsprites/deft"]["mig"] > s["dsprites/betavae"]["mig"],
    ),
    "dsprites/betatcvae": ("MIG ≥ 0.30", lambda s: s["dsprites/betatcvae"]["mig"] >= 0.30),
    "dsprites/betavae": ("MIG ≥ 0.15 (paper single-space 0.19)", lambda s: s["dsprites/betavae"]["mig"] >= 0.15),
    "dsprites/qlae": (
        "InfoM and InfoE each ≥ 0.05 above AE's and β-VAE's; reconstruction no worse than β-VAE",
        lambda s: (
            all(
                s["dsprites/qlae"][k] >= s[o][k] + 0.05
                for k in ("infom", "infoe")
                for o in ("dsprites/ae", "dsprites/betavae")
            )
            and s["dsprites/qlae"]["reconstruction"] <= s["dsprites/betavae"]["reconstruction"]
        ),
    ),
    # issue 33 (DiD retrained with one code per factor)
    "dsprites/did": ("MIG ≥ 0.10 (issue 33; stretch: above β-VAE's)", lambda s: s["dsprites/did"]["mig"] >= 0.10),
    "shapes3d/did": ("MIG ≥ 0.10 (issue 33)", lambda s: s["shapes3d/did"]["mig"] >= 0.10),
    "shapes3d/devae": ("MIG ≥ 0.45", lambda s: s["shapes3d/devae"]["mig"] >= 0.45),
    "shapes3d/qlae": ("InfoM ≥ 0.7", lambda s: s["shapes3d/qlae"]["infom"] >= 0.7),
}


#: images seen by each checkpoint shipped when issue 12 was filed (steps × batch on its card at git 951e02b^):
#: the issue's budget is ≥ 30× these per model. Extra seeds are measured against their shipped model's.
FIRST_IMAGES = {
    "dsprites/ae": 3000 * 64,
    "dsprites/betatcvae": 3000 * 64,
    "dsprites/betavae": 3000 * 64,
    "dsprites/deft": 3000 * 64,
    "dsprites/devae": 1500 * 64,
    "dsprites/did": 200 * 160,
    "dsprites/qlae": 3000 * 64,
    "shapes3d/betavae": 3000 * 64,
    "shapes3d/devae": 1000 * 64,
    "shapes3d/did": 150 * 160,
    "shapes3d/qlae": 3000 * 64,
}
BUDGET_FACTOR = 30


def budget_multiple(name: str, card: dict) -> float | None:
    """Images seen ÷ the first checkpoint's images (issue 12 asks for ≥ 30), or None if it had none."""
    first = FIRST_IMAGES.get(f"{card['dataset']['name']}/{card['model']}" if name.startswith("seeds/") else name)
    return images_seen(card) / first if first else None


def images_seen(card: dict) -> int:
    """The card's images seen (older cards without the record: steps × batch)."""
    t = card.get("train") or {}
    return t.get("images_seen", card["steps"] * t.get("batch_size", 0))


def cards() -> dict[str, dict]:
    out = {}
    for f in sorted(ROOT.glob("*/*/card.json")) + sorted(ROOT.glob("seeds/*/*/card.json")):
        name = str(f.parent.relative_to(ROOT))
        if name.startswith("annealing"):
            continue
        out[name] = json.loads(f.read_text())
    return out


def _precision(card: dict) -> str:
    segs = (card.get("train") or {}).get("segments") or []
    amps = sorted({s.get("amp", "off") for s in segs}) or [(card.get("train") or {}).get("amp", "off")]
    return "+".join("fp32" if a == "off" else a for a in amps)


SEED_SCORES = ("mig", "infom", "infoe", "dci_disentanglement", "reconstruction")


def track_mig(card: dict, step: int) -> tuple[int, float] | None:
    """(step, MIG) of the card's diffusion track point nearest to ``step`` at or before it, if any."""
    points = [p for p in (card.get("tracks") or {}).get("diffusion") or [] if p["step"] <= step and "mig" in p]
    return (points[-1]["step"], float(points[-1]["mig"])) if points else None


def seed_runs(all_cards: dict[str, dict]) -> dict[str, list[dict]]:
    """Shipped checkpoint -> its extra seeds' records (seed, steps, scores, the two tracks at one step)."""
    out: dict[str, list[dict]] = {}
    for name, card in all_cards.items():
        if not name.startswith("seeds/"):
            continue
        base = f"{card['dataset']['name']}/{card['model']}"  # the shipped seed-0 folder of the same run
        shipped = all_cards.get(base)
        if shipped is None:
            continue
        scores = (card.get("metrics") or {}).get("scores") or {}
        # compared at the last track step both runs reached (the seeds ran for different lengths)
        mine = track_mig(card, min(card["steps"], shipped["steps"]))
        theirs = track_mig(shipped, mine[0]) if mine else None
        out.setdefault(base, []).append(
            {
                "checkpoint": f"checkpoints/{name}",
                "seed": card["seed"],
                "steps": card["steps"],
                "images_seen": (card.get("train") or {}).get("images_seen"),
                "scores": {k: scores[k] for k in SEED_SCORES if k in scores},
                "track_step": mine[0] if mine else None,
                "track_mig": mine[1] if mine else None,
                "seed0_track_mig_at_same_step": theirs[1] if theirs and mine and theirs[0] == mine[0] else None,
            }
        )
    return out


def record_seed_runs(all_cards: dict[str, dict]) -> list[str]:
    """Write ``seed_runs`` into each shipped seed-0 card that has extra seeds; returns the cards changed."""
    from disviz.engine.card import update_card

    changed = []
    for base, runs in seed_runs(all_cards).items():
        if all_cards[base].get("seed_runs") != runs:
            update_card(ROOT / base, seed_runs=runs)
            changed.append(base)
    return changed


BEGIN, END = "<!-- results_table.py:begin -->", "<!-- results_table.py:end -->"


def main() -> int:
    if "--write" in sys.argv[1:]:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            tables()
        readme = ROOT / "README.md"
        text = readme.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            print(f"error: {readme} has no {BEGIN} … {END} block", file=sys.stderr)
            return 2
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{buf.getvalue()}{END}{tail}", encoding="utf-8")
        print(f"updated {readme}")
        for base in record_seed_runs(cards()):
            print(f"recorded its extra seeds on checkpoints/{base}/card.json")
        return 0
    tables()
    return 0


def tables() -> None:
    all_cards = cards()
    scores = {n: (c.get("metrics") or {}).get("scores") or {} for n, c in all_cards.items()}
    print(
        "| checkpoint | steps (of planned) | images seen | × first (≥ 30) | precision | resumes | wall (h) | MIG | InfoM | InfoE | DCI-D | recon | PSNR |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, card in all_cards.items():
        t = card.get("train") or {}
        s = scores[name]
        seen = images_seen(card)

        def f(k: str, s: dict = s) -> str:
            return f"{s[k]:.3f}" if isinstance(s.get(k), (int, float)) else "—"

        mult = budget_multiple(name, card)
        times = "—" if mult is None else f"{mult:.0f}×" + (" ✓" if mult >= BUDGET_FACTOR else "")
        print(
            f"| `{name}` | {card['steps']:,} ({card['config']['steps']:,}) | {seen / 1e6:.2f} M | {times} | "
            f"{_precision(card)} | "
            f"{t.get('resumes', 0)} | {t.get('wall_time_s', 0) / 3600:.2f} | {f('mig')} | {f('infom')} | {f('infoe')} | "
            f"{f('dci_disentanglement')} | {s.get('reconstruction', float('nan')):.1f} | {s.get('psnr', float('nan')):.1f} |"
        )
    print()
    print("| checkpoint | target | measured | met? |")
    print("|---|---|---|---|")
    for name, (text, check) in TARGETS.items():
        s = scores.get(name, {})
        shown = ", ".join(f"{k} {s[k]:.3f}" for k in ("mig", "infom", "infoe") if k in s)
        try:
            met = "**yes**" if check(scores) else "no"
        except KeyError:
            met = "not measured"
        print(f"| `{name}` | {text} | {shown or '—'} | {met} |")
    seeds = seed_runs(all_cards)
    if not seeds:
        return
    print()
    print(
        "| shipped checkpoint | seed | steps | MIG (10,000) | InfoM | InfoE | track step | its MIG track there | seed 0's track there |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def num(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, (int, float)) else "—"

    def step_of(step: int | None) -> str:
        return f"{step:,}" if step else "—"

    for base, runs in seeds.items():
        s0 = scores[base]
        last = track_mig(all_cards[base], all_cards[base]["steps"])
        print(
            f"| `{base}` | 0 (shipped) | {all_cards[base]['steps']:,} | {num(s0.get('mig'))} | {num(s0.get('infom'))} | "
            f"{num(s0.get('infoe'))} | {step_of(last[0] if last else None)} | {num(last[1] if last else None)} | — |"
        )
        for r in runs:
            sc = r["scores"]
            print(
                f"| `{base}` | {r['seed']} | {r['steps']:,} | {num(sc.get('mig'))} | {num(sc.get('infom'))} | "
                f"{num(sc.get('infoe'))} | {step_of(r['track_step'])} | {num(r['track_mig'])} | "
                f"{num(r['seed0_track_mig_at_same_step'])} |"
            )


if __name__ == "__main__":
    sys.exit(main())
