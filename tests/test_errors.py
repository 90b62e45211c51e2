"""The library's advice in each interface's terms (yapo_core.errors.ADVICE)."""

import ast
import re
from pathlib import Path

import pytest

from pages.common import in_app_terms
from yapo_core.cli_args import in_cli_terms
from yapo_core.data import PreferencePair
from yapo_core.errors import ADVICE, DataError
from yapo_core.options import against_every_option

CORE = Path(__file__).resolve().parents[1] / "yapo_core"


def _library_strings() -> list[list[str]]:
    """Every string the library writes, as its literal parts (adjacent literals joined): one part
    for a plain literal, those between the formatted values for an f-string."""
    out = []
    for path in CORE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                parts = [""]
                for value in node.values:
                    if isinstance(value, ast.Constant):
                        parts[-1] += value.value
                    else:
                        parts.append("")
                out.append(parts)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append([node.value])
    return out


def _can_write(parts: list[str], phrase: str) -> bool:
    """Whether some rendering of a string of these literal parts (any text for each formatted value)
    contains ``phrase``, starting and ending in literal text."""
    if any(phrase in part for part in parts):
        return True
    # the phrase starts in one literal part and ends in a later one (never inside a formatted value)
    suffixes = lambda text: "(?:" + "|".join(re.escape(text[k:]) for k in range(len(text))) + ")"  # noqa: E731
    prefixes = lambda text: "(?:" + "|".join(re.escape(text[:k]) for k in range(1, len(text) + 1)) + ")"  # noqa: E731
    # cheap exact filters first: the phrase starts with a suffix of parts[i] and ends with a prefix of parts[j]
    starts = [any(phrase.startswith(part[k:]) for k in range(len(part))) for part in parts]
    ends = [any(phrase.endswith(part[:k]) for k in range(1, len(part) + 1)) for part in parts]
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            if not (starts[i] and ends[j]):
                continue
            pattern = (suffixes(parts[i]) + ".*" + "".join(re.escape(p) + ".*" for p in parts[i + 1 : j])
                       + prefixes(parts[j]))
            if re.fullmatch(pattern, phrase, flags=re.S):
                return True
    return False


def test_every_phrase_of_advice_is_one_the_library_writes():
    strings = _library_strings()
    assert len(ADVICE) >= 17 and len(strings) > 1000
    stale = [a.library for a in ADVICE if not any(_can_write(parts, a.library) for parts in strings)]
    assert not stale, f"advice no message of the library contains: {stale}"


def test_the_cli_and_app_terms_name_no_python_argument():
    keyword = re.compile(r"\b[a-z_]+=(?!<)")  # sae=, columns=, max_length=; not the CLI's own "prompt=<column>"
    for advice in ADVICE:
        assert advice.cli != advice.library and advice.app != advice.library, advice  # each entry translates
        assert not keyword.search(advice.cli), advice.cli
        assert advice.app is None or not keyword.search(advice.app), advice.app


def test_a_phrase_is_found_across_an_f_strings_formatted_values_only_where_it_can_be_written():
    parts = ["it has ", " ones: use form=", "."]  # f"it has {n} ones: use form={form!r}."
    assert _can_write(parts, "use form='mcq'.") and _can_write(parts, "ones: use form=")
    assert not _can_write(parts, "use form='mcq'!") and not _can_write(parts, "it had 3 ones")
    assert _can_write(parts, "it has 3 ones")  # any text for a formatted value


def test_a_library_error_reads_in_each_interfaces_terms():
    with pytest.raises(DataError) as raised:  # a letter answer whose prompt lists no options
        against_every_option([PreferencePair("Which one? Say the letter.", "B", "A")])
    message = str(raised.value)
    assert message.endswith("train them with mcq_rejected='given'.")
    assert in_cli_terms(message).endswith("train them with --mcq-rejected given.")
    assert in_app_terms(message).endswith("train them with MCQ rejected answers “given” on Train.")
