"""`edge-xemo eval ...`: EmoCue-360 between cue files or description files, and clip-level evaluation.

Input errors (missing or malformed files) print one line and exit with code 2.
"""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge_xemo.eval import emocue

eval_app = typer.Typer(help="Evaluate explanations: EmoCue-360 and clip-level metrics.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)
TEXT_COLUMNS = ("english", "text", "description", "explanation")


def _fail(msg: str) -> None:
    errors.print(f"[red]error:[/red] {escape(msg)}", highlight=False)
    raise typer.Exit(2)


def read_cue_file(path: Path) -> dict:
    """{name: {"visual": [...], "auditory": [...], "emotional": [...]}} from a JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ValueError(f"cue file {path} not found") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"cue file {path} is not valid JSON: {e.msg} (line {e.lineno})") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(
            f"cue file {path} must be an object {{name: {{visual: [...], auditory: [...], emotional: [...]}}}}"
        )
    return data


def read_text_file(path: Path) -> dict[str, str]:
    """{name: description} from a CSV (name + english/text/description column), a JSONL or a JSON object."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"description file {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                col = next((c for c in TEXT_COLUMNS if c in (reader.fieldnames or [])), None)
                if "name" not in (reader.fieldnames or []) or col is None:
                    raise ValueError(f"{path}: CSV needs a 'name' column and one of {', '.join(TEXT_COLUMNS)}")
                return {r["name"]: r[col] or "" for r in reader}
        if suffix in (".jsonl", ".ndjson"):
            out = {}
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    obj = json.loads(line)
                    col = next((c for c in TEXT_COLUMNS if isinstance(obj, dict) and c in obj), None)
                    if col is None or "name" not in obj:
                        raise ValueError(f"{path}:{i}: needs 'name' and one of {', '.join(TEXT_COLUMNS)}")
                    out[str(obj["name"])] = str(obj[col])
            return out
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from e
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: a JSON description file must be an object {{name: text}}")
    return data


def _extractor(kind: str, gguf: Optional[Path], base_url: Optional[str], model: Optional[str], threads: int):
    if kind == "rule":
        from edge_xemo.eval.cue_extract import extract_cues

        return extract_cues
    if kind == "llm":
        from edge_xemo.eval.cue_llm import LLMCueExtractor, LLMExtractorOptions

        return LLMCueExtractor(
            LLMExtractorOptions(model_path=str(gguf) if gguf else None, base_url=base_url, model=model, threads=threads)
        ).extract
    raise ValueError(f"unknown extractor {kind!r}; choose rule or llm")


def _embedder(threads: int):
    from edge_xemo.reasoning.embeddings import EmbedderOptions, MiniLMEmbedder

    return MiniLMEmbedder.create_from_options(EmbedderOptions(threads=threads)).embed


def _print_scores(scores: dict, title: str) -> None:
    table = Table(title=title)
    for col in ("modality", "precision", "recall", "F1", "n"):
        table.add_column(col, justify="right" if col != "modality" else "left")
    for m in emocue.MODALITIES:
        s = scores[m]
        cells = ["-" if s[k] is None else f"{s[k]:.4f}" for k in ("precision", "recall", "f1")]
        table.add_row(m, *cells, str(s["n"]))
    console.print(table)


@eval_app.command("emocue360")
def emocue360(
    pred_cues: Optional[Path] = typer.Option(
        None, "--pred-cues", help="predicted cue lists (JSON {name: {visual, auditory, emotional}})"
    ),
    ref_cues: Optional[Path] = typer.Option(None, "--ref-cues", help="reference cue lists, same format"),
    pred: Optional[Path] = typer.Option(
        None, "--pred", help="predicted descriptions (CSV name,english | JSONL | JSON {name: text})"
    ),
    ref: Optional[Path] = typer.Option(None, "--ref", help="reference descriptions, same formats"),
    extractor: str = typer.Option("rule", help="cue extractor for --pred/--ref: rule | llm"),
    gguf: Optional[Path] = typer.Option(None, help="GGUF for --extractor llm (default: the SmolLM2 decoder)"),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint for --extractor llm"),
    model: Optional[str] = typer.Option(None, help="endpoint model name"),
    save_cues: Optional[Path] = typer.Option(None, help="write the extracted cue lists here ({'pred':..., 'ref':...})"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write {visual: {precision, recall, f1}, ...} here"),
    threads: int = typer.Option(1, help="onnxruntime / llama.cpp threads"),
):
    """EmoCue-360 precision / recall / F1 per modality."""
    if (pred_cues is None) == (pred is None) or (ref_cues is None) == (ref is None):
        _fail("give one of --pred-cues / --pred and one of --ref-cues / --ref")
    try:
        extract = _extractor(extractor, gguf, base_url, model, threads) if (pred or ref) else None
        sides = {}
        for side, cue_path, text_path in (("pred", pred_cues, pred), ("ref", ref_cues, ref)):
            if cue_path is not None:
                sides[side] = read_cue_file(cue_path)
            else:
                assert text_path is not None and extract is not None  # one of the two is given (checked above)
                sides[side] = {}
                for n, t in read_text_file(text_path).items():
                    try:
                        sides[side][n] = extract(t)
                    except ValueError as e:  # one unusable LLM answer: that name is reported, not scored
                        console.print(f"[yellow]{side} {n}: cue extraction failed ({escape(str(e))[:100]})[/yellow]")
        if save_cues:
            save_cues.write_text(json.dumps(sides, indent=1, ensure_ascii=False))
        scores = emocue.score(sides["pred"], sides["ref"], _embedder(threads))
    except (ValueError, RuntimeError) as e:
        _fail(str(e).splitlines()[0])
    names = scores["names"]
    if names["only_in_pred"] or names["only_in_ref"]:
        console.print(
            f"[yellow]{len(names['only_in_pred'])} names only in predictions, {len(names['only_in_ref'])} "
            f"only in references: not scored[/yellow]"
        )
    _print_scores(scores, f"EmoCue-360 ({names['scored']} samples)")
    if json_out:
        out = {m: {k: scores[m][k] for k in ("precision", "recall", "f1", "n")} for m in emocue.MODALITIES}
        out["names"] = names
        json_out.write_text(json.dumps(out, indent=2))


def _load_analyzer(spec: str):
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"analyzer {spec!r} not available: {e}") from e
    return fn() if isinstance(fn, type) else fn


@eval_app.command("clips")
def clips(
    dataset: Path = typer.Argument(
        ...,
        help="a CSV/JSONL manifest (video, audio, subtitle, description, label [, name]), an EMER CSV "
        "(name,english; give --media) or a folder per label (<label>/<clip>.mp4)",
    ),
    media: Optional[Path] = typer.Option(
        None,
        help="EMER CSV: the folder holding <name>.mp4; manifest: the folder its relative paths resolve "
        "against (default: the manifest's folder)",
    ),
    labels: Optional[str] = typer.Option(None, help="comma-separated allowed labels; rows with others are skipped"),
    out: Path = typer.Option(
        Path("eval-report"), help="folder for report.json, report.md, plots and clips/<clip>.html (timelines)"
    ),
    analyzer: str = typer.Option(
        "edge_xemo.eval.clip:ClipExplainer",
        help="module:callable taking a datasets.Clip and returning a ClipResult (a class is instantiated without "
        "arguments)",
    ),
    no_emocue: bool = typer.Option(False, help="skip EmoCue-360 (no MiniLM needed)"),
    plots: bool = typer.Option(True, help="write PNG plots (needs matplotlib)"),
    threads: int = typer.Option(1, help="onnxruntime threads for the MiniLM embedder"),
):
    """Run the analyzer over every usable clip of a dataset; EmoCue-360, accuracy / UAR / WAR, latency.

    Skipped rows (missing or empty media, malformed, unknown label, duplicate name) are counted
    per reason in the report; zero usable rows is an error. Each clip's emotion timeline (as
    `edge-xemo report` writes it) goes to OUT/clips/ and its row links to it.
    """
    from edge_xemo.eval.clip import ClipExplainer
    from edge_xemo.eval.evaluation import evaluate_clips, load_eval_clips, markdown, write_report

    allowed = {s.strip() for s in (labels or "").split(",") if s.strip()} or None
    try:
        dataset_clips = load_eval_clips(dataset, media, allowed)
        analyze = _load_analyzer(analyzer)
        embed = None if no_emocue else _embedder(threads)
    except (ValueError, RuntimeError) as e:
        _fail(str(e).splitlines()[0])
    report = evaluate_clips(dataset_clips, analyze, embed=embed, reports=out / "clips")
    if isinstance(analyze, ClipExplainer):  # another analyzer says what it ran with itself, if at all
        report["run"] = analyze.run_record()
    paths = write_report(report, out, plots=plots)
    console.print(markdown(report), highlight=False, markup=False)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
