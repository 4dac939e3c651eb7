"""Questions about the collection itself, answered from the index instead of top-k passages.

"Which files mention X?", "how many documents are about Y?", "what's in folder Z?" and "what
documents do you have?" cannot be answered by a language model that sees ten passages: the
answer is a list or a number over the whole index (docs/ARCHITECTURE.md §11). This module
recognises such questions and answers them from the store: full-text matches over every chunk,
document metadata, and the vector index for documents related by meaning.

Detection is deliberately conservative. A question it misses still gets a normal answer from
retrieved passages; a question it wrongly catches gets a file list instead of an answer.

Counting rule (said in every answer that counts): a document counts when at least one of its
passages matches by keyword. "Mention X" needs the phrase X (any word form: "backups" matches
"backup"); "about Y" needs all the words of Y in one passage. Documents that are only close in
meaning are listed separately as related and never counted: a similarity floor is a guess, a
keyword match is a fact the user can check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from localrag.paths import from_root, is_within
from localrag.retrieval import Retriever, SearchResult, _quoted, query_terms, snippet
from localrag.sizes import format_bytes
from localrag.store import (
    ChunkHit,
    DocumentGroup,
    DocumentInfo,
    DocumentMatch,
    Root,
    Store,
    fold_ascii_case,
)

QueryKind = Literal["files_mentioning", "count_about", "folder_listing", "overview"]
MatchRule = Literal["phrase", "words"]
Relation = Literal["mentions", "related", "listed"]

# How many files an answer lists (its text and its rows); the rest are counted.
DISPLAY_LIMIT = 10
# Cosine similarity (all-MiniLM-L6-v2) from which a passage counts as related by meaning.
# Measured on the test corpus: a topic and passages about it without its words score 0.4-0.6
# ("airships" vs zeppelin logs, "gardening" vs garden notes); unrelated passages stay under 0.3.
RELATED_FLOOR = 0.4
# How many passages the vector search looks at for related documents, and how many it lists.
RELATED_DEPTH = 50
RELATED_LIMIT = 5
SNIPPET_WIDTH = 160


@dataclass(frozen=True)
class CollectionQuery:
    """A recognised question about the collection.

    kind: files_mentioning ("which files mention X"), count_about ("how many documents are
    about Y"), folder_listing ("what's in folder Z"), overview ("what documents do you have").
    subject: X, Y or Z as the user wrote it (quotes removed); "" for an overview.
    match: how a passage must contain the subject: "phrase" (the words in order) or "words"
    (all the words, any order); only used by files_mentioning and count_about.
    """

    kind: QueryKind
    subject: str = ""
    match: MatchRule = "phrase"
    question: str = ""


@dataclass(frozen=True)
class CollectionRow:
    """One file in an answer.

    relation: "mentions" (a passage matches the subject by keyword), "related" (close in
    meaning only) or "listed" (a folder listing or overview entry).
    passages: matching passages for "mentions", passages above the similarity floor among the
    closest ones for "related", indexed passages for "listed".
    location / snippet / source: the first matching passage ("mentions") or the closest one
    ("related"); None / "" / None for "listed" rows. `source` is a SearchResult so a UI can
    show and open it like any retrieved passage.
    """

    path: str
    relation: Relation
    passages: int
    location: str | None = None
    snippet: str = ""
    source: SearchResult | None = None
    similarity: float | None = None  # cosine, for "related" rows
    status: str = "indexed"  # indexed | skipped | error
    reason: str | None = None  # why a file was skipped or failed
    format: str | None = None
    size: int | None = None  # bytes


@dataclass(frozen=True)
class CollectionAnswer:
    """The answer to a collection question: show `text` as it is, and `rows` as sources.

    text: a few plain lines, ready for a CLI or TUI, stating the rule behind any number.
    rows: the files listed in `text`, in the same order: at most `limit` matching or listed
    files, then at most RELATED_LIMIT files related by meaning.
    count: the number the answer is about (matching documents, documents in the folder, all
    documents), or None when there is none (an ambiguous folder name).
    matched: False when the index holds nothing for the question (no file mentions X, no
    folder Z, an empty index); the text says so, and a caller may prefer a normal answer.
    candidates: folder paths to choose from when a folder name was ambiguous or unknown.
    """

    query: CollectionQuery
    text: str
    rows: list[CollectionRow] = field(default_factory=list)
    count: int | None = None
    matched: bool = True
    candidates: list[str] = field(default_factory=list)

    @property
    def kind(self) -> QueryKind:
        return self.query.kind

    @property
    def sources(self) -> list[SearchResult]:
        """The listed files that have a passage to show, ranked 1..n."""
        found = [row.source for row in self.rows if row.source is not None]
        return [replace(s, rank=i) for i, s in enumerate(found, 1)]


# =============================================================================================
# Detection


_DOC_PLURAL = r"(?:documents|docs|files|notes|papers|pdfs|articles|sources|texts)"
_DOC_SINGULAR = r"(?:document|doc|file|note|paper|pdf|article|source|text)"
_DOC = rf"(?:{_DOC_PLURAL}|{_DOC_SINGULAR})"
# Qualifiers between "which" and the noun: "which of my", "all the", "any of the indexed".
_DET = r"(?:(?:of\s+)?(?:all|any|the|my|your|our|these|those|indexed)\s+)*"
_INDEX = r"(?:(?:the|your|my|this)\s+(?:index|collection|knowledge\s*base|kb|corpus|library))"

# Verbs saying a text contains the subject itself: matched as a phrase.
_PHRASE_VERB = re.compile(
    r"^(?:mention|referenc|cite|citing|refer|contain|includ|with|use|used|found|appear|show|"
    r"come|occur)",
    re.I,
)
# Finite verbs after the noun: "files (that) mention X", "documents are about Y".
_FINITE_STRONG = (
    r"mention(?:s|ed)?|reference[sd]?|cite[sd]?|refer(?:s|red)?\s+to|talk(?:s|ed)?\s+about|"
    r"discuss(?:es|ed)?|speaks?\s+(?:about|of)|says?\s+(?:anything|something)\s+about|"
    r"(?:are|is|were|was)\s+about"
)
_FINITE_WEAK = (
    r"contain(?:s|ed)?|include[sd]?|cover(?:s|ed)?|deals?\s+with|relate[sd]?\s+to|"
    r"concern(?:s|ed)?|(?:are|is)\s+(?:related|relevant)\s+to"
)
_FINITE = rf"(?:{_FINITE_STRONG}|{_FINITE_WEAK})"
# Participles and prepositions after the noun: "files mentioning X", "notes about Y".
_PARTICIPLE_STRONG = r"mentioning|referencing|citing|referring\s+to|talking\s+about|discussing"
_PARTICIPLE_WEAK = (
    r"containing|including|covering|dealing\s+with|about|on|regarding|concerning|"
    r"relat(?:ed|ing)\s+to|relevant\s+to|with(?=\s+(?:the\s+)?(?:word|term|phrase|name)|\s+[\"'`])"
)
_PARTICIPLE = rf"(?:{_PARTICIPLE_STRONG}|{_PARTICIPLE_WEAK})"
_VERB_STRONG = re.compile(rf"^(?:{_FINITE_STRONG}|{_PARTICIPLE_STRONG})$", re.I)
_PASSIVE = (
    r"mentioned|referenced|cited|discussed|talked\s+about|covered|used|found|"
    r"appears?|shows?\s+up|comes?\s+up|occurs?"
)


def _full(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"^{pattern}$", re.I)


# Each pattern names the subject `x` (or the folder reference `ref`) and, where the wording
# decides how to match, the verb `verb`; `doc` is the noun, to tell "file" from "files".
_MENTION_PATTERNS = [
    # which files mention X / what documents talk about X / which of my notes are about X
    _full(
        rf"(?:which|what)\s+{_DET}(?P<doc>{_DOC})\s+(?:(?:do|does|did)\s+)?"
        rf"(?P<verb>{_FINITE})\s+(?P<x>.+)"
    ),
    # in which files is X mentioned / which documents does X appear in
    _full(
        rf"(?:in\s+)?(?:which|what)\s+{_DET}(?P<doc>{_DOC})\s+(?:is|are|was|were|does|do|did)\s+"
        rf"(?P<x>.+?)\s+(?P<verb>{_PASSIVE})(?:\s+in)?"
    ),
    # where is X mentioned (in my files) / where does X appear in my notes
    _full(
        r"where\s+(?:is|are|was|were)\s+(?P<x>.+?)\s+"
        rf"(?P<verb>mentioned|referenced|cited|discussed|talked\s+about)(?:\s+in\s+{_DET}{_DOC})?"
    ),
    _full(
        r"where\s+(?:does|do|did)\s+(?P<x>.+?)\s+(?P<verb>appear|show\s+up|come\s+up|occur)"
        rf"\s+in\s+{_DET}{_DOC}"
    ),
    # find files containing X / list files that mention X / show me documents about X
    _full(
        r"(?:find|list|show|get|give|search(?:\s+for)?|look\s+for|locate|return|identify)"
        rf"(?:\s+me)?\s+{_DET}(?P<doc>{_DOC})\s+"
        rf"(?:(?:that|which|who)\s+(?P<verb>{_FINITE})|(?P<verb2>{_PARTICIPLE}))\s+(?P<x>.+)"
    ),
    # files mentioning X / documents that talk about X (no leading verb: -ing or "that" only)
    _full(
        rf"{_DET}(?P<doc>{_DOC_PLURAL})\s+(?:(?:that|which)\s+(?P<verb>{_FINITE})|"
        rf"(?P<verb2>{_PARTICIPLE_STRONG}|containing|covering))\s+(?P<x>.+)"
    ),
    # do any files mention X / are there documents about X / is there a note that mentions X
    _full(
        r"(?:(?:do|does|did)\s+(?:any|some)|(?:are|is)\s+there\s+(?:any|some|a|an)?)\s*"
        rf"(?:of\s+(?:my|the|your)\s+)?(?P<doc>{_DOC})\s+"
        rf"(?:(?:that|which)\s+(?P<verb>{_FINITE})|(?P<verb2>{_FINITE}|{_PARTICIPLE}))"
        r"\s+(?P<x>.+)"
    ),
    # is X mentioned anywhere / in any of my documents
    _full(
        r"is\s+(?P<x>.+?)\s+(?P<verb>mentioned|referenced|cited|discussed)\s+"
        rf"(?:anywhere|(?:in|by)\s+{_DET}{_DOC})"
    ),
    # what notes do you have on X / do I have any documents about X
    _full(
        rf"(?:(?:what|which)\s+{_DET}(?P<doc>{_DOC})\s+do\s+(?:you|i|we)\s+have|"
        rf"do\s+(?:you|i|we)\s+have\s+(?:any\s+)?(?P<doc2>{_DOC}))\s+"
        rf"(?:(?:that|which)\s+(?P<verb>{_FINITE})|(?P<verb2>{_PARTICIPLE}))\s+(?P<x>.+)"
    ),
]

_COUNT_PATTERNS = [
    # how many documents are about Y / how many files mention Y / how many notes do I have on Y
    _full(
        rf"how\s+many\s+{_DET}(?P<doc>{_DOC_PLURAL})\s+"
        r"(?:(?:do\s+(?:you|i|we)\s+have|are\s+there|have\s+(?:you|i|we)\s+got|exist)\s+)?"
        rf"(?:(?:that|which)\s+)?(?P<verb>{_FINITE}|{_PARTICIPLE})\s+(?P<x>.+)"
    ),
]

# A folder named with a folder word ("folder Z", "the Z folder", "my Z directory") or a path.
_FOLDER_WORD = r"(?:folder|sub-?folder|directory|dir)"
_FOLDER_REFS = [
    _full(rf"(?:the\s+|my\s+|this\s+)?{_FOLDER_WORD}\s+(?:called\s+|named\s+)?(?P<z>.+)"),
    _full(r"(?:the\s+|my\s+|this\s+)?(?P<z>.+?)\s+(?:folder|sub-?folder)"),
    _full(rf"my\s+(?P<z>.+?)\s+{_FOLDER_WORD}"),
]
_IS = r"(?:'s|s|\s+is)"
_IN = r"(?:in|inside|under|within|of)"
_FOLDER_PATTERNS = [
    # list what's in folder Z / show the contents of Z/ / list all files under docs/recipes
    _full(
        rf"(?:list|show(?:\s+me)?|display|give\s+me|tell\s+me)\s+(?:what{_IS}|everything|"
        rf"{_DET}{_DOC_PLURAL}|(?:the\s+)?contents?|what\s+{_DOC_PLURAL}\s+(?:are|there\s+are))"
        rf"\s+(?:there\s+)?{_IN}\s+(?P<ref>.+)"
    ),
    # what's in Z/ / what is inside the folder Z
    _full(rf"what{_IS}\s+(?:in|inside|under)\s+(?P<ref>.+)"),
    # what files are in Z / which documents do I have in folder Z
    _full(
        rf"(?:what|which)\s+{_DOC_PLURAL}\s+(?:are|do\s+(?:i|you|we)\s+have|are\s+there|exist)"
        rf"\s+(?:there\s+)?{_IN}\s+(?P<ref>.+)"
    ),
    # (the) contents of folder Z / list folder Z / how many files are in folder Z
    _full(r"(?:the\s+)?contents?\s+of\s+(?P<ref>.+)"),
    _full(r"(?:list|show)\s+(?P<ref>.+)"),
    _full(
        rf"how\s+many\s+{_DOC_PLURAL}\s+(?:are\s+(?:there\s+)?|do\s+(?:i|you|we)\s+have\s+|"
        rf"exist\s+)?{_IN}\s+(?P<ref>.+)"
    ),
    # what does folder Z contain
    _full(r"what\s+does\s+(?P<ref>.+?)\s+(?:contain|hold|have\s+in\s+it)"),
]

# Counting first: "how many files mention X" is a count, not a list.
_SUBJECT_PATTERNS: list[tuple[QueryKind, list[re.Pattern[str]]]] = [
    ("count_about", _COUNT_PATTERNS),
    ("files_mentioning", _MENTION_PATTERNS),
]

_KINDS = r"(?:(?:kinds?|types?|sorts?)\s+of\s+)?"
_OVERVIEW_PATTERNS = [
    # what documents do you have / which files have you indexed / what docs do I have indexed
    _full(
        rf"(?:what|which)\s+{_KINDS}{_DOC_PLURAL}\s+(?:do|did|have)\s+(?:you|we|i)\s+"
        r"(?:have|got|index(?:ed)?|know\s+about|know\s+of|store|see|have\s+indexed)"
        rf"(?:\s+(?:indexed|access\s+to|available|in\s+{_INDEX}))?"
    ),
    # what files are indexed / which documents are in the index / what folders are indexed
    _full(
        rf"(?:what|which)\s+{_KINDS}(?:{_DOC_PLURAL}|folders|directories)\s+"
        rf"(?:are|have\s+been|were)\s+(?:indexed|there|available|searchable|(?:there\s+)?in\s+{_INDEX})"
    ),
    # what's in the index / what is in your knowledge base / what's indexed
    _full(rf"what{_IS}\s+(?:in|inside)\s+{_INDEX}"),
    _full(rf"what{_IS}\s+indexed"),
    _full(rf"what\s+do\s+you\s+have\s+(?:indexed|in\s+{_INDEX})"),
    # how many files are indexed / how many documents do you have / how many docs are there
    _full(
        rf"how\s+many\s+{_DOC_PLURAL}\s+(?:are|were|have\s+been|have\s+you|did\s+you|"
        r"do\s+(?:you|i|we)\s+have|are\s+there|exist)"
        rf"(?:\s+(?:indexed|index|got|there|available|searchable|in\s+{_INDEX}))*"
    ),
    # list all files / show me the documents / list the indexed documents
    _full(
        r"(?:list|show(?:\s+me)?|display|give\s+me)\s+(?:a\s+list\s+of\s+)?"
        rf"{_DET}{_DOC_PLURAL}(?:\s+(?:you\s+have|that\s+are\s+indexed|indexed|in\s+{_INDEX}))?"
    ),
    # give me an overview of the collection / describe your index
    _full(
        r"(?:(?:give\s+me|show(?:\s+me)?)\s+)?(?:an?\s+)?(?:overview|summary|description|stats|"
        rf"statistics)\s+(?:of|for|about)\s+{_INDEX}"
    ),
    _full(rf"(?:describe|summari[sz]e)\s+{_INDEX}"),
]

_POLITE_LEAD = re.compile(
    r"^(?:(?:please|hey|ok|okay|so|hi)[,\s]+)*"
    r"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?)?"
    r"(?:(?:i\s+(?:want|would\s+like|'d\s+like)\s+to\s+know|do\s+you\s+know|tell\s+me)[,\s]+)?",
    re.I,
)
_POLITE_TAIL = re.compile(r"(?:[,\s]+(?:please|for\s+me|thanks|thank\s+you))+$", re.I)
_TRAILING_PUNCT = re.compile(r"[\s?!.。？！:;]+$")
_SUBJECT_TAIL = re.compile(
    r"\s+(?:in\s+(?:them|it|there)|anywhere|at\s+all|somewhere|"
    rf"(?:in|from|among|across)\s+(?:{_DET}{_DOC}|{_INDEX}))$",
    re.I,
)
_SUBJECT_LEAD = re.compile(
    r"^(?:(?P<topic>anything|something|stuff|things|information|info|details|data)\s+"
    r"(?:about|on|regarding)\s+|"
    r"(?:the\s+)?(?P<word>words?|terms?|phrases?|names?|keywords?|strings?)\s+)",
    re.I,
)
_PRONOUN = re.compile(r"it|this|that|them|these|those|he|she|they|him|her", re.I)
_ARTICLE = re.compile(r"^(?:the|a|an)\s+(?=\S)", re.I)
_QUOTES = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’", "«": "»"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def detect_collection_question(question: str) -> CollectionQuery | None:
    """The collection question `question` asks, or None for an ordinary question."""
    text = _normalise(question)
    if not text or len(text) > 500:  # long questions are about content, not the collection
        return None
    for pattern in _OVERVIEW_PATTERNS:
        if pattern.match(text):
            return CollectionQuery("overview", question=question)
    # Subjects before folders: in "list files that mention the recipes folder" the folder is
    # what the files mention.
    for kind, patterns in _SUBJECT_PATTERNS:
        for pattern in patterns:
            found = _subject_query(pattern.match(text), kind, question)
            if found is not None:
                return found
    folder = _detect_folder(text)
    if folder is not None:
        return CollectionQuery("folder_listing", folder, question=question)
    return None


def _normalise(question: str) -> str:
    text = " ".join(_CONTROL.sub(" ", question).split())
    for _ in range(3):  # "please, can you tell me ... for me, please?"
        text = _TRAILING_PUNCT.sub("", text)
        text = _POLITE_TAIL.sub("", text)
        text = _POLITE_LEAD.sub("", text)
    return text.replace("’", "'").strip()


def _subject_query(
    match: re.Match[str] | None, kind: QueryKind, question: str
) -> CollectionQuery | None:
    if match is None:
        return None
    groups = match.groupdict()
    verb = " ".join((groups.get("verb") or groups.get("verb2") or "").split()).lower()
    noun = (groups.get("doc") or groups.get("doc2") or "").lower()
    # "which file contains the settings" is likely about a file in the subject matter (a
    # config file), not the collection: with a singular noun only unmistakable verbs count.
    if noun and not re.fullmatch(_DOC_PLURAL, noun) and not _VERB_STRONG.match(verb):
        return None
    subject, rule = _clean_subject(groups["x"])
    if not subject or _PRONOUN.fullmatch(subject):  # "where is it mentioned": no subject
        return None
    if rule is None:
        rule = "phrase" if _PHRASE_VERB.match(verb) else "words"
    return CollectionQuery(kind, subject, rule, question)


def _clean_subject(raw: str) -> tuple[str, MatchRule | None]:
    """The subject without qualifiers or quotes ("" if nothing is left), and the match rule
    its wording asks for: "the word X" or a quoted X is a phrase, "information about Y" a
    topic's words; None leaves it to the verb."""
    text = raw.strip()
    rule: MatchRule | None = None
    for _ in range(3):
        text = _SUBJECT_TAIL.sub("", text).strip()
        lead = _SUBJECT_LEAD.match(text)
        if lead:
            rule = "phrase" if lead.group("word") else "words"
            text = text[lead.end() :].strip()
    unquoted = _unquote(text)
    if unquoted is not None:
        text, rule = unquoted.strip(), "phrase"
    else:
        text = _ARTICLE.sub("", text)
    return (text, rule) if re.search(r"\w", text) else ("", rule)


def _unquote(text: str) -> str | None:
    """The text inside one pair of surrounding quotes, or None when it is not quoted."""
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        return text[1:-1]
    return None


def _detect_folder(text: str) -> str | None:
    for pattern in _FOLDER_PATTERNS:
        match = pattern.match(text)
        if match:
            folder = _folder_reference(match.group("ref"))
            if folder:
                return folder
    return None


def _folder_reference(ref: str) -> str | None:
    """The folder named by "folder Z", "the Z folder", "my Z directory" or a path; else None.

    A bare word is not enough: "what's in a WAL record" is not about a folder.
    """
    ref = ref.strip()
    quoted = _unquote(ref)
    if quoted is not None:
        return quoted.strip() if _path_like(quoted) else None
    for pattern in _FOLDER_REFS:
        match = pattern.match(ref)
        if match:
            name = match.group("z").strip()
            name = _unquote(name) or name
            if name and not re.fullmatch(rf"{_INDEX}|the|my|this|it", name, re.I):
                return name.strip()
    return ref if _path_like(ref) and " " not in ref else None


def _path_like(text: str) -> bool:
    """Names a path: has a separator ("docs/recipes", "notes/") or starts at home ("~")."""
    stripped = text.strip()
    has_sep = ("/" in stripped or "\\" in stripped) and bool(re.search(r"\w", stripped))
    return has_sep or (stripped.startswith("~") and len(stripped) > 1)


# =============================================================================================
# Answering


def answer_collection_question(
    store: Store,
    retriever: Retriever | None,
    query: CollectionQuery,
    *,
    limit: int = DISPLAY_LIMIT,
) -> CollectionAnswer:
    """Answer a collection question from the index (no language model involved).

    `retriever` finds documents related by meaning; pass None when there is none (an index
    without vectors yet): keyword matches and metadata still answer.
    """
    roots = store.roots()
    groups = store.document_groups()
    if not groups:
        return _empty_answer(query, roots)
    if query.kind == "overview":
        return _overview(store, query, roots, groups, limit)
    if query.kind == "folder_listing":
        return _folder_listing(store, query, roots, limit)
    return _matching(store, retriever, query, roots, limit)


def _empty_answer(query: CollectionQuery, roots: list[Root]) -> CollectionAnswer:
    if roots:
        where = ", ".join(r.path for r in roots)
        text = f"The index has no files yet (folders: {where}): run `localrag index` on them."
    else:
        text = "The index is empty: add a folder with `localrag index FOLDER`."
    return CollectionAnswer(query, text, count=0, matched=False)


# -- files mentioning X, how many documents about Y -------------------------------------------


def _matching(
    store: Store,
    retriever: Retriever | None,
    query: CollectionQuery,
    roots: list[Root],
    limit: int,
) -> CollectionAnswer:
    expression = _match_expression(query)
    matches = store.documents_matching(expression) if expression else []
    rows = _mention_rows(store, query, matches[:limit])
    related = _related_rows(retriever, query, {m.path for m in matches}, RELATED_LIMIT)
    if query.kind == "count_about":
        lines = _count_text(query, matches, related, rows, roots)
    else:
        lines = _mentions_text(query, matches, related, rows, roots)
    return CollectionAnswer(
        query,
        "\n".join(lines),
        rows=rows + related,
        count=len(matches),
        matched=bool(matches or related),
    )


def _match_expression(query: CollectionQuery) -> str | None:
    """The FTS5 query for the counting rule; every term quoted so user text is never syntax."""
    words = _WORDS.findall(query.subject)
    if query.match == "phrase" and len(words) > 1:
        return _quoted(query.subject)
    if query.match == "phrase":
        return _word_forms(words[0].lower()) if words else None
    terms = query_terms(query.subject)
    return " AND ".join(_word_forms(t) for t in terms) if terms else None


_WORDS = re.compile(r"\w+")


def _word_forms(term: str) -> str:
    """One term in any word form (Porter stemming does inflections) or with a version number
    attached, as people write software and standards: sqlite → sqlite3, python → python3."""
    if not term[-1:].isalpha():
        return _quoted(term)
    numbered = " OR ".join(f"{_quoted(term + digit)}*" for digit in "0123456789")
    return f"({_quoted(term)} OR {numbered})"


def _holds_words(text: str, subject: str) -> bool:
    """Whether a passage visibly holds every word of the subject (any ending): such a file is
    never shown as related "without those words"."""
    folded = text.casefold()
    return all(re.search(rf"(?<![^\W_]){re.escape(term)}", folded) for term in query_terms(subject))


def _rule(query: CollectionQuery) -> str:
    """The counting rule in words, for the answer text."""
    if query.match == "phrase" and len(_WORDS.findall(query.subject)) > 1:
        return f'a passage contains the phrase "{query.subject}" (any word form)'
    if query.match == "phrase":
        return f'a passage contains the word "{query.subject}" (any word form, or numbered)'
    terms = query_terms(query.subject)
    if len(terms) == 1:
        return f'a passage contains the word "{terms[0]}" (any word form, or numbered)'
    words = ", ".join(f'"{t}"' for t in terms)
    return f"one passage contains all of the words {words} (any word form, any order)"


def _mention_rows(
    store: Store, query: CollectionQuery, matches: list[DocumentMatch]
) -> list[CollectionRow]:
    hits = store.chunk_hits([m.first_chunk_id for m in matches])
    rows = []
    for match in matches:
        hit = hits.get(match.first_chunk_id)
        if hit is None:  # changed since the count: list the file without a passage
            rows.append(CollectionRow(match.path, "mentions", match.passages))
            continue
        source = SearchResult(rank=len(rows) + 1, score=float(match.passages), chunk=hit)
        rows.append(_passage_row(source, "mentions", match.passages, query.subject))
    return rows


def _passage_row(
    source: SearchResult, relation: Relation, passages: int, subject: str
) -> CollectionRow:
    short, _ = snippet(source.chunk.text, subject, width=SNIPPET_WIDTH)
    return CollectionRow(
        path=source.path,
        relation=relation,
        passages=passages,
        location=source.location,
        snippet=short,
        source=source,
        similarity=source.vector_score if relation == "related" else None,
    )


def _related_rows(
    retriever: Retriever | None, query: CollectionQuery, exclude: set[str], limit: int
) -> list[CollectionRow]:
    """Documents close in meaning to the subject that the keyword rule did not find."""
    if retriever is None or limit <= 0:
        return []
    best: dict[str, SearchResult] = {}
    counts: dict[str, int] = {}
    for result in retriever.search(query.subject, RELATED_DEPTH, mode="vector"):
        if result.vector_score is None or result.vector_score < RELATED_FLOOR:
            break  # best first: the rest are further away
        if _holds_words(result.chunk.text, query.subject):
            continue  # it holds the words in a form the rule does not count: not "without"
        for path in (result.path, *result.also_in):
            if path in exclude:
                continue
            counts[path] = counts.get(path, 0) + len(result.run)
            if path not in best:
                best[path] = result if path == result.path else _retarget(result, path)
    ranked = list(best.values())[:limit]
    return [_passage_row(r, "related", counts[r.path], query.subject) for r in ranked]


def _retarget(result: SearchResult, path: str) -> SearchResult:
    """The same passage as found in another file (identical text is stored once)."""
    chunk: ChunkHit = replace(result.chunk, path=path)
    return replace(result, chunk=chunk, also_in=[])


def _mentions_text(
    query: CollectionQuery,
    matches: list[DocumentMatch],
    related: list[CollectionRow],
    rows: list[CollectionRow],
    roots: list[Root],
) -> list[str]:
    if matches:
        verb = _verb(query, len(matches))
        lines = [f'{_plural(len(matches), "file")} {verb} "{query.subject}": {_rule(query)}.']
        lines += [_passage_line(row, roots) for row in rows]
        lines += _more_line(len(matches), len(rows))
    else:
        lines = [f'No indexed file mentions "{query.subject}", looking for where {_rule(query)}.']
    lines += _related_text(related, roots, counted=False)
    return lines


def _count_text(
    query: CollectionQuery,
    matches: list[DocumentMatch],
    related: list[CollectionRow],
    rows: list[CollectionRow],
    roots: list[Root],
) -> list[str]:
    verb = _verb(query, len(matches))
    lines = [
        f'{_plural(len(matches), "document")} {verb} "{query.subject}", '
        f"counting each document where {_rule(query)}."
    ]
    lines += [_passage_line(row, roots) for row in rows]
    lines += _more_line(len(matches), len(rows))
    lines += _related_text(related, roots, counted=True)
    return lines


def _verb(query: CollectionQuery, n: int) -> str:
    if query.match == "phrase":
        return "mentions" if n == 1 else "mention"
    return "is about" if n == 1 else "are about"


def _related_text(related: list[CollectionRow], roots: list[Root], *, counted: bool) -> list[str]:
    if not related:
        return []
    note = ", not counted" if counted else ""
    head = (
        f"Related by meaning, without those words (similarity ≥ {RELATED_FLOOR:.2f}"
        f"{note}; the closest {len(related)} shown):"
    )
    return [head, *(_passage_line(row, roots) for row in related)]


def _passage_line(row: CollectionRow, roots: list[Root]) -> str:
    if row.relation == "related" and row.similarity is not None:
        detail = f"similarity {row.similarity:.2f}, {row.location}"
    elif row.location:
        detail = f"{_plural(row.passages, 'passage')}, first at {row.location}"
    else:
        detail = _plural(row.passages, "passage")
    line = f"  {from_root(row.path, roots)} ({detail})"
    return f"{line}: {row.snippet}" if row.snippet else line


def _more_line(total: int, shown: int) -> list[str]:
    return [f"  … and {total - shown} more ({total} in all)"] if total > shown else []


# -- folder listing ---------------------------------------------------------------------------


def _folder_listing(
    store: Store, query: CollectionQuery, roots: list[Root], limit: int
) -> CollectionAnswer:
    candidates = _resolve_folder(store, query.subject, roots)
    if not candidates:
        tops = _top_folders(store, roots)
        lines = [f'No indexed folder matches "{query.subject}". The indexed folders are:']
        lines += [f"  {from_root(t, roots)}" for t in tops]
        text = "\n".join(lines)
        return CollectionAnswer(query, text, count=None, matched=False, candidates=tops)
    if len(candidates) > 1:
        lines = [f'Several indexed folders match "{query.subject}"; ask again with one of:']
        lines += [f"  {from_root(c, roots)}" for c in candidates]
        return CollectionAnswer(query, "\n".join(lines), count=None, candidates=candidates)
    folder = candidates[0]
    documents = store.documents_under(folder)
    rows = [_listed_row(d) for d in documents[:limit]]
    lines = [_folder_summary(folder, documents, roots)]
    children = [(name, n) for name, n in store.child_folders(folder) if name]
    if children:
        lines.append("Sub-folders: " + ", ".join(f"{name} ({n})" for name, n in children))
    lines += [_listed_line(row, folder) for row in rows]
    lines += _more_line(len(documents), len(rows))
    return CollectionAnswer(query, "\n".join(lines), rows=rows, count=len(documents))


def _resolve_folder(store: Store, name: str, roots: list[Root]) -> list[str]:
    """Indexed folders `name` may mean: an absolute path, or a folder name or relative path
    matched as whole path segments inside the roots. Exact case wins over other cases."""
    name = name.strip()
    expanded = os.path.expanduser(name)
    if os.path.isabs(expanded):
        return _absolute_folder(store, expanded)
    parts = [p for p in re.split(r"[/\\]+", name) if p and p != "."]
    if not parts:
        return []
    needle = os.sep + os.sep.join(parts) + os.sep
    exact: set[str] = set()
    loose: set[str] = set()
    for path in store.paths_containing(needle):
        for folder, same_case in _folders_in(path, needle):
            if any(is_within(folder, r.path) for r in roots):
                (exact if same_case else loose).add(folder)
    return sorted(exact or loose)


def _folders_in(path: str, needle: str) -> Iterable[tuple[str, bool]]:
    """Each folder of `path` ending in `needle` (ignoring ASCII case), and whether the case
    is the same."""
    lowered, low_needle = fold_ascii_case(path), fold_ascii_case(needle)
    start = lowered.find(low_needle)
    while start >= 0:
        end = start + len(needle) - 1
        yield path[:end], path[start:end] == needle[:-1]
        start = lowered.find(low_needle, start + 1)


def _absolute_folder(store: Store, path: str) -> list[str]:
    """The folder as given, or as resolved (roots are stored resolved), if it holds files."""
    given = os.path.normpath(path)
    for candidate in dict.fromkeys((given, str(Path(given).resolve()))):
        if store.documents_under(candidate):
            return [candidate]
    return []


def _top_folders(store: Store, roots: list[Root]) -> list[str]:
    """Each root and its first-level sub-folders: what a user can ask to list."""
    folders: list[str] = []
    for root in roots:
        folders.append(root.path)
        for name, _ in store.child_folders(root.path):
            if name:
                folders.append(os.path.join(root.path, name))
    return folders


def _folder_summary(folder: str, documents: list[DocumentInfo], roots: list[Root]) -> str:
    states = _status_counts((d.status, 1) for d in documents)
    chunks = sum(d.chunk_count for d in documents)
    size = format_bytes(sum(d.size for d in documents))
    return (
        f"Folder {from_root(folder, roots)}: {_plural(len(documents), 'file')} ({states}), "
        f"{_plural(chunks, 'passage')}, {size}."
    )


def _listed_row(document: DocumentInfo) -> CollectionRow:
    return CollectionRow(
        path=document.path,
        relation="listed",
        passages=document.chunk_count,
        status=document.status,
        reason=document.reason,
        format=document.format or _extension(document.path),
        size=document.size,
    )


def _listed_line(row: CollectionRow, folder: str) -> str:
    name = os.path.relpath(row.path, folder)
    if row.status != "indexed":
        state = "failed" if row.status == "error" else row.status
        return f"  {name}: {state} ({row.reason or 'no reason recorded'})"
    return (
        f"  {name}: {row.format}, {format_bytes(row.size or 0)}, {_plural(row.passages, 'passage')}"
    )


# -- overview -----------------------------------------------------------------------------------


def _overview(
    store: Store,
    query: CollectionQuery,
    roots: list[Root],
    groups: list[DocumentGroup],
    limit: int,
) -> CollectionAnswer:
    total = sum(g.documents for g in groups)
    indexed = [g for g in groups if g.status == "indexed"]
    passages = sum(g.chunks for g in indexed)
    states = _status_counts((g.status, g.documents) for g in groups)
    lines = [
        f"The index holds {_plural(total, 'file')} in {_plural(len(roots), 'folder')}: "
        f"{states}; {_plural(passages, 'searchable passage')}."
    ]
    for root in roots:
        lines.append(_root_line(store, root, groups))
    formats = _format_counts(indexed)
    if formats:
        lines.append("Formats: " + ", ".join(f"{name} {n}" for name, n in formats))
    documents: list[DocumentInfo] = []
    for root in roots:  # only as many as are shown: an index may hold 100k files
        documents += store.documents_under(root.path, limit - len(documents))
    rows = [_listed_row(d) for d in documents]
    lines.append("Files:")
    lines += [f"  {from_root(row.path, roots)}" + _row_state(row) for row in rows]
    lines += _more_line(total, len(rows))
    if any(g.status != "indexed" for g in groups):
        lines.append("Skipped and failed files, with reasons: `localrag status --errors`.")
    return CollectionAnswer(query, "\n".join(lines), rows=rows, count=total)


def _root_line(store: Store, root: Root, groups: list[DocumentGroup]) -> str:
    count = sum(g.documents for g in groups if g.root == root.path)
    children = [name for name, _ in store.child_folders(root.path) if name]
    shown = ", ".join(children[:8]) + (", …" if len(children) > 8 else "")
    inside = f" (sub-folders: {shown})" if children else ""
    return f"  {root.path}: {_plural(count, 'file')}{inside}"


def _format_counts(groups: list[DocumentGroup]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for group in groups:
        name = group.format or "other"
        counts[name] = counts.get(name, 0) + group.documents
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _row_state(row: CollectionRow) -> str:
    if row.status == "indexed":
        return ""
    return f" ({'failed' if row.status == 'error' else row.status}: {row.reason})"


# -- formatting -----------------------------------------------------------------------------------


def _status_counts(counted: Iterable[tuple[str, int]]) -> str:
    """ "5 indexed, 1 skipped, 1 failed" from (status, documents) pairs."""
    counts = {"indexed": 0, "skipped": 0, "error": 0}
    for status, n in counted:
        counts[status] = counts.get(status, 0) + n
    parts = [f"{counts['indexed']} indexed"]
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    if counts["error"]:
        parts.append(f"{counts['error']} failed")
    return ", ".join(parts)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _extension(path: str) -> str | None:
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    return suffix or None
