"""Move an index to another embedding model: `localrag index --reembed --embedder NAME`.

The stored passages are embedded again with the new model; no file is read or parsed again
(the int8 variant of a model has the same tokenizer, so the same passages). The new vectors
are kept beside the old ones, batch by batch, each batch in its own transaction, while the
index keeps answering with the model it was built with; the switch (vectors, sign-bit index
and the recorded identity) is one transaction at the end (`Store.finish_reembed`). Killed at
any moment, the index still opens and answers with its old model, and the next run continues
with the passages not yet done.

A passage longer than the new model reads (a model with a shorter trained length, or another
tokenizer) is embedded as the model sees it, truncated, and its file is marked to be cut into
passages again by the indexing pass that follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from localrag.documents import passage_with_heading
from localrag.embedder import Embedder
from localrag.errors import LocalragError
from localrag.indexer import text_hash
from localrag.store import Store, identity_record

# Passages per batch (one model call sequence and one commit each): big enough to keep the
# model busy, small enough that an interruption loses a few seconds of work.
DEFAULT_BATCH = 256
# How often the switch is tried again when another process added passages meanwhile.
_MAX_ROUNDS = 5

# (passages done, passages in all)
ReembedProgress = Callable[[int, int], None]


@dataclass
class ReembedReport:
    """What a run did: `embedded` now, `already_done` by an interrupted earlier run."""

    previous: str | None  # the model the index had before; None: it had none
    target: str
    embedded: int = 0
    already_done: int = 0
    recut_documents: int = 0
    switched: bool = False  # the index was moved from `previous` to `target`
    seconds: float = 0.0


def _token_counts(embedder: Embedder, texts: Sequence[str]) -> list[int]:
    """Token counts by the new model's tokenizer; batched where the embedder can."""
    count_many = getattr(embedder, "count_many", None)
    if count_many is not None:
        return list(count_many(texts))
    return [embedder.count_tokens(t) for t in texts]


def reembed(
    store: Store,
    embedder: Embedder,
    *,
    batch: int = DEFAULT_BATCH,
    on_progress: ReembedProgress | None = None,
) -> ReembedReport:
    """Bring every stored passage's vector to `embedder` and switch the index to it.

    An index without a model yet is simply bound to this one; an index already on it is left
    alone (a move to another model that was under way is dropped).
    """
    started = time.perf_counter()
    identity = embedder.identity
    wanted = identity_record(identity.name, identity.dim, identity.fingerprint)
    current = store.model_identity()
    report = ReembedReport(
        previous=None if current is None else str(current["name"]), target=identity.name
    )
    if current is None or current == wanted:
        if store.reembed_target() is not None:
            store.cancel_reembed()
        store.bind_embedder(identity.name, identity.dim, identity.fingerprint)
        return report
    store.begin_reembed(identity.name, identity.dim, identity.fingerprint)
    progress = on_progress or (lambda done, total: None)
    report.already_done = store.reembed_counts()[0]
    for _ in range(_MAX_ROUNDS):
        done, total = store.reembed_counts()
        progress(done, total)
        after = 0
        while rows := store.reembed_pending(after, batch):
            after = rows[-1][0]
            hashes = [h for _, h, _, _ in rows]
            texts = [passage_with_heading(heading, text) for _, _, heading, text in rows]
            recut: dict[str, int] = {}
            for h, text, tokens in zip(hashes, texts, _token_counts(embedder, texts), strict=True):
                if text_hash(text) != h:
                    recut[h] = 2
                elif tokens > embedder.max_tokens:
                    recut[h] = 1
            vectors = embedder.embed_passages(texts)
            store.save_reembedded(dict(zip(hashes, vectors, strict=True)), recut)
            report.embedded += len(rows)
            done += len(rows)
            progress(done, max(total, done))
        recut_documents = store.finish_reembed(identity.name, identity.dim, identity.fingerprint)
        if recut_documents is not None:
            report.recut_documents = recut_documents
            report.switched = True
            break
        # Not all done: another process (a watcher on the old model) added passages meanwhile.
    else:
        raise LocalragError(
            "passages kept being added while re-embedding (is `localrag watch` running on "
            "this index?); stop it and run the same command again to finish"
        )
    report.seconds = time.perf_counter() - started
    return report
