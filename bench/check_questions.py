#!/usr/bin/env python3
"""Validate bench question files against a corpus (stdlib only).

Each line of the questions file is a JSON object {"q", "file", "answer"}.
Checks, per line:
  * valid JSON with non-empty string fields q, file, answer;
  * `file` matches exactly one corpus file by path suffix;
  * `answer` (whitespace-normalised) is a substring of that page's visible
    text: HTML tags stripped with html.parser, entities decoded, <script>,
    <style> and <head> content dropped, whitespace collapsed to one space.
    The answer must be found both when text nodes are joined with "" and
    when they are joined with " ", i.e. it must not straddle markup;
  * the answer is 3-12 words and the question does not contain it verbatim.
Exits 1 and lists failures if any line fails.

Usage: python3 bench/check_questions.py [QUESTIONS.jsonl] [CORPUS_DIR]
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from html.parser import HTMLParser

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_Q = os.path.join(HERE, "questions", "postgresql.jsonl")
DEFAULT_CORPUS = os.path.join(HERE, "corpora", "postgresql-15")

_WS = re.compile(r"\s+")
_SKIP = {"script", "style", "head", "title"}


def norm(s: str) -> str:
    return _WS.sub(" ", s).strip()


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in _SKIP and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def visible_parts(html: str) -> list[str]:
    p = _Text()
    p.feed(html)
    p.close()
    return p.parts


def visible_text(html: str, sep: str = "") -> str:
    return norm(sep.join(visible_parts(html)))


def main(argv: list[str]) -> int:
    qpath = argv[1] if len(argv) > 1 else DEFAULT_Q
    corpus = argv[2] if len(argv) > 2 else DEFAULT_CORPUS
    if not os.path.isdir(corpus):
        print(f"corpus not found: {corpus} (run bench/fetch_corpus.sh)", file=sys.stderr)
        return 2

    files = []
    for root, _dirs, names in os.walk(corpus):
        for n in names:
            files.append(os.path.relpath(os.path.join(root, n), corpus).replace(os.sep, "/"))

    cache: dict[str, tuple[str, str]] = {}
    failures: list[str] = []
    used = Counter()
    n = 0
    with open(qpath, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            n += 1
            where = f"line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                failures.append(f"{where}: bad JSON: {e}")
                continue
            fields = ("q", "file", "answer")
            if not all(isinstance(obj.get(k), str) and obj.get(k).strip() for k in fields):
                failures.append(f"{where}: needs non-empty string fields q, file, answer")
                continue
            q, suffix, answer = obj["q"], obj["file"], norm(obj["answer"])
            matches = [f for f in files if f == suffix or f.endswith("/" + suffix.lstrip("/"))]
            if len(matches) != 1:
                failures.append(f"{where}: file {suffix!r} matches {len(matches)} corpus files")
                continue
            path = matches[0]
            used[path] += 1
            if path not in cache:
                with open(os.path.join(corpus, path), encoding="utf-8", errors="replace") as fh2:
                    html = fh2.read()
                cache[path] = (visible_text(html, ""), visible_text(html, " "))
            tight, spaced = cache[path]
            if answer not in tight or answer not in spaced:
                missing = answer not in tight and answer not in spaced
                state = "not found" if missing else "straddles markup"
                failures.append(f"{where}: answer {state} in {path}: {answer!r}")
                continue
            words = len(answer.split())
            if not 3 <= words <= 12:
                failures.append(f"{where}: answer has {words} words (want 3-12): {answer!r}")
            if answer.lower() in norm(q).lower():
                failures.append(f"{where}: question contains the answer verbatim")

    print(f"{n} questions, {len(used)} distinct files, {len(failures)} failures")
    for f in failures:
        print("  " + f)
    return 1 if failures or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
