"""Command line: ``train transducer``, ``eval transducer``, ``transcribe FILE.wav``, ``transducer-utterances``,
``transducer-adapt`` (enrollment: fine-tune to one new voice), ``transducer-ensemble`` (several trained models as
one checkpoint).

Only the options and the dispatch live here (``--help`` imports no torch); each command's body is the ``main(args)``
of the module it runs: ``train.py``, ``evaluate.py``, ``infer.py`` (transcribe), ``testsets.py`` (utterances) and
``adapt.py``.
"""

from __future__ import annotations

from explorer.core.training import add_training_options
from explorer.core.validate import COUNT, FRACTION, POSITIVE, POSITIVE_INT, SEED, THREADS, number

from . import SPEC

DEFAULT_OUT = SPEC.default_checkpoint


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
        choices=("causal", "global", "pcen"),
        default="causal",
        help="feature normalisation: running mean of the utterance so far (default), the training mean, or "
        "per-channel energy normalisation (each band divided by its own smoothed energy, then root-compressed)",
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


def train(args) -> int:
    from .train import main

    return main(args)


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


def evaluate(args) -> int:
    from .evaluate import main

    return main(args)


def configure_transcribe(p) -> None:
    p.add_argument("file", metavar="FILE.wav", help="audio file (any rate, mono or stereo)")
    p.add_argument("--checkpoint", default=None, metavar="FILE", help=f"default: models/{DEFAULT_OUT}")
    p.add_argument(
        "--chunk-ms", type=number(float, 1, 10000), default=40.0, help="audio chunk size fed to the stream (default 40)"
    )
    p.add_argument("--beam", type=POSITIVE_INT, default=1, help="beam width (1 = greedy)")
    p.add_argument("--json", action="store_true", help="print JSON")


def transcribe(args) -> int:
    from .infer import main

    return main(args)


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
    from .testsets import main

    return main(args)


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
    from .adapt import main

    return main(args)


def configure_ensemble(p) -> None:
    p.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="FILE",
        help="a trained online or offline model; give it two or more times (the members hold out the same speakers)",
    )
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="the ensemble checkpoint to write")
    p.add_argument("--data", required=True, metavar="DIR", help="FSDD folder: the held-out test sets, as in training")
    p.add_argument(
        "--more-data",
        action="append",
        default=[],
        metavar="DIR",
        help="the members' --more-data folder(s): their held-out speakers are scored too",
    )
    p.add_argument("--eval-utts", type=POSITIVE_INT, default=60, help="test utterances per speaker (default 60)")
    p.add_argument("--threads", type=THREADS, default=None, help="torch CPU threads (default: all cores)")


def ensemble_cmd(args) -> int:
    from .train import ensemble_main

    return ensemble_main(args)


def commands():
    return [
        (
            "transducer-ensemble",
            "write several trained Neural Transducers as one checkpoint that decodes with their ensemble",
            configure_ensemble,
            ensemble_cmd,
        ),
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
