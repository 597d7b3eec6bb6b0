"""The demo page (Gradio), mounted by the service at ``/demo``: one tab per served task.

It answers through the service's own ``answer`` (the checks, batching and models of the HTTP API), so the page
shows exactly what the API returns. It makes no request outside the server: no share link, no analytics, no
fonts or scripts from a CDN (the theme uses the system's fonts), so it works on a machine without internet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from serving.packages import TASKS, models_dir  # noqa: E402
from tagsmith.tasks import get_task, served_tasks  # noqa: E402

#: the tab title and the example texts of each served task, from the task registry (Classical Chinese for the
#: Classical Chinese models, in either script; English for toxicity)
TITLES = {task.name: task.title for task in served_tasks()}
EXAMPLES = {task.name: list(task.examples) for task in served_tasks()}
THEME = gr.themes.Default(font=["system-ui", "Noto Sans CJK SC", "WenQuanYi Zen Hei", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])
CSS = ".tagsmith-note {font-size: 0.9em; opacity: 0.85}"


def manifest_note(task: str, root: Path) -> str:
    """One line on the model behind a tab: its origin, its score and, loudly, demo-grade data."""
    from serving.packages import package_dirs
    from tagsmith.manifest import read_manifest

    folders = package_dirs(root)
    if task == "segmentation" and task not in folders and "punctuation" in folders:
        return "Answered by the punctuation model: a sentence ends wherever it puts a mark."
    try:
        manifest = read_manifest(folders.get(task, root / task), OSError)
    except (OSError, ValueError):
        return f"No {task} model package in `{root / task}`."
    source = manifest.get("source", {})
    grade = manifest.get("data_grade") or source.get("data_grade") or "unknown"
    note = (f"Model `{source.get('run') or task}` ({manifest.get('published', '?')} ONNX){_score(task, source)}; "
            f"training data grade: **{grade}**.")
    if grade == "demo":
        note += " Demo-grade data: it shows the pipeline working, not real-world quality."
    return note


def _score(task: str, source: dict) -> str:
    metrics = source.get("metrics", {})
    if get_task(task).kind == "mlm":
        before, after = (metrics.get(k, {}).get("perplexity") for k in ("before", "after"))
        return f", perplexity {before:.1f} → {after:.1f} on held-out text" if before and after else ""
    name = get_task(task).main_metric
    value = metrics.get("test", {}).get(name)
    return f", test {name} {value:.3f}" if isinstance(value, (int, float)) else ""


def _confidence_colors(spans: list) -> dict:
    """A colour per confidence label: green when sure, amber, red when the model hesitates."""
    return {label: "#22c55e" if float(label) >= 0.9 else "#f59e0b" if float(label) >= 0.6 else "#ef4444"
            for _, label in spans if label is not None}


def _answer_or_error(answer):
    """Call the service; a refused input becomes a message on the page instead of a broken one."""
    async def call(task: str, text: str, **options):
        from serving.limits import InputError

        try:
            return await answer(task, text, **options)
        except InputError as error:
            raise gr.Error(error.message) from None
        except Exception as error:  # overloaded, or a bug: say so on the page rather than break it
            raise gr.Error(f"the {task} model did not answer: {error}") from None

    return call


def _current_service_answer(task: str, text: str, **options):
    import bentoml

    return bentoml.get_current_service().answer(task, text, **options)


def example_buttons(text: gr.Textbox, examples: list[str]) -> None:
    """Buttons that put an example into the text box, in the browser (gr.Examples renders blank in Gradio 6 tabs
    other than the first)."""
    with gr.Row():
        gr.Markdown("Examples:", elem_classes="tagsmith-note")
        for example in examples:
            label = example if len(example) <= 20 else example[:20] + "…"
            gr.Button(label, size="sm", variant="secondary").click(None, None, text, js=f"() => {json.dumps(example)}")


def _segmented_tab(task: str, call, text):
    async def segment(text):
        result = (await call(task, text))["results"][0]
        spans = [(s["text"], str(n + 1)) for n, s in enumerate(result["sentences"])]
        colors = {label: ("#38bdf8", "#a78bfa")[n % 2] for n, (_, label) in enumerate(spans)}
        return gr.HighlightedText(value=spans, color_map=colors), result["segmented"]

    def outputs():
        return [gr.HighlightedText(label="Sentences", elem_id=f"{task}-highlight"),
                gr.Textbox(label="Segmented", elem_id=f"{task}-output")]

    return segment, [text], outputs


def _punctuated_tab(task: str, call, text):
    async def punctuate(text):
        result = (await call(task, text))["results"][0]
        spans, start = [], 0
        for mark in result["marks"]:
            spans += [(result["text"][start:mark["position"]], None), (mark["mark"], f"{mark['confidence']:.2f}")]
            start = mark["position"]
        spans = [s for s in spans + [(result["text"][start:], None)] if s[0]]
        return gr.HighlightedText(value=spans, color_map=_confidence_colors(spans)), result["punctuated"]

    def outputs():
        return [gr.HighlightedText(label="Marks (with confidence)", elem_id=f"{task}-highlight", show_legend=False),
                gr.Textbox(label="Punctuated", elem_id=f"{task}-output")]

    return punctuate, [text], outputs


def _toxicity_tab(task: str, call, text):
    async def toxicity(text):
        result = (await call(task, text))["results"][0]
        verdict = (f"**{result['label']}** — probability {result['probability']:.3f}, "
                   f"threshold {result['threshold'] if result['threshold'] is None else round(result['threshold'], 3)}")
        return result["probabilities"], verdict

    def outputs():
        return [gr.Label(label="Probabilities", elem_id=f"{task}-label"), gr.Markdown(elem_id=f"{task}-verdict")]

    return toxicity, [text], outputs


def _filled_mask_tab(task: str, call, text):
    async def fill_mask(text, top_k):
        result = (await call(task, text, top_k=int(top_k)))["results"][0]
        first = {c["token"]: c["score"] for c in result["masks"][0]} if result["masks"] else {}
        return result["filled"], first

    def outputs():
        return [gr.Textbox(label="Filled", elem_id=f"{task}-output"),
                gr.Label(label="Candidates for the first mask", elem_id=f"{task}-candidates")]

    top_k = gr.Slider(1, 20, value=5, step=1, label="top-k")
    return fill_mask, [text, top_k], outputs


#: answer shape (the task registry's ``answer``) -> the tab that shows it: (task, call, text box) -> (handler,
#: inputs, a function that makes the output components); extra inputs are made before the Run button
TABS = {"segmented": _segmented_tab, "punctuated": _punctuated_tab, "toxicity": _toxicity_tab,
        "filled_mask": _filled_mask_tab}


def build_demo(tasks: list[str], root: Path, answer=_current_service_answer) -> gr.Blocks:
    call = _answer_or_error(answer)
    with gr.Blocks(title="tagsmith demo", analytics_enabled=False) as demo:
        gr.Markdown("# tagsmith\nClassical Chinese segmentation and punctuation, toxicity and fill-mask, served by "
                    "ONNX Runtime behind the same HTTP API (`/segment`, `/punctuate`, `/toxicity`, `/fill_mask`).")
        if not tasks:
            gr.Markdown(f"**No model packages in `{root}`.** Export one with `tagsmith export RUN/best --out "
                        f"{root}/<task>` and restart the server.")
        for task in tasks:
            spec = get_task(task)
            with gr.Tab(spec.title, id=task):
                gr.Markdown(manifest_note(task, root), elem_classes="tagsmith-note")
                text = gr.Textbox(label="Text", lines=4, elem_id=f"{task}-input")
                handler, inputs, outputs = TABS[spec.answer](task, call, text)
                button = gr.Button("Run", variant="primary", elem_id=f"{task}-run")
                button.click(handler, inputs, outputs(), api_visibility="private")
                example_buttons(text, list(spec.examples))
    return demo


def demo_app(tasks: list[str], root: Path | None = None):
    """The demo as an ASGI app to mount at ``/demo`` (Gradio's own FastAPI app under a plain FastAPI root)."""
    from fastapi import FastAPI

    root = root or models_dir()
    demo = build_demo([t for t in TASKS if t in tasks], root)
    return gr.mount_gradio_app(FastAPI(openapi_url=None, docs_url=None, redoc_url=None), demo, path="/",
                               ssr_mode=False, theme=THEME, css=CSS, footer_links=[], show_error=True,
                               mcp_server=False, pwa=False)
