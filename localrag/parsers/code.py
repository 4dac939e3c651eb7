"""Source code and config files: blocks at blank lines and top-level definitions."""

from __future__ import annotations

import re
from pathlib import Path

from localrag.documents import Block, ParsedDocument
from localrag.parsers.text import Lines, decode_source

# extension → language name (also the key for the definition patterns below).
LANGUAGES: dict[str, str] = {
    **dict.fromkeys(("py", "pyi", "pyw"), "python"),
    **dict.fromkeys(("js", "mjs", "cjs", "jsx"), "javascript"),
    **dict.fromkeys(("ts", "tsx", "mts", "cts"), "typescript"),
    "go": "go",
    "rs": "rust",
    "java": "java",
    **dict.fromkeys(("kt", "kts"), "kotlin"),
    **dict.fromkeys(("scala", "sc"), "scala"),
    "swift": "swift",
    **dict.fromkeys(("c", "h"), "c"),
    **dict.fromkeys(("cpp", "cc", "cxx", "hpp", "hh", "hxx", "ino"), "cpp"),
    "cs": "csharp",
    "dart": "dart",
    **dict.fromkeys(("groovy", "gradle"), "groovy"),
    "rb": "ruby",
    "php": "php",
    **dict.fromkeys(("sh", "bash", "zsh", "ksh", "fish"), "shell"),
    "ps1": "powershell",
    "sql": "sql",
    "lua": "lua",
    "r": "r",
    **dict.fromkeys(("pl", "pm"), "perl"),
    **dict.fromkeys(("ex", "exs"), "elixir"),
    "erl": "erlang",
    "hs": "haskell",
    **dict.fromkeys(("ml", "mli"), "ocaml"),
    **dict.fromkeys(("fs", "fsx"), "fsharp"),
    **dict.fromkeys(("clj", "cljs", "edn"), "clojure"),
    **dict.fromkeys(("el", "lisp", "scm"), "lisp"),
    "jl": "julia",
    "zig": "zig",
    "nim": "nim",
    "nix": "nix",
    **dict.fromkeys(("tf", "hcl"), "hcl"),
    "proto": "protobuf",
    **dict.fromkeys(("graphql", "gql"), "graphql"),
    **dict.fromkeys(("css", "scss", "sass", "less"), "css"),
    **dict.fromkeys(("vue", "svelte"), "javascript"),
    "xml": "xml",
    **dict.fromkeys(("yaml", "yml"), "yaml"),
    "toml": "toml",
    **dict.fromkeys(("json", "jsonc", "json5", "jsonl", "ndjson"), "json"),
    **dict.fromkeys(("ini", "cfg", "conf", "properties"), "ini"),
    **dict.fromkeys(("csv", "tsv"), "csv"),
    "cmake": "cmake",
    "mk": "make",
    "vim": "vim",
    "bat": "batch",
}

# Files known by name rather than extension.
FILENAMES: dict[str, str] = {
    "makefile": "make",
    "gnumakefile": "make",
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "cmakelists.txt": "cmake",
    "jenkinsfile": "groovy",
    "vagrantfile": "ruby",
    "rakefile": "ruby",
    "gemfile": "ruby",
}

_MODS = (
    r"(?:(?:public|private|protected|internal|static|final|abstract|sealed|open|data|inline"
    r"|override|partial|async|fileprivate|export|default|declare|suspend|tailrec|operator"
    r"|infix|external|lateinit|case)\s+)*"
)
_JS_DEF = (
    r"^(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?"
    r"(?:function\s*\*?|class|interface|type|enum|namespace|module)\s*([A-Za-z_$][\w$]*)",
    r"^(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=\s*"
    r"(?:async\s+)?(?:function|\(|[A-Za-z_$][\w$]*\s*=>)",
)
_C_DEF = (
    r"^(?:typedef\s+)?(?:struct|class|union|enum(?:\s+class)?|namespace)\s+([A-Za-z_]\w*)(?!.*;\s*$)",
    # Return type words then the name and "(": the two classes cannot overlap, so a long
    # line cannot make the regex backtrack.
    r"^(?!(?:if|for|while|switch|return|else|do|case|typedef|using|template)\b)"
    r"(?:[A-Za-z_][\w:<>,~]*[\s\*&]+)*([A-Za-z_~][\w:~]*)\s*\([^;]*$",
)
_JVM_DEF = (
    r"^(?:@\w+(?:\([^)]*\))?\s+)*" + _MODS + r"(?:class|interface|enum|record|struct|object|trait"
    r"|fun|func|def|protocol|extension|namespace|actor|@interface)\s+(?:<[^>]*>\s*)?([A-Za-z_]\w*)",
)

DEFINITIONS: dict[str, tuple[str, ...]] = {
    "python": (r"^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)",),
    "javascript": _JS_DEF,
    "typescript": _JS_DEF,
    "go": (r"^func\s+(?:\([^)]*\)\s*)?([A-Za-z_]\w*)", r"^type\s+([A-Za-z_]\w*)"),
    "rust": (
        r"^(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|unsafe|const|extern\s+\"[^\"]*\")\s+)*"
        r"(?:fn|struct|enum|trait|union|mod|type|macro_rules!)\s*([A-Za-z_]\w*)",
        r"^(?:unsafe\s+)?impl(?:<[^>]*>)?\s+([^{]+?)\s*(?:\{|where\b|$)",
    ),
    "java": _JVM_DEF,
    "kotlin": _JVM_DEF,
    "scala": _JVM_DEF,
    "swift": _JVM_DEF,
    "csharp": _JVM_DEF,
    "dart": (*_JVM_DEF, *_C_DEF),
    "groovy": _JVM_DEF,
    "c": _C_DEF,
    "cpp": _C_DEF,
    "ruby": (r"^(?:def|class|module)\s+([\w.:?!=]+)",),
    "php": (
        r"^(?:(?:abstract|final|public|private|protected|static|readonly)\s+)*"
        r"(?:function|class|interface|trait|enum)\s+&?([A-Za-z_]\w*)",
    ),
    "shell": (r"^function\s+([A-Za-z_][\w.:-]*)", r"^([A-Za-z_][\w.:-]*)\s*\(\)\s*\{?"),
    "powershell": (r"^(?i:function|filter|class)\s+([\w-]+)",),
    "sql": (
        r"^(?i:create\s+(?:or\s+replace\s+)?(?:temp(?:orary)?\s+)?(?:unique\s+)?"
        r"(?:table|view|function|procedure|index|trigger|type|schema|materialized\s+view|sequence)"
        r"\s+(?:if\s+not\s+exists\s+)?)([\w.\"`]+)",
    ),
    "lua": (r"^(?:local\s+)?function\s+([\w.:]+)",),
    "r": (r"^([A-Za-z_.][\w.]*)\s*(?:<-|=)\s*function",),
    "perl": (r"^(?:sub|package)\s+([\w:]+)",),
    "elixir": (r"^defmodule\s+([\w.]+)",),
    "julia": (r"^(?:function|macro|struct|mutable\s+struct|module|abstract\s+type)\s+([\w.!]+)",),
    "zig": (r"^(?:pub\s+)?(?:fn|const)\s+([A-Za-z_]\w*)",),
    "nim": (r"^(?:proc|func|method|iterator|macro|template|type)\s+([A-Za-z_]\w*)",),
    "hcl": (r"^(?:resource|data|module|variable|output|provider)\s+((?:\"[^\"]*\"\s*)+)",),
    "protobuf": (r"^(?:message|service|enum)\s+([A-Za-z_]\w*)",),
    "graphql": (r"^(?:type|input|interface|enum|union|scalar|query|mutation|fragment)\s+(\w+)",),
    "yaml": (r"^([A-Za-z_][\w.-]*)\s*:",),
    "toml": (r"^\[+\s*([^\]]+?)\s*\]+",),
    "ini": (r"^\[\s*([^\]]+?)\s*\]",),
    "make": (r"^([A-Za-z_][\w./-]*)\s*:(?!=)",),
    "cmake": (r"^(?i:function|macro)\s*\(\s*([\w-]+)",),
    "dockerfile": (r"^(?i:from)\s+(\S+(?:\s+as\s+\S+)?)",),
    "generic": (
        r"^(?:def|class|function|func|fn|sub|proc|module|struct|impl|interface|trait)\s+([A-Za-z_]\w*)",
    ),
}
_COMPILED: dict[str, list[re.Pattern[str]]] = {
    lang: [re.compile(p) for p in pats] for lang, pats in DEFINITIONS.items()
}

# Lines at column 0 that belong to the definition below them.
_LEADING = ("#", "//", "/*", "*", "--", ";", "@", "%", "'''", '"""', "<!--")
# Lines at column 0 that open or close a definition's body rather than leave it.
_CLOSERS = re.compile(r"^(?:[{}\])]|end\b|fi\b|done\b|esac\b|\"\"\"|''')")
_DATA_LANGS = frozenset({"yaml", "toml", "json", "ini", "csv", "xml"})


def language_for(path: Path) -> str | None:
    """The language of a source or config file, by name or extension."""
    name = path.name.lower()
    if name in FILENAMES:
        return FILENAMES[name]
    return LANGUAGES.get(path.suffix.lower().lstrip("."))


def _definition(patterns: list[re.Pattern[str]], line: str) -> str | None:
    line = line[:400]  # A definition's name is near the start; minified lines can be huge.
    for pattern in patterns:
        m = pattern.match(line)
        if m:
            return " ".join(m.group(1).split()) or None
    return None


def _owners(lines: Lines, patterns: list[re.Pattern[str]]) -> tuple[list[str | None], set[int]]:
    """Each line's enclosing top-level definition, and the lines where a definition starts."""
    n = len(lines)
    owners: list[str | None] = [None] * n
    starts: set[int] = set()
    current: str | None = None
    text_lines = lines
    for i, line in enumerate(text_lines):
        if line and not line[0].isspace():
            name = _definition(patterns, line)
            if name is not None:
                # Pull the comments and decorators right above it into the definition.
                j = i
                while j > 0 and text_lines[j - 1].lstrip().startswith(_LEADING):
                    j -= 1
                for k in range(j, i):
                    owners[k] = name
                starts.add(j)
                current = name
            elif not line.startswith(_LEADING) and not _CLOSERS.match(line):
                current = None
        owners[i] = current if owners[i] is None else owners[i]
    return owners, starts


def parse_code(path: Path, data: bytes, language: str | None = None) -> ParsedDocument:
    """Code → blocks split at blank lines and definitions, headed by (filename, definition)."""
    lang = language or language_for(path) or "generic"
    text = decode_source(data)
    lines = Lines(text)
    patterns = _COMPILED.get(lang, _COMPILED["generic"])
    owners, starts = _owners(lines, patterns)
    kind = "table" if lang == "csv" else "code"
    base = (path.name,)
    blocks: list[Block] = []

    def emit(first: int, last: int) -> None:
        owner = owners[first]
        block = lines.block(first, last, kind, (*base, owner) if owner else base, keep_indent=True)
        if block is not None:
            blocks.append(block)

    first: int | None = None
    for i in range(len(lines)):
        if lines.is_blank(i):
            if first is not None:
                emit(first, i - 1)
                first = None
            continue
        if first is not None and (i in starts or owners[i] != owners[first]):
            emit(first, i - 1)
            first = None
        if first is None:
            first = i
    if first is not None:
        emit(first, len(lines) - 1)
    metadata = {"language": lang}
    return ParsedDocument(text=text, blocks=blocks, format="code", metadata=metadata)
