"""Tests for kith.text: what a reader sees when a post, bio or remote post is shown."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kith.text import (
    MAX_HASHTAG_LENGTH,
    ParsedText,
    _is_tag_name,
    _tag_body_end,
    count_characters,
    html_to_text,
    parse_text,
    prepare_post,
    render_bio,
    render_plain,
    render_post,
    sanitize_remote_html,
)

# The fake world: two accounts we know about, and where tag pages live.
MENTION_URLS = {
    "alice": "https://kith.example/@alice",
    "bob@remote.example": "https://remote.example/users/bob",
}
EXTERNAL_REL = 'rel="nofollow noopener noreferrer" target="_blank"'

ALLOWED_ATTRIBUTES = {
    "p": set(),
    "br": set(),
    "strong": set(),
    "em": set(),
    "del": set(),
    "code": set(),
    "pre": set(),
    "blockquote": set(),
    "ul": set(),
    "ol": {"start"},
    "li": set(),
    "a": {"href", "rel", "class", "target"},
    "span": {"class"},
}
ALLOWED_CLASSES = {"mention", "hashtag", "u-url", "h-card", "invisible", "ellipsis"}
MENTION_RE = re.compile(
    r"[a-z0-9_]{1,30}(@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]+)?)?"
)


def hashtag_url(tag: str) -> str:
    return f"https://kith.example/tags/{tag}"


def post(source: str) -> str:
    return render_post(source, mention_urls=MENTION_URLS, hashtag_url=hashtag_url)


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def tags_of(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    collector = _TagCollector()
    collector.feed(html)
    collector.close()
    return collector.tags


def assert_safe_html(html: str) -> None:
    """Every tag, attribute, class and URL in html is on the allow-list."""
    assert "<script" not in html.lower()
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED_ATTRIBUTES, tag
        for name, value in attrs:
            assert name in ALLOWED_ATTRIBUTES[tag], (tag, name)
            assert not re.fullmatch(r"on\w+", name)
            value = value or ""
            # A link's scheme is http(s) (the text "javascript:" inside its path is inert);
            # no other value may be a javascript: URL either.
            assert not value.strip().lower().startswith("javascript:"), value
            if name == "href":
                assert re.match(r"https?://", value), value
            if name == "class":
                assert set(value.split()) <= ALLOWED_CLASSES, value


def is_tag_char(char: str) -> bool:
    return char == "_" or char.isalnum() or unicodedata.category(char).startswith("M")


# --- Markdown subset --------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["", "   ", "\n\n\t \n", "\x00", "\ud800"])
def test_render_post__empty_or_whitespace_source_renders_nothing(source: str) -> None:
    assert post(source) == ""


def test_render_post__paragraphs_and_single_newlines_become_br() -> None:
    # Given two lines and then a second paragraph
    source = "first line\nsecond line\n\nnext paragraph"
    # When rendered
    html = post(source)
    # Then the line break is kept inside the first paragraph
    assert html == "<p>first line<br>\nsecond line</p>\n<p>next paragraph</p>"


def test_render_post__emphasis_strong_and_strikethrough() -> None:
    html = post("*soft* **loud** ~~gone~~")
    assert html == "<p><em>soft</em> <strong>loud</strong> <del>gone</del></p>"


def test_render_post__inline_code_is_escaped_and_not_linked() -> None:
    html = post("run `<b>@alice #tag https://x.example</b>`")
    assert html == "<p>run <code>&lt;b&gt;@alice #tag https://x.example&lt;/b&gt;</code></p>"


def test_render_post__fenced_code_block_has_no_language_class_and_no_links() -> None:
    html = post("```python\nprint('@alice #tag https://x.example')\n```")
    assert html == "<pre><code>print('@alice #tag https://x.example')\n</code></pre>"


def test_render_post__indented_code_block() -> None:
    assert post("    x = 1") == "<pre><code>x = 1\n</code></pre>"


def test_render_post__blockquote_and_lists() -> None:
    html = post("> quoted\n\n- one\n- two\n\n1. first\n2. second")
    assert "<blockquote>\n<p>quoted</p>\n</blockquote>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html
    assert "<ol>\n<li>first</li>\n<li>second</li>\n</ol>" in html


def test_render_post__ordered_list_keeps_its_start_number() -> None:
    # A reader must see "3." for an item the author numbered 3.
    assert post("3. third") == '<ol start="3">\n<li>third</li>\n</ol>'


def test_render_post__headings_stay_text() -> None:
    assert post("# Not a heading") == "<p># Not a heading</p>"


def test_render_post__images_are_not_embedded() -> None:
    html = post("![cat](https://img.example/cat.png)")
    assert "<img" not in html
    assert "cat" in html


def test_render_post__tables_stay_text() -> None:
    html = post("| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<table" not in html
    assert "| a | b |" in html


def test_render_post__script_tag_is_escaped() -> None:
    html = post("<script>alert(1)</script>")
    assert html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_render_post__raw_html_block_is_escaped() -> None:
    html = post('<div onclick="x()">\n<img src=x onerror=alert(1)>\n</div>')
    assert "<div" not in html
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_render_post__nested_too_deep_does_not_raise() -> None:
    assert "<blockquote>" in post(">" * 200 + " deep")


# --- Links ------------------------------------------------------------------------------------


def test_render_post__markdown_link_gets_external_rel_and_target() -> None:
    html = post("[the docs](https://docs.example/a?b=1&c=2)")
    assert (
        html == f'<p><a href="https://docs.example/a?b=1&amp;c=2" {EXTERNAL_REL}>the docs</a></p>'
    )


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "/relative/path",
        "//protocol-relative.example/x",
        "mailto:someone@example.org",
        "http://",
    ],
)
def test_render_post__non_http_link_keeps_text_but_loses_link(target: str) -> None:
    html = post(f"[click me]({target})")
    assert "<a" not in html
    assert "click me" in html


def test_render_post__bare_url_is_autolinked_with_hidden_scheme() -> None:
    html = post("see https://www.example.com/page")
    assert html == (
        f'<p>see <a href="https://www.example.com/page" {EXTERNAL_REL}>'
        '<span class="invisible">https://www.</span>example.com/page</a></p>'
    )


def test_render_post__long_bare_url_is_shortened_but_text_keeps_all_of_it() -> None:
    url = "https://example.com/" + "a" * 40
    html = post(url)
    assert f'<span class="ellipsis">example.com/{"a" * 18}</span>' in html
    assert f'<span class="invisible">{"a" * 22}</span>' in html
    assert html_to_text(html) == url


@pytest.mark.parametrize(
    ("source", "url"),
    [
        ("Go to https://example.com.", "https://example.com"),
        ("Really? https://example.com/x!", "https://example.com/x"),
        ("(see https://example.com/a)", "https://example.com/a"),
        ("https://en.wikipedia.org/wiki/Foo_(bar), yes", "https://en.wikipedia.org/wiki/Foo_(bar)"),
        ("“https://example.com/q?a=1”", "https://example.com/q?a=1"),
        ("https://example.com/dir/", "https://example.com/dir/"),
    ],
)
def test_parse_text__trailing_punctuation_is_not_part_of_a_url(source: str, url: str) -> None:
    assert parse_text(source).links == (url,)


def test_render_post__unicode_url_is_percent_encoded_in_href_but_readable_in_text() -> None:
    html = post("https://例え.jp/パス")
    assert 'href="https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9"' in html
    assert "例え.jp/パス</a>" in html


def test_render_post__angle_bracket_autolink() -> None:
    html = post("<https://example.com>")
    assert html == f'<p><a href="https://example.com" {EXTERNAL_REL}>https://example.com</a></p>'


def test_render_post__words_inside_link_text_are_not_linked_again() -> None:
    html = post("[@alice #tag https://inner.example](https://outer.example)")
    assert html == (
        f'<p><a href="https://outer.example" {EXTERNAL_REL}>'
        "@alice #tag https://inner.example</a></p>"
    )


@pytest.mark.parametrize("source", ["http://", "https://-.-", "http://[::1", "xhttp://example.com"])
def test_render_post__url_without_host_or_glued_to_a_word_is_not_linked(source: str) -> None:
    assert "<a" not in post(source)


# --- Mentions ---------------------------------------------------------------------------------


def test_render_post__known_local_mention_is_mastodon_style_link() -> None:
    html = post("hi @Alice")
    assert html == (
        '<p>hi <span class="h-card"><a href="https://kith.example/@alice" class="u-url mention">'
        "@<span>Alice</span></a></span></p>"
    )


def test_render_post__remote_mention_links_and_shows_only_the_username() -> None:
    html = post("cc @Bob@Remote.Example")
    assert '<a href="https://remote.example/users/bob" class="u-url mention">' in html
    assert "@<span>Bob</span></a>" in html
    assert html_to_text(html) == "cc @Bob"


def test_render_post__unknown_mention_stays_plain_text() -> None:
    assert post("hi @carol") == "<p>hi @carol</p>"


def test_render_post__mention_with_non_http_profile_url_stays_text() -> None:
    html = render_post(
        "@alice", mention_urls={"alice": "javascript:alert(1)"}, hashtag_url=hashtag_url
    )
    assert html == "<p>@alice</p>"


@pytest.mark.parametrize(
    ("source", "mentions"),
    [
        ("(@alice)", ("alice",)),
        ("@alice, @bob@remote.example.", ("alice", "bob@remote.example")),
        ("@alice! @alice? @alice: @alice;", ("alice",)),
        ("@alice@localhost:3000", ("alice@localhost:3000",)),
        ("@a_b_9", ("a_b_9",)),
        ("write to bob@example.com", ()),
        ("@" + "a" * 31, ()),
        ("@alice@nodot", ()),
        ("@alice@", ()),
        ("\\@alice", ()),
        ("https://example.com/@alice", ()),
        ("`@alice`", ()),
        ("```\n@alice\n```", ()),
    ],
)
def test_parse_text__mentions(source: str, mentions: tuple[str, ...]) -> None:
    assert parse_text(source).mentions == mentions


# --- Hashtags ---------------------------------------------------------------------------------


def test_render_post__hashtag_links_to_normalized_tag_and_shows_original_case() -> None:
    html = post("I love #KithDev")
    assert html == (
        '<p>I love <a href="https://kith.example/tags/kithdev" class="hashtag" rel="tag">'
        "#KithDev</a></p>"
    )


def test_render_post__unicode_hashtag_url_is_percent_encoded() -> None:
    assert 'href="https://kith.example/tags/caf%C3%A9"' in post("#Café")


@pytest.mark.parametrize(
    ("source", "hashtags"),
    [
        ("#Café #日本 #हिन्दी", ("café", "日本", "हिन्दी")),
        ("#Tag #tag #TAG", ("tag",)),
        ("#ｔａｇ", ("tag",)),  # fullwidth letters, folded by NFKC
        ("#2024 #2024年", ("2024年",)),
        ("#a_b, #_", ("a_b", "_")),
        ("#tag.", ("tag",)),
        ("https://example.com/#fragment", ()),
        ("it&#39;s #ok", ("ok",)),
        ("word#tag a/#tag", ()),
        ("\\#escaped", ()),
        ("#" + "a" * 100, ("a" * 100,)),
        ("#" + "a" * 101, ()),
        ("`#code`", ()),
    ],
)
def test_parse_text__hashtags(source: str, hashtags: tuple[str, ...]) -> None:
    assert parse_text(source).hashtags == hashtags


def test_render_bio__without_hashtag_url_hashtags_stay_text() -> None:
    assert render_bio("I post #art with @alice") == "<p>I post #art with @alice</p>"


def test_render_bio__links_mentions_and_hashtags_when_given_urls() -> None:
    html = render_bio("#art by @alice", mention_urls=MENTION_URLS, hashtag_url=hashtag_url)
    assert 'class="hashtag"' in html
    assert 'class="u-url mention"' in html


# --- parse_text -------------------------------------------------------------------------------


def test_parse_text__deduplicates_in_order_of_first_appearance() -> None:
    source = "#b @z #a @y #B @Z https://two.example [one](https://one.example) https://two.example"
    assert parse_text(source) == ParsedText(
        mentions=("z", "y"),
        hashtags=("b", "a"),
        links=("https://two.example", "https://one.example"),
    )


def test_parse_text__ignores_unsafe_links() -> None:
    assert parse_text("[x](javascript:alert(1)) <mailto:a@b.example>").links == ()


# --- render_plain -----------------------------------------------------------------------------


def test_render_plain__escapes_markup_and_quotes() -> None:
    assert render_plain("<b>\"Ann\" & 'Bo'</b> **x**") == (
        "&lt;b&gt;&quot;Ann&quot; &amp; &#x27;Bo&#x27;&lt;/b&gt; **x**"
    )


def test_render_plain__strips_nul_and_lone_surrogates() -> None:
    assert render_plain("a\x00b\ud800c") == "abc"


# --- sanitize_remote_html ---------------------------------------------------------------------


def test_sanitize_remote_html__keeps_mastodon_mention_markup() -> None:
    remote = (
        '<p><span class="h-card" translate="no"><a href="https://m.example/@ann" '
        'class="u-url mention" rel="me">@<span>ann</span></a></span> hi</p>'
    )
    html = sanitize_remote_html(remote)
    assert '<span class="h-card">' in html
    assert 'class="u-url mention"' in html
    assert 'rel="nofollow noopener noreferrer"' in html
    assert 'target="_blank"' in html
    assert "translate" not in html


def test_sanitize_remote_html__removes_scripts_handlers_and_unsafe_urls() -> None:
    remote = (
        '<p onclick="steal()">x<script>alert(1)</script><img src=x onerror=alert(1)>'
        '<a href="javascript:alert(1)">j</a><a href="/local">r</a>'
        '<span class="evil invisible">s</span><iframe src="https://x"></iframe></p>'
    )
    html = sanitize_remote_html(remote)
    assert_safe_html(html)
    assert "alert" not in html
    assert "href" not in html
    assert '<span class="invisible">s</span>' in html


# --- html_to_text -----------------------------------------------------------------------------


def test_html_to_text__separates_blocks_and_decodes_entities() -> None:
    html = "<p>Fish &amp; chips&nbsp;now</p>\n<p>line<br>break</p><ul><li>one</li><li>two</li></ul>"
    assert html_to_text(html) == "Fish & chips\u00a0now\n\nline\nbreak\n\none\ntwo"


def test_html_to_text__drops_script_and_style_content() -> None:
    assert html_to_text("<p>hi</p><script>bad()</script><style>p{}</style>") == "hi"


def test_html_to_text__of_rendered_post_reads_like_the_source() -> None:
    html = post("Hello **@alice**!\nSee #Tag and https://example.com\n\n```\n  code\n```")
    assert html_to_text(html) == "Hello @alice!\nSee #Tag and https://example.com\n\n  code"


# --- count_characters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("hello", 5),
        ("", 0),
        ("see https://example.com/" + "x" * 100, 4 + 23),
        ("http://a.b", 23),
        ("hi @bob@remote.example", 3 + 4),
        ("hi @alice", 9),
        ("👍🏽 ok", 5),  # thumbs up + skin tone modifier are two code points
        ("a\r\nb", 3),
        ("bob@example.com", 15),
    ],
)
def test_count_characters__mastodon_rules(source: str, count: int) -> None:
    assert count_characters(source) == count


# --- Properties -------------------------------------------------------------------------------

HOSTILE_FRAGMENTS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](https://ok.example)",
    "<https://auto.example>",
    "https://example.com/(a)",
    "@alice",
    "@bob@remote.example",
    "#tag",
    "#Café",
    "`",
    "```",
    "*",
    "_",
    "~~",
    "\\",
    "&#35;",
    "&amp;",
    "> ",
    "- ",
    "1. ",
    "\n",
    " ",
    '"',
    "'",
    "\x00",
    "\ud800",
]
markdownish = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE_FRAGMENTS))).map(
    "".join
)
fast = settings(max_examples=200, deadline=None)


@fast
@given(markdownish)
def test_render_post__any_text_renders_to_allow_listed_html(source: str) -> None:
    assert_safe_html(post(source))


@fast
@given(markdownish)
def test_render_bio__any_text_renders_to_allow_listed_html(source: str) -> None:
    assert_safe_html(render_bio(source))


@fast
@given(markdownish)
def test_parse_text__any_text_gives_well_formed_mentions_and_hashtags(source: str) -> None:
    parsed = parse_text(source)
    for mention in parsed.mentions:
        assert MENTION_RE.fullmatch(mention), mention
    for tag in parsed.hashtags:
        assert 0 < len(tag) <= 100
        assert all(is_tag_char(char) for char in tag), tag
        assert unicodedata.normalize("NFKC", tag.casefold()) == tag
    for link in parsed.links:
        assert re.match(r"https?://", link, re.IGNORECASE)
    assert len(set(parsed.mentions)) == len(parsed.mentions)
    assert len(set(parsed.hashtags)) == len(parsed.hashtags)


@fast
@given(markdownish)
def test_prepare_post__parses_and_renders_as_parse_text_and_render_post_do(source: str) -> None:
    # Posting parses once for both: the result must be what the two calls give apart
    urls = {m: f"https://kith.test/@{m}" for m in parse_text(source).mentions}

    def tag_url(tag: str) -> str:
        return f"https://kith.test/tags/{tag}"

    prepared = prepare_post(source)
    assert prepared.parsed == parse_text(source)
    rendered = prepared.render(mention_urls=urls, hashtag_url=tag_url)
    assert rendered == render_post(source, mention_urls=urls, hashtag_url=tag_url)


@fast
@given(st.text())
def test_render_plain__any_text_has_no_tags(source: str) -> None:
    assert tags_of(render_plain(source)) == []


@fast
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(["<", ">", "</p>"]))).map("".join))
def test_sanitize_remote_html__any_input_is_allow_listed(source: str) -> None:
    assert_safe_html(sanitize_remote_html(source + "".join(HOSTILE_FRAGMENTS)))


@fast
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(["<p>", "</p>", "<br>", "<pre>"]))))
def test_html_to_text__any_html_gives_trimmed_text_without_runs_of_blank_lines(
    parts: list[str],
) -> None:
    text = html_to_text("".join(parts))
    assert text == text.rstrip()
    assert "\n\n\n" not in text


@fast
@given(markdownish)
def test_count_characters__any_text_counts_without_raising(source: str) -> None:
    count = count_characters(source)
    assert 0 <= count <= len(source) + 23 * source.lower().count("http")


# Any character at all, with the marks, letters and digits of many scripts over-represented.
tag_texts = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from("_aZ9é日ि्ँ٣²Ⅻ\u0301\u200d#. "),
    ),
    max_size=140,
)


@fast
@given(tag_texts, st.integers(min_value=0, max_value=140))
def test_hashtag_body__ends_where_the_first_non_tag_character_or_the_limit_is(
    text: str, start: int
) -> None:
    # The body is found in runs (a regex); it must end where scanning char by char would.
    start = min(start, len(text))
    end = start
    while end < len(text) and end - start <= MAX_HASHTAG_LENGTH and is_tag_char(text[end]):
        end += 1
    assert _tag_body_end(text, start) == end


@fast
@given(tag_texts)
def test_hashtag_name__valid_exactly_when_every_character_is_a_tag_character(name: str) -> None:
    expected = (
        0 < len(name) <= 100
        and all(is_tag_char(c) for c in name)
        and any(c.isalpha() or c == "_" for c in name)
    )
    assert _is_tag_name(name) == expected
