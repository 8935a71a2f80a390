"""Command line: ``train transducer``, ``eval transducer``, ``transcribe FILE.wav``, ``transducer-utterances``,
``transducer-adapt`` (enrollment: fine-tune to one new voice).

Kept light: torch and the model are imported inside the functions.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from explorer.core.training import add_training_options
from explorer.core.validate import COUNT, FRACTION, POSITIVE, POSITIVE_INT, SEED, THREADS, atomic_output, number

PAPER = "transducer"
DEFAULT_OUT = "transducer_fsdd_online.safetensors"


def _speakers(text):
    return [s for s in (text or "").split(",") if s]


def configure_train(p) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="FSDD folder (with recordings/); never bundled")
    p.add_argument(
        "--offline",
        action="store_true",
        help="train the offline variant: bidirectional encoder (answers only after the utterance ends)",
    )
    p.add_argument(
        "--holdout",
        default="",
        metavar="SPEAKER[,SPEAKER]",
        help="leave this FSDD speaker out of training and report its error rate (LOSO); several, "
        "comma-separated, train on fewer real voices (error rate pooled over the held-out ones)",
    )
    p.add_argument(
        "--batch",
        type=POSITIVE_INT,
        default=24,
        help="utterances per step, all processes together (default 24; under torchrun each of N "
        "processes draws batch/N from its own stream)",
    )
    p.add_argument("--lr", type=POSITIVE, default=2e-3, help="peak learning rate, cosine decay (default 2e-3)")
    p.add_argument(
        "--block",
        type=POSITIVE_INT,
        default=8,
        help="W: encoder frames (30 ms each) per block (default 8; 0 = the whole utterance is one block)",
    )
    p.add_argument("--max-per-block", type=number(int, 2), default=4, help="M: tokens per block incl. <e> (default 4)")
    p.add_argument("--hidden", type=POSITIVE_INT, default=128, help="GRU units in encoder and transducer (default 128)")
    p.add_argument("--attention", choices=("mlp", "dot"), default="mlp", help="attention over the block")
    p.add_argument(
        "--align",
        choices=("boundary", "dp"),
        default="boundary",
        help="training alignments: from the digit boundaries, or the paper's DP search (after --dp-start)",
    )
    p.add_argument("--dp-start", type=COUNT, default=0, help="use boundary alignments for this many steps first")
    p.add_argument(
        "--norm",
        choices=("causal", "global"),
        default="causal",
        help="feature normalisation: running mean of the utterance so far (default) or the training mean",
    )
    p.add_argument(
        "--ceps",
        type=POSITIVE_INT,
        default=None,
        metavar="K",
        help="encoder reads the first K cepstral coefficients (MFCCs) of the log-mel frame (0 = all bands)",
    )
    p.add_argument(
        "--dropout",
        type=number(float, 0, 1, high_open=True),
        default=None,
        help="dropout in the encoder while training",
    )
    p.add_argument(
        "--frontend",
        choices=("linear", "conv"),
        default=None,
        help="conv: a convolution and max-pool along the frequency axis before the encoder",
    )
    p.add_argument(
        "--augment",
        action="store_true",
        help="add VTLP, channel colouring, SpecAugment and a wider speed range (0.85-1.15); in 6-minute "
        "runs it made an unheard speaker worse (nicolas 36%% vs 25%%), so it is off by default",
    )
    p.add_argument(
        "--channel",
        type=FRACTION,
        default=0.0,
        metavar="P",
        help="share of training utterances sent through a random channel shelf (above 0.5-3 kHz, "
        "-35..+10 dB) before the noise is added (default 0)",
    )
    p.add_argument(
        "--formant",
        type=FRACTION,
        default=0.0,
        metavar="P",
        help="share of training utterances whose formants are stretched by 0.87-1.15, pitch and timing "
        "kept (a pseudo-speaker with another vocal-tract length; default 0)",
    )
    p.add_argument(
        "--crop",
        type=FRACTION,
        default=0.0,
        metavar="P",
        help="share of digit clips cut short by up to 80 ms at each end, as many FSDD recordings start or "
        "stop mid-word (default 0)",
    )
    p.add_argument(
        "--ema",
        type=number(float, 0, 1, high_open=True),
        default=0.0,
        metavar="DECAY",
        help="keep an exponential moving average of the weights (e.g. 0.999) and save it; the last "
        "iterate is evaluated too, for comparison (default: off)",
    )
    p.add_argument(
        "--more-data",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of isolated digits from more real voices, named {digit}_{speaker}_{index}.wav "
        "(e.g. shared/data/digits: Speech Commands and another FSDD speaker; repeatable). A fixed "
        "speaker-disjoint part trains, the rest is held out and scored after training",
    )
    p.add_argument(
        "--more-weight",
        type=FRACTION,
        default=0.3,
        metavar="P",
        help="share of training utterances from the --more-data voices (default 0.3)",
    )
    p.add_argument(
        "--more-test-share",
        type=FRACTION,
        default=0.25,
        metavar="F",
        help="share of the --more-data speakers held out for evaluation, chosen by a hash of their "
        "names (default 0.25)",
    )
    p.add_argument(
        "--more-holdout",
        default="",
        metavar="SPEAKER[,SPEAKER]",
        help="also hold these --more-data speakers out (e.g. jason, an FSDD-style speaker with all ten "
        "digits: scored on connected digits too)",
    )
    p.add_argument(
        "--tight",
        type=FRACTION,
        default=0.0,
        metavar="P",
        help="share of training utterances cut within 20 ms of their first and last word, like a clip "
        "trimmed to the word (default 0)",
    )
    p.add_argument(
        "--robust",
        type=FRACTION,
        default=0.0,
        metavar="P",
        help="share of training utterances given one input fault: a very low level, clipping, a DC "
        "offset or mains hum (default 0)",
    )
    p.add_argument(
        "--nonspeech",
        type=FRACTION,
        default=0.0,
        metavar="P",
        help="share of training utterances with no digit in them (noise, breaths, clicks, hum), so an open "
        "microphone stays silent (default 0)",
    )
    p.add_argument("--init", default=None, metavar="FILE", help="start from this checkpoint (fine-tuning)")
    p.add_argument("--no-tts", action="store_true", help="no flite/festival voices (espeak-ng only)")
    p.add_argument(
        "--more-voices",
        action="store_true",
        help="also MBROLA, SVOX Pico and RHVoice voices where installed (Debian contrib/non-free)",
    )
    p.add_argument(
        "--no-extra-voices",
        action="store_true",
        help="leave out the human digit recordings of Debian's asterisk-core-sounds-en-wav and saytime",
    )
    p.add_argument(
        "--synth-weight",
        "--espeak-weight",
        dest="espeak_weight",
        type=FRACTION,
        default=0.3,
        help="share of training utterances from voices other than FSDD's (espeak-ng, flite, festival, and the "
        "Asterisk and saytime recordings; 0 disables all of them)",
    )
    p.add_argument(
        "--fluent-weight",
        type=FRACTION,
        default=0.15,
        help="share of utterances that are fluent digit strings (libespeak-ng speaks the whole string, "
        "its word events give the digit boundaries); 0 = joined isolated digits only (default 0.15)",
    )
    p.add_argument("--fluent-phrases", type=COUNT, default=2000, help="fluent strings to synthesize (default 2000)")
    p.add_argument("--eval-utts", type=POSITIVE_INT, default=60, help="test utterances per speaker after training")
    add_training_options(
        p,
        steps=3000,
        epochs=None,
        minutes=None,
        seed=0,
        out_help=f"checkpoint to write (default models/{DEFAULT_OUT}, or transducer_offline.safetensors)",
    )


def _threads(args) -> None:
    import os

    import torch

    torch.set_num_threads(args.threads or int(os.environ.get("NIPS_EXPLORER_THREADS", 0)) or (os.cpu_count() or 1))


def train(args) -> int:
    from explorer.core.errors import UserError
    from explorer.core.training import init_world

    from . import data as D

    held = [s.strip() for s in args.holdout.lower().split(",") if s.strip()]
    for s in held:
        if s not in D.SPEAKERS:
            raise UserError(f"--holdout {s}: not an FSDD speaker (one of {', '.join(D.SPEAKERS)})")
    train_spk = [s for s in D.SPEAKERS if s not in held]
    if not train_spk:
        raise UserError("--holdout: at least one FSDD speaker must stay in training")
    resume_cfg = _resume_config(args.resume) if args.resume else None
    world = init_world(getattr(args, "device", "auto"), args.threads)
    try:
        return _train(args, world, held, train_spk, resume_cfg)
    finally:
        world.close()


def _resume_config(path) -> dict:
    """The model config recorded in the resume file ``path`` (or the one beside checkpoint ``path``), read before
    any data is loaded: a resumed run rebuilds the model it continues, whatever the architecture options say."""
    from explorer.core.checkpoints import read_metadata
    from explorer.core.errors import UserError
    from explorer.core.training import is_resume_file, resume_path_for

    p = Path(path)
    if not is_resume_file(p) and resume_path_for(p).exists():
        p = resume_path_for(p)
    meta = read_metadata(p)
    if meta.paper != PAPER:
        raise UserError(f"--resume {p.name}: a {meta.paper or 'unknown'} file, not a transducer run")
    return dict(meta.model_config or {})


def _train(args, world, held, train_spk, resume_cfg) -> int:
    from explorer.core.checkpoints import load_model
    from explorer.core.errors import UserError
    from explorer.core.paths import training_output
    from explorer.core.progress import TerminalProgress
    from explorer.core.training import Run, seed_all

    from . import data as D
    from .evaluate import evaluate_utterances
    from .model import DEFAULT_CONFIG, OFFLINE_CONFIG, build
    from .train import TrainData, fit, set_normalization

    main = world.is_main

    def say(msg: str) -> None:  # rank 0 alone talks
        if main:
            print(msg, file=sys.stderr)

    def bar(desc: str) -> TerminalProgress:
        return TerminalProgress(desc, disable=not main)

    world.split_batch(args.batch)
    seed_all(args.seed)
    holdout = ",".join(held)
    t_start = time.perf_counter()
    if not main:
        world.barrier()  # rank 0 synthesizes the voices and fills the caches first; the others then read them
    clips = D.load_fsdd(args.data, speakers=train_spk, indices=range(5, 50))
    n_fsdd = len(clips)
    n_other = {"espeak": 0, "tts": 0, "extra": 0, "more": 0}
    more_voices = []
    if args.espeak_weight > 0:
        voices = [("espeak", "espeak-ng", D.espeak_available(), D.espeak_clips)]
        if not args.no_tts:
            voices.append(("tts", "flite/festival", bool(D.tts_voices()), D.tts_clips))
        if args.more_voices:
            more_voices = D.more_voices()
            voices.append(
                (
                    "more",
                    "MBROLA/Pico/RHVoice",
                    bool(more_voices),
                    lambda progress: D.tts_clips(voices=more_voices, progress=progress),
                )
            )
        for key, label, available, load in voices:
            if not available:
                say(f"{label} not found: no {label} voices")
                continue
            with bar(f"{label} digits") as b:
                more = load(progress=b)
            clips += more
            n_other[key] = len(more)
        if not args.no_extra_voices:
            extra = D.extra_voice_clips()
            clips += extra
            n_other["extra"] = len(extra)
    other_weight = args.espeak_weight if sum(n_other.values()) else 0.0
    more_train, more_test, more_skipped, n_more = [], [], [], 0
    if args.more_data:
        with bar("more real voices") as b:
            more_clips, more_skipped = D.load_digit_folders(args.more_data, progress=b)
        names = sorted({c.speaker for c in more_clips})
        more_train, more_test = D.split_speakers(names, args.more_test_share)
        for s in _speakers(args.more_holdout):
            if s not in names:
                raise UserError(f"--more-holdout {s}: no such speaker in --more-data")
            if s in more_train:
                more_train.remove(s)
                more_test.append(s)
        train_set = set(more_train)
        more_clips = [c for c in more_clips if c.speaker in train_set]
        n_more = len(more_clips)
        clips += more_clips
        say(
            f"more real voices: {len(more_train)} speakers ({n_more} clips) train, {len(more_test)} held out; "
            f"{len(more_skipped)} files skipped"
        )
    fluent = []
    if args.fluent_weight > 0:
        with bar("fluent digit strings") as b:
            fluent = D.fluent_phrases(n=args.fluent_phrases, progress=b)
        if not fluent:
            say("libespeak-ng not found: no fluent digit strings")
    if main:
        world.barrier()
    aug = D.Augment(
        p_channel=args.channel,
        p_formant=args.formant,
        p_crop=args.crop,
        p_tight=args.tight,
        p_robust=args.robust,
        **({"speed": (0.85, 1.15)} if args.augment else {}),
    )
    source = D.UtteranceSource(
        clips,
        aug,
        espeak_weight=other_weight,
        fluent=fluent,
        fluent_weight=args.fluent_weight,
        more=more_train,
        more_weight=args.more_weight if more_train else 0.0,
        nonspeech_weight=args.nonspeech,
    )
    data = TrainData(source, seed=args.seed, rank=world.rank)  # each rank its own utterance stream
    if resume_cfg:  # the weights, normalisation included, come from the resume file
        model = build(resume_cfg)
    elif args.init:
        model, meta = load_model(args.init, PAPER, build, "cpu")
    else:
        cfg = dict(OFFLINE_CONFIG if args.offline else DEFAULT_CONFIG)
        cfg.update(enc_hidden=args.hidden, dec_hidden=args.hidden, attention=args.attention)
        cfg.update(block=args.block, max_per_block=args.max_per_block if args.block > 0 else 10, norm=args.norm)
        for key in ("ceps", "dropout", "frontend"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        model = build(cfg)
        set_normalization(model, data)  # rank 0's is used: DDP hands its buffers to every rank
    out = (
        Path(args.out)
        if args.out
        else training_output("transducer_offline.safetensors" if args.offline else DEFAULT_OUT)
    )
    data_meta = {
        "name": "FSDD connected digits" + (f" (leave out {holdout})" if holdout else ""),
        "train_speakers": train_spk,
        "train_indices": "5-49",
        "fsdd_clips": n_fsdd,
        "espeak_clips": n_other["espeak"],
        "tts_clips": n_other["tts"],
        "tts_voices": sorted({c.speaker for c in clips if c.speaker.startswith(("flite-", "festival-"))}),
        "more_voices": sorted({f"{e}-{v}" for e, v in more_voices} & {c.speaker for c in clips}),
        "extra_voices": sorted({c.speaker for c in clips if c.speaker in D.EXTRA_VOICES}),
        "espeak_weight": other_weight,
        "fluent_phrases": len(fluent),
        "fluent_weight": source.fluent_weight,
        "holdout": holdout or None,
        "channel_shelf_share": args.channel,
        "formant_warp_share": args.formant,
        "clip_crop_share": args.crop,
        "tight_share": args.tight,
        "nonspeech_share": args.nonspeech,
        "input_fault_share": args.robust,
        "more_data": [Path(d).name for d in args.more_data],
        "more_train_speakers": len(more_train),
        "more_clips": n_more,
        "more_weight": args.more_weight if more_train else 0.0,
        "more_test_speakers": sorted(more_test),
        "more_files_skipped": len(more_skipped),
    }
    tcfg = dict(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        minutes=args.minutes,
        align=args.align,
        dp_start=args.dp_start,
        augment=bool(args.augment),
        ema=args.ema,
    )
    run = Run(
        world,
        paper=PAPER,
        out=out,
        minutes=args.minutes,
        steps=args.steps,
        checkpoint_every_min=args.checkpoint_every,
        log=say,
        progress_desc="train transducer",
        seed=args.seed,
    )

    def save(m, info, metrics=None):
        run.save_model(
            out,
            m.state_dict(),
            model_config=m.cfg,
            metrics=metrics or {"headline": "train_loss", "train_loss": info.get("loss"), "step": info.get("step")},
            data=data_meta,
            extra={"train": tcfg},
        )

    say(
        f"training on {world.describe()}: {args.batch} utterances per step"
        + (f" ({args.batch // world.world_size} per process)" if world.distributed else "")
    )
    hist = fit(model, data, world.device, tcfg, on_checkpoint=save, run=run, resume=args.resume)
    train_wall = time.perf_counter() - t_start
    world.close()  # the processes are done together; rank 0 evaluates and writes alone
    if not main:
        return 0
    model.to("cpu").eval()
    if hist["stop"] == "signal":  # stopped by Ctrl+C / SIGTERM: the weights so far, no evaluation
        save(model, {"step": hist["steps_done"], "loss": hist["final_loss"]})
        print(
            json.dumps(
                {
                    "checkpoint": str(out),
                    "stopped": "signal",
                    "train_steps": hist["steps_done"],
                    "resume": str(run.resume_file),
                },
                indent=2,
            )
        )
        return 0
    # held-out evaluation: FSDD test recordings (indices 0-4) of the training speakers; all recordings of the
    # held-out speaker
    test = D.load_fsdd(args.data, speakers=train_spk, indices=range(0, 5))
    utts = D.test_utterances(test, args.eval_utts)
    for s in held:
        utts += D.test_utterances(D.load_fsdd(args.data, speakers=[s]), args.eval_utts * 2)
    fluent_test = D.fluent_test_phrases(args.eval_utts // 3) if args.eval_utts >= 3 else []
    with TerminalProgress("evaluate") as b:
        ev = evaluate_utterances(model, utts, progress=b)
        ev_fluent = evaluate_utterances(model, fluent_test) if fluent_test else None
    metrics = {
        "headline": "digit_error_rate",
        "train_steps": hist["steps_done"],
        "train_wall_s": round(train_wall, 1),
        "train_final_loss": hist["final_loss"],
        "dp_moved_final": hist.get("dp_moved_final"),
        "real_time_factor": ev["real_time_factor"],
        "emission_delay_s": ev.get("emission_delay_s"),
    }
    per = ev["per_speaker"]
    if held:
        hs = [per[s] for s in held]
        metrics["digit_error_rate"] = sum(h["digit_errors"] for h in hs) / max(1, sum(h["digits"] for h in hs))
        metrics["sequence_accuracy"] = sum(h["sequence_accuracy"] * h["utterances"] for h in hs) / max(
            1, sum(h["utterances"] for h in hs)
        )
        metrics["heldout_speaker"] = holdout
    else:
        metrics["digit_error_rate"] = ev["digit_error_rate"]
        metrics["sequence_accuracy"] = ev["sequence_accuracy"]
    metrics["per_speaker_digit_error_rate"] = {s: v["digit_error_rate"] for s, v in per.items()}
    if "last_iterate" in hist:  # --ema: the same test sets, read by the last iterate instead of the average
        ema_state = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(hist["last_iterate"])
        with TerminalProgress("evaluate last iterate") as b:
            ev_last = evaluate_utterances(model, utts, progress=b)
        model.load_state_dict(ema_state)
        metrics["last_iterate_per_speaker_digit_error_rate"] = {
            s: v["digit_error_rate"] for s, v in ev_last["per_speaker"].items()
        }
        metrics["ema_decay"] = args.ema
    if more_test:
        metrics.update(_unheard_metrics(model, args, more_test))
    if ev_fluent:
        metrics["fluent_digit_error_rate"] = ev_fluent["digit_error_rate"]
        metrics["fluent_eval_set"] = (
            f"{len(fluent_test)} fluent digit strings (libespeak-ng, rates 140-260 wpm) in the 3 held-out demo voices"
        )
    metrics["eval_set"] = f"{args.eval_utts} generated utterances per training speaker from FSDD test indices 0-4" + (
        f"; {2 * args.eval_utts} from all recordings of held-out {holdout}" if holdout else ""
    )
    save(model, {}, metrics)
    print(json.dumps({"checkpoint": str(out), **metrics}, indent=2))
    return 0


def _unheard_metrics(model, args, speakers) -> dict:
    """The held-out --more-data speakers: every clip decoded as recorded (isolated digits), and connected digits
    joined from the clips of those with all ten digits."""
    from explorer.core.progress import TerminalProgress

    from . import data as D
    from .evaluate import evaluate_files, evaluate_utterances

    keep = set(speakers)
    files = sorted(
        f
        for d in args.more_data
        for f in Path(d).expanduser().rglob("*.wav")
        if D._DIGIT_FILE_RE.match(f.name) and f.name.split("_")[1] in keep
    )
    with TerminalProgress("unheard voices, isolated digits") as bar:
        iso = evaluate_files(model, files, progress=bar, what="held-out --more-data speakers")
    per = iso["per_speaker_digit_error_rate"]
    out = {
        "unheard_isolated_digit_error_rate": iso["digit_error_rate"],
        "unheard_isolated": {
            "files": iso["files"],
            "scored": iso["scored"],
            "speakers": len(keep),
            "speaker_mean_digit_error_rate": sum(per.values()) / max(1, len(per)),
            "per_speaker": per,
            "empty_transcripts": iso["empty_transcripts"],
            "unreadable": len(iso["errors"]),
            "set": "every clip of the held-out --more-data speakers, as recorded",
        },
    }
    clips, _ = D.load_digit_folders(args.more_data, only_speakers=keep)
    full = D.group_by_speaker_digit(clips)
    if full:
        utts = D.test_utterances([c for c in clips if c.speaker in full], args.eval_utts * 2)
        with TerminalProgress("unheard voices, connected digits") as bar:
            ev = evaluate_utterances(model, utts, progress=bar)
        out["unheard_connected_digit_error_rate"] = ev["digit_error_rate"]
        out["unheard_connected"] = {
            "speakers": sorted(full),
            "utterances": len(utts),
            "per_speaker": {s: v["digit_error_rate"] for s, v in ev["per_speaker"].items()},
        }
    return out


def configure_eval(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio-dir", metavar="DIR", help="decode every *.wav; reference = name before the first '_'")
    src.add_argument("--data", metavar="DIR", help="FSDD folder: generate connected-digit test utterances")
    p.add_argument("--speakers", default="", help="with --data: comma-separated speakers (default all five)")
    p.add_argument(
        "--indices",
        choices=("test", "all"),
        default="test",
        help="with --data: FSDD recordings 0-4 (test split) or all 0-49 (for a held-out speaker)",
    )
    p.add_argument("--utts", type=POSITIVE_INT, default=60, help="with --data: utterances per speaker (default 60)")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        metavar="FILE",
        help=f"default: models/{DEFAULT_OUT}; give it several times to decode with their ensemble",
    )
    p.add_argument("--beam", type=POSITIVE_INT, default=1, help="beam width (1 = greedy)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _load(paths):
    """One checkpoint, or the ensemble of several (each one checked and loaded on its own first).
    Returns (model, metadata of the first, a label naming them all)."""
    from explorer.core.checkpoints import load_model
    from explorer.core.errors import UserError
    from explorer.core.paths import bundled

    from .model import Ensemble, build

    paths = [paths] if isinstance(paths, str) else list(paths or [])
    if len(paths) <= 1:
        model, meta = load_model(Path(paths[0]) if paths else bundled(DEFAULT_OUT), PAPER, build, "cpu")
        return model, meta, meta.name
    loaded = [load_model(Path(p), PAPER, build, "cpu") for p in paths]
    try:
        model = Ensemble([m for m, _ in loaded]).eval()
    except ValueError as exc:
        raise UserError(f"these checkpoints cannot form an ensemble: {exc}") from None
    return model, loaded[0][1], " + ".join(mt.name for _, mt in loaded)


def evaluate(args) -> int:
    import torch

    from explorer.core.progress import TerminalProgress

    from .evaluate import evaluate_dir, evaluate_utterances

    _threads(args) if getattr(args, "threads", None) else torch.set_num_threads(1)
    model, meta, label = _load(args.checkpoint)
    with TerminalProgress("decode", disable=None) as bar:
        if args.audio_dir:
            res = evaluate_dir(model, args.audio_dir, beam=args.beam, progress=bar)
        else:
            from . import data as D

            spk = _speakers(args.speakers) or list(D.SPEAKERS)
            clips = D.load_fsdd(args.data, speakers=spk, indices=range(0, 5) if args.indices == "test" else None)
            res = evaluate_utterances(model, D.test_utterances(clips, args.utts), beam=args.beam, progress=bar)
    res["checkpoint"] = label
    if args.json:
        keys = ("files", "digit_error_rate", "sequence_accuracy", "real_time_factor")
        ordered = {k: res[k] for k in keys if k in res}
        ordered.update({k: v for k, v in res.items() if k not in ordered})
        print(json.dumps(ordered, indent=2))
    else:
        for r in res.get("results", []):
            print(
                f"{r['file']}: {r['hypothesis'] or '(nothing)'}"
                + (f"  (ref {r['reference']}, {r['errors']} errors)" if r.get("reference") else "")
            )
        for e in res.get("errors", []):
            print(f"ERROR {e['file']}: {e['error']}")
        der = res.get("digit_error_rate")
        print(f"digit error rate {der:.4f}" if der is not None else "digit error rate: n/a (no references)")
        if res.get("sequence_accuracy") is not None:
            print(f"sequence accuracy {res['sequence_accuracy']:.4f}")
        if res.get("real_time_factor") is not None:
            print(f"real-time factor {res['real_time_factor']:.4f}")
    return 0


def configure_transcribe(p) -> None:
    p.add_argument("file", metavar="FILE.wav", help="audio file (any rate, mono or stereo)")
    p.add_argument("--checkpoint", default=None, metavar="FILE", help=f"default: models/{DEFAULT_OUT}")
    p.add_argument(
        "--chunk-ms", type=number(float, 1, 10000), default=40.0, help="audio chunk size fed to the stream (default 40)"
    )
    p.add_argument("--beam", type=POSITIVE_INT, default=1, help="beam width (1 = greedy)")
    p.add_argument("--json", action="store_true", help="print JSON")


def transcribe(args) -> int:
    import torch

    from .features import read_audio
    from .infer import StreamingRecognizer

    torch.set_num_threads(1)
    model, meta, _ = _load(args.checkpoint)
    if not model.online:
        from explorer.core.errors import UserError

        raise UserError(
            f"{meta.name} is an offline model (it reads the whole utterance before its first "
            f"digit), so it cannot stream; decode the file with: nips-explorer eval transducer "
            f"--audio-dir DIR --checkpoint {args.checkpoint or meta.name}"
        )
    audio = read_audio(args.file)
    rec = StreamingRecognizer(model, beam=args.beam)
    step = max(1, int(args.chunk_ms / 1000 * rec.sample_rate))
    events = []
    t0 = time.perf_counter()
    for i in range(0, len(audio), step):
        for ev in rec.accept(audio[i : i + step])["blocks"]:
            events += _print_block(ev, args.json)
    for ev in rec.finish()["blocks"]:
        events += _print_block(ev, args.json)
    wall = time.perf_counter() - t0
    dur = len(audio) / rec.sample_rate
    summary = {
        "file": str(args.file),
        "transcript": "".join(str(d) for d in rec.digits),
        "emissions": events,
        "audio_seconds": dur,
        "real_time_factor": wall / dur,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"transcript: {summary['transcript'] or '(nothing)'}   ({dur:.2f} s audio, RTF {wall / dur:.4f})")
    return 0


def _print_block(ev, quiet):
    out = []
    for d in ev["digits"]:
        out.append({"digit": d, "time_s": round(ev["time_s"], 3), "block": ev["block"]})
        if not quiet:
            print(f"{ev['time_s']:7.2f} s  block {ev['block']:3d}  {d}", flush=True)
    return out


def configure_utterances(p) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the WAV files (created)")
    p.add_argument("--data", metavar="DIR", help="FSDD folder; without it, espeak-ng voices are used")
    p.add_argument("--speakers", default="", help="with --data: comma-separated speakers (default all)")
    p.add_argument("--indices", choices=("test", "all"), default="test")
    p.add_argument("-n", type=POSITIVE_INT, default=10, help="utterances per speaker (default 10)")
    p.add_argument(
        "--fluent",
        action="store_true",
        help="fluent digit strings (libespeak-ng, one phrase each) in the held-out demo voices",
    )
    p.add_argument("--seed", type=SEED, default=1234)


def make_utterances(args) -> int:
    import soundfile as sf

    from explorer.core.errors import UserError

    from . import data as D

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data:
        spk = _speakers(args.speakers) or list(D.SPEAKERS)
        clips = D.load_fsdd(args.data, speakers=spk, indices=range(0, 5) if args.indices == "test" else None)
        utts = D.test_utterances(clips, args.n, seed=args.seed)
    elif args.fluent:
        utts = D.fluent_test_phrases(args.n, seed=args.seed)
        if not utts:
            raise UserError("libespeak-ng is not installed (apt-get install espeak-ng): no fluent strings")
    else:
        if not D.espeak_available():
            raise UserError("espeak-ng is not installed; give --data DIR to build utterances from FSDD")
        utts = D.demo_utterances(args.n, seed=args.seed)
    for i, u in enumerate(utts):
        with atomic_output(out / f"{u.text}_{u.speaker}_{i:04d}.wav", "WAV file") as tmp:
            sf.write(str(tmp), u.audio, 8000, subtype="PCM_16", format="WAV")
    print(f"wrote {len(utts)} files to {out}")
    return 0


# the defaults of adapt.ADAPT_DEFAULTS, written out so that --help does not import torch (a test checks they agree)
ADAPT_CLI_DEFAULTS = dict(steps=600, lr=1e-3, synthetic_weight=0.2, fluent_weight=0.15)


def configure_adapt(p) -> None:
    A = ADAPT_CLI_DEFAULTS
    p.add_argument(
        "--enroll",
        required=True,
        metavar="DIR",
        help="one or more recordings of each digit 0-9 of one voice, named like 3_you_0.wav (the digit "
        "before the first underscore; any sample rate, mono or stereo)",
    )
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="adapted checkpoint to write")
    p.add_argument("--checkpoint", default=None, metavar="FILE", help=f"model to adapt (default: models/{DEFAULT_OUT})")
    p.add_argument("--steps", type=POSITIVE_INT, default=A["steps"], help=f"fine-tuning steps (default {A['steps']})")
    p.add_argument("--lr", type=POSITIVE, default=A["lr"], help=f"peak learning rate (default {A['lr']})")
    p.add_argument(
        "--synth-weight",
        type=FRACTION,
        default=A["synthetic_weight"],
        help="share of utterances from the synthetic voices, so that the model keeps reading other "
        f"voices (default {A['synthetic_weight']}; 0: the enrolled voice only)",
    )
    p.add_argument(
        "--fluent-weight",
        type=FRACTION,
        default=A["fluent_weight"],
        help=f"share of fluent espeak-ng digit strings (default {A['fluent_weight']})",
    )
    p.add_argument("--threads", type=THREADS, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def adapt_cmd(args) -> int:
    from explorer.core.devices import choose_device
    from explorer.core.errors import UserError
    from explorer.core.progress import TerminalProgress

    from .adapt import adapt, read_enrollment_dir, save_adapted

    _threads(args)
    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise UserError(f"--out {out}: write the adapted model as a .safetensors file")
    model, meta, _ = _load(args.checkpoint)
    if not model.online:
        raise UserError(f"{meta.name} is the offline variant: enrollment adapts an online (streaming) model")
    clips = read_enrollment_dir(args.enroll)
    cfg = {
        "steps": args.steps,
        "lr": args.lr,
        "synthetic_weight": args.synth_weight,
        "fluent_weight": args.fluent_weight,
    }
    with TerminalProgress("adapt to the enrolled voice") as bar:
        new, hist = adapt(model, clips, choose_device(args.device), cfg, progress=bar)
    save_adapted(out, new, meta, hist)
    e = hist["enrollment"]
    print(
        f"adapted {meta.name} to {e['clips']} recordings ({e['audio_s']:.1f} s of speech) in "
        f"{hist['wall_s']:.0f} s ({hist['steps_done']} steps): {out}"
    )
    return 0


def commands():
    return [
        (
            "transducer-adapt",
            "enrollment: fine-tune the Neural Transducer to one new voice from recordings of each digit",
            configure_adapt,
            adapt_cmd,
        ),
        (
            "transcribe",
            "stream a WAV file through the Neural Transducer and print digits as they are emitted",
            configure_transcribe,
            transcribe,
        ),
        (
            "transducer-utterances",
            "write connected-digit test WAVs (FSDD or espeak-ng) for eval --audio-dir",
            configure_utterances,
            make_utterances,
        ),
    ]
