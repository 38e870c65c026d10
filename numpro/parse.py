"""Reading a frame span out of an MLLM's free-text answer.

The reply is cut into tokens once (numbers, clock times, words, single
symbols; full-width forms folded by NFKC, markdown ``*`` and backticks
dropped), then read left to right with windows of bounded size, so every
reply is read in time linear in its length whatever it holds (runs of
digits, spaces or punctuation included).

What is read (see ``tests/fixtures/numpro_answers.jsonl`` for a few hundred
labelled replies):

* spans: "From Frame 3 to Frame 7", "frames 3-7", "Frame #3 to Frame #7",
  "frames #3-#7", "3~7", "3–7", "between frames 3 and 7", "frames 3
  through 7", "the 3rd frame to the 7th frame", "starts at frame 3 and ends
  at frame 7", "Start: Frame 3, End: Frame 7", "Answer: 3, 7", "[3, 7]",
  ``{"start": 3, "end": 7}``, ``{"start_frame": 3, "end_frame": 7}``,
  lists ("frames 3, 4, 5 and 6" -> 3..6), "from frame 10 to the end",
  "from the beginning to frame 4", Chinese (从第3帧到第7帧, 第3帧到第7帧,
  3到7帧, 从3秒到7秒);
* seconds: a seconds unit on either end ("around 3 to 7 seconds", "6.0 -
  12.0 sec.", "from 2.5s to 6 seconds", 秒), clock times ("0:12", "1:02:03"),
  keys naming time (``"start_time"``), minutes, and bare decimals ("2.5 -
  6.0": a frame number is never fractional); converted with ``fps`` (second
  ``x`` is frame ``floor(x * fps)``); an explicit frame word wins over
  seconds given beside it ("From Frame 3 to Frame 7 (1.5 s to 3.5 s)");
* single frames: "frame 5", "frame #5", "the 5th frame", 第5帧, "at 12
  seconds", or a reply that is only a number.

Choices (documented, tested):

* Refusals never become spans: a span or frame in a clause holding a
  negation ("None of the frames (0-31) show the event", "not visible in
  frames 0 to 31", "Frames 0-31 do not show it", 没有…) is not an answer.
  A clause ends at . ! ? ; a line break, "but", "however", "although"; a
  negation after the span counts up to the next comma or "and". "Not sure"
  and "cannot be certain" are hedges, not refusals.
* The first span stated with a unit, "from"/"between", a worded connector,
  brackets or labels wins; otherwise a single frame; otherwise a bare span
  ("3-8"); a restatement of the whole numbered range (frames 0 to n-1)
  gives way to any other span or frame ("The video has frames 0-31; the
  event is in frames 3-7").
* Reversed spans are swapped (7 to 3 -> 3..7). An end past the last frame is
  clipped to it; a start past the last frame is refused.
* ``<think>...</think>`` reasoning is skipped when an answer follows it.

Anything else is a no-answer result that keeps the raw text and says why;
no input raises.
"""
from __future__ import annotations

import math
import operator
import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any

from tfvtg.errors import InvalidInputError

__all__ = ["Answer", "parse_answer"]


@dataclass(frozen=True)
class Answer:
    """A parsed answer. Always truthy (whether or not a span was read): test
    :attr:`ok`, and read :attr:`reason` and :attr:`raw` when it is False.

    Attributes:
        first, last: frame numbers (inclusive, 0-based as painted), or None
            when no answer could be read.
        raw: the model's text.
        in_seconds: the model answered in seconds (converted with ``fps``).
        reason: why there is no answer (empty when there is one).
    """

    first: int | None
    last: int | None
    raw: str
    in_seconds: bool = False
    reason: str = ""

    @property
    def ok(self) -> bool:
        """A span was read: ``first`` and ``last`` are frame numbers."""
        return self.first is not None and self.last is not None

    @property
    def unit(self) -> str:
        """The unit the model answered in: ``"seconds"`` or ``"frames"``."""
        return "seconds" if self.in_seconds else "frames"

    def seconds(self, fps: float, duration: float | None = None) -> tuple[float, float]:
        """The span in seconds: frame k (sampled at ``fps``) is at k / fps;
        the span runs from the first frame's time to the last frame's time,
        as the paper's evaluation maps numbers to time, widened to one frame
        interval when both are the same frame; clipped to ``duration``."""
        if self.first is None or self.last is None:
            raise InvalidInputError(f"no answer to convert ({self.reason}): {self.raw[:120]!r}")
        if not _usable_rate(fps):
            raise InvalidInputError(f"fps must be a positive finite number of frames per second, got {fps!r}")
        start = self.first / fps
        end = self.last / fps if self.last > self.first else (self.last + 1) / fps
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        return start, end


def _usable_rate(fps: Any) -> bool:
    try:
        return fps is not None and math.isfinite(float(fps)) and float(fps) > 0
    except (TypeError, ValueError, OverflowError):
        return False


# ------------------------------------------------------------------ tokens
# Each alternative is a run of one character class with at most one optional
# tail, never two unbounded runs that can trade characters: finditer takes
# every token in one pass, and no position is tried more than a bounded
# number of times (the clock alternative fails within 3 characters on a
# digit run, which the number alternative then takes whole).
_TOKEN = re.compile(
    r"(?P<clock>[0-9]{1,2}(?::[0-9]{2}){1,2}(?:\.[0-9]+)?)(?![0-9:])"
    r"|(?P<num>[0-9]+(?:\.[0-9]+)?)"
    r"|(?P<word>[a-z]+(?:['’][a-z]+)?)"
    r"|(?P<sym>\n|[^\s*`])"
)
_WORD, _SYM, _NUM, _CLOCK, _ANCHOR = range(5)
_START_ANCHOR, _END_ANCHOR, _ONWARD_ANCHOR = "<start>", "<end>", "<onward>"
_LAST = math.inf  # "to the end", "onwards": the last frame, whatever the unit

_ORDINAL_SUFFIX = frozenset({"st", "nd", "rd", "th"})
_FRAME_BEFORE = frozenset({"frame", "frames", "fr", "第", "#"})
_FRAME_AFTER = frozenset({"frame", "frames", "帧"})
_SECONDS = frozenset({"s", "sec", "secs", "second", "seconds", "秒"})
_SECONDS_BEFORE = frozenset({"time", "timestamp", "sec", "secs", "second", "seconds"})
_MINUTES = frozenset({"min", "mins", "minute", "minutes"})
_BEFORE_SKIP = frozenset({":", "=", '"', "'", "_", "number", "numbers", "num", "nr", "index", "idx", "no", "the",
                          "approximately", "approx", "about", "around", "roughly", "nearly", "near", "is", "are", "was",
                          "were", "\n"})
_FROM = frozenset({"from", "between", "从", "在", "during", "spanning", "spans", "span"})
_BETWEEN = frozenset({"between", "在"})
_ANSWER_LABELS = frozenset({"answer", "answers", "output", "result", "prediction", "span", "range", "frames",
                            "segment", "moment", "interval", "timestamps", "案"})
_RANGE = frozenset({"to", "until", "till", "til", "through", "thru", "up", "-", "–", "—", "−", "‐", "~", "→",
                    "到", "至", "end", "ends", "ended", "ending", "finish", "finishes", "finished", "finishing",
                    "stop", "stops", "stopped", "stopping", "conclude", "concludes", "concluded", "concluding",
                    "last", "lasts", "lasted", "lasting", "continue", "continues", "continued", "continuing",
                    "go", "goes", "going", "run", "runs", "running", "extend", "extends", "extending",
                    "complete", "completes", "completed", "completing",
                    "结", "束", "止"})
_WORDED_RANGE = _RANGE - {"-", "–", "—", "−", "‐", "~", "→"}
_AND = frozenset({"and", "&", "和", "与", "及"})
_COMMA = frozenset({",", "、"})
_GLUE = frozenset({"the", "at", "in", "on", "is", "was", "it", "its", "about", "around", "approximately", "approx",
                   "roughly", "nearly", "near", "almost", "then", "with", "which", "(", ")", "[", "]", "{", "}", '"', "'",
                   ":", "=", "_", "\n", ">", "frame", "frames", "帧", "第", "开", "始", "于", "从", "在", "of",
                   "video", "clip"})
_START_LABELS = frozenset({"start", "starts", "started", "starting", "begin", "begins", "began", "beginning",
                           "onset", "始"})
_END_LABELS = frozenset({"end", "ends", "ended", "ending", "finish", "finishes", "finished", "stop", "stops",
                         "stopped", "conclude", "concludes", "concluded", "complete", "completes", "completed",
                         "offset", "束", "止"})
_LABEL_SKIP = _BEFORE_SKIP | _FRAME_BEFORE | _SECONDS_BEFORE | frozenset(
    {"at", "is", "was", "in", "on", "from", "by", "with", "point", "of", "于", "为", "-"})
_NOT_SINGLE = frozenset({"for", "lasts", "last", "lasting", "lasted", "takes", "took", "duration", "within",
                         "every", "per", "after", "before", "since", "total", "of"})
_OPENERS = frozenset({"(", "[", "{"})
_CLOSERS = frozenset({")", "]", "}"})
_SENTENCE_END = frozenset({".", "!", "?", ";", "。"})
_CLAUSE_END = _SENTENCE_END | frozenset({"\n", "but", "however", "although", "though", "whereas", "但"})
_NEGATION_WEAK_STOP = frozenset({",", "、", "and", "then", "和", "并"})
_NEGATIONS = frozenset({"no", "not", "none", "never", "nothing", "nowhere", "nobody", "neither", "nor", "cannot", "unable",
                        "impossible", "absent", "null", "没", "无", "未"})
_HEDGES = frozenset({"sure", "certain", "100", "entirely", "completely", "totally", "fully", "exactly", "precisely",
                     "quite", "absolutely", "doubt"})
_NEGATION_TRIGGERS = _NEGATIONS | frozenset({"n", "not", "不", "cannot"})
_NOT_AFTER_BU = frozenset({"在", "是", "包", "显", "出", "存", "能", "可", "清", "确", "含", "会"})
_S_CONTEXT = frozenset({"seconds", "secs", "timestamp", "timestamps", "秒"})

_MAX_SCAN = 24  # tokens looked at to find a span's other end
_MAX_GAP = 10  # tokens (parentheticals aside) allowed between a span's two numbers
_MAX_LABEL_DISTANCE = 60  # tokens between a labelled start and its labelled end


def _number_value(text: str) -> float:
    # a frame number past 10**20 is past every video; float() of a long digit
    # run is inf anyway, this keeps huge inputs cheap
    if text.find(".") > 20 or ("." not in text and len(text) > 20):
        return math.inf
    return float(text)


def _clock_value(text: str) -> float:
    parts = text.split(":")
    seconds = float(parts[-1])
    minutes = float(parts[-2])
    hours = float(parts[0]) if len(parts) == 3 else 0.0
    return hours * 3600 + minutes * 60 + seconds


def _tokenize(text: str) -> tuple[list[str], list[int], list[float], list[bool]]:
    """Tokens of ``text`` as parallel lists: text, kind, value (numbers:
    frames or seconds as written; clocks: seconds), ordinal flag."""
    tk: list[str] = []
    kind: list[int] = []
    val: list[float] = []
    ordinal: list[bool] = []
    prev_end = -1
    for m in _TOKEN.finditer(text):
        group = m.lastgroup
        s = m.group()
        if group == "word":
            if s in _ORDINAL_SUFFIX and kind and kind[-1] == _NUM and prev_end == m.start():
                ordinal[-1] = True
                prev_end = m.end()
                continue
            tk.append(s)
            kind.append(_WORD)
            val.append(0.0)
        elif group == "num":
            tk.append(s)
            kind.append(_NUM)
            val.append(_number_value(s))
        elif group == "clock":
            tk.append(s)
            kind.append(_CLOCK)
            val.append(_clock_value(s))
        else:
            tk.append(s)
            kind.append(_SYM)
            val.append(0.0)
        ordinal.append(False)
        prev_end = m.end()
    return tk, kind, val, ordinal


def _add_anchors(tk: list[str], kind: list[int], val: list[float]) -> None:
    """Turn "from the beginning", "to the end", "the last frame" (after to /
    until / through) and "onwards" into anchor tokens, in place (each phrase
    becomes one token; the words are blanked to glue)."""
    n = len(tk)
    for i in range(n):
        t = tk[i]
        if t in ("onward", "onwards"):
            tk[i], kind[i], val[i] = _ONWARD_ANCHOR, _ANCHOR, _LAST
            continue
        if t not in ("from", "to", "until", "till", "through", "thru") or i + 2 >= n or tk[i + 1] != "the":
            continue
        j = i + 2
        if tk[j] == "very" and j + 1 < n:
            j += 1
        w = tk[j]
        nxt = tk[j + 1] if j + 1 < n else ""
        if t == "from" and (w in ("beginning", "start") or (w == "first" and nxt == "frame")):
            anchor, value = _START_ANCHOR, 0.0
        elif t != "from" and (w == "end" or (w in ("last", "final") and nxt == "frame")):
            anchor, value = _END_ANCHOR, _LAST
        else:
            continue
        last = j + 1 if w in ("first", "last", "final") else j
        for k in range(i + 1, last):
            tk[k], kind[k] = "the", _WORD
        tk[last], kind[last], val[last] = anchor, _ANCHOR, value


# ------------------------------------------------------------------ reading

@dataclass
class _Candidate:
    """A span or frame as written (numbers in ``unit``), before conversion."""

    first: float
    last: float
    unit: str  # "f" frames, "s" seconds, "m" minutes
    strong: bool
    span: bool


class _Reader:
    """One reply's tokens, and where its clauses end and its negations are
    (sorted token indices, queried by bisection)."""

    def __init__(self, tk: list[str], kind: list[int], val: list[float], ordinal: list[bool]):
        _add_anchors(tk, kind, val)
        self.tk, self.kind, self.val, self.ordinal = tk, kind, val, ordinal
        n = self.n = len(tk)
        # "Frame No. 5": the dot after "no" ends no sentence
        self.clause_ends = [i for i, t in enumerate(tk) if t in _CLAUSE_END and not (
            t == "." and i > 0 and tk[i - 1] in ("no", "nr", "num") and i + 1 < n and kind[i + 1] == _NUM)]
        self.sentence_ends = {i for i in self.clause_ends if tk[i] in _SENTENCE_END}
        self.cues = [i for i, t in enumerate(tk) if (t in _NEGATION_TRIGGERS or "'" in t or "’" in t)
                     and self._is_negation(i)]
        stops = {i for i, t in enumerate(tk) if t in _NEGATION_WEAK_STOP}
        self.negation_stops = sorted(stops.union(self.clause_ends))
        self.seconds_words = [i for i, t in enumerate(tk) if t in _S_CONTEXT]
        self.any_negation = bool(self.cues)

    def _in_clause_before(self, marks: list[int], i: int) -> bool:
        """One of ``marks`` is at or before token ``i`` in its clause."""
        m = bisect_right(marks, i) - 1
        if m < 0:
            return False
        e = bisect_right(self.clause_ends, i) - 1
        return e < 0 or marks[m] > self.clause_ends[e]

    def neg_before(self, i: int) -> bool:
        return self._in_clause_before(self.cues, i)

    def neg_after(self, i: int) -> bool:
        """A negation at or after token ``i`` before the next comma, "and" or
        clause end."""
        c = bisect_left(self.cues, i)
        if c == len(self.cues):
            return False
        s = bisect_left(self.negation_stops, i)
        return s == len(self.negation_stops) or self.cues[c] < self.negation_stops[s]

    def s_context(self, i: int) -> bool:
        return self._in_clause_before(self.seconds_words, i)

    def _is_negation(self, i: int) -> bool:
        tk = self.tk
        t = tk[i]
        nxt = tk[i + 1] if i + 1 < self.n else ""
        if t == "no":
            # "Frame No. 5", "no 5", "no doubt"
            after_dot = i + 2 < self.n and nxt == "." and self.kind[i + 2] == _NUM
            if after_dot or (i + 1 < self.n and self.kind[i + 1] == _NUM) or nxt in _HEDGES:
                return False
            return not (i > 0 and tk[i - 1] in ("frame", "frames"))
        if t == "not":
            return nxt not in _HEDGES
        if t in _NEGATIONS:
            return True
        if t == "不":
            return nxt in _NOT_AFTER_BU
        if t.endswith("n't") or t.endswith("n’t") or t == "cannot":
            # "can't be sure" is a hedge
            return not (nxt == "be" and i + 2 < self.n and tk[i + 2] in _HEDGES)
        if t == "n" and nxt == "/" and i + 2 < self.n and tk[i + 2] == "a":
            return True
        return False

    # -- one number's surroundings (bounded windows)

    def before(self, i: int) -> tuple[str, int, bool]:
        """Unit named just before number ``i`` ("f", "s" or ""), where that
        marker run starts, and whether it said "frames"."""
        tk = self.tk
        p = i - 1
        unit = ""
        plural = False
        steps = 0
        while p >= 0 and steps < 8:
            t = tk[p]
            if self.kind[p] in (_NUM, _CLOCK, _ANCHOR):
                break
            if t in _FRAME_BEFORE:
                if not unit:
                    unit, plural = "f", t == "frames"
            elif t in _SECONDS_BEFORE:
                if not unit:
                    unit = "s"
            elif t == "." and p > 0 and tk[p - 1] in ("no", "nr", "num"):
                p -= 1
            elif t not in _BEFORE_SKIP:
                break
            p -= 1
            steps += 1
        return unit, p + 1, plural

    def after(self, i: int) -> tuple[str, int]:
        """Unit named just after number ``i`` and the index after it."""
        j = i + 1
        if j < self.n:
            t = self.tk[j]
            if t in _SECONDS:
                return "s", j + 1
            if t in _MINUTES:
                return "m", j + 1
            if t in _FRAME_AFTER:
                return "f", j + 1
        return "", j

    def word_before(self, start: int) -> str:
        return self.tk[start - 1] if start > 0 else ""

    def label(self, i: int) -> str:
        """"start" / "end" when number ``i`` is introduced as one ("starts at
        frame 3", ``"end_frame": 7``, 结束于第7帧), else ""."""
        tk = self.tk
        p = i - 1
        steps = 0
        while p >= 0 and steps < 8:
            t = tk[p]
            if t in _START_LABELS:
                return "start"
            if t in _END_LABELS:
                return "end"
            if self.kind[p] not in (_WORD, _SYM) or t not in _LABEL_SKIP:
                return ""
            p -= 1
            steps += 1
        return ""

    def negated(self, i: int, j: int) -> bool:
        """A negation in the clause of numbers ``i``..``j`` (see module doc)."""
        _, after_end = self.after(j)
        return self.neg_before(i) or self.neg_before(j) or self.neg_after(after_end) or self.verdict_after(j)

    def verdict_after(self, j: int) -> bool:
        """A negation after a colon later in the same sentence ("..., when
        the man opens the door: not present."): a verdict on the whole
        sentence, commas notwithstanding."""
        c = bisect_right(self.cues, j)
        if c == len(self.cues):
            return False
        e = bisect_right(self.clause_ends, j)
        end = self.clause_ends[e] if e < len(self.clause_ends) else self.n
        cue = self.cues[c]
        return cue < end and ":" in self.tk[j + 1:cue]

    def partner(self, i: int) -> int:
        """The next number at the same bracket depth within the same sentence
        and scan window, or -1 (a parenthesis between them is skipped)."""
        tk, kind = self.tk, self.kind
        depth = 0
        for k in range(i + 1, min(self.n, i + 1 + _MAX_SCAN)):
            t = tk[k]
            if t in _CLOSERS:
                depth -= 1
                if depth < 0:
                    return -1
            elif t in _OPENERS:
                depth += 1
            elif k in self.sentence_ends:
                return -1
            elif depth == 0 and kind[k] in (_NUM, _CLOCK, _ANCHOR):
                return k
        return -1

    def unit_of(self, idx: list[int], markers: list[str]) -> str:
        if any(self.kind[k] == _CLOCK for k in idx):
            return "s"
        for unit in ("f", "m", "s"):
            if unit in markers:
                return unit
        if any(self.kind[k] == _NUM and "." in self.tk[k] for k in idx):
            return "s"
        if self.s_context(idx[0]):
            return "s"
        return "f"

    def connect(self, i: int, j: int) -> tuple[str, str, bool] | None:
        """How numbers ``i`` and ``j`` are joined: ("range" | "and" |
        "comma", unit of the pair, strongly stated), or None."""
        tk = self.tk
        unit_a_before, start_a, _ = self.before(i)
        unit_a_after, a_end = self.after(i)
        unit_b_before, b_start, _ = self.before(j)
        unit_b_after, _ = self.after(j)
        words = []
        symbol_only = True
        depth = 0
        for k in range(a_end, b_start):
            t = tk[k]
            if t in _CLOSERS:
                depth -= 1
            elif t in _OPENERS:
                depth += 1
            if depth > 0 or t in _GLUE:
                continue  # a parenthesis ("Frame 3 (1.5 s) to Frame 7") or glue
            words.append(t)
            if len(words) > _MAX_GAP:
                return None
        has_range = False
        n_and = n_comma = 0
        for t in words:
            if t in _RANGE:
                has_range = True
                symbol_only = symbol_only and t not in _WORDED_RANGE
            elif t in _AND:
                n_and += 1
            elif t in _COMMA:
                n_comma += 1
            else:
                return None
        if has_range:
            link = "range"
        elif tk[j] == _ONWARD_ANCHOR and n_and == n_comma == 0:
            link, symbol_only = "range", False
        elif n_and == 1 and n_comma <= 1:
            link = "and"
        elif n_and == 0 and n_comma == 1:
            link = "comma"
        else:
            return None
        markers = [unit_a_before or unit_a_after, unit_b_before or unit_b_after]
        if unit_a_before == "f" or unit_b_before == "f":
            markers = ["f"]  # "Frame 3 to Frame 7 seconds" never happens; frame words win
        unit = self.unit_of([i, j], markers)
        strong = (not symbol_only or any(markers) or self.kind[i] == _CLOCK or self.kind[j] == _CLOCK
                  or self.word_before(start_a) in _FROM)
        return link, unit, strong


def _convert(value: float, unit: str, fps: float | None) -> float | None:
    """A number as written -> a frame number (a float, possibly inf), or None
    when seconds cannot be converted."""
    if math.isinf(value):
        return value
    if unit == "f":
        return math.floor(value + 0.5)
    if fps is None:
        return None
    seconds = value * 60 if unit == "m" else value
    frame = seconds * fps
    return math.floor(frame + 1e-9) if math.isfinite(frame) else math.inf


def _fmt(x: float) -> str:
    return "a number" if not math.isfinite(x) or x > 1e15 else str(int(x))


class _Decider:
    """Collects candidates in reading order and keeps the one to answer."""

    def __init__(self, n_frames: int, fps: float | None):
        self.n_frames = n_frames
        self.last_frame = n_frames - 1
        self.fps = fps
        self.best: dict[str, tuple[int, int, bool]] = {}  # tier -> (first, last, in_seconds)
        self.problem = ""  # why the first refused candidate was refused
        self.negated = False
        self.restatement: tuple[int, int, bool] | None = None

    def add(self, c: _Candidate, negated: bool) -> bool:
        """Record a candidate; True when nothing later can beat it."""
        if negated:
            self.negated = True
            return False
        a = _convert(c.first, c.unit, self.fps)
        b = _convert(c.last, c.unit, self.fps)
        if a is None or b is None:
            self.problem = self.problem or (f"the answer is in seconds but fps ({self.fps!r}) is not a positive "
                                            "finite rate to convert them with")
            return False
        if a > b:
            a, b = b, a
        if a > self.last_frame:
            self.problem = self.problem or f"frame {_fmt(a)} is past the last frame {self.last_frame}"
            return False
        span = (int(max(a, 0)), int(min(b, self.last_frame)), c.unit != "f")
        if c.span and c.unit == "f" and c.first in (0, self.last_frame) and c.last in (0, self.last_frame) \
                and c.first != c.last and self.n_frames > 1:
            # "frames 0-31" may restate what the model was shown
            self.restatement = self.restatement or span
            return False
        tier = ("strong " if c.strong else "bare ") + ("span" if c.span else "single")
        self.best.setdefault(tier, span)
        return tier == "strong span"

    def answer(self, raw: str, any_negation: bool) -> Answer:
        for tier in ("strong span", "strong single", "bare span", "bare single"):
            if tier in self.best:
                a, b, secs = self.best[tier]
                if secs and self.restatement is not None and self.restatement[:2] == (a, b):
                    # "From Frame 0 to Frame 1 (0s to 1s)" on a 2-frame video:
                    # the frames were the answer, the seconds only restate them
                    secs = False
                return Answer(a, b, raw, secs)
        if self.restatement is not None and not any_negation:
            # only when nothing else was said; beside a negation ("I cannot find
            # it; frames 0-31 show an empty room") it is a refusal
            a, b, secs = self.restatement
            return Answer(a, b, raw, secs)
        if self.problem:
            return Answer(None, None, raw, reason=self.problem)
        if self.negated or any_negation:
            return Answer(None, None, raw, reason="the model says the event is not shown")
        return Answer(None, None, raw, reason="no frame span in the answer")


def _read(reader: _Reader, decider: _Decider) -> None:
    tk, kind = reader.tk, reader.kind
    all_numbers = [i for i, k in enumerate(kind) if k == _NUM or k == _CLOCK or k == _ANCHOR]
    numbers = all_numbers
    if len(numbers) > _MAX_NUMBERS_HEAD + _MAX_NUMBERS_TAIL:
        numbers = numbers[:_MAX_NUMBERS_HEAD] + numbers[-_MAX_NUMBERS_TAIL:]
    consumed = -1  # numbers up to this index belong to a list already read
    pending: dict[str, int] = {}  # label -> index of the last number so labelled
    for i in numbers:
        # "starts at frame 3 ... ends at frame 7", JSON {"start": 3, "end": 7} (either order)
        label = reader.label(i) if kind[i] != _ANCHOR else ""
        if label:
            other = pending.pop("end" if label == "start" else "start", -1)
            if other >= 0 and i - other <= _MAX_LABEL_DISTANCE:
                first, last = (other, i) if label == "end" else (i, other)
                markers = [reader.before(first)[0] or reader.after(first)[0],
                           reader.before(last)[0] or reader.after(last)[0]]
                unit = reader.unit_of([first, last], markers)
                c = _Candidate(reader.val[first], reader.val[last], unit, True, True)
                if decider.add(c, reader.neg_before(first) or reader.negated(last, last)):
                    return
            else:
                pending[label] = i
        if i <= consumed:
            continue
        j = reader.partner(i)
        link = reader.connect(i, j) if j >= 0 else None
        if link is not None:
            how, unit, strong = link
            items = [i, j]
            accept = how == "range"
            if how in ("and", "comma"):
                unit_a, start_a, plural = reader.before(i)
                opener = reader.word_before(start_a)
                labelled = opener in _ANSWER_LABELS and ":" in tk[start_a:i]
                whole_reply = start_a == 0  # "3, 7" alone
                bracketed = opener in _OPENERS or opener == "<"  # "<7.0, 8.5>"
                between = opener in _BETWEEN or any(t in ("之", "间") for t in tk[j + 1:j + 4])
                both_marked = unit_a == "f" and reader.before(j)[0] == "f"
                if how == "and":
                    accept = between or plural or both_marked
                else:
                    accept = bracketed or unit_a == "f" or labelled or whole_reply
                # a list goes on: "frames 3, 4, 5 and 6", "[3, 4, 5]"
                while accept and how == "comma":
                    k = reader.partner(items[-1])
                    nxt = reader.connect(items[-1], k) if k >= 0 else None
                    if nxt is None or nxt[0] not in ("comma", "and"):
                        break
                    items.append(k)
                    if nxt[0] == "and":
                        break
                values = [reader.val[k] for k in items]
                if accept and how == "comma" and not (bracketed or labelled) and values != sorted(values):
                    accept = False  # "frame 3, 2 people"; brackets and labels may hold any order
                if accept:
                    consumed = items[-1]
                    markers = [reader.before(k)[0] or reader.after(k)[0] for k in items]
                    unit = reader.unit_of(items, markers)
                    strong = strong or bracketed or labelled or between or plural
                    c = _Candidate(min(values), max(values), unit, strong, True)
                    if decider.add(c, reader.negated(i, items[-1])):
                        return
                    continue
            elif accept:
                consumed = j  # its end is no single frame
                c = _Candidate(reader.val[i], reader.val[j], unit, strong, True)
                if decider.add(c, reader.negated(i, j)):
                    return
                continue
        single = _single(reader, i)
        if single is not None:
            decider.add(single, reader.negated(i, i))
    bare = _bare_number(reader, all_numbers)
    if bare is not None:
        decider.add(bare, False)


def _single(reader: _Reader, i: int) -> _Candidate | None:
    """Number ``i`` as a single frame ("frame 5", "the 5th frame", 第5帧,
    "at 12 seconds", "0:12"), or None."""
    kind = reader.kind[i]
    if kind == _ANCHOR:
        return None
    unit_before, start, _ = reader.before(i)
    unit_after, _ = reader.after(i)
    if reader.word_before(start) in _NOT_SINGLE:
        return None  # "for 5 seconds", "after frame 10": not where the event is
    value = reader.val[i]
    if kind == _CLOCK:
        return _Candidate(value, value, "s", True, False)
    if unit_before:
        return _Candidate(value, value, unit_before, True, False)
    if unit_after in ("s", "m"):
        if reader.tk[i + 2:i + 3] == ["long"]:
            return None  # "the video is 15 seconds long"
        return _Candidate(value, value, unit_after, True, False)
    if unit_after == "f" and (reader.ordinal[i] or reader.tk[i + 1] == "帧" and reader.tk[i - 1:i] == ["第"]):
        return _Candidate(value, value, "f", True, False)
    return None


_BARE_OK = frozenset({"answer", "frame", "frames", "is", "the", ":", ".", '"', "'", "#", "(", ")", "[", "]", "第",
                      "帧", "\n", "!"})


def _bare_number(reader: _Reader, numbers: list[int]) -> _Candidate | None:
    """A reply that is only one number (with at most a label): that frame."""
    if len(numbers) != 1 or reader.kind[numbers[0]] != _NUM:
        return None
    for i, t in enumerate(reader.tk):
        if i != numbers[0] and t not in _BARE_OK:
            return None
    value = reader.val[numbers[0]]
    return _Candidate(value, value, "s" if "." in reader.tk[numbers[0]] else "f", False, False)


_HEAD_CHARS = 8000  # a longer reply is read at its first and last sentences
_TAIL_CHARS = 2000
_CUT = re.compile(r"[\s。！？；，]")
_MAX_NUMBERS_HEAD, _MAX_NUMBERS_TAIL = 400, 200  # numbers that may start a span


def _tokens_read(body: str) -> tuple[list[str], list[int], list[float], list[bool]]:
    """The tokens read: all of them for a reply up to 10,000 characters; for
    a longer one, its whole sentences within the first 8,000 and the last
    2,000 characters (a cut sentence might hold the negation that refuses
    it). This bounds the work on huge replies; real answers are far shorter."""
    if len(body) <= _HEAD_CHARS + _TAIL_CHARS:
        return _tokenize(body)
    head = body[:_HEAD_CHARS]
    cut = max((m.start() for m in _CUT.finditer(head, len(head) - 200)), default=-1)
    if cut < 0:  # no break in the last 200 characters: a run too long to be an answer
        cut = 0
    tk, kind, val, ordinal = _tokenize(head[:cut])
    ends = [i for i, t in enumerate(tk) if t in _CLAUSE_END]
    keep = ends[-1] + 1 if ends else 0
    del tk[keep:], kind[keep:], val[keep:], ordinal[keep:]
    tail = body[-_TAIL_CHARS:]
    start = _CUT.search(tail)
    ttk, tkind, tval, tordinal = _tokenize(tail[start.end():] if start else "")
    ends = [i for i, t in enumerate(ttk) if t in _CLAUSE_END]
    skip = ends[0] + 1 if ends else len(ttk)
    return (tk + ["."] + ttk[skip:], kind + [_SYM] + tkind[skip:], val + [0.0] + tval[skip:],
            ordinal + [False] + tordinal[skip:])


def _answer_part(raw: str) -> str:
    """The text after the last ``</think>`` when an answer follows it."""
    cut = raw.rfind("</think>")
    if cut >= 0 and raw[cut + 8:].strip():
        return raw[cut + 8:]
    return raw


def _frame_count(n_frames: Any) -> int | None:
    try:
        return operator.index(n_frames)
    except TypeError:
        pass
    try:
        as_float = float(n_frames)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(as_float) if math.isfinite(as_float) and as_float == int(as_float) else None


def parse_answer(text: str, n_frames: int, fps: float | None = None) -> Answer:
    """Read (first, last) frame numbers from an MLLM answer.

    Args:
        text: the model's reply.
        n_frames: how many numbered frames the model saw (numbers 0..n-1).
        fps: sampling rate (frames per second), to convert answers given in
            seconds; None, NaN, infinite, zero or negative: such answers are
            refused with a reason.

    Returns:
        An :class:`Answer` (always truthy); ``answer.ok`` is False, with
        ``reason`` and the raw text kept, when no usable span is in the
        reply. Reversed spans are swapped; an end past the last frame is
        clipped to it, a start past it is refused. Never raises; time is
        linear in ``len(text)``.
    """
    if isinstance(text, str):
        raw = text
    elif text is None:
        raw = ""
    else:
        try:
            raw = text.decode("utf-8", "replace") if isinstance(text, bytes | bytearray) else str(text)
        except Exception:  # an object whose __str__ fails is still no answer, not a crash
            raw = ""
    count = _frame_count(n_frames)
    if count is None:
        return Answer(None, None, raw, reason=f"n_frames must be a whole number of frames, got {n_frames!r}")
    if count < 1:
        return Answer(None, None, raw, reason="the model saw no frames")
    if not raw.strip():
        return Answer(None, None, raw, reason="empty answer")
    rate = float(fps) if _usable_rate(fps) else None  # type: ignore[arg-type]
    body = unicodedata.normalize("NFKC", _answer_part(raw)).lower()
    reader = _Reader(*_tokens_read(body))
    decider = _Decider(count, rate)
    _read(reader, decider)
    return decider.answer(raw, reader.any_negation)
