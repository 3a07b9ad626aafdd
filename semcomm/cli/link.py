"""``semcomm link``: accuracy against the channel and channel uses, the semantic codec and image codecs over a link."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from semcomm.cli.inputs import (check_budgets, check_classes, check_codec, check_hint, check_levels, dataset_name,
                                image_side, load)
from semcomm.cli.options import (add_compute_args, add_data_args, add_engine_args, add_iaq_args, add_limit_arg,
                                 add_model_arg, add_outputs, add_split_args, check_engine, iaq_levels, iaq_policies,
                                 run_device)
from semcomm.cli.values import (image_codecs, names, nonnegative_int, open_probability, output_file, positive_floats,
                                positive_int, positive_ints, registered, share, shares, thresholds)
from semcomm.edge.codec import CODECS
from semcomm.edge.gating import GATES
from semcomm.edge.selection import SELECTION_RULES, takes_budget
from semcomm.experiments.link_sweep import FRAMINGS, JSCC_CHANNELS
from semcomm.transport.links import (BLOCK_LENGTHS, CHANNELS, CODE_RATES, MODULATIONS, NO_CONDITION, SNR, SNR_RANGE_DB,
                                     LinkSpec, check_snr)



def add_link(sub) -> None:
    p = sub.add_parser("link", help="accuracy against SNR and channel uses: the codec and image codecs over a link")
    conditions = "; ".join(f"{name}: {CHANNELS.info(name).get('condition')}" for name in CHANNELS)
    p.add_argument("--channel", default="awgn", type=registered(CHANNELS),
                   help=f"the channel, with what its condition is: {conditions}")
    p.add_argument("--snrs", type=channel_conditions, help="channel conditions: Es/N0 in dB from "
                   f"{SNR_RANGE_DB[0]:g} to {SNR_RANGE_DB[1]:g}, or the probability in [0, 1] the channel takes (see "
                   "--channel); default 0,1,2,3,4,6,10 dB; none for ideal")
    p.add_argument("--modulation", type=link_field("modulation", int), default=4, help="QAM order: "
                   f"{', '.join(map(str, MODULATIONS))} (2: BPSK, 4: QPSK)")
    p.add_argument("--code-rate", type=link_field("code_rate", str), default="1/2",
                   help=f"802.11n LDPC rate: {', '.join(CODE_RATES)}")
    p.add_argument("--block", type=link_field("block", int), default=648,
                   help=f"LDPC block length: {', '.join(map(str, BLOCK_LENGTHS))}")
    p.add_argument("--adaptive", action="store_true", help="link adaptation: the fastest modulation and code whose "
                   "measured block error rate at each SNR is at most --target-bler")
    p.add_argument("--target-bler", type=open_probability, default=0.01, help="link adaptation's block error target")
    p.add_argument("--framings", type=names, help="the semantic codec's framing: packets (independently "
                   "decodable, protected header) and/or whole (the string as one packet); default both")
    p.add_argument("--header-copies", type=positive_int, default=2, help="copies of each image's header packet")
    p.add_argument("--packet-bytes", type=positive_int, help="data packet size in bytes (default: one code block's "
                   "payload)")
    p.add_argument("--min-arrived", type=share, default=0.5, help="share of an image's patches that must arrive for "
                   "the server to answer (else the edge does)")
    add_split_args(p)
    add_limit_arg(p)
    add_model_arg(p, "--edge", "vit-edge-cifar10", "the edge model (gate, importance, selection, hint)")
    add_model_arg(p, "--server", "vit-server-cifar10", "pixel server of the image codecs")
    p.add_argument("--codec", default="latent-cifar10", type=registered(CODECS),
                   help=f"semantic codec pair: {CODECS.help()}")
    p.add_argument("--rule", type=registered(SELECTION_RULES),
                   help="the selection rule at --budgets and --levels, one that keeps a budget of patches per image: "
                   f"{', '.join(name for name in SELECTION_RULES if takes_budget(name))} (default spread-top-k)")
    p.add_argument("--budgets", type=positive_ints, help="patches per image, e.g. 16,32,64 (at --levels)")
    p.add_argument("--levels", type=positive_ints, help="codec levels, e.g. 3,4")
    add_iaq_args(p)
    p.add_argument("--jscc", help="also sweep a JSCC pair trained through the channel: its zoo name or card path "
                   "(`semcomm export jscc-cifar10`)")
    p.add_argument("--jscc-budgets", type=positive_ints, help="the JSCC pair's patches per image (default 16,32,64)")
    p.add_argument("--gate", default="min_entropy", type=registered(GATES),
                   help=f"the gate's uncertainty measure: {GATES.help()}")
    thresholds_group = p.add_mutually_exclusive_group()
    thresholds_group.add_argument("--thresholds", type=thresholds, help="gate thresholds, e.g. 0.4,0.8,1.2 (inf: never offload; default 0,0.2,...,2 min-entropy bits scaled to the gate's maximum for the data's classes, or offload rates where none keeps an image at the edge)")
    thresholds_group.add_argument("--offload-rates", type=shares, help="instead of --thresholds: shares of the images to offload, e.g. 0.2,0.5,0.8, each threshold calibrated on the edge's outputs")
    p.add_argument("--codecs", type=image_codecs, help="image codecs FORMAT-qQUALITY (jpeg, webp, avif files; vp8, av1 "
                   "as their transports carry them), e.g. webp-q10,av1-q40; 'none' for none; 'frontier' for the "
                   "error-free frontier's dense grid (39 settings)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the channel's random draws")
    add_outputs(p, "write the results here (a .tasks.jsonl file beside it lets a run resume)",
                "write accuracy vs SNR and vs channel uses here")
    p.add_argument("--degradation-plot", type=output_file(), help="write each scheme's accuracy against the channel "
                   "at fixed channel uses here (graceful degradation; budgets: --degradation-uses)")
    p.add_argument("--degradation-uses", type=positive_floats, default=(256.0, 512.0, 1024.0),
                   help="mean channel uses per image of the degradation plot's panels (default 256,512,1024)")
    add_engine_args(p, "the link sweep's tasks (scheme settings x channel conditions x shards of images)")
    p.add_argument("--shard-images", type=positive_int, help="images per task: each setting and condition runs as "
                   "tasks over shards of this many images, e.g. 1024 (needed for a split whose images stay on disk; "
                   "default: one task over every image)")
    add_compute_args(p)
    add_data_args(p)
    p.set_defaults(run=link, check=check_link)


def link_field(name: str, kind: type) -> Callable[[str], Any]:
    """An option type for one field of :class:`~semcomm.transport.links.LinkSpec`, checked by the spec itself."""

    def check(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        try:
            LinkSpec(**{name: value})
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    return check


def channel_conditions(text: str) -> tuple[float, ...]:
    """Comma-separated channel conditions, each a finite number (its range, which depends on the channel, is
    checked by :func:`check_link`)."""
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = item.strip()
        try:
            values.append(check_snr(value))
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{err} (in {text!r}; a probability channel's condition is a number in "
                                             "[0, 1])") from None
    return tuple(values)


def check_link(args: argparse.Namespace) -> None:
    """What depends on several options: conditions the channel takes, link adaptation on an SNR channel, a rule
    that keeps a budget, framings, budgets and levels that fit the edge and the pair, a pair fitted to the data,
    the edge's hint coder, the engine's address."""
    check_engine(args)
    condition = CHANNELS.info(args.channel).get("condition", SNR)
    if condition == NO_CONDITION and args.snrs:
        raise ValueError(f"--snrs: channel {args.channel} takes no condition; drop --snrs")
    low, high = SNR_RANGE_DB if condition == SNR else (0.0, 1.0)
    bad = [v for v in args.snrs or () if not low <= v <= high]
    if bad:
        what = "Es/N0 in dB" if condition == SNR else f"{'an' if condition[0] in 'aeiou' else 'a'} {condition}"
        raise ValueError(f"--snrs {','.join(f'{v:g}' for v in bad)}: channel {args.channel} takes {what} in "
                         f"[{low:g}, {high:g}]")
    adaptable = [n for n in CHANNELS if CHANNELS.info(n).get("condition", SNR) == SNR
                 and not CHANNELS.info(n).get("capacity")]
    if args.adaptive and args.channel not in adaptable:
        raise ValueError(f"--adaptive: link adaptation needs a coded SNR channel ({', '.join(adaptable)}), not "
                         f"{args.channel}")
    if args.rule is not None and not takes_budget(args.rule):
        raise ValueError(f"--rule {args.rule} keeps no fixed number of patches; choose from "
                         f"{', '.join(name for name in SELECTION_RULES if takes_budget(name))}")
    unknown = sorted(set(args.framings or ()) - set(FRAMINGS))
    if unknown:
        raise ValueError(f"--framings {','.join(unknown)}: choose from {', '.join(FRAMINGS)}")
    for option, budgets in (("--budgets", args.budgets), ("--iaq-budgets", args.iaq_budgets),
                            ("--jscc-budgets", args.jscc_budgets)):
        check_budgets(option, budgets, args.edge)
    if args.jscc is not None and args.channel not in JSCC_CHANNELS:
        raise ValueError(f"--jscc: a JSCC pair crosses {', '.join(JSCC_CHANNELS)}, not {args.channel}")
    check_levels(args.codec, {"--levels": args.levels, **iaq_levels(args)})
    check_codec(args.codec, args.edge, dataset_name(args), "the link needs a codec pair fitted to this data")
    check_hint(args.edge)


def link(args: argparse.Namespace) -> int:
    from semcomm.experiments.engines import engine_line, state_path, task_engine
    from semcomm.experiments.link_sweep import LinkSweep, LinkSweepConfig
    from semcomm.experiments.plots import plot_degradation, plot_link

    spec = LinkSpec(args.channel, modulation=args.modulation, code_rate=args.code_rate, block=args.block,
                    adaptive=args.adaptive, target_bler=args.target_bler)
    config = LinkSweepConfig(link=spec, edge=args.edge, server=args.server, codec=args.codec, seed=args.seed,
                             min_arrived=args.min_arrived, header_copies=args.header_copies,
                             packet_bytes=args.packet_bytes, gate_kind=args.gate, shard_images=args.shard_images,
                             conditions=tuple(args.snrs) if args.snrs else _default_conditions(args.channel))
    if args.rule or args.budgets or args.levels:
        rule = args.rule or "spread-top-k"
        config = replace(config, settings=tuple((rule, k, m) for k in args.budgets or (16, 32, 64)
                                                for m in args.levels or (3,)))
    for name, value in (("thresholds", args.thresholds), ("offload_rates", args.offload_rates), ("codecs", args.codecs),
                        ("framings", args.framings), ("policies", iaq_policies(args) or None),
                        ("policy_budgets", args.iaq_budgets), ("jscc", args.jscc), ("jscc_budgets", args.jscc_budgets)):
        if value is not None:
            config = replace(config, **{name: value})
    split = load(args, args.split, image_side(args.edge), limit=args.limit)
    for model in (args.edge, args.server):
        check_classes(model, split)
    device = run_device(args, "the Ray engine's tasks run on CPU workers" if args.engine == "ray" else None)
    engine = task_engine(args.engine, args.address)
    try:
        result = LinkSweep(config, device=device).run(split, state_path=state_path(args.json), engine=engine)
    finally:
        engine.shutdown()
    if result.engine["missing"]:
        print(f"semcomm link: error: incomplete: {result.notes[-1]}", file=sys.stderr)
        return 1
    print(f"{result.link}: the semantic codec against the best image codec at equal channel uses per image\n")
    print(result.table())
    print(f"\nedge alone {100 * result.edge_accuracy:.2f}%; {result.images} images of {result.dataset} in "
          f"{result.seconds:.0f} s ({result.machine}; {engine_line(result.engine)})")
    if args.json:
        result.to_json(args.json)
    if args.plot:
        plot_link(result, args.plot)
    if args.degradation_plot:
        plot_degradation(result, args.degradation_uses, args.degradation_plot)
    return 0


def _default_conditions(channel: str) -> tuple[float, ...]:
    """The link sweep's default conditions, or one (ignored) for a channel that takes none."""
    from semcomm.experiments.link_sweep import LinkSweepConfig

    return (0.0,) if CHANNELS.info(channel).get("condition") == NO_CONDITION else LinkSweepConfig.conditions
