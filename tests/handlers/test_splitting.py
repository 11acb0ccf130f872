"""handlers/splitting.py: splitting Markdown at Slack's limits without breaking it."""

from __future__ import annotations

from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from handlers.splitting import split_markdown


def code_block(lang: str, lines: int, fence: str = "```") -> str:
    return f"{fence}{lang}\n" + "".join(f"line_{i} = {i}\n" for i in range(lines)) + f"{fence}\n"


def test_inline_code_at_the_start_of_a_line_is_not_a_fence() -> None:
    text = "```npm ci``` is what CI runs.\n\n" + code_block("python", 300) + "End.\n"
    parts = split_markdown(text, 2000)
    assert len(parts) > 2 and all(len(p) <= 2000 for p in parts)
    assert parts[0].startswith("```npm ci``` is what CI runs.")
    for middle in parts[1:-1]:  # every split inside the code block closes and reopens it
        assert middle.startswith("```python\n") and middle.endswith("\n```")
    assert parts[-1].rstrip().endswith("End.") and "```\nEnd." in parts[-1]
    body = "".join(p.removeprefix("```python\n").removesuffix("\n```") for p in parts[1:])
    assert body.count("line_150 = 150\n") == 1  # nothing lost, nothing repeated


def test_a_longer_fence_holds_a_shorter_one_and_is_reopened_as_it_was() -> None:
    inner = code_block("python", 5)
    text = "Here is the README:\n\n````markdown\n# Title\n\n" + inner * 60 + "````\n\nDone.\n"
    parts = split_markdown(text, 1500)
    assert len(parts) > 2
    for part in parts[1:-1]:
        assert part.startswith("````markdown\n") and part.endswith("\n````")
    assert parts[-1].endswith("Done.")


def test_tilde_fences_are_fences_too() -> None:
    text = code_block("sh", 200, fence="~~~")
    parts = split_markdown(text, 1200)
    assert len(parts) > 1
    assert all(p.startswith("~~~sh\n") and p.endswith("~~~") for p in parts)


def test_no_part_is_only_blank_lines() -> None:
    parts = split_markdown("\n" * 10 + "x" * 10995, 11000)
    assert parts == ["x" * 10995]


def test_a_heading_stays_with_its_section() -> None:
    text = "\n\n".join(f"Section {i}\n" + "word " * 1150 for i in range(2))
    first, second = split_markdown(text, 11000)
    assert first.startswith("Section 0") and "Section 1" not in first
    assert second.startswith("Section 1")


def test_a_long_line_is_cut_between_words_and_never_inside_an_emoji() -> None:
    family = "👨‍👩‍👧‍👦"  # one emoji of seven code points
    line = ("word " * 30 + family) * 40
    parts = split_markdown(line, 500)
    assert all(len(p) <= 500 for p in parts)
    assert "".join(parts) == line.rstrip("\n")
    for part in parts:
        assert part.count("\u200d") == 3 * part.count("👨")  # every family whole
        assert part.endswith((" ", family)) or part is parts[-1]


def test_a_paragraph_moved_to_the_next_part_never_makes_it_too_long() -> None:
    parts = split_markdown("a" * 60 + "\n\n" + "b" * 30 + "\n" + "c" * 95, 100)
    assert all(len(p) <= 100 for p in parts)
    assert "".join(parts).count("c") == 95


def test_a_fence_indented_under_a_list_item_is_a_fence() -> None:
    text = "1. Install:\n\n    ```bash\n" + "".join(f"    step {i}\n" for i in range(30))
    text += "    ```\n2. Done.\n"
    parts = split_markdown(text, 200)
    assert len(parts) > 2
    for part in parts[1:-1]:
        assert part.startswith("    ```bash\n") and part.endswith("\n    ```")
    assert parts[-1].endswith("2. Done.")


def test_a_long_info_string_is_not_repeated_and_no_part_ends_with_an_empty_block() -> None:
    info = "python title='" + "x" * 100 + "'"
    text = (
        "intro " * 30 + "\n```" + info + "\n" + "".join(f"v = {i}\n" for i in range(60)) + "```\n"
    )
    parts = split_markdown(text, 180)
    assert all(len(p) <= 180 for p in parts)
    assert parts[1].startswith("```" + info)  # where it opened, as written
    assert all(p.startswith("```\n") for p in parts[2:])  # reopened without the long info
    assert not any(p.endswith("```" + info + "\n```") for p in parts)


def test_crlf_text_leaves_no_carriage_return_at_a_part_end() -> None:
    parts = split_markdown("line one\r\n" * 40, 100)
    assert len(parts) > 1 and not any(p.endswith("\r") for p in parts)


def test_keycaps_and_vowel_signs_stay_whole() -> None:
    line = ("xxxxxxxx" + "1\ufe0f\u20e3" + "कि") * 30
    for part in split_markdown(line, 37):
        assert not part.startswith(("\ufe0f", "\u20e3", "ि"))


@settings(max_examples=300, deadline=None)
# A part that reopens a fence repeats its info string ("a"): that is not a lost letter.
@example(lines=["", "", "", "", "", "", "```", "```", "`````a", "```", "~~~~", "  ```"], limit=40)
@given(
    st.lists(
        st.one_of(
            st.just(""),
            st.just("```"),
            st.just("~~~~"),
            st.just("  ```"),
            st.text(alphabet="ab cd\t`~", min_size=1, max_size=90),
        ),
        max_size=60,
    ),
    st.integers(min_value=40, max_value=400),
)
def test_any_text_splits_into_parts_within_the_limit_and_loses_no_letter(
    lines: list[str], limit: int
) -> None:
    text = "\n".join(lines)
    parts = split_markdown(text, limit)
    assert all(len(p) <= limit for p in parts)
    assert all(p.strip() for p in parts) or parts == [""]
    letters = Counter(c for c in text if c.isalpha())
    posted = Counter(c for p in parts for c in p if c.isalpha())
    assert not letters - posted  # no letter lost
    # A part that reopens a fence repeats its (short) info string, as written: only those
    # letters may be extra.
    reopened = Counter(
        c
        for p in parts[1:]
        if p.lstrip(" ").startswith(("```", "~~~"))
        for c in p.split("\n", 1)[0]
        if c.isalpha()
    )
    assert not (posted - letters) - reopened
