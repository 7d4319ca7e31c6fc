"""llama.cpp grammars (GBNF) read in Python: to follow an answer as llama.cpp's grammar sampler
writes it, and to know the shortest text that would finish it from where it is.

An answer bound to a grammar is valid only once it is finished. llama.cpp's sampler keeps every
token inside the grammar but knows nothing of the tokens left; the engine follows the answer
here and, when finishing it would no longer fit, ends it with the shortest text the grammar
allows (closing quotes and brackets, required members at their smallest). Only what llama.cpp's
parser knows is read: rules (one per line), literals, character classes, groups, alternatives,
and the postfix operators ``* + ? {m} {m,} {m,n}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_STACKS = 512  # parses followed at once; an ambiguous grammar beyond this is not followed


class GrammarError(ValueError):
    """A grammar that cannot be read; the message says why."""


@dataclass(frozen=True, eq=False)
class Char:
    """One character from ``ranges`` (or, negated, from outside them)."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    def matches(self, code: int) -> bool:
        inside = any(lo <= code <= hi for lo, hi in self.ranges)
        return inside != self.negated

    def example(self) -> str:
        """A character it matches: printable where it can be."""
        if not self.negated:
            lo, hi = min(self.ranges, key=lambda r: (r[0] < 0x20, r[0]))
            return chr(max(lo, 0x20) if hi >= 0x20 else lo)
        for code in (0x61, *range(0x20, 0x7F)):
            if self.matches(code):
                return chr(code)
        return "\u00e9"


@dataclass(frozen=True, eq=False)
class Ref:
    name: str


@dataclass(frozen=True, eq=False)
class Repeat:
    item: Node
    least: int
    most: int | None  # None: no upper bound


@dataclass(frozen=True, eq=False)
class Sequence:
    items: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Choice:
    options: tuple[Node, ...]


Node = Char | Ref | Repeat | Sequence | Choice
# What is left to match: a node, then the rest (None: nothing, the text may end here).
Rest = tuple[Node, "Rest"] | None


class Grammar:
    def __init__(self, rules: dict[str, Node], root: str = "root") -> None:
        if root not in rules:
            raise GrammarError(f"the grammar has no {root!r} rule")
        for name in _references(rules):
            if name not in rules:
                raise GrammarError(f"the rule {name!r} is used but not defined")
        self.rules = rules
        self.root = root
        self._shortest = _shortest_texts(rules)
        self._memo: dict[int, tuple[Node, str]] = {}
        if self._shortest[root] is None:
            raise GrammarError("no text can finish the grammar (every rule refers to itself)")

    def start(self) -> Parse:
        parse = Parse.of(self, [(Ref(self.root), None)])
        if parse is None:
            raise GrammarError("the grammar cannot be followed (it is too ambiguous)")
        return parse

    def shortest(self, node: Node) -> str:
        """The shortest text ``node`` matches."""
        known = self._memo.get(id(node))
        if known is None:
            known = self._memo[id(node)] = (node, self._shortest_of(node))  # the node kept: its id stays its own
        return known[1]

    def _shortest_of(self, node: Node) -> str:
        if isinstance(node, Char):
            return node.example()
        if isinstance(node, Ref):
            text = self._shortest[node.name]
            assert text is not None
            return text
        if isinstance(node, Repeat):
            return self.shortest(node.item) * node.least
        if isinstance(node, Sequence):
            return "".join(self.shortest(i) for i in node.items)
        return min((self.shortest(o) for o in node.options if self._finishes(o)), key=_utf8_size)

    def _finishes(self, node: Node) -> bool:
        if isinstance(node, Ref):
            return self._shortest[node.name] is not None
        if isinstance(node, Repeat):
            return node.least == 0 or self._finishes(node.item)
        if isinstance(node, Sequence):
            return all(self._finishes(i) for i in node.items)
        if isinstance(node, Choice):
            return any(self._finishes(o) for o in node.options)
        return True


class Parse:
    """Where a text stands in the grammar: every way of reading it so far, each with what is
    left to match. Immutable: ``advance`` returns a new one."""

    def __init__(self, grammar: Grammar, heads: list[tuple[Char, Rest]], finished: bool) -> None:
        self.grammar = grammar
        self._heads = heads  # the next character to match, and what follows it
        self.finished = finished  # the text so far is a whole sentence

    @classmethod
    def of(cls, grammar: Grammar, rests: list[tuple[Node, Rest]], finished: bool = False) -> Parse | None:
        heads: list[tuple[Char, Rest]] = []
        seen: set[tuple[int, int]] = set()
        work = list(reversed(rests))
        while work:
            node, rest = work.pop()
            key = (id(node), id(rest))
            if key in seen:
                continue
            seen.add(key)
            if isinstance(node, Char):
                heads.append((node, rest))
                if len(heads) > MAX_STACKS:
                    return None
            elif isinstance(node, Ref):
                work.append((grammar.rules[node.name], rest))
            elif isinstance(node, Sequence):
                if not node.items:
                    if rest is None:
                        finished = True
                    else:
                        work.append(rest)
                    continue
                for item in reversed(node.items[1:]):
                    rest = (item, rest)
                work.append((node.items[0], rest))
            elif isinstance(node, Choice):
                work.extend((o, rest) for o in reversed(node.options))
            else:  # Repeat
                if node.least > 0:
                    after = Repeat(node.item, node.least - 1, None if node.most is None else node.most - 1)
                    work.append((node.item, (after, rest)))
                    continue
                if node.most != 0:
                    # an open repetition continues with itself: the same node, so a nullable item stops
                    again = node if node.most is None else Repeat(node.item, 0, node.most - 1)
                    work.append((node.item, (again, rest)))
                if rest is None:
                    finished = True
                else:
                    work.append(rest)
        if not heads and not finished:
            return None
        return cls(grammar, heads, finished)

    def advance(self, text: str) -> Parse | None:
        """After ``text``; None if the grammar does not allow it (or cannot be followed)."""
        parse: Parse | None = self
        for c in text:
            assert parse is not None
            code = ord(c)
            rests = [rest for head, rest in parse._heads if head.matches(code)]
            following = [rest for rest in rests if rest is not None]
            parse = Parse.of(self.grammar, following, finished=len(following) < len(rests)) if rests else None
            if parse is None:
                return None
        return parse

    def completion(self) -> str:
        """The shortest text that finishes the sentence from here."""
        if self.finished:
            return ""
        return min((self._rest_text(head, rest) for head, rest in self._heads), key=_utf8_size)

    def _rest_text(self, head: Char, rest: Rest) -> str:
        parts = [head.example()]
        while rest is not None:
            node, rest = rest
            parts.append(self.grammar.shortest(node))
        return "".join(parts)


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _references(rules: dict[str, Node]) -> set[str]:
    names: set[str] = set()

    def visit(node: Node) -> None:
        if isinstance(node, Ref):
            names.add(node.name)
        elif isinstance(node, Repeat):
            visit(node.item)
        elif isinstance(node, (Sequence, Choice)):
            for n in node.items if isinstance(node, Sequence) else node.options:
                visit(n)

    for rule in rules.values():
        visit(rule)
    return names


def _shortest_texts(rules: dict[str, Node]) -> dict[str, str | None]:
    """Each rule's shortest text (None: it never finishes), by relaxation: a recursive rule
    finishes through its non-recursive alternatives."""
    best: dict[str, str | None] = dict.fromkeys(rules)

    def text(node: Node) -> str | None:
        if isinstance(node, Char):
            return node.example()
        if isinstance(node, Ref):
            return best[node.name]
        if isinstance(node, Repeat):
            if node.least == 0:
                return ""
            item = text(node.item)
            return None if item is None else item * node.least
        if isinstance(node, Sequence):
            parts = [text(i) for i in node.items]
            return None if any(p is None for p in parts) else "".join(p for p in parts if p is not None)
        found = [t for t in (text(o) for o in node.options) if t is not None]
        return min(found, key=_utf8_size) if found else None

    changed = True
    while changed:
        changed = False
        for name, rule in rules.items():
            found = text(rule)
            if found is not None and (best[name] is None or _utf8_size(found) < _utf8_size(best[name] or "")):
                best[name] = found
                changed = True
    return best


# -- reading -----------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z0-9-]+")
_RULE = re.compile(r"^\s*([a-zA-Z0-9-]+)\s*::=\s*(.*)$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "^": "^"}
_HEX = {"x": 2, "u": 4, "U": 8}


def parse(text: str) -> Grammar:
    """Read a grammar whose rules are one per line (as llama-cpp-python's converter writes)."""
    rules: dict[str, Node] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _RULE.match(line)
        if match is None:
            raise GrammarError(f"line {number} is not a rule: {line[:80]!r}")
        reader = _Reader(match.group(2))
        rules[match.group(1)] = reader.choice()
        if not reader.done():
            raise GrammarError(f"line {number}: unexpected {reader.rest()[:40]!r}")
    return Grammar(rules)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def done(self) -> bool:
        self._blank()
        return self.at >= len(self.text)

    def rest(self) -> str:
        return self.text[self.at :]

    def _blank(self) -> None:
        while self.at < len(self.text) and self.text[self.at] in " \t":
            self.at += 1

    def _peek(self) -> str:
        self._blank()
        return self.text[self.at] if self.at < len(self.text) else ""

    def choice(self) -> Node:
        options = [self.sequence()]
        while self._peek() == "|":
            self.at += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else Choice(tuple(options))

    def sequence(self) -> Sequence:
        items: list[Node] = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._postfix(self._primary()))
        return Sequence(tuple(items))

    def _primary(self) -> Node:
        c = self._peek()
        if c == '"':
            return self._literal()
        if c == "[":
            return self._class()
        if c == ".":
            self.at += 1
            return Char(((0x0A, 0x0A),), negated=True)
        if c == "(":
            self.at += 1
            inner = self.choice()
            if self._peek() != ")":
                raise GrammarError("a group is not closed")
            self.at += 1
            return inner
        match = _NAME.match(self.text, self.at)
        if match is None:
            raise GrammarError(f"unexpected {self.rest()[:40]!r}")
        self.at = match.end()
        return Ref(match.group())

    def _postfix(self, node: Node) -> Node:
        while self.at < len(self.text):
            c = self.text[self.at]  # a postfix follows its item directly
            if c in ("*", "+", "?"):
                self.at += 1
                node = Repeat(node, 1 if c == "+" else 0, 1 if c == "?" else None)
            elif c == "{":
                end = self.text.find("}", self.at)
                if end < 0:
                    raise GrammarError("a repetition count is not closed")
                counts = self.text[self.at + 1 : end].replace(" ", "")
                self.at = end + 1
                least, comma, most = counts.partition(",")
                if not least.isdigit() or (most and not most.isdigit()):
                    raise GrammarError(f"a bad repetition count {{{counts}}}")
                upper = int(least) if not comma else (int(most) if most else None)
                node = Repeat(node, int(least), upper)
            else:
                break
        return node

    def _char(self) -> int:
        """The code point at the reading position, escapes resolved."""
        if self.at >= len(self.text):
            raise GrammarError("the line ends inside a literal or class")
        c = self.text[self.at]
        if c != "\\":
            self.at += 1
            return ord(c)
        kind = self.text[self.at + 1 : self.at + 2]
        if kind in _HEX:
            digits = self.text[self.at + 2 : self.at + 2 + _HEX[kind]]
            self.at += 2 + _HEX[kind]
            try:
                return int(digits, 16)
            except ValueError:
                raise GrammarError(f"a bad escape \\{kind}{digits}") from None
        if kind in _ESCAPES:
            self.at += 2
            return ord(_ESCAPES[kind])
        raise GrammarError(f"an unknown escape \\{kind}")

    def _literal(self) -> Sequence:
        self.at += 1
        chars: list[Node] = []
        while self.at < len(self.text) and self.text[self.at] != '"':
            code = self._char()
            chars.append(Char(((code, code),)))
        if self.at >= len(self.text):
            raise GrammarError("a literal is not closed")
        self.at += 1
        return Sequence(tuple(chars))

    def _class(self) -> Char:
        self.at += 1
        negated = self.text[self.at : self.at + 1] == "^"
        if negated:
            self.at += 1
        ranges: list[tuple[int, int]] = []
        while self.at < len(self.text) and self.text[self.at] != "]":
            lo = hi = self._char()
            if self.text[self.at : self.at + 1] == "-" and self.text[self.at + 1 : self.at + 2] not in ("]", ""):
                self.at += 1
                hi = self._char()
            ranges.append((lo, hi))
        if self.at >= len(self.text):
            raise GrammarError("a character class is not closed")
        self.at += 1
        if not ranges:
            raise GrammarError("an empty character class")
        return Char(tuple(ranges), negated)
