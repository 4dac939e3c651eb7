#!/usr/bin/env python3
"""Validate a bench question file against a corpus of any format, using localrag's own parsers.

The sibling of check_questions.py (which reads HTML with the stdlib only): here each referenced
file is read with `localrag.parsers.parse_file`, so the answer is checked against exactly the text
localrag extracts from Markdown, PDF, DOCX, HTML, ... Checks, per line:
  * valid JSON with non-empty string fields q, file, answer; `type`, when present, is one of
    semantic, keyword, ordinary;
  * `file` matches exactly one corpus file by path suffix (as localrag eval matches it);
  * `answer` is in that file's extracted text, whitespace-normalised and case-insensitive, as
    localrag/evaluate.py compares it;
  * the answer is 3-12 words and the question does not contain it verbatim.
With --db, also checks that the answer lies inside one stored passage of that file in an index
built from the corpus (an answer split across two passages can never be a hit). This reads the
passages' text only, never search results.
Exits 1 and lists failures if any line fails; prints the type mix and files used.

Usage: python bench/check_answers.py QUESTIONS.jsonl CORPUS_DIR [--db INDEX.db]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path

TYPES = ("semantic", "keyword", "ordinary")


def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def suffix_matches(path: str, suffix: str) -> bool:
    wanted = suffix.replace("\\", "/").lstrip("/")
    return path == wanted or path.endswith("/" + wanted)


def extracted_text(path: Path) -> str:
    from localrag.parsers import parse_file

    return parse_file(path, path.read_bytes()).text


def stored_passages(db: Path, suffix: str) -> list[str] | None:
    """Normalised text of every stored passage of the one document matching suffix."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        docs = [
            (doc_id, path)
            for doc_id, path in con.execute("SELECT id, path FROM documents")
            if suffix_matches(path.replace("\\", "/"), suffix)
        ]
        if len(docs) != 1:
            return None
        rows = con.execute("SELECT text FROM chunks WHERE document_id = ?", (docs[0][0],))
        return [norm(text) for (text,) in rows]
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", type=Path)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--db", type=Path, help="an index of the corpus: answers must fit a passage")
    args = ap.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus} (run its bench/fetch_*.sh)", file=sys.stderr)
        return 2
    if args.db is not None and not args.db.is_file():
        print(f"index not found: {args.db}", file=sys.stderr)
        return 2

    files = sorted(p.relative_to(args.corpus).as_posix() for p in args.corpus.rglob("*"))
    files = [f for f in files if (args.corpus / f).is_file()]
    texts: dict[str, str] = {}
    passages: dict[str, list[str] | None] = {}
    failures: list[str] = []
    used: Counter[str] = Counter()
    types: Counter[str] = Counter()
    n = 0
    for lineno, line in enumerate(args.questions.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        n += 1
        where = f"line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            failures.append(f"{where}: bad JSON: {exc}")
            continue
        if not isinstance(obj, dict) or not all(
            isinstance(obj.get(k), str) and obj[k].strip() for k in ("q", "file", "answer")
        ):
            failures.append(f"{where}: needs non-empty string fields q, file, answer")
            continue
        kind = obj.get("type")
        if kind is not None and kind not in TYPES:
            failures.append(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
        types[kind or "(none)"] += 1
        q, suffix, answer = obj["q"], obj["file"], norm(obj["answer"])
        matches = [f for f in files if suffix_matches(f, suffix)]
        if len(matches) != 1:
            failures.append(f"{where}: file {suffix!r} matches {len(matches)} corpus files")
            continue
        path = matches[0]
        used[path] += 1
        if path not in texts:
            try:
                texts[path] = norm(extracted_text(args.corpus / path))
            except Exception as exc:  # a parser's refusal is this line's failure, not a crash
                texts[path] = ""
                failures.append(f"{where}: localrag cannot parse {path}: {exc}")
                continue
        if answer not in texts[path]:
            failures.append(f"{where}: answer not found in {path}: {obj['answer']!r}")
            continue
        words = len(answer.split())
        if not 3 <= words <= 12:
            failures.append(f"{where}: answer has {words} words (want 3-12): {obj['answer']!r}")
        if answer in norm(q):
            failures.append(f"{where}: question contains the answer verbatim")
        if args.db is not None:
            if path not in passages:
                passages[path] = stored_passages(args.db, path)
            stored = passages[path]
            if stored is None:
                failures.append(f"{where}: {path} is not (once) in the index {args.db}")
            elif not any(answer in p for p in stored):
                failures.append(f"{where}: answer split across passages of {path}: {answer!r}")

    mix = ", ".join(f"{types[t]} {t}" for t in (*TYPES, "(none)") if types[t])
    print(f"{n} questions ({mix}), {len(used)} distinct files, {len(failures)} failures")
    for failure in failures:
        print("  " + failure)
    return 1 if failures or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
