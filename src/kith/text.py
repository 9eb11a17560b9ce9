"""Turn user-written text into safe HTML, and rendered or remote HTML back into plain text.

Posts and bios use a small Markdown subset (markdown-it-py) plus mentions, hashtags and bare-URL
autolinks; every HTML string that leaves this module has passed through one nh3 allow-list.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

# The composer counts every URL as this many characters, whatever its length (Mastodon's rule).
URL_CHARACTER_COST = 23
MAX_HASHTAG_LENGTH = 100
# Autolinked URLs longer than this show a shortened text (Mastodon's "ellipsis" markup).
_VISIBLE_URL_LENGTH = 30
_EXTERNAL_LINK_REL = "nofollow noopener noreferrer"

_ALLOWED_TAGS = {
    "p",
    "br",
    "a",
    "span",
    "strong",
    "em",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
}
# `class` is absent on purpose: nh3 filters it through _ALLOWED_CLASSES instead. `ol start` keeps
# "3. third" numbered 3 rather than 1.
_ALLOWED_ATTRIBUTES = {"a": {"href", "rel", "target"}, "ol": {"start"}}
_CLASSES = {"mention", "hashtag", "u-url", "h-card", "invisible", "ellipsis"}
_ALLOWED_CLASSES = {"a": _CLASSES, "span": _CLASSES}
_URL_SCHEMES = {"http", "https"}

# Relative URLs mean nothing once a post federates to another server, so none survive.
_POST_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    attributes=_ALLOWED_ATTRIBUTES,
    allowed_classes=_ALLOWED_CLASSES,
    url_schemes=_URL_SCHEMES,
    url_relative="deny",
    link_rel=None,
)
# Remote servers choose their own rel/target; we overwrite them on every link, as for our own.
_REMOTE_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    attributes={"a": {"href"}, "ol": {"start"}},
    allowed_classes=_ALLOWED_CLASSES,
    url_schemes=_URL_SCHEMES,
    url_relative="deny",
    link_rel=None,
    set_tag_attribute_values={"a": {"rel": _EXTERNAL_LINK_REL, "target": "_blank"}},
)
_BLOCK_TAGS = {
    "p",
    "div",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "tr",
    "hr",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "section",
    "article",
    "header",
    "footer",
    "aside",
    "details",
    "summary",
}
# html_to_text first normalises arbitrary HTML into this well-formed subset, so the stdlib
# parser below never meets markup it chokes on; script and style lose their content.
_TEXT_CLEANER = nh3.Cleaner(tags=_BLOCK_TAGS | {"br"}, attributes={}, link_rel=None)

# NUL, lone surrogates (nh3 cannot even receive them) and C0 controls other than tab/newline.
_UNWANTED_CHARS_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")

_HOST_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
# Explicit ASCII classes, no re.IGNORECASE: with it, [a-z] also matches the Kelvin sign and 'ſ'.
_CANDIDATE_RE = re.compile(
    r"(?P<url>(?<!\w)[hH][tT][tT][pP][sS]?://[^\s<>\"`]+)"
    r"|(?P<mention>(?<![\w@/=])(?P<sigil>@|(?<!!)!)(?P<name>[a-zA-Z0-9_]{1,30})"
    rf"(?:@(?P<host>{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]{{1,5}})?))?(?![\w@]))"
    r"|(?P<hashtag>(?<![\w&/])#)"
)
_HTML_WHITESPACE_RE = re.compile("[ \t\n\f\r]+")
_HTTP_PREFIX_RE = re.compile(r"[hH][tT][tT][pP][sS]?://")
_URL_DISPLAY_PREFIX_RE = re.compile(r"[hH][tT][tT][pP][sS]?://(?:www\.)?")
_CLOSING_BRACKETS = {")": "(", "]": "[", "}": "{"}
# Punctuation that legitimately ends a URL; other trailing punctuation belongs to the sentence.
_URL_FINAL_PUNCTUATION = set("/#-_")


@dataclass(frozen=True)
class ParsedText:
    """What a post's source refers to, each tuple deduplicated in order of first appearance."""

    mentions: tuple[str, ...] = ()
    """Normalized handles without the leading '@': "alice" or "alice@example.org"."""
    hashtags: tuple[str, ...] = ()
    """Normalized tag names without '#' (NFKC + casefold)."""
    links: tuple[str, ...] = ()
    """http(s) link targets, as they appear (percent-encoded) in the rendered href."""
    community_mentions: tuple[str, ...] = ()
    """Lemmy-style `!name` / `!name@host` mentions of a community, normalized like mentions
    and without the '!'. (A community mentioned as `@name` is in `mentions`: only the
    caller can tell it from an account.)"""


class _PostMarkdown(MarkdownIt):
    """markdown-it that parses links of any scheme, so that unsafe ones can be unlinked later.

    The stock validator leaves `[x](javascript:...)` as literal brackets; we would rather show
    the link text without a link, and _Linker decides which hrefs survive.
    """

    def validateLink(self, url: str) -> bool:  # noqa: N802 - overrides markdown-it's name
        """Accept every destination; _Linker drops non-http(s) ones."""
        return True


_MARKDOWN = _PostMarkdown("zero", {"breaks": True, "html": False, "typographer": False})
_MARKDOWN.enable(
    ["code", "fence", "blockquote", "list"]
    + ["newline", "escape", "backticks", "strikethrough", "emphasis", "link", "autolink", "entity"]
)
# _Linker joins text itself, remembering which characters were escaped (\#, &#64;) so that
# those never start a hashtag or mention.
_MARKDOWN.disable("text_join")


@dataclass(frozen=True)
class _Span:
    """A piece of a text run: plain text, or something that may become a link."""

    kind: Literal["text", "url", "mention", "hashtag"]
    raw: str
    # href for url, normalized name for hashtag, normalized handle for mention: "ana",
    # "ana@host", or for a community's `!name`, "!name" / "!name@host"
    value: str = ""


def _clean_source(source: str) -> str:
    """Drop characters that can't be stored or rendered safely, and unify line endings."""
    return _UNWANTED_CHARS_RE.sub("", source.replace("\r\n", "\n").replace("\r", "\n"))


def _is_http_url(url: str) -> bool:
    """Whether url is an absolute http(s) URL with a plausible host."""
    if not _HTTP_PREFIX_RE.match(url):
        return False
    try:
        host = urlsplit(url).hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return bool(host) and any(char.isalnum() for char in host or "")


@functools.lru_cache(maxsize=4096)
def _app_url(url: str | None) -> str | None:
    """A caller-supplied profile or tag URL, percent-encoded, or None unless absolute http(s).
    Remembered: the same people's and tags' URLs come back post after post, and encoding one
    (markdown-it's `normalizeLink`: parse, IDNA, quote) cost more than the rest of a link."""
    if url is None or not _is_http_url(url):
        return None
    return _MARKDOWN.normalizeLink(url)


def _is_tag_char(char: str) -> bool:
    # Combining marks count, or tags in scripts like Devanagari would stop at the first vowel sign.
    return char == "_" or char.isalnum() or unicodedata.category(char).startswith("M")


# `\w` is exactly `_is_tag_char` without the combining marks (str.isalnum() or "_"): runs
# of it are found in C, the marks between them one by one.
_WORD_RUN = re.compile(r"\w+")


def _is_tag_name(name: str) -> bool:
    return (
        0 < len(name) <= MAX_HASHTAG_LENGTH
        and (_WORD_RUN.fullmatch(name) is not None or all(_is_tag_char(c) for c in name))
        and any(char.isalpha() or char == "_" for char in name)
    )


def _tag_body_end(text: str, start: int) -> int:
    """Where the body of a hashtag beginning at `start` ends: its run of tag characters,
    scanned one character past the limit (so an over-long tag is rejected, not truncated)."""
    end, limit = start, min(len(text), start + MAX_HASHTAG_LENGTH + 1)
    while end < limit:
        run = _WORD_RUN.match(text, end, limit)
        if run is not None:
            end = run.end()
        elif _is_tag_char(text[end]):
            end += 1
        else:
            break
    return end


def normalize_hashtag(name: str) -> str | None:
    """Normalized form of a hashtag name (without '#'), or None if it isn't a valid tag name.

    NFKC and casefold run until stable, because NFKC can reintroduce capitals ("ℌ" -> "H").
    """
    if not _is_tag_name(name):
        return None
    normalized = unicodedata.normalize("NFKC", name)
    for _ in range(3):
        refolded = unicodedata.normalize("NFKC", normalized.casefold())
        if refolded == normalized:
            return normalized if _is_tag_name(normalized) else None
        normalized = refolded
    return None


def _trim_url(candidate: str) -> str:
    """Strip sentence punctuation and unbalanced closing brackets from the end of a URL.

    "(see https://en.wikipedia.org/wiki/Foo_(bar))." keeps the inner pair of parentheses.
    """
    counts = {bracket: candidate.count(bracket) for bracket in "()[]{}"}
    end = len(candidate)
    while end:
        last = candidate[end - 1]
        if last in _CLOSING_BRACKETS:
            if counts[_CLOSING_BRACKETS[last]] >= counts[last]:
                break
        elif last in _URL_FINAL_PUNCTUATION or not unicodedata.category(last).startswith("P"):
            break
        if last in counts:
            counts[last] -= 1
        end -= 1
    return candidate[:end]


def _match_at(text: str, match: re.Match[str]) -> _Span | None:
    """Turn a candidate match into a span, or None if it isn't a valid URL, mention or tag."""
    if match.group("url"):
        url = _trim_url(match.group("url"))
        if not _is_http_url(url):
            return None
        return _Span("url", url, _MARKDOWN.normalizeLink(url))
    if match.group("mention"):
        name, host = match.group("name"), match.group("host")
        sigil = "!" if match.group("sigil") == "!" else ""
        if host is None:
            return _Span("mention", match.group(0), sigil + name.lower())
        host = host.lower()
        if "." not in host and host.split(":")[0] != "localhost":
            return None
        return _Span("mention", match.group(0), f"{sigil}{name.lower()}@{host}")
    body_start = match.end()
    body = text[body_start : _tag_body_end(text, body_start)]
    tag = normalize_hashtag(body)
    return None if tag is None else _Span("hashtag", "#" + body, tag)


@functools.lru_cache(maxsize=256)
def _scan(text: str, escaped: frozenset[int] = frozenset()) -> tuple[_Span, ...]:
    """Split text into plain text, URLs, mentions and hashtags, left to right.

    A match starting at an escaped offset (the user wrote \\@ or &#35;) stays text.
    Remembered for a while: posting scans the same text to find what it refers to, to
    render it and to count its characters.
    """
    spans: list[_Span] = []
    pos = text_start = 0
    while (match := _CANDIDATE_RE.search(text, pos)) is not None:
        start = match.start()
        span = None if start in escaped else _match_at(text, match)
        if span is None:
            pos = start + 1
            continue
        if start > text_start:
            spans.append(_Span("text", text[text_start:start]))
        spans.append(span)
        pos = text_start = start + len(span.raw)
    if text_start < len(text):
        spans.append(_Span("text", text[text_start:]))
    return tuple(spans)


def _text_token(content: str) -> Token:
    return Token("text", "", 0, content=content)


def _html_token(html: str) -> Token:
    return Token("html_inline", "", 0, content=html)


def _url_display_tokens(url: str) -> list[Token]:
    """Mastodon's shortened URL text: scheme and "www." hidden, the rest cut after 30 chars."""
    prefix_match = _URL_DISPLAY_PREFIX_RE.match(url)
    prefix = prefix_match.group(0) if prefix_match else ""
    rest = url[len(prefix) :]
    tokens = [
        Token("span_open", "span", 1, attrs={"class": "invisible"}),
        _text_token(prefix),
        Token("span_close", "span", -1),
    ]
    if len(rest) <= _VISIBLE_URL_LENGTH:
        return [*tokens, _text_token(rest)]
    return [
        *tokens,
        Token("span_open", "span", 1, attrs={"class": "ellipsis"}),
        _text_token(rest[:_VISIBLE_URL_LENGTH]),
        Token("span_close", "span", -1),
        Token("span_open", "span", 1, attrs={"class": "invisible"}),
        _text_token(rest[_VISIBLE_URL_LENGTH:]),
        Token("span_close", "span", -1),
    ]


@dataclass
class _Linker:
    """Rewrites a markdown-it token stream: links mentions, hashtags and bare URLs, drops unsafe
    link targets, and records what it found."""

    mention_urls: Mapping[str, str]
    hashtag_url: Callable[[str], str] | None
    mentions: dict[str, None] = field(default_factory=dict)
    hashtags: dict[str, None] = field(default_factory=dict)
    links: dict[str, None] = field(default_factory=dict)
    community_mentions: dict[str, None] = field(default_factory=dict)

    def rewrite(self, tokens: Sequence[Token], *, build: bool = True) -> None:
        """Rewrite every inline token's children in place; with `build` false, only find
        what they hold (mentions, hashtags, links), leaving the tokens as they render (the
        changes made along the way — a kept link's attributes, `<del>` — are the ones
        rendering makes)."""
        for token in tokens:
            if token.type == "fence":
                token.info = ""  # a "language-x" class would only be stripped by nh3 anyway
            elif token.type == "inline" and token.children is not None:
                rewritten = self._rewrite_inline(token.children, build=build)
                if build:
                    token.children = rewritten

    def parsed(self) -> ParsedText:
        """What rewrite() found so far."""
        return ParsedText(
            tuple(self.mentions),
            tuple(self.hashtags),
            tuple(self.links),
            tuple(self.community_mentions),
        )

    def _rewrite_inline(self, children: Sequence[Token], *, build: bool) -> list[Token]:
        """The children rewritten; with `build` false, only what they hold is noted (and the
        list returned is not the rewritten children)."""
        out: list[Token] = []
        run: list[Token] = []
        open_links: list[bool] = []  # one entry per open link: whether its <a> is kept
        for token in children:
            if token.type in ("text", "text_special"):
                run.append(token)
                continue
            out.extend(self._rewrite_run(run, inside_link=bool(open_links), build=build))
            run = []
            if token.type == "link_open":
                href = str(token.attrGet("href") or "")
                keep = _is_http_url(href)
                open_links.append(keep)
                if keep:
                    self.links.setdefault(href)
                    token.attrs = {"href": href, "rel": _EXTERNAL_LINK_REL, "target": "_blank"}
                    out.append(token)
            elif token.type == "link_close":
                if open_links.pop() if open_links else False:
                    out.append(token)
            elif token.type in ("s_open", "s_close"):
                token.tag = "del"  # markdown-it writes <s>; <del> is what the allow-list and
                out.append(token)  # other servers expect
            else:
                out.append(token)
        out.extend(self._rewrite_run(run, inside_link=bool(open_links), build=build))
        return out

    def _rewrite_run(self, run: Sequence[Token], *, inside_link: bool, build: bool) -> list[Token]:
        """Join a run of text tokens and link what it contains (nothing, inside a link); with
        `build` false, only note what it holds."""
        if not run:
            return []
        text = "".join(token.content for token in run)
        if inside_link:
            return [_text_token(text)] if build else []
        escaped: set[int] = set()
        offset = 0
        for token in run:
            if token.type == "text_special":
                escaped.update(range(offset, offset + len(token.content)))
            offset += len(token.content)
        out: list[Token] = []
        for span in _scan(text, frozenset(escaped)):
            self._note(span)
            if build:
                out.extend(self._span_tokens(span))
        return out

    def _note(self, span: _Span) -> None:
        """Remember what a span refers to (a link, mention, community or hashtag)."""
        if span.kind == "url":
            self.links.setdefault(span.value)
        elif span.kind == "mention":
            if span.value.startswith("!"):
                self.community_mentions.setdefault(span.value[1:])
            else:
                self.mentions.setdefault(span.value)
        elif span.kind == "hashtag":
            self.hashtags.setdefault(span.value)

    def _span_tokens(self, span: _Span) -> list[Token]:
        if span.kind == "url":
            attrs: dict[str, str | int | float] = {
                "href": span.value,
                "rel": _EXTERNAL_LINK_REL,
                "target": "_blank",
            }
            return [
                Token("link_open", "a", 1, attrs=attrs),
                *_url_display_tokens(span.raw),
                Token("link_close", "a", -1),
            ]
        # A mention's or hashtag's link is written as markdown-it would render its tokens
        # (the same escaping), as one inline HTML token: eight tokens each cost more than the
        # rest of the post. The allow-list (nh3) still cleans the whole post afterwards.
        if span.kind == "mention":
            url = _app_url(self.mention_urls.get(span.value))
            if url is None:
                return [_text_token(span.raw)]
            # Mastodon shows only the username part, even for @user@host.
            name = span.raw[1:].split("@")[0]
            return [
                _html_token(
                    f'<span class="h-card"><a href="{escapeHtml(url)}" class="u-url mention">'
                    f"{escapeHtml(span.raw[0])}<span>{escapeHtml(name)}</span></a></span>"
                )
            ]
        if span.kind == "hashtag":
            url = _app_url(self.hashtag_url(span.value) if self.hashtag_url else None)
            if url is None:
                return [_text_token(span.raw)]
            return [
                _html_token(
                    f'<a href="{escapeHtml(url)}" class="hashtag" rel="tag">'
                    f"{escapeHtml(span.raw)}</a>"
                )
            ]
        return [_text_token(span.raw)]


def _render(
    source: str, mention_urls: Mapping[str, str], hashtag_url: Callable[[str], str] | None
) -> str:
    cleaned = _clean_source(source)
    if not cleaned.strip():
        return ""
    env: dict[str, object] = {}
    return _render_tokens(_MARKDOWN.parse(cleaned, env), env, mention_urls, hashtag_url)


def _render_tokens(
    tokens: list[Token],
    env: dict[str, object],
    mention_urls: Mapping[str, str],
    hashtag_url: Callable[[str], str] | None,
) -> str:
    _Linker(mention_urls, hashtag_url).rewrite(tokens)
    rendered = _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, env)
    return str(_POST_CLEANER.clean(rendered)).strip()


@dataclass
class PreparedPost:
    """A post's source parsed once (`prepare_post`): what it refers to (`parsed`, as
    `parse_text` gives), and its HTML once the mentioned accounts are known (`render`, as
    `render_post` gives). Posting needs both, with a database look-up in between."""

    parsed: ParsedText
    _tokens: list[Token] | None
    _env: dict[str, object]
    _rendered: bool = False

    def render(self, *, mention_urls: Mapping[str, str], hashtag_url: Callable[[str], str]) -> str:
        """`render_post` of the same source (once: it uses up the parse)."""
        assert not self._rendered, "a prepared post renders once"
        self._rendered = True
        if self._tokens is None:
            return ""
        return _render_tokens(self._tokens, self._env, mention_urls, hashtag_url)


def prepare_post(source: str) -> PreparedPost:
    """Parse a post's source once for `parse_text` and `render_post` both (see PreparedPost)."""
    cleaned = _clean_source(source)
    if not cleaned.strip():
        return PreparedPost(ParsedText(), None, {})
    env: dict[str, object] = {}
    tokens = _MARKDOWN.parse(cleaned, env)
    linker = _Linker({}, None)
    linker.rewrite(tokens, build=False)
    return PreparedPost(linker.parsed(), tokens, env)


def parse_text(source: str) -> ParsedText:
    """Find mentions, hashtags and links in post source text, ignoring code spans and blocks.

    Exactly what render_post would link, whether or not the mentioned accounts exist; mentions
    and hashtags inside link text are ignored too.
    """
    cleaned = _clean_source(source)
    linker = _Linker({}, None)
    if cleaned.strip():
        linker.rewrite(_MARKDOWN.parse(cleaned, {}), build=False)
    return linker.parsed()


def render_post(
    source: str, *, mention_urls: Mapping[str, str], hashtag_url: Callable[[str], str]
) -> str:
    """Render a post's Markdown subset to sanitized HTML.

    mention_urls maps a normalized handle (as in ParsedText.mentions) to the profile URL, and
    "!" + a community mention (ParsedText.community_mentions) to the community's; mentions
    not in it stay plain text. Hashtags link to hashtag_url(normalized_tag) with class "hashtag"
    and text '#OriginalCase'. Mentions become Mastodon-style
    <span class="h-card"><a href=URL class="u-url mention">@<span>name</span></a></span>.
    Both URLs must be absolute http(s); anything else leaves the mention or tag as text.
    """
    return _render(source, mention_urls, hashtag_url)


def render_bio(
    source: str,
    *,
    mention_urls: Mapping[str, str] | None = None,
    hashtag_url: Callable[[str], str] | None = None,
) -> str:
    """Render a profile bio: same subset as posts (if no hashtag_url given, hashtags stay text)."""
    return _render(source, mention_urls or {}, hashtag_url)


def render_plain(source: str) -> str:
    """Escape plain text (display names, poll options, content warnings, link labels).

    No markup at all: the result is HTML-escaped text, quotes included, so it is safe in
    attributes too.
    """
    return escape(_clean_source(source), quote=True)


def sanitize_remote_html(html: str) -> str:
    """Sanitize HTML from remote servers with nh3 to the same allow-list posts use.

    Every remaining link gets our rel and target, whatever the remote server set.
    """
    return str(_REMOTE_CLEANER.clean(_clean_source(html))).strip()


class _TextExtractor(HTMLParser):
    """Collects text like a browser lays it out: whitespace collapsed, blocks on their own lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._pending_newlines = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._pending_newlines = min(self._pending_newlines + 1, 2)
        elif tag == "li":
            self._pending_newlines = max(self._pending_newlines, 1)
        elif tag in _BLOCK_TAGS:
            self._pending_newlines = 2
        if tag == "pre":
            self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._pending_newlines = max(self._pending_newlines, 1)
        elif tag in _BLOCK_TAGS:
            self._pending_newlines = 2
        if tag == "pre":
            self._pre_depth = max(self._pre_depth - 1, 0)

    def handle_data(self, data: str) -> None:
        # HTML whitespace only: a no-break space the author typed must survive.
        text = data if self._pre_depth else _HTML_WHITESPACE_RE.sub(" ", data)
        at_line_start = not self.parts or self._pending_newlines or self.parts[-1].endswith("\n")
        if not self._pre_depth and (at_line_start or self.parts[-1].endswith(" ")):
            text = text.lstrip(" ")
        if not text:
            return
        if self._pending_newlines and self.parts:
            self.parts[-1] = self.parts[-1].rstrip(" \n")
            self.parts.append("\n" * self._pending_newlines)
        self._pending_newlines = 0
        self.parts.append(text)


def html_to_text(html: str) -> str:
    """Plain text of rendered HTML (for search indexing, notifications, <title>).

    Tags stripped, entities decoded, block elements separated by a blank line, <br> and list
    items by a newline. Accepts any HTML, including remote HTML that was never sanitized.
    """
    extractor = _TextExtractor()
    extractor.feed(str(_TEXT_CLEANER.clean(_clean_source(html))))
    extractor.close()
    # Preformatted text can carry its own blank lines next to a block break: keep at most one.
    return re.sub(r"\n{3,}", "\n\n", "".join(extractor.parts)).rstrip()


def count_characters(source: str) -> int:
    """Length as the composer counts it, in code points (Mastodon's rule).

    Every http(s) URL counts as 23 characters and a remote mention @user@host as @user
    (!community@host as !community).
    Markdown is not interpreted: the composer counts what the user typed.
    """
    total = 0
    for span in _scan(_clean_source(source)):
        if span.kind == "url":
            total += URL_CHARACTER_COST
        elif span.kind == "mention":
            total += len(span.raw[1:].split("@")[0]) + 1
        else:
            total += len(span.raw)
    return total
