"""``semcomm link``: accuracy against the channel and channel uses, the semantic codec and image codecs over a link."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from semcomm.cli.inputs import check_classes, check_codec, check_hint, dataset_name, image_side, load
from semcomm.cli.options import (add_data_args, add_split_args, float_list, image_codecs, int_list, registered,
                                 str_list)
from semcomm.edge.codec import CODECS
from semcomm.edge.gating import GATES
from semcomm.edge.selection import SELECTION_RULES, takes_budget
from semcomm.transport.links import BLOCK_LENGTHS, CHANNELS, CODE_RATES, MODULATIONS, NO_CONDITION


def add_link(sub) -> None:
    p = sub.add_parser("link", help="accuracy against SNR and channel uses: the codec and image codecs over a link")
    conditions = "; ".join(f"{name}: {CHANNELS.info(name).get('condition')}" for name in CHANNELS)
    p.add_argument("--channel", default="awgn", type=registered(CHANNELS),
                   help=f"the channel, with what its condition is: {conditions}")
    p.add_argument("--snrs", type=float_list, help="channel conditions: Es/N0 in dB, or the probability the channel "
                   "takes (see --channel); default 0,1,2,3,4,6,10 dB")
    p.add_argument("--modulation", type=int, default=4, help=f"QAM order: {', '.join(map(str, MODULATIONS))} "
                   "(2: BPSK, 4: QPSK)")
    p.add_argument("--code-rate", default="1/2", help=f"802.11n LDPC rate: {', '.join(CODE_RATES)}")
    p.add_argument("--block", type=int, default=648, help=f"LDPC block length: {', '.join(map(str, BLOCK_LENGTHS))}")
    p.add_argument("--adaptive", action="store_true", help="link adaptation: the fastest modulation and code whose "
                   "measured block error rate at each SNR is at most --target-bler")
    p.add_argument("--target-bler", type=float, default=0.01, help="link adaptation's block error target")
    p.add_argument("--framings", type=str_list, help="the semantic codec's framing: packets (independently "
                   "decodable, protected header) and/or whole (the string as one packet); default both")
    p.add_argument("--header-copies", type=int, default=2, help="copies of each image's header packet")
    p.add_argument("--packet-bytes", type=int, help="data packet size in bytes (default: one code block's payload)")
    p.add_argument("--min-arrived", type=float, default=0.5, help="share of an image's patches that must arrive for "
                   "the server to answer (else the edge does)")
    add_split_args(p)
    p.add_argument("--limit", type=int, help="a fixed subset of N images (seed 0)")
    p.add_argument("--edge", default="vit-edge-cifar10")
    p.add_argument("--server", default="vit-server-cifar10", help="pixel server of the image codecs")
    p.add_argument("--codec", default="latent-cifar10", type=registered(CODECS),
                   help=f"semantic codec pair: {CODECS.help()}")
    p.add_argument("--rule", type=registered(SELECTION_RULES),
                   help="the selection rule at --budgets and --levels, one that keeps a budget of patches per image: "
                   f"{', '.join(name for name in SELECTION_RULES if takes_budget(name))} (default spread-top-k)")
    p.add_argument("--budgets", type=int_list, help="patches per image, e.g. 16,32,64 (at --levels)")
    p.add_argument("--levels", type=int_list, help="codec levels, e.g. 3,4")
    p.add_argument("--gate", default="min_entropy", type=registered(GATES),
                   help=f"the gate's uncertainty measure: {GATES.help()}")
    p.add_argument("--thresholds", type=float_list, help="gate thresholds")
    p.add_argument("--codecs", type=image_codecs, help="image codecs, e.g. webp-q10,webp-q40; 'none' for none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the results here (a .partial file beside it lets a run resume)")
    p.add_argument("--plot", type=Path, help="write accuracy vs SNR and vs channel uses here (PNG or PDF)")
    add_data_args(p)
    p.set_defaults(run=link)


def link(args: argparse.Namespace) -> int:
    from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig
    from semcomm.experiments.plots import plot_link
    from semcomm.transport.links import LinkSpec

    spec = LinkSpec(args.channel, modulation=args.modulation, code_rate=args.code_rate, block=args.block,
                    adaptive=args.adaptive, target_bler=args.target_bler)
    config = LinkSweepConfig(link=spec, edge=args.edge, server=args.server, codec=args.codec, seed=args.seed,
                             min_arrived=args.min_arrived, header_copies=args.header_copies,
                             packet_bytes=args.packet_bytes, gate_kind=args.gate,
                             conditions=tuple(args.snrs) if args.snrs else _default_conditions(args.channel))
    if args.rule or args.budgets or args.levels:
        rule = args.rule or "spread-top-k"
        config = replace(config, settings=tuple((rule, k, m) for k in args.budgets or (16, 32, 64)
                                                for m in args.levels or (3,)))
    for name, value in (("thresholds", args.thresholds), ("codecs", args.codecs), ("framings", args.framings)):
        if value is not None:
            config = replace(config, **{name: value})
    split = load(args, args.split, image_side(args.edge), limit=args.limit)
    for model in (args.edge, args.server):
        check_classes(model, split)
    check_codec(args.codec, args.edge, dataset_name(args), "the link needs a codec pair fitted to this data")
    check_hint(args.edge)
    state = args.json.with_suffix(".partial") if args.json else None
    result = LinkSweep(config).run(split, state_path=state)
    print(f"{result.link}: the semantic codec against the best image codec at equal channel uses per image\n")
    print(result.table())
    print(f"\nedge alone {100 * result.edge_accuracy:.2f}%; {result.images} images of {result.dataset} in "
          f"{result.seconds:.0f} s ({result.machine})")
    if args.json:
        result.to_json(args.json)
    if args.plot:
        plot_link(result, args.plot)
    return 0


def _default_conditions(channel: str) -> tuple[float, ...]:
    """The link sweep's default conditions, or one (ignored) for a channel that takes none."""
    from semcomm.experiments.link_sweep import LinkSweepConfig

    return (0.0,) if CHANNELS.info(channel).get("condition") == NO_CONDITION else LinkSweepConfig.conditions
