"""What a student wrote or displayed, made inert for every browser that shows it to an instructor or student.

The autograded notebook (`OUT/autograded/...`, which formgrader renders in the instructor's Jupyter origin)
and the notebook the feedback page is made from are sanitised copies: `SanitiseNotebook`, the last step of
nbgrader's autograde pipeline and the first of generate_feedback's (autograder/pipeline/nbgrader_config.py). What
stays: text, embedded images, formatting HTML, Markdown, math and nbgrader's cell metadata. What goes:
scripts, event handlers, iframes, forms, styles that could move a box or fetch anything, `javascript:` and
every other URL that is not http(s), mailto or a fragment, images that are not embedded (a remote image is a
request the student chose), active SVG (scripts, foreignObject, handlers, animations, outside references),
outputs of other types (`application/javascript`, widget views, mermaid, PDF...), widget state and every
other notebook or cell metadata a viewer could read.

HTML and SVG go through nh3 (Ammonia's allow-list sanitiser on html5ever, the HTML5 parser of Servo):
allowed tags and attributes, its URL checks, and a filter here for styles (tinycss2) and values. bleach was
measured first: html5lib's tree walker is quadratic in an element's number of children (200 KB of
paragraphs took 3 s, 1 MB a minute, outside every sandbox limit); nh3 takes 0.3 s for 1 MB. Markdown is not
sanitised as HTML, which would mangle `<`, `&` and TeX: it is parsed with the very parser nbconvert renders
it with (`MarkdownWithMath`), and only what that renderer would emit unescaped is touched, each piece of
raw HTML replaced by its sanitised form. The result is parsed again; a cell that is still not inert, or
holds a link or image the renderer would pass unchecked (nbconvert allows `javascript:`), is shown as its
text in a code block under a note. Cells identical to one of the instructor's locked source cells (the
course text, with its Colab badge) are the instructor's own and stay as they are.

An ordinary notebook costs a few milliseconds: text without `<`, `:`, `&`, `![` or `mermaid` skips the
Markdown parser. HTML, SVG or Markdown over `Grading.markup_size_limit` is not parsed at all (it is replaced by a note
or shown as text).
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import re
import threading
from collections.abc import Iterable

import nh3
import tinycss2
from defusedxml import ElementTree
from nbconvert.filters.markdown_mistune import MarkdownWithMath
from nbformat import NotebookNode
from nbformat.v4.nbbase import random_cell_id
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Instance

from autograder.settings import GradingSettings, course_settings

# Formatting HTML: text, tables, lists, links, embedded images. No forms, frames, media, SVG or MathML.
HTML_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "bdi",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "font",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "mark",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
        "wbr",
    }
)
# Elements dropped with everything inside them (a script's code, a style sheet), not only their tags.
DROPPED_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "template",
        "noscript",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "textarea",
        "select",
        "title",
        "xmp",
        "noembed",
        "noframes",
        "svg",
        "math",
        "head",
        "link",
        "meta",
        "base",
        "foreignObject",
        "metadata",
    }
)
# Attributes anywhere; no id, name or class: a student's element must not stand in for one of the page's own
# (formgrader finds its score fields by id and class), nor clobber the page script's globals.
_ANY_TAG_ATTRIBUTES = {"title", "lang", "dir", "align", "style"}
_TAG_ATTRIBUTES = {
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign"},
    "th": {"colspan", "rowspan", "valign", "scope"},
    "ol": {"start", "type", "reversed"},
    "li": {"value"},
    "col": {"span", "width"},
    "colgroup": {"span"},
    "table": {"border", "cellpadding", "cellspacing"},
    "font": {"color", "size"},
    "details": {"open"},
}
_NUMBERS = {
    "width",
    "height",
    "border",
    "cellpadding",
    "cellspacing",
    "span",
    "colspan",
    "rowspan",
    "start",
    "value",
    "size",
}
# Styles that change how text looks, never where a box sits or what is fetched.
CSS_PROPERTIES = frozenset(
    {
        "color",
        "background-color",
        "font-weight",
        "font-style",
        "text-align",
        "text-decoration",
        "vertical-align",
        "white-space",
        "border-collapse",
    }
)
SVG_CSS_PROPERTIES = frozenset(
    {
        "fill",
        "fill-opacity",
        "fill-rule",
        "stroke",
        "stroke-width",
        "stroke-linecap",
        "stroke-linejoin",
        "stroke-opacity",
        "stroke-dasharray",
        "stroke-dashoffset",
        "stroke-miterlimit",
        "opacity",
        "font-family",
        "font-size",
        "font-weight",
        "font-style",
        "text-anchor",
        "dominant-baseline",
        "stop-color",
        "stop-opacity",
        "clip-rule",
        "clip-path",
    }
)
# Static SVG: shapes, text, gradients, clipping, local <use>. No script, foreignObject, a, image, animate, set,
# style or filter elements.
SVG_TAGS = frozenset(
    {
        "svg",
        "g",
        "defs",
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "tspan",
        "desc",
        "clipPath",
        "linearGradient",
        "radialGradient",
        "stop",
        "marker",
        "symbol",
        "use",
        "mask",
        "pattern",
    }
)
SVG_ATTRIBUTES = frozenset(
    {
        "d",
        "x",
        "y",
        "x1",
        "x2",
        "y1",
        "y2",
        "cx",
        "cy",
        "r",
        "rx",
        "ry",
        "dx",
        "dy",
        "width",
        "height",
        "viewBox",
        "points",
        "transform",
        "offset",
        "version",
        "id",
        "style",
        "preserveAspectRatio",
        "gradientUnits",
        "gradientTransform",
        "patternUnits",
        "patternTransform",
        "markerWidth",
        "markerHeight",
        "refX",
        "refY",
        "orient",
        "markerUnits",
        "clipPathUnits",
        "maskUnits",
        "visibility",
        "mask",
        "marker-start",
        "marker-mid",
        "marker-end",
        *SVG_CSS_PROPERTIES,
    }
)
# Presentation attributes whose value may name a paint server, clip path, mask or marker: url(#...) only.
_SVG_REFERENCES = SVG_CSS_PROPERTIES | {"mask", "marker-start", "marker-mid", "marker-end"}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
XLINK_NAMESPACE = "http://www.w3.org/1999/xlink"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
_EMBEDDED_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*", re.IGNORECASE)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")  # grade ids, tags, attachment names
_CELL_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # nbformat 4.5's cell id
_NBGRADER_KEYS: dict[str, type | tuple[type, ...]] = {
    "grade": bool,
    "solution": bool,
    "locked": bool,
    "task": bool,
    "points": (int, float),
    "schema_version": int,
    "checksum": str,
    "cell_type": str,
    "grade_id": str,
}
# The HTML that MarkdownWithMath's renderer (nbconvert's IPythonRenderer) emits as written, unescaped.
_RAW_HTML_TOKENS = ("block_html", "inline_html")
_MARKDOWN_TRIGGERS = ("<", ":", "&", "![", "mermaid")


def _inert_style(style: str, properties: frozenset[str]) -> str | None:
    """A style attribute with only the allowed properties (parsed by tinycss2), none fetching anything."""
    kept = [
        d
        for d in tinycss2.parse_declaration_list(style, skip_comments=True, skip_whitespace=True)
        if d.type == "declaration" and d.lower_name in properties and _local_only(d.value)
    ]
    text = "; ".join(f"{d.lower_name}: {tinycss2.serialize(d.value).strip()}" for d in kept)
    return text or None


def _local_only(tokens: Iterable) -> bool:
    """Whether CSS component values (tinycss2's) fetch nothing: no url() but `url(#id)` (a reference inside
    the same SVG), no function but rgb(), rgba(), hsl() and hsla()."""
    for token in tokens:
        if token.type == "url":
            if not token.value.strip().startswith("#"):
                return False
        elif token.type == "function":
            if token.lower_name not in ("rgb", "rgba", "hsl", "hsla") or not _local_only(token.arguments):
                return False
        elif token.type in ("() block", "[] block", "{} block"):
            if not _local_only(token.content):
                return False
    return True


def _plain_url(value: str) -> str:
    """A URL as a browser may read it: entities decoded (once more, to be safe), tabs, newlines and controls
    dropped, lower case."""
    return re.sub(r"[\x00-\x20\x7f-\xa0]+", "", html.unescape(value)).lower()


def _html_value(tag: str, name: str, value: str) -> str | None:
    """nh3's attribute filter for HTML: the value kept, or None. nh3 checks URL schemes after it."""
    if name == "style":
        return _inert_style(value, CSS_PROPERTIES)
    if tag == "a" and name == "href":
        return value if _plain_url(value).startswith(("http://", "https://", "mailto:", "#")) else None
    if tag == "img" and name == "src":
        return value if _EMBEDDED_IMAGE.fullmatch(value.strip()) else None
    if name in _NUMBERS:
        return value if re.fullmatch(r"\s*\d{1,5}%?\s*", value) else None
    return value


def _svg_value(tag: str, name: str, value: str) -> str | None:
    """nh3's attribute filter for SVG (names are local: `xlink:href` comes as `href`, `xmlns:xlink` as
    `xlink`): references only inside the same image."""
    if name == "xmlns":
        return value if tag == "svg" and value.strip() == SVG_NAMESPACE else None
    if name == "xlink":
        return value if tag == "svg" and value.strip() == XLINK_NAMESPACE else None
    if name == "href":
        return value if value.strip().startswith("#") else None
    if name == "style":
        return _inert_style(value, SVG_CSS_PROPERTIES)
    if name in _SVG_REFERENCES:
        return value if _local_only(tinycss2.parse_component_value_list(value)) else None
    return value  # geometry (d, points, transform...): nothing in it is fetched


def _or_none(attribute_filter):
    """An attribute filter that drops the attribute, quietly, on any error (nh3 would report it on stderr)."""

    def quiet(tag: str, name: str, value: str) -> str | None:
        try:
            return attribute_filter(tag, name, value)
        except Exception:  # noqa: BLE001 (a value the filter cannot read is not kept)
            return None

    return quiet


def _fragment_only(url: str) -> str | None:
    """nh3's rule for relative URLs: a fragment (`#section`) stays; any other address on the page's own
    server (formgrader's API is one) goes."""
    return url if url.strip().startswith("#") else None


class _Parsers(threading.local):
    """One set per thread (Dask and the grader's warm-up run threads), made on first use."""

    def __init__(self) -> None:
        self.html = nh3.Cleaner(
            tags=set(HTML_TAGS),
            clean_content_tags=set(DROPPED_WITH_CONTENT),
            attributes={"*": set(_ANY_TAG_ATTRIBUTES), **{t: set(a) for t, a in _TAG_ATTRIBUTES.items()}},
            attribute_filter=_or_none(_html_value),
            url_schemes={"http", "https", "mailto", "data"},
            url_relative=_fragment_only,
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )
        self.svg = nh3.Cleaner(
            tags=set(SVG_TAGS),
            clean_content_tags={"script", "style", "foreignObject", "metadata", "title"},
            attributes={
                "*": set(SVG_ATTRIBUTES),
                "svg": {*SVG_ATTRIBUTES, "xmlns", "xlink"},
                **{
                    t: {*SVG_ATTRIBUTES, "href", "xlink:href"}
                    for t in ("use", "linearGradient", "radialGradient", "pattern")
                },
            },
            attribute_filter=_or_none(_svg_value),
            url_schemes=set(),
            url_relative=_fragment_only,
            link_rel=None,
            strip_comments=True,
        )
        # nbconvert's parser, returning the syntax tree (mistune's Markdown takes renderer=None; nbconvert's
        # annotation of its subclass does not say so)
        self.markdown = MarkdownWithMath(renderer=None)  # type: ignore[arg-type]


_parsers = _Parsers()


def clean_html(text: str) -> str:
    """HTML with only formatting left (nh3 and the allow-lists above); scripts and styles go whole."""
    return _parsers.html.clean(text)


def clean_svg(text: str, limits: GradingSettings | None = None) -> str | None:
    """A static SVG image, or None when nothing well-formed is left of it."""
    if len(text) > (limits or course_settings()).markup_size_limit:
        return None
    cleaned = _parsers.svg.clean(text).strip()  # an XML declaration or DOCTYPE goes too
    if not cleaned.startswith("<svg"):
        return None
    try:
        ElementTree.fromstring(cleaned)
    except Exception:  # noqa: BLE001 (defusedxml refuses entities and DTDs too: any refusal drops the image)
        return None
    return cleaned


def _without_added_ends(raw: str, cleaned: str) -> str:
    """The sanitiser's output without the end tags it added itself: it closes every element it sees open, and a
    Markdown HTML piece is often half an element (`<details>` here, its `</details>` three paragraphs on)."""
    while True:
        last = re.search(r"</([a-z][a-z0-9\-]*)>(\s*)$", cleaned)
        if not last:
            return cleaned
        written = len(re.findall(rf"</\s*{last.group(1)}\s*>", raw, re.IGNORECASE))
        if cleaned.count(f"</{last.group(1)}>") <= written:
            return cleaned
        cleaned = cleaned[: last.start()] + last.group(2)


def _clean_fragment(raw: str) -> str:
    """One raw HTML piece of Markdown (a block, or an inline start tag, end tag or comment), sanitised alone.

    The sanitiser drops an end tag it sees alone: the end tag of an allowed element is kept as written.
    """
    end = re.fullmatch(r"</([A-Za-z][A-Za-z0-9\-]*)\s*>(\s*)", raw)
    if end:
        return (f"</{end.group(1).lower()}>" if end.group(1).lower() in HTML_TAGS else "") + end.group(2)
    return _without_added_ends(raw, clean_html(raw))


def _walk(tokens: list[dict]) -> Iterable[dict]:
    for token in tokens:
        yield token
        yield from _walk(token.get("children") or [])


def _passed_unchecked(token: dict, attachments: dict) -> bool:
    """Whether nbconvert's renderer would emit this link, image or code block as it is, and it is not inert.

    nbconvert renders links with every protocol allowed, images from any URL (a request the student chose),
    `attachment:` images from the cell's attachments (a missing one fails the whole page) and mermaid code
    blocks unescaped.
    """
    kind = token["type"]
    if kind == "link":
        url = _plain_url(token["attrs"].get("url") or "")
        # As for HTML: a relative link (`/api/contents`, `//host/x`) would open the viewer's own server.
        return not url.startswith(("http://", "https://", "mailto:", "#"))
    if kind == "image":
        url = (token["attrs"].get("url") or "").strip()
        if url.startswith("attachment:"):
            return url.removeprefix("attachment:") not in attachments
        return not _EMBEDDED_IMAGE.fullmatch(url)
    if kind == "block_code":
        return str((token.get("attrs") or {}).get("info") or "").strip().lower().startswith("mermaid")
    return False


def _hazards(source: str, attachments: dict) -> tuple[list[dict], bool]:
    """(raw HTML tokens that are not already clean, whether anything else is active), as nbconvert parses."""
    tokens = _parsers.markdown(source)
    assert isinstance(tokens, list), "a parser without a renderer returns the syntax tree"
    pieces: list[dict] = []
    other = False
    for token in _walk(tokens):
        if token["type"] in _RAW_HTML_TOKENS:
            if _clean_fragment(token["raw"]) != token["raw"]:
                pieces.append(token)
        elif _passed_unchecked(token, attachments):
            other = True
    return pieces, other


def clean_markdown(source: str, attachments: dict | None = None, limits: GradingSettings | None = None) -> str:
    """Markdown whose raw HTML is sanitised, everything else as written (math, tables, `<` in text).

    Each raw HTML piece that is not clean already is replaced, in document order, by its sanitised form; the
    result is parsed again. A cell still not inert, or with a link or image nbconvert would pass as it is,
    becomes its own text in a code block with a note.
    """
    attachments = attachments or {}
    if not any(trigger in source for trigger in _MARKDOWN_TRIGGERS):
        return source
    if len(source) > (limits or course_settings()).markup_size_limit:
        return _as_text(source)
    # As the parser reads it (its pieces' text is this text's): one kind of line end, a final one.
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    text += "" if text.endswith("\n") else "\n"
    try:
        pieces, other = _hazards(text, attachments)
        if not pieces and not other:
            return source
        if other:
            return _as_text(source)
        patched, cursor = [], 0
        for token in pieces:
            start = text.find(token["raw"], cursor)
            if start < 0:
                return _as_text(source)
            patched += [text[cursor:start], _clean_fragment(token["raw"])]
            cursor = start + len(token["raw"])
        result = "".join(patched) + text[cursor:]
        pieces, other = _hazards(result, attachments)
        if pieces or other:
            return _as_text(source)
        return result if source.endswith(("\n", "\r")) else result.removesuffix("\n")
    except Exception:  # noqa: BLE001 (a parser failure on a student's text: show it as text)
        return _as_text(source)


def _as_text(source: str) -> str:
    """The source shown verbatim in a fenced code block, longer than any run of tildes in it."""
    longest = max((len(run) for run in re.findall(r"~+", source)), default=0)
    fence = "~" * max(3, longest + 1)
    return (
        "*This cell held content that could run in a browser (a script, an event handler, an active link "
        "or an outside image); it is shown as text.*\n\n"
        f"{fence}\n{source.rstrip()}\n{fence}\n"
    )


def _text(value) -> str | None:
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "".join(value)
    return value if isinstance(value, str) else None


def _base64(value: str) -> str | None:
    compact = re.sub(r"\s+", "", value)
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    return compact


def _printable(name: str) -> str:
    return "".join(ch for ch in str(name)[:60] if ch.isascii() and ch.isprintable())


def clean_output(
    output: dict, budget: list[int] | None = None, limits: GradingSettings | None = None
) -> NotebookNode | None:
    """A code cell's output with only inert content, or None for an output type nbformat does not know.

    `budget`: characters of HTML, SVG and Markdown still to parse in this notebook (decremented); an output
    past it keeps its other forms (its text/plain), so a flood of outputs costs the grader a bounded time.
    """
    limits = limits or course_settings()
    budget = budget if budget is not None else [limits.markup_notebook_limit]
    kind = output.get("output_type")
    if kind == "stream":
        return NotebookNode(
            output_type="stream",
            name="stderr" if output.get("name") == "stderr" else "stdout",
            text=_text(output.get("text")) or "",
        )
    if kind == "error":
        traceback = output.get("traceback")
        return NotebookNode(
            output_type="error",
            ename=_text(output.get("ename")) or "",
            evalue=_text(output.get("evalue")) or "",
            traceback=[line for line in traceback if isinstance(line, str)] if isinstance(traceback, list) else [],
        )
    if kind not in ("display_data", "execute_result"):
        return None
    data: dict[str, str] = {}
    dropped: list[str] = []
    source = output.get("data")
    if not isinstance(source, dict):
        source = {}
    for mime, value in source.items():
        text = _text(value)
        kept: str | None = None
        if text is None:
            pass
        elif mime in ("text/html", "text/markdown", "image/svg+xml") and len(text) > budget[0]:
            pass
        elif mime in ("text/plain", "text/latex"):  # shown escaped (LaTeX is typeset by MathJax)
            kept = text
        elif mime == "text/html":
            kept = clean_html(text) if len(text) <= limits.markup_size_limit else None
            kept = kept if kept and kept.strip() else None
        elif mime == "text/markdown":
            kept = clean_markdown(text, limits=limits)
        elif mime in IMAGE_TYPES:
            kept = _base64(text)
        elif mime == "image/svg+xml":
            kept = clean_svg(text, limits)
        if text is not None and mime in ("text/html", "text/markdown", "image/svg+xml"):
            budget[0] -= min(len(text), budget[0])
        if kept is None:
            dropped.append(_printable(mime))
        else:
            data[mime] = kept
    if not data:
        data["text/plain"] = f"[output not shown: {', '.join(sorted(dropped)[:5]) or 'no data'}]"
    metadata: dict[str, dict[str, int | float]] = {}
    for mime in IMAGE_TYPES:
        size = (output.get("metadata") or {}).get(mime)
        if mime in data and isinstance(size, dict):
            dimensions = {
                key: size[key]
                for key in ("width", "height")
                if isinstance(size.get(key), (int, float)) and not isinstance(size.get(key), bool)
            }
            if dimensions:
                metadata[mime] = dimensions
    result = NotebookNode(output_type=kind, data=NotebookNode(data), metadata=NotebookNode(metadata))
    if kind == "execute_result":
        count = output.get("execution_count")
        result.execution_count = count if isinstance(count, int) and not isinstance(count, bool) else None
    return result


def _of_type(value, key: str) -> bool:
    """Whether an nbgrader flag has its type (a bool is not a number here)."""
    expected = _NBGRADER_KEYS[key]
    return isinstance(value, bool) if expected is bool else isinstance(value, expected) and not isinstance(value, bool)


def _cell_metadata(metadata: dict, cell_type: str) -> NotebookNode:
    """The cell metadata formgrader and JupyterLab need: nbgrader's flags (its own keys, checked types),
    tags, and the booleans of editing and collapsing. Everything else (widget or plugin state) goes."""
    kept = NotebookNode()
    flags = metadata.get("nbgrader")
    if isinstance(flags, dict):
        flags = {key: value for key, value in flags.items() if key in _NBGRADER_KEYS and _of_type(value, key)}
        if "grade_id" not in flags or _SAFE_NAME.fullmatch(flags["grade_id"]):
            kept.nbgrader = NotebookNode(flags)
    tags = metadata.get("tags")
    if isinstance(tags, list):
        kept.tags = [tag for tag in tags if isinstance(tag, str) and _SAFE_NAME.fullmatch(tag)]
    for key in ("editable", "deletable", "collapsed"):
        if isinstance(metadata.get(key), bool):
            kept[key] = metadata[key]
    if metadata.get("scrolled") in (True, False, "auto"):
        kept.scrolled = metadata["scrolled"]
    jupyter = metadata.get("jupyter")
    if isinstance(jupyter, dict):
        hidden = {k: v for k, v in jupyter.items() if k in ("source_hidden", "outputs_hidden") and isinstance(v, bool)}
        if hidden:
            kept.jupyter = NotebookNode(hidden)
    if (
        cell_type == "raw"
        and isinstance(metadata.get("raw_mimetype"), str)
        and _SAFE_NAME.fullmatch(metadata["raw_mimetype"].replace("/", ""))
    ):
        kept.raw_mimetype = metadata["raw_mimetype"]
    return kept


def _attachments(attachments) -> dict:
    kept = {}
    for name, bundle in (attachments or {}).items() if isinstance(attachments, dict) else ():
        if isinstance(name, str) and _SAFE_NAME.fullmatch(name) and isinstance(bundle, dict):
            images = {
                mime: _base64(value) for mime, value in bundle.items() if mime in IMAGE_TYPES and isinstance(value, str)
            }
            images = {mime: value for mime, value in images.items() if value is not None}
            if images:
                kept[name] = images
    return kept


def _notebook_metadata(metadata: dict) -> NotebookNode:
    """Only the kernel's name and language: no widget state, title, authors or anything a viewer renders."""
    kept = NotebookNode()
    for key, fields in (
        ("kernelspec", ("name", "display_name", "language")),
        ("language_info", ("name", "version", "mimetype", "file_extension", "pygments_lexer", "nbconvert_exporter")),
    ):
        section = metadata.get(key)
        if isinstance(section, dict):
            values = {
                f: section[f]
                for f in fields
                if isinstance(section.get(f), str) and re.fullmatch(r"[A-Za-z0-9_.+\-/ ()]{0,80}", section[f])
            }
            if values:
                kept[key] = NotebookNode(values)
    return kept


def clean_notebook(
    nb: NotebookNode, trusted: frozenset[str] = frozenset(), limits: GradingSettings | None = None
) -> NotebookNode:
    """Sanitise a notebook in place (and return it). `trusted`: sources of the instructor's own cells,
    which stay as written when a markdown or raw cell has exactly that source."""
    limits = limits or course_settings()
    cells, budget = [], [limits.markup_notebook_limit]
    for cell in nb.cells:
        cell_type = cell.get("cell_type")
        if cell_type not in ("code", "markdown", "raw"):
            continue
        source = _text(cell.get("source")) or ""
        cleaned = NotebookNode(
            cell_type=cell_type, metadata=_cell_metadata(cell.get("metadata") or {}, cell_type), source=source
        )
        identifier = cell.get("id")
        if identifier is not None or nb.get("nbformat_minor", 0) >= 5:
            cleaned.id = (
                identifier if isinstance(identifier, str) and _CELL_ID.fullmatch(identifier) else random_cell_id()
            )
        if cell_type == "code":
            count = cell.get("execution_count")
            cleaned.execution_count = count if isinstance(count, int) and not isinstance(count, bool) else None
            outputs = [clean_output(o, budget, limits) for o in cell.get("outputs") or [] if isinstance(o, dict)]
            cleaned.outputs = [o for o in outputs if o is not None]
        elif cell_type == "markdown":
            attachments = _attachments(cell.get("attachments"))
            if attachments:
                cleaned.attachments = attachments
            if source not in trusted:
                cleaned.source = clean_markdown(source, attachments, limits)
        elif source and source not in trusted:  # a raw cell: nbconvert's HTML shows it as HTML
            cleaned.source = clean_html(source) if len(source) <= limits.markup_size_limit else ""
        cells.append(cleaned)
    nb.cells = cells
    nb.metadata = _notebook_metadata(nb.get("metadata") or {})
    return nb


@functools.lru_cache(maxsize=16)
def instructor_sources(db_url: str, notebook: str, assignment: str) -> frozenset[str]:
    """The sources of the assignment's locked cells (the course's own text), from the gradebook.

    Kept for the process: generate_feedback asks again for the gradebook autograde just read (a submission's
    private one), and opening an nbgrader gradebook costs more than sanitising a notebook.
    """
    from nbgrader.api import Gradebook, MissingEntry

    try:
        with Gradebook(db_url) as gradebook:
            cells = gradebook.find_notebook(notebook, assignment).source_cells
            return frozenset(c.source for c in cells if c.locked and c.source)
    except MissingEntry:
        return frozenset()


class SanitiseNotebook(NbGraderPreprocessor):
    """Autograde (last) and generate_feedback (first): the notebook made inert (see the module's docstring).

    It runs after the grades are saved, so nothing it changes can change a score; nbgrader's cell metadata
    (grade ids, points, checksums) stays, so formgrader and the gradebook still find every cell.
    """

    settings = Instance(
        GradingSettings,
        allow_none=True,
        help="The grading settings (set by `python -m autograder grade`); None: those of nbgrader_config.py.",
    ).tag(config=True)

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader") or {}
        trusted: frozenset[str] = frozenset()
        if info.get("db_url") and info.get("notebook") and info.get("assignment"):
            trusted = instructor_sources(info["db_url"], info["notebook"], info["assignment"])
        return clean_notebook(nb, trusted, self.settings), resources
