"""handlers/blocks.py: splitting Markdown at Slack's limits without breaking it."""

from __future__ import annotations

from handlers.blocks import split_markdown


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
